"""`where` conditions (regex, differing fields) and the `unquote` filter, on self-written tasks."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dagllm.data.catalog import Task
from dagllm.data.korean import resolve
from dagllm.data.templating import answer_unit, prepare, probe_parts, unquote


def _task(where: list[dict], output: str = "{{ answer }}", instruction: str = "{{ a }}") -> Task:
    return Task.model_validate({
        "id": "probe", "category": "nli", "description": "probe", "sources": [{"source": "s"}],
        "fields": ["a", "b"], "open_ended": True, "where": where,
        "sample": {"fields": {"a": "하늘은 파랗다.", "b": "바다"}, "label": "x"},
        "templates": [{"id": "probe_t", "kind": "instruction", "instruction": instruction, "output": output}],
    })


@pytest.mark.parametrize(("where", "fields", "kept"), [
    ([{"field": "a", "matches": r"\?\s*$"}], {"a": "모네는 화가인가?", "b": "x"}, True),
    ([{"field": "a", "matches": r"\?\s*$"}], {"a": "모네는 화가다.", "b": "x"}, False),
    ([{"field": "a", "not_matches": r"\?\s*$"}], {"a": "모네는 화가다.", "b": "x"}, True),
    ([{"field": "a", "not_matches": r"\?\s*$"}], {"a": "모네는 화가인가? ", "b": "x"}, False),
    ([{"field": "a", "differs_from": "b"}], {"a": "알뜰폰  샀어", "b": "알뜰폰 샀어"}, False),
    ([{"field": "a", "differs_from": "b"}], {"a": "사랑하고싶어", "b": "사랑하고 싶어."}, False),  # spacing, a full stop
    ([{"field": "a", "differs_from": "b"}], {"a": "알뜰폰 샀어", "b": "알뜰폰 샀니"}, True),
    ([{"field": "a", "not_within": "b"}], {"a": "고백", "b": "고백 좀 하지"}, False),  # cut short
    ([{"field": "a", "not_within": "b"}], {"a": "고백해 볼까", "b": "고백 좀 하지"}, True),
])
def test_where_conditions_keep_or_skip_with_a_reason(where, fields, kept):
    out = prepare(_task(where), fields, "x", "r1")
    assert isinstance(out, dict) is kept
    if not kept:
        assert out.startswith("where a ")  # the reason counted in reports/render.json


def test_a_bad_regex_or_unknown_field_is_refused_at_load():
    with pytest.raises(ValidationError, match="not a valid regular expression"):
        _task([{"field": "a", "matches": "(unclosed"}])
    with pytest.raises(ValidationError, match="'c' is not one of the task's fields"):
        _task([{"field": "a", "differs_from": "c"}])


@pytest.mark.parametrize(("value", "expected"), [
    ('"완벽한 재연출이군"', "완벽한 재연출이군"),
    ("“좋네요”", "좋네요"),
    ("'아'", "아"),
    ('그는 "네"라고 했다', '그는 "네"라고 했다'),      # quotes inside, not around: kept
    ('"처음" 그리고 "끝"', '"처음" 그리고 "끝"'),      # two quotations, not one around the whole
    ('"', '"'),
    ("평범한 문장", "평범한 문장"),
])
def test_unquote_removes_one_pair_around_the_whole_value(value, expected):
    assert unquote(value) == expected


def test_a_quoted_value_is_not_quoted_twice_and_its_particle_still_agrees():
    task = _task([], instruction='"{{ a | unquote }}"{이라는/라는} 말', output="{{ b }}")
    probe = probe_parts(task, task.templates[0], prepare(task, {"a": '"완벽한 재연출이군"', "b": "y"}, "x", "r"), "r")
    assert resolve(probe["instruction"]) == '"완벽한 재연출이군"이라는 말'


@pytest.mark.parametrize(("solution", "number", "unit"), [
    ("연필 6자루의 값은 400 × 6 = <<400*6=2400>>2400원입니다.", "2400", "원"),   # GSM8K's calculator mark
    ("5자루는 800 × 5 = 4,000원입니다.", "4000", "원"),                          # thousands separator
    ("버스에 남은 사람은 12 - 4 = 8명입니다.", "8", "명"),
    ("모두 12개월이 걸린다.", "12", "개월"),                                       # the longer unit, not 개
    ("하루에 1.5km를 걷는다.", "1.5", "km"),
    ("그는 모두 $18를 벌었다.", "18", "달러"),
    ("3 + 5 = 8", "8", ""),                                                       # written bare
    ("전체의 5분의 1이다.", "5", ""),                                              # a fraction, not minutes
    ("18명 중 8일부는 남았다", "8", ""),                                           # 8일부: not a unit word
    ("답은 28이다. 8명이 아니다.", "28", ""),                                     # the number itself, not 8 of 28
])
def test_answer_unit_is_read_from_the_solution_never_guessed(solution, number, unit):
    assert answer_unit(solution, number) == unit


def test_a_math_record_keeps_the_unit_of_its_solution():
    task = Task.model_validate({
        "id": "probe", "category": "math", "description": "probe", "sources": [{"source": "s"}],
        "fields": ["question", "answer", "solution"],
        "derive": [{"kind": "answer_unit", "field": "solution", "number": "answer", "as": "unit"}],
        "sample": {"fields": {"question": "q", "answer": "2400", "solution": "400 × 6 = 2400원입니다."}},
        "templates": [{"id": "probe_t", "kind": "instruction", "instruction": "{{ question }}",
                       "output": "{{ answer }}{% if unit %}{{ unit }}{% endif %}"}],
    })
    fields = dict(task.sample.fields)
    probe = probe_parts(task, task.templates[0], prepare(task, fields, None, "r"), "r")
    assert resolve(probe["output"]) == "2400원"
    bare = prepare(task, {**fields, "solution": "400 × 6 = 2400"}, None, "r")
    assert resolve(probe_parts(task, task.templates[0], bare, "r")["output"]) == "2400"
