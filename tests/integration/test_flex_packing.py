"""Packing through flex_attention: a document block mask, the same losses as each example alone.

flex_attention is compiled (torch.compile) even on CPU, so this is a slow test (~1 min). torch has no
CPU backward for flex_attention: gradients through it are checked on the GPU by bench/gpu_oneshot.py;
here the forward pass is checked against sdpa on each example alone, and the block mask's sparsity
against the example lengths.
"""

from __future__ import annotations

import pytest
import torch

from dagllm.params import TrainParams
from dagllm.training.packing import IGNORE, PackedCollator, pack_examples, segment_losses
from dagllm.training.presets import build_tiny_model, train_tokenizer

pytestmark = pytest.mark.slow
BLOCK = 128  # flex_attention's default block size
LENGTHS = [128, 256, 128, 384, 128]  # one row of 1024 tokens, boundaries on block edges


def test_flex_packed_row_matches_examples_alone_and_skips_cross_example_blocks(monkeypatch):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    tok = train_tokenizer(["가나다라마바사 아자차카타파하"] * 20, 300)
    torch.manual_seed(0)
    params = TrainParams(attn_implementation="sdpa", max_seq_len=1024,
                         tiny={"hidden_size": 32, "num_heads": 2, "intermediate_size": 64, "vocab_size": 300})
    model = build_tiny_model(params, tok).eval()
    g = torch.Generator().manual_seed(1)
    examples = [{"input_ids": torch.randint(3, len(tok), (n,), generator=g).tolist()} for n in LENGTHS]
    for e in examples:
        e["labels"] = list(e["input_ids"])
    rows, _ = pack_examples(examples, 1024, seed=0)
    assert len(rows) == 1 and len(rows[0]["input_ids"]) == 1024
    batch = PackedCollator(tok.pad_token_id)(rows)

    masks = []
    flex = ALL_ATTENTION_FUNCTIONS["flex_attention"]

    def recording(module, q, k, v, attention_mask, **kw):
        masks.append(attention_mask)
        return flex(module, q, k, v, attention_mask, **kw)

    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS, "flex_attention", recording)
    model.set_attn_implementation("flex_attention")
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
    packed = segment_losses(logits, batch["labels"][0], batch["position_ids"][0])

    # the work: blocks computed = the causal blocks inside each example, not of the whole row
    from torch.nn.attention.flex_attention import BlockMask

    mask = masks[0]
    assert isinstance(mask, BlockMask)
    computed = int(mask.kv_num_blocks.sum()) + int(mask.full_kv_num_blocks.sum())
    per_example = sum((n // BLOCK) * (n // BLOCK + 1) // 2 for n in LENGTHS)
    whole_row = (1024 // BLOCK) * (1024 // BLOCK + 1) // 2
    assert computed == per_example == 12 and whole_row == 36

    # the losses: every example as if it were alone (sdpa, the reference), in the packed order
    model.set_attn_implementation("sdpa")
    starts = [i for i, p in enumerate(rows[0]["position_ids"]) if p == 0] + [1024]
    alone = []
    with torch.no_grad():
        for a, b in zip(starts[:-1], starts[1:]):
            ids = batch["input_ids"][:, a:b]
            labels = torch.tensor([IGNORE] + rows[0]["labels"][a + 1:b])
            lg = model(input_ids=ids, use_cache=False).logits[0]
            alone += segment_losses(lg, labels, torch.arange(b - a))
    assert len(packed) == len(alone) == len(LENGTHS)
    for (lp, n_p), (la, n_a) in zip(packed, alone):
        assert n_p == n_a
        assert abs(lp / n_p - la / n_a) < 1e-4, (lp / n_p, la / n_a)
