"""Records that do not fit the training window: the answer + EOS stay whole, the input is cut, or the
record is dropped with a reason; the counts per task add up."""

import pandas as pd
import pytest

from dagllm.training.encoding import (
    CUT_MARKER,
    EncodingReport,
    cut_middle,
    encode_example,
    encode_frame,
    encode_record,
    encode_records,
)
from dagllm.training.packing import IGNORE, pack_examples
from dagllm.training.prompt import INPUT_HEADER, INSTRUCTION_HEADER, RESPONSE_HEADER, build_prompt
from dagllm.training.presets import train_tokenizer

MAX_LEN = 64
SHORT = ("다음 리뷰를 분류하세요.", "정말 재미있는 영화였다", "긍정")
NO_INPUT = ("질문에 답하세요.", "", "서울입니다")
LONG_INPUT = ("글을 읽고 질문에 답하세요.", "첫 문장은 여기서 시작한다. " + "중간 내용이 길게 이어진다. " * 40
              + "\n질문: 마지막 질문인가?", "예")
LONG_INSTRUCTION = ("\"" + "지문이 아주 길게 이어진다. " * 40 + "\" 위 글에 따르면 답은 예일까요?", "", "아니요")
LONG_ANSWER = ("요약하세요.", "회의는 내일 열린다", "아주 긴 답이 계속된다. " * 40)


def _old_encode(tok, instruction, input_text, output, max_len):
    """The encoding before records were fitted (prompt + answer cut at max_len from the end)."""
    prompt_ids = tok(build_prompt(instruction, input_text), add_special_tokens=False)["input_ids"]
    answer_ids = tok(output, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    return {"input_ids": (prompt_ids + answer_ids)[:max_len],
            "labels": ([IGNORE] * len(prompt_ids) + answer_ids)[:max_len]}


@pytest.fixture(scope="module")
def tok():
    records = [SHORT, NO_INPUT, LONG_INPUT, LONG_INSTRUCTION, LONG_ANSWER]
    return train_tokenizer([build_prompt(i, x) + o for i, x, o in records] * 5, 400)


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def answer_of(tok, output):
    return ids(tok, output) + [tok.eos_token_id]


def loss_ids(example):
    return [x for x, y in zip(example["input_ids"], example["labels"], strict=True) if y != IGNORE]


@pytest.mark.parametrize("record", [SHORT, NO_INPUT])
def test_record_that_fits_encodes_exactly_as_before(tok, record):
    ex, outcome = encode_record(tok, *record, MAX_LEN)
    assert outcome == "fit"
    assert ex == _old_encode(tok, *record, MAX_LEN)


def test_pieces_tokenise_like_the_whole_prompt(tok):
    # the truncation path joins separately tokenised pieces; for byte-level BPE they equal the whole prompt
    for instruction, input_text, _ in [SHORT, LONG_INPUT]:
        pieces = (ids(tok, INSTRUCTION_HEADER) + ids(tok, instruction) + ids(tok, INPUT_HEADER)
                  + ids(tok, input_text.strip()) + ids(tok, RESPONSE_HEADER))
        assert pieces == ids(tok, build_prompt(instruction, input_text))


def test_long_input_is_cut_in_its_middle_and_keeps_the_whole_answer(tok):
    instruction, input_text, output = LONG_INPUT
    assert len(ids(tok, build_prompt(instruction, input_text))) > MAX_LEN  # the old encoding lost the answer
    assert loss_ids(_old_encode(tok, *LONG_INPUT, MAX_LEN)) == []
    ex, outcome = encode_record(tok, *LONG_INPUT, MAX_LEN)
    assert outcome == "input_truncated"
    answer = answer_of(tok, output)
    assert len(ex["input_ids"]) == len(ex["labels"]) == MAX_LEN  # the room is used to the last token
    assert loss_ids(ex) == answer and ex["labels"][-len(answer):] == answer  # exactly answer + EOS carry loss
    assert ex["labels"][:-len(answer)] == [IGNORE] * (MAX_LEN - len(answer))
    head, middle, tail = ids(tok, INSTRUCTION_HEADER), ids(tok, INPUT_HEADER), ids(tok, RESPONSE_HEADER)
    ins, inp, marker = ids(tok, instruction), ids(tok, input_text.strip()), ids(tok, CUT_MARKER)
    room = MAX_LEN - len(answer) - len(head) - len(middle) - len(tail) - len(ins)
    keep = room - len(marker)
    first = keep // 3
    expected = head + ins + middle + inp[:first] + marker + inp[len(inp) - (keep - first):] + tail
    assert ex["input_ids"] == expected + answer
    text = tok.decode(ex["input_ids"])
    assert text.startswith(INSTRUCTION_HEADER + instruction + INPUT_HEADER + "첫")
    assert "마지막 질문인가?" + RESPONSE_HEADER + output in text  # the question at the input's end stays


def test_long_instruction_without_input_is_cut_and_keeps_headers(tok):
    instruction, _, output = LONG_INSTRUCTION
    ex, outcome = encode_record(tok, *LONG_INSTRUCTION, MAX_LEN)
    assert outcome == "instruction_truncated"
    assert len(ex["input_ids"]) == MAX_LEN and loss_ids(ex) == answer_of(tok, output)
    text = tok.decode(ex["input_ids"])
    assert text.startswith(INSTRUCTION_HEADER + "\"지문") and CUT_MARKER in text
    assert text.endswith("답은 예일까요?" + RESPONSE_HEADER + output + tok.eos_token)
    assert INPUT_HEADER not in text


def test_input_emptied_before_the_instruction_is_cut(tok):
    instruction = LONG_INSTRUCTION[0]
    ex, outcome = encode_record(tok, instruction, "입력 문장", "예", MAX_LEN)
    assert outcome == "instruction_truncated"
    text = tok.decode(ex["input_ids"])
    assert text.endswith(INPUT_HEADER + RESPONSE_HEADER + "예" + tok.eos_token)  # input header kept, body gone
    assert "입력 문장" not in text and len(ex["input_ids"]) == MAX_LEN


def test_answer_longer_than_the_window_is_dropped_with_a_reason(tok):
    assert len(answer_of(tok, LONG_ANSWER[2])) > MAX_LEN
    assert encode_record(tok, *LONG_ANSWER, MAX_LEN) == (None, "answer_too_long")
    assert encode_example(tok, *LONG_ANSWER, MAX_LEN) is None


def test_answer_that_leaves_no_room_for_one_instruction_token_is_dropped(tok):
    instruction, input_text, output = SHORT
    fixed = len(ids(tok, INSTRUCTION_HEADER)) + len(ids(tok, INPUT_HEADER)) + len(ids(tok, RESPONSE_HEADER))
    n = fixed + len(answer_of(tok, output))
    assert encode_record(tok, *SHORT, n) == (None, "answer_too_long")
    ex, outcome = encode_record(tok, *SHORT, n + 1)  # one instruction token fits
    assert outcome == "instruction_truncated" and len(ex["input_ids"]) == n + 1
    assert loss_ids(ex) == answer_of(tok, output)


def test_cut_middle_keeps_a_third_from_the_start_and_the_rest_from_the_end():
    ids_ = list(range(20))
    assert cut_middle(ids_, 20, [-1]) == ids_
    assert cut_middle(ids_, 10, [-1]) == [0, 1, 2, -1, 14, 15, 16, 17, 18, 19]  # keep 9: 3 + marker + 6
    assert cut_middle(ids_, 2, [-1, -1]) == [0, 1]  # no room for the marker: the beginning alone
    assert len(cut_middle(ids_, 3, [-1])) == 3


def test_frame_counts_per_task(tok):
    rows = [("a", SHORT), ("a", NO_INPUT), ("a", LONG_INPUT),
            ("b", LONG_ANSWER), ("b", LONG_INSTRUCTION), ("b", LONG_INPUT), ("b", SHORT)]
    df = pd.DataFrame([{"task": t, "category": "c", "instruction": i, "input": x, "output": o}
                       for t, (i, x, o) in rows])
    examples, report = encode_frame(df, tok, MAX_LEN)
    assert len(examples) == 6  # the long answer is left out
    assert all(len(e["input_ids"]) <= MAX_LEN and e["input_ids"][-1] == tok.eos_token_id for e in examples)
    d = report.to_dict()
    assert d["max_seq_len"] == MAX_LEN
    assert {k: d[k] for k in ("records", "fit", "input_truncated", "instruction_truncated", "dropped")} == {
        "records": 7, "fit": 3, "input_truncated": 2, "instruction_truncated": 1, "dropped": 1}
    assert d["dropped_reasons"] == {"answer_too_long": 1}
    assert d["tasks"]["a"] == {"records": 3, "fit": 2, "input_truncated": 1, "instruction_truncated": 0,
                               "dropped": 0, "dropped_reasons": {"answer_too_long": 0}}
    assert d["tasks"]["b"] == {"records": 4, "fit": 1, "input_truncated": 1, "instruction_truncated": 1,
                               "dropped": 1, "dropped_reasons": {"answer_too_long": 1}}
    m = report.metrics()
    assert m["encoding.dropped"] == 1.0 and m["encoding.b.dropped_answer_too_long"] == 1.0
    assert m["encoding.a.input_truncated"] == 1.0 and m["encoding.records"] == 7.0
    rows_, stats = pack_examples(examples, MAX_LEN)  # every kept example fits a packed row
    assert stats.real_tokens == sum(len(e["input_ids"]) for e in examples)


def test_batched_encoding_equals_one_record_at_a_time(tok):
    records = [SHORT, NO_INPUT, LONG_INPUT, LONG_INSTRUCTION, LONG_ANSWER]
    df = pd.DataFrame([{"instruction": i, "input": x, "output": o} for i, x, o in records])
    examples, outcomes = encode_records(df, tok, MAX_LEN)
    assert list(zip(examples, outcomes, strict=True)) == [encode_record(tok, *r, MAX_LEN) for r in records]
    assert outcomes == ["fit", "fit", "input_truncated", "instruction_truncated", "answer_too_long"]
    assert EncodingReport.of(["all"] * 5, outcomes, MAX_LEN).totals()["dropped"] == 1
    assert encode_records(df.iloc[:0], tok, MAX_LEN) == ([], [])
