"""The validation loss fits records like training does: a long input is cut, an answer that cannot fit
is dropped and counted, never scored on a cut answer."""

import pandas as pd

from dagllm.evaluation.val_loss import validation_loss
from dagllm.params import TrainParams
from dagllm.training.encoding import encode_records
from dagllm.training.packing import IGNORE
from dagllm.training.presets import build_tiny_model, train_tokenizer
from dagllm.training.prompt import build_prompt

MAX_LEN = 48
RECORDS = [("a", "다음 리뷰를 분류하세요.", "정말 재미있는 영화였다", "긍정"),
           ("a", "글을 읽고 답하세요.", "긴 지문이 이어진다. " * 30, "예"),
           ("b", "요약하세요.", "회의는 내일 열린다", "아주 긴 답이 계속된다. " * 30),
           ("b", "질문에 답하세요.", "", "서울입니다")]


def test_validation_loss_counts_dropped_records_and_scores_whole_answers(tmp_path):
    df = pd.DataFrame([{"category": c, "instruction": i, "input": x, "output": o} for c, i, x, o in RECORDS])
    tok = train_tokenizer([build_prompt(i, x) + o for _, i, x, o in RECORDS] * 5, 400)
    params = TrainParams(max_seq_len=MAX_LEN, attn_implementation="sdpa",
                         tiny={"hidden_size": 32, "num_heads": 2, "intermediate_size": 64, "vocab_size": 400})
    build_tiny_model(params, tok).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    out = validation_loss(tmp_path, df, batch_size=2)
    examples, outcomes = encode_records(df, tok, MAX_LEN)
    assert outcomes == ["fit", "input_truncated", "answer_too_long", "fit"]
    # token t predicts t+1: the first label is never scored, so each record scores its labels after the first
    scored = [sum(y != IGNORE for y in ex["labels"][1:]) for ex in examples if ex is not None]
    assert out["a"]["tokens"] == scored[0] + scored[1] and out["b"]["tokens"] == scored[2]
    assert (out["a"]["records"], out["a"]["dropped"], out["b"]["records"], out["b"]["dropped"]) == (2, 0, 2, 1)
    assert (out["all"]["records"], out["all"]["dropped"], out["all"]["tokens"]) == (4, 1, sum(scored))
