"""Packing: every example's loss inside a packed row equals its loss alone (no cross-contamination)."""

import pytest
import torch

from dagllm.params import TrainParams
from dagllm.training.encoding import encode_example
from dagllm.training.packing import IGNORE, PackedCollator, PaddedCollator, pack_examples, segment_losses
from dagllm.training.presets import build_tiny_model, train_tokenizer
from dagllm.training.prompt import build_prompt

RECORDS = [("다음 리뷰를 분류하세요.", "정말 재미있는 영화였다", "긍정"),
           ("질문에 답하세요.", "", "서울입니다"),
           ("문장의 원인을 고르세요.", "비가 많이 왔다. 선택지: 우산, 모자", "우산"),
           ("혐오 표현인지 판단하세요.", "오늘 날씨가 참 좋네요", "아니오"),
           ("요약하세요.", "회의는 내일 오전 열 시에 본관 삼층에서 열린다", "내일 오전 회의")]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer([build_prompt(i, x) + o for i, x, o in RECORDS] * 10, 400)


@pytest.fixture(scope="module")
def examples(tok):
    return [encode_example(tok, i, x, o, 64) for i, x, o in RECORDS]


def test_pack_keeps_every_token_and_restarts_positions(examples):
    rows, stats = pack_examples(examples, 128, seed=3)
    assert stats.rows == len(rows) < len(examples)  # several examples share a row
    assert sum(len(r["input_ids"]) for r in rows) == stats.real_tokens == sum(len(e["input_ids"]) for e in examples)
    for r in rows:
        starts = [i for i, p in enumerate(r["position_ids"]) if p == 0]
        assert all(r["labels"][s] == IGNORE for s in starts)  # no loss across a boundary
        assert len(r["input_ids"]) <= 128
    assert 0 < stats.efficiency <= 1


def test_pack_rejects_overlong_example():
    with pytest.raises(ValueError, match="max_len=4"):
        pack_examples([{"input_ids": [1] * 5, "labels": [1] * 5}], 4)


def test_collator_pads_tail_as_its_own_segment(tok, examples):
    rows, _ = pack_examples(examples, 128, seed=3)
    batch = PackedCollator(tok.pad_token_id)(rows)
    assert "attention_mask" not in batch  # boundaries come from position_ids
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        assert (batch["labels"][i, n:] == IGNORE).all()
        if n < batch["input_ids"].shape[1]:
            assert batch["position_ids"][i, n] == 0
    flat = PackedCollator(tok.pad_token_id, flatten=True)(rows)
    assert flat["input_ids"].shape == (1, sum(len(r["input_ids"]) for r in rows))


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_packed_loss_equals_loss_alone(tok, examples, attn):
    torch.manual_seed(0)
    params = TrainParams(attn_implementation=attn, max_seq_len=128,
                         tiny={"hidden_size": 32, "num_heads": 2, "intermediate_size": 64, "vocab_size": 400})
    model = _sharp(build_tiny_model(params, tok).eval())
    assert model.config._attn_implementation == attn
    rows, _ = pack_examples(examples, 128, seed=3)
    batch = PackedCollator(tok.pad_token_id)(rows)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        packed = [seg for i in range(len(rows))
                  for seg in segment_losses(logits[i], batch["labels"][i], batch["position_ids"][i])]
        # the same examples one at a time, in the packed order
        order = [e for r in rows for e in _split(r)]
        alone = []
        for ids, labels in order:
            single = PaddedCollator(tok.pad_token_id)([{"input_ids": ids, "labels": labels}])
            lg = model(**{k: v for k, v in single.items() if k != "labels"}).logits[0]
            alone += segment_losses(lg, single["labels"][0], torch.arange(len(ids)))
    assert len(packed) == len(alone) == len(examples)
    for (lp, n_p), (la, n_a) in zip(packed, alone):
        assert n_p == n_a
        assert abs(lp / n_p - la / n_a) < 1e-5


def test_packing_without_position_ids_would_leak(tok, examples):
    """The check above can fail: positions running on across examples change the losses."""
    torch.manual_seed(0)
    params = TrainParams(attn_implementation="sdpa", max_seq_len=128,
                         tiny={"hidden_size": 32, "num_heads": 2, "intermediate_size": 64, "vocab_size": 400})
    model = _sharp(build_tiny_model(params, tok).eval())
    rows, _ = pack_examples(examples, 128, seed=3)
    batch = PackedCollator(tok.pad_token_id)(rows)
    with torch.no_grad():
        good = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], labels=batch["labels"],
                     use_cache=False).loss
        leaky = model(input_ids=batch["input_ids"], labels=batch["labels"], use_cache=False).loss
    assert abs(float(good) - float(leaky)) > 1e-2, (good, leaky)


def _split(row):
    starts = [i for i, p in enumerate(row["position_ids"]) if p == 0] + [len(row["input_ids"])]
    for a, b in zip(starts[:-1], starts[1:]):
        yield row["input_ids"][a:b], row["labels"][a:b]


def _sharp(model):
    """Larger random weights: with the default init (std 0.02) attention is nearly uniform and a
    leak across examples would move the loss by less than float32 resolution."""
    with torch.no_grad():
        for name, w in model.named_parameters():
            if w.ndim == 2:
                w.normal_(0, 0.3)
    return model
