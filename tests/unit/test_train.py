import torch

from dagllm.params import TrainParams
from dagllm.training.encoding import encode_example, pad_collate
from dagllm.training.packing import IGNORE
from dagllm.training.presets import build_tiny_model as build_model
from dagllm.training.presets import train_tokenizer
from dagllm.training.prompt import build_prompt

TEXTS = [build_prompt("다음 리뷰를 분류하세요.", "정말 재미있는 영화였다") + "긍정",
         build_prompt("질문에 답하세요.") + "서울입니다"] * 20


def test_prompt_wrapper_layout():
    assert build_prompt("지시", "입력") == "### 지시:\n지시\n\n### 입력:\n입력\n\n### 응답:\n"
    assert build_prompt("지시", "  ") == "### 지시:\n지시\n\n### 응답:\n"


def test_prompt_tokens_carry_no_loss():
    tok = train_tokenizer(TEXTS, 400)
    ex = encode_example(tok, "다음 리뷰를 분류하세요.", "정말 재미있는 영화였다", "긍정", 128)
    n_prompt = len(tok(build_prompt("다음 리뷰를 분류하세요.", "정말 재미있는 영화였다"), add_special_tokens=False)["input_ids"])
    assert ex["labels"][:n_prompt] == [IGNORE] * n_prompt
    assert ex["labels"][n_prompt:] == ex["input_ids"][n_prompt:]
    assert ex["input_ids"][-1] == tok.eos_token_id
    assert tok.decode(ex["input_ids"][n_prompt:-1]) == "긍정"


def test_masked_loss_ignores_prompt_and_padding():
    torch.manual_seed(0)
    tok = train_tokenizer(TEXTS, 400)
    params = TrainParams(tiny={"hidden_size": 32, "num_heads": 2, "intermediate_size": 64, "vocab_size": 400})
    model = build_model(params, tok).eval()
    a = encode_example(tok, "질문에 답하세요.", "", "서울입니다", 128)
    b = encode_example(tok, "다음 리뷰를 분류하세요.", "정말 재미있는 영화였다", "긍정", 128)
    batch = pad_collate(tok)([a, b])
    assert (batch["labels"][0, len(a["input_ids"]):] == IGNORE).all()  # padding carries no loss
    with torch.no_grad():
        loss_a = model(**pad_collate(tok)([a])).loss
        # the model's loss is the cross-entropy over the response tokens alone
        logits = model(input_ids=torch.tensor([a["input_ids"]])).logits[0, :-1]
        labels = torch.tensor(a["labels"][1:])
        keep = labels != IGNORE
        manual = torch.nn.functional.cross_entropy(logits[keep], labels[keep])
    assert torch.allclose(loss_a, manual, atol=1e-6)
