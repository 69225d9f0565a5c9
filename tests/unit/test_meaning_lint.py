"""The meaning rules of the Korean lint: each fires on the record it is for and not on its look-alikes.

Every task here is built in the test with rows written for it (no dataset text).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dagllm.data.catalog import Task
from dagllm.data.lint import (RULES, count_particle_errors, lint_catalog, lint_task, normalise, sentences, table,
                              to_json)
from dagllm.data.templating import prepare, render_parts


def _task(templates: list[dict], fields: list[str], sample: dict[str, str], label: str | None = None,
          **extra) -> Task:
    tpls = [{"id": f"t{i}", "kind": "instruction", **t} for i, t in enumerate(templates)]
    return Task.model_validate({"id": "probe_task", "category": "probe", "description": "테스트용 과제",
                                "sources": [{"source": "probe_src"}], "fields": fields,
                                "sample": {"fields": sample, "label": label}, "templates": tpls, **extra})


def _found(task: Task, rows=()) -> dict[str, int]:
    """The non-zero rule counts of ``task`` linted on its sample and ``rows``."""
    return {k: v for k, v in lint_task(task, rows).findings.items() if v}


# --- repeat ----------------------------------------------------------------------------------------

PARA = {"instruction": "다음 문장을 뜻이 같은 다른 문장으로 바꿔 쓰세요.", "input": "{{ sentence }}",
        "output": "{{ paraphrase }}"}


def test_an_output_that_repeats_its_input_is_flagged():
    task = _task([PARA], ["sentence", "paraphrase"], {"sentence": "불 좀 꺼 줄래?", "paraphrase": "불을 꺼 줄 수 있어?"})
    rows = [("r1", {"sentence": "거실 불 좀 꺼 줘.", "paraphrase": "거실 불 좀 꺼줘"}, None)]  # spaces, a period
    assert _found(task, rows) == {"repeat": 1}
    # a value shown in the instruction counts too, not only the whole input
    shown = _task([{"instruction": '"{{ sentence }}"{을/를} 다르게 말해 보세요.', "output": "{{ paraphrase }}"}],
                  ["sentence", "paraphrase"], {"sentence": "메일 왔어?", "paraphrase": "“메일 왔어?”"})
    assert _found(shown) == {"repeat": 1}


def test_a_paraphrase_or_a_chosen_option_is_not_a_repeat():
    task = _task([PARA], ["sentence", "paraphrase"], {"sentence": "불 좀 꺼 줄래?", "paraphrase": "불을 꺼 줄 수 있어?"})
    assert _found(task) == {}
    pick = _task([{"instruction": "원인으로 더 알맞은 문장을 골라 그대로 쓰세요.",
                   "input": "{{ premise }}\n1. {{ a1 }}\n2. {{ a2 }}",
                   "output": "{{ a1 if label == '1' else a2 }}", "choices": ["{{ a1 }}", "{{ a2 }}"]}],
                 ["premise", "a1", "a2"], {"premise": "길이 젖어 있었다.", "a1": "밤새 비가 왔다.", "a2": "해가 떴다."}, "1")
    assert _found(pick) == {}  # the output is one of the record's choices


# --- giveaway --------------------------------------------------------------------------------------

TITLE = {"instruction": "다음 설명이 가리키는 대상의 이름을 쓰세요.", "input": "{{ text }}", "output": "{{ title }}"}


def test_a_short_answer_at_the_start_of_its_text_is_flagged():
    task = _task([TITLE], ["title", "text"], {"title": "김치", "text": "김치는 배추나 무를 절여 양념한 음식이다."})
    assert _found(task) == {"giveaway": 1}
    quoted = _task([{"instruction": '"{{ text }}" 이 글은 무엇을 설명하나요?', "output": "{{ title }}"}],
                   ["title", "text"], {"title": "한강", "text": "한강(漢江)은 서울을 지나는 강이다."})
    assert _found(quoted) == {"giveaway": 1}  # a value of the instruction, followed by a bracket


@pytest.mark.parametrize(("title", "text", "output"), [
    ("김치", "김치찌개는 김치를 넣어 끓인 찌개이다.", "{{ title }}"),       # 김치 is not followed by a particle there
    ("김치", "배추를 절여 양념한 음식이다.", "{{ title }}"),               # not at the start
    ("김치", "김치는 배추를 절여 만든다.", "이 설명은 '{{ title }}'에 대한 것입니다."),  # a sentence, not a short answer
])
def test_an_answer_not_given_away_passes(title, text, output):
    task = _task([{**TITLE, "output": output}], ["title", "text"], {"title": title, "text": text})
    assert "giveaway" not in _found(task)


# --- form ------------------------------------------------------------------------------------------

def _form(instruction: str, output: str) -> dict[str, int]:
    return _found(_task([{"instruction": instruction, "input": "{{ text }}", "output": "{{ answer_text }}"}],
                        ["text", "answer_text"], {"text": "오늘은 맑고 따뜻했다.", "answer_text": output}))


@pytest.mark.parametrize(("instruction", "output"), [
    ("글의 분위기를 한 문장으로 답하세요.", "밝습니다. 따뜻한 느낌입니다."),
    ("내용을 두세 문장으로 요약하세요.", "날씨가 맑았다."),
    ("평점을 숫자로 답하세요.", "높음"),
    ("이 글은 몇 점짜리인가요?", "만점입니다."),
])
def test_an_output_of_the_wrong_form_is_flagged(instruction, output):
    assert _form(instruction, output) == {"form": 1}


@pytest.mark.parametrize(("instruction", "output"), [
    ("평점을 한 문장으로 답하세요.", "이 영화의 평점은 3.5점입니다."),             # a decimal is no sentence end
    ("글쓴이의 말을 한 문장으로 옮기세요.", '그는 "비가 온다. 우산을 챙겨."라고 말했다.'),  # a quotation inside
    ("어디 소식인지 한 문장으로 답하세요.", "U.S. 정부가 발표한 소식입니다"),          # an abbreviation
    ("내용을 두세 문장으로 요약하세요.", "날씨가 맑았다. 바람도 따뜻했다... 산책하기 좋았다!"),
    ("평점을 숫자로 답하세요.", "4"),
    ("다음 문장을 읽고 답하세요.", "맑음. 따뜻함."),                                  # asks for no count
])
def test_an_output_of_the_asked_form_passes(instruction, output):
    assert _form(instruction, output) == {}


@pytest.mark.parametrize(("text", "n"), [
    ("비가 왔다. 그래서 우산을 챙겼다.", 2),
    ("비가 왔다.그래서 우산을 챙겼다", 2),
    ("3.14는 원주율이다.", 1),
    ("naver.com에 접속했다", 1),
    ("그래서... 결국 갔다.", 1),
    ("정말?! 믿을 수 없어!", 2),
    ("첫 줄\n둘째 줄", 2),
    ('"안녕. 잘 가." 그가 말했다.', 1),
    ('짝이 없는 " 따옴표. 그리고 끝.', 2),   # quotes that do not pair are ignored
    ("", 0),
])
def test_sentences(text, n):
    assert len(sentences(text)) == n


def test_normalise_drops_spaces_punctuation_and_quotes():
    assert normalise(" “불 좀 꺼 줘!” ") == normalise("불좀꺼줘") == "불좀꺼줘"


# --- labels_stated ---------------------------------------------------------------------------------

def _closed(instruction: str, output: str = "{{ answer }}", labels=None) -> Task:
    return _task([{"instruction": instruction, "input": "{{ text }}", "output": output}], ["text"],
                 {"text": "배우들의 연기가 정말 좋았다."}, "1", labels=labels or {"0": "부정", "1": "긍정"})


def test_a_closed_label_template_that_does_not_state_its_labels_is_flagged():
    task = _closed("이 리뷰의 감정을 분류하세요.")
    rows = [(f"r{i}", {"text": f"{i}번째로 본 영화였다."}, str(i % 2)) for i in range(3)]
    result = lint_task(task, rows)
    assert {k: v for k, v in result.findings.items() if v} == {"labels_stated": 1}  # once per template
    assert result.templates == {"t0": {"labels_stated": 1}}
    assert "긍정" in result.examples["labels_stated"][0]
    assert _found(_closed("이 리뷰가 긍정인지 분류하세요.")) == {"labels_stated": 1}  # 부정 missing
    assert _found(_closed("같은 뜻인지 판단하세요.", labels={"0": "아니요", "1": "예"})) == {"labels_stated": 1}


@pytest.mark.parametrize(("instruction", "output", "labels"), [
    ('이 리뷰의 감정을 "긍정" 또는 "부정"으로 답하세요.', "{{ answer }}", None),
    ("이 리뷰는 추천할 만한가요?", "{{ answer }}", {"0": "아니요", "1": "예"}),         # a yes/no question
    ("칭찬하는 글인지 예 또는 아니요로 답하세요.", "{{ answer }}", {"0": "아니요", "1": "예"}),
    ("글쓴이가 어떻게 평가했는지 한 문장으로 답하세요.",                             # answers in sentences
     "{% if label == '1' %}글쓴이는 만족했습니다.{% else %}글쓴이는 실망했습니다.{% endif %}", None),
    ("이 리뷰는 칭찬인가요?", "{% if label == '1' %}예{% else %}아니요{% endif %}", None),  # answers 예/아니요
])
def test_a_template_that_states_its_answers_passes(instruction, output, labels):
    assert _found(_closed(instruction, output, labels)) == {}


# --- doubled_quotes --------------------------------------------------------------------------------

QUOTED = {"instruction": '"{{ text }}" 이 리뷰는 긍정인가요, 부정인가요?', "output": "{{ answer }}"}


def test_a_template_quote_against_a_quoted_value_is_flagged():
    task = _task([QUOTED], ["text"], {"text": '"완벽한 재연출이군"'}, "1", labels={"0": "부정", "1": "긍정"})
    result = lint_task(task, [("r1", {"text": "다시 보고 싶다“"}, "1")])  # a curly quote closing the value
    assert {k: v for k, v in result.findings.items() if v} == {"doubled_quotes": 2}
    assert '""완벽한 재연출이군""' in result.examples["doubled_quotes"][0]


@pytest.mark.parametrize("text", ['영화 "기생충"은 최고다', "'빈곤법'을 고쳐 주세요", '  끝까지 "재미있다"고 했다. '])
def test_a_quote_inside_a_value_or_of_another_kind_passes(text):
    task = _task([QUOTED], ["text"], {"text": text}, "1", labels={"0": "부정", "1": "긍정"})
    assert _found(task) == {}


# --- identical_pair --------------------------------------------------------------------------------

PAIR = {"instruction": "두 질문이 같은 것을 묻는지 \"같은 질문\" 또는 \"다른 질문\"으로 답하세요.",
        "input": "1. {{ question1 }}\n2. {{ question2 }}", "output": "{{ answer }}"}
PAIR_LABELS = {"0": "다른 질문", "1": "같은 질문"}


def test_two_values_of_one_text_are_flagged():
    task = _task([PAIR], ["question1", "question2"], {"question1": "기내에서 휴대폰 써도 되나요?",
                                                     "question2": " 기내에서  휴대폰 써도 되나요? "}, "1",
                 labels=PAIR_LABELS)
    assert _found(task) == {"identical_pair": 1}


@pytest.mark.parametrize(("q1", "q2"), [("기내에서 휴대폰 써도 되나요?", "비행기에서 스마트폰 써도 돼요?"),
                                        ("뭐야?", "뭐야?")])  # shorter than 5 characters
def test_different_or_short_values_pass(q1, q2):
    task = _task([PAIR], ["question1", "question2"], {"question1": q1, "question2": q2}, "1", labels=PAIR_LABELS)
    assert _found(task) == {}


# --- connective ------------------------------------------------------------------------------------

def _because(output: str, instruction: str = "앞 문장의 원인을 이어 쓰세요.", reason: str = "") -> dict[str, int]:
    return _found(_task([{"instruction": instruction, "input": "{{ premise }}", "output": output}],
                        ["premise", "reason"], {"premise": "우산을 챙겼다.", "reason": reason}))


@pytest.mark.parametrize("output", ["왜냐하면 비가 왔다.", "우산을 챙겼다. 왜냐하면 비가 왔기 때문에 젖었다.",
                                    "왜냐하면 {{ reason }}"])
def test_a_because_sentence_without_its_ending_is_flagged(output):
    assert _because(output, reason="비가 올 것 같았다.") == {"connective": 1}


@pytest.mark.parametrize(("output", "instruction"), [
    ("왜냐하면 비가 왔기 때문이다.", "앞 문장의 원인을 이어 쓰세요."),
    ("왜냐하면 비가 올 것 같았기 때문입니다. 그래서 챙겼어요.", "앞 문장의 원인을 이어 쓰세요."),
    ("비가 왔어요.", '앞 문장 뒤에 "왜냐하면"으로 이어질 내용을 쓰세요.'),    # a quoted 왜냐하면 is a mention
    ("알겠습니다.", "왜냐하면 {{ reason }}"),  # the template's 왜냐하면, the value gives 때문이다
])
def test_a_because_sentence_with_its_ending_passes(output, instruction):
    assert _because(output, instruction, reason="비가 왔기 때문이다.") == {}


# --- reports, jobs and the gate ------------------------------------------------------------------

def test_table_and_json_show_counts_per_rule_and_template():
    task = _task([TITLE, {**TITLE, "id": "x"}], ["title", "text"], {"title": "김치", "text": "김치는 음식이다."})
    result = lint_task(task)
    assert not result.ok and result.findings["giveaway"] == 2 and set(result.findings) == set(RULES)
    assert result.templates == {"t0": {"giveaway": 1}, "x": {"giveaway": 1}}
    text = table([result])
    assert "giveaway" in text.splitlines()[0] and "    t0: giveaway 1" in text
    data = json.loads(to_json([result]))[0]
    assert data["ok"] is False and data["findings"]["giveaway"] == 2 and data["templates"]["x"] == {"giveaway": 1}


def test_lint_catalog_gives_the_same_results_with_any_number_of_jobs():
    from dagllm.data.catalog import load_catalog

    catalog = load_catalog()
    tasks = sorted(catalog.tasks)[:3]
    one = lint_catalog(catalog, None, tasks=tasks, jobs=1)
    two = lint_catalog(catalog, None, tasks=tasks, jobs=2)
    assert [r.task for r in two] == tasks
    assert [r.to_dict() for r in one] == [r.to_dict() for r in two]


def _gate_batch(task: Task, rows: list[tuple[str, dict, str | None]]):
    canonical = pd.DataFrame([{"id": rid, "source": "probe_src", "split": "train", "benchmark": False,
                               "fields": json.dumps(f, ensure_ascii=False), "label": lab} for rid, f, lab in rows])
    records = []
    for rid, f, lab in rows:
        for tpl in task.templates:
            parts = render_parts(task, tpl, prepare(task, f, lab, rid), rid)
            records.append((task.id, tpl.id, rid, (parts["instruction"], parts["input"], parts["output"])))
    return canonical, records


def test_the_gate_counts_what_the_lint_finds_per_task_and_template():
    from dagllm.data.catalog import Catalog

    templates = [TITLE, {**TITLE, "output": "이 설명은 '{{ title }}'에 대한 것입니다."},
                 {"instruction": "이 대상을 한 문장으로 소개하세요.", "input": "{{ title }}", "output": "{{ text }}"},
                 {"instruction": '"{{ text }}" 이 글의 표제어는?', "output": "{{ title }}"},
                 {"instruction": "이 글을 그대로 옮겨 쓰세요.", "input": "{{ text }}", "output": "{{ text }}"},
                 {"instruction": "두 낱말을 비교하세요.", "input": "{{ title }} / {{ text }}",
                  "output": "왜냐하면 둘은 같다."}]
    task = _task(templates, ["title", "text"], {"title": "김치", "text": "김치는 배추를 절여 만든다."})
    rows = [("r1", {"title": "김치", "text": "김치는 배추를 절여 만든다. 맵다."}, None),
            ("r2", {"title": "한강", "text": '"한강"은 서울을 지나는 강이다.'}, None),
            ("r3", {"title": "같은 글입니다", "text": "같은 글입니다"}, None),
            ("r4", {"title": "바다", "text": "지구 표면의 대부분을 덮은 짠물이다."}, None)]
    canonical, records = _gate_batch(task, rows)
    catalog = Catalog(sources={}, tasks={task.id: task})
    counted = count_particle_errors(records, canonical, catalog, seed=0)
    report = counted.lint_report()
    linted = lint_task(task, rows)
    sample = lint_task(task)  # the lint also reads the sample: take it away
    expected = {rule: linted.findings[rule] - sample.findings[rule] for rule in report["per_rule"]}
    assert report["per_rule"] == expected and sum(expected.values()) > 0
    assert report["per_task"] == {task.id: {k: v for k, v in sorted(expected.items()) if v}}
    for tpl in task.templates:
        want = {k: n - sample.templates.get(tpl.id, {}).get(k, 0) for k, n in linted.templates.get(tpl.id, {}).items()
                if k in report["per_rule"]}
        assert report["per_template"].get(tpl.id, {}) == {k: v for k, v in sorted(want.items()) if v}
    assert counted.lint_unverified == 0 and counted.lint_checked == len(records) == len(counted.lint)
    assert sum(counted.lint) == sum(expected.values())
    assert counted.lint_from_text > 0  # records no value rule can touch are read from their text


def test_the_rendered_gate_fails_on_lint_findings_and_reports_them(tmp_path):
    from dagllm.data.canonical import CANONICAL_COLUMNS
    from dagllm.data.catalog import Catalog
    from dagllm.data.gate import validate_points
    from dagllm.data.records import RECORD_COLUMNS, render_task
    from dagllm.params import RenderParams, ValidateParams

    names = [("김치", "김치는 배추를 절여 양념한 음식이다."), ("한강", "서울을 가로질러 흐르는 강이다."),
             ("바다", "바다는 지구 표면의 대부분을 덮고 있다."), ("구름", "하늘에 떠 있는 작은 물방울의 무리이다.")]
    rows = [(f"k{i}", json.dumps({"title": t, "text": x}, ensure_ascii=False), None, "probe_src", "train", "CC0")
            for i, (t, x) in enumerate(names)]
    canonical = pd.DataFrame([{"id": r[0], "source": r[3], "split": "train", "native_id": r[0], "fields": r[1],
                               "label": None, "license": r[5], "benchmark": False, "file": "f", "line": i + 1}
                              for i, r in enumerate(rows)], columns=CANONICAL_COLUMNS)
    params = ValidateParams(min_records_per_task=1, max_bad_fraction=0.1)
    for name, template, fails in (("bad", TITLE, True),
                                  ("good", {**TITLE, "output": "이것은 {{ title }}에 대한 설명입니다."}, False)):
        task = _task([template], ["title", "text"], {"title": "별", "text": "밤하늘에서 빛나는 천체이다."})
        catalog = Catalog(sources={}, tasks={task.id: task})
        records, _ = render_task(task, rows, RenderParams(tasks=[task.id], seed=3))
        summary, _ = validate_points(canonical, pd.DataFrame(records, columns=RECORD_COLUMNS), params, [task.id],
                                     catalog, tmp_path / name, tmp_path / f"q_{name}", render_seed=3)
        lint = json.loads((tmp_path / name / "particles.json").read_text())["lint"]
        assert summary.success is not fails
        if fails:  # 김치는… and 바다는…: two records give their answer away
            assert lint["per_rule"]["giveaway"] == 2 and lint["per_task"] == {task.id: {"giveaway": 2}}
            assert lint["per_template"] == {"t0": {"giveaway": 2}} and len(lint["examples"]["giveaway"]) == 2
            assert any("_q_lint_errors" in line and "failed on 2 of 4 rows" in line
                       for line in summary.failure_lines()), summary.failure_lines()
        else:
            assert lint["findings"] == 0 and lint["checked"] == 4
