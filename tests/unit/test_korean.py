"""Particles chosen from the value's last character (dagllm.data.korean), through the project's renderer.

Expected forms are those of Korean grammar (표준 국어 문법): 이/가 after a final consonant / a vowel,
으로/로 with ㄹ taking 로, numbers by their Sino-Korean reading, abbreviations by letter names.
"""

import pytest

from dagllm.data.catalog import load_catalog
from dagllm.data.korean import CLOSE, OPEN, choose, final_sound, particle_sites, resolve
from dagllm.data.templating import RenderError, render_template


@pytest.mark.parametrize(("text", "final"), [
    ("자전", "consonant"), ("무명", "consonant"), ("배", "vowel"), ("그래서", "vowel"), ("물", "rieul"),
    ("결과", "vowel"), ("\"자전\"", "consonant"), ("「배」", "vowel"), ("나섰다.", "vowel"),
    ("하겠어?!", "vowel"), ("웃겨ㅋㅋ", "vowel"), ("사과(apple)", "vowel"), ("책(book)", "consonant"),
    # numbers: 일 이 삼 사 오 육 칠 팔 구 영, 십 백 천 만 억 조
    ("1", "rieul"), ("2", "vowel"), ("3", "consonant"), ("4", "vowel"), ("5", "vowel"), ("6", "consonant"),
    ("7", "rieul"), ("8", "rieul"), ("9", "vowel"), ("0", "consonant"), ("10", "consonant"), ("20", "consonant"),
    ("100", "consonant"), ("1,000", "consonant"), ("10000", "consonant"), ("100000000", "consonant"),
    ("1000000000000", "vowel"), ("15", "vowel"), ("3.14", "vowel"), ("2.50", "consonant"), ("50%", "vowel"),
    # abbreviations by letter names: 유알엘, 에이피아이, 티브이, 엠, 엔
    ("URL", "rieul"), ("API", "vowel"), ("TV", "vowel"), ("CEO", "vowel"), ("HTML", "rieul"), ("PDF", "vowel"),
    ("CNN", "consonant"), ("x", "vowel"),
    # no certain reading
    ("Google", None), ("apple", None), ("ㅋㅋ", None), ("😀", None), ("漢字", None), ("", None), ("...", None),
])
def test_final_sound(text, final):
    assert final_sound(text) == final


@pytest.mark.parametrize(("pair", "final", "form"), [
    (("이", "가"), "consonant", "이"), (("이", "가"), "vowel", "가"), (("이", "가"), "rieul", "이"),
    (("을", "를"), "vowel", "를"), (("은", "는"), "consonant", "은"), (("과", "와"), "vowel", "와"),
    (("으로", "로"), "rieul", "로"), (("으로", "로"), "consonant", "으로"), (("으로", "로"), "vowel", "로"),
    (("아", "야"), "vowel", "야"), (("이나", "나"), "consonant", "이나"), (("이랑", "랑"), "vowel", "랑"),
    (("이다", "다"), "vowel", "다"), (("이라고", "라고"), "consonant", "이라고"), (("이에요", "예요"), "vowel", "예요"),
    (("이", "가"), None, "이(가)"), (("을", "를"), None, "을(를)"), (("으로", "로"), None, "(으)로"),
    (("이라고", "라고"), None, "(이)라고"),
])
def test_choose(pair, final, form):
    assert choose(*pair, final) == form


def test_markers_resolve_against_the_value_and_never_inside_it():
    assert resolve(f'"{OPEN}자전{CLOSE}"{{이/가}}') == '"자전"이'
    assert resolve(f"{OPEN}물{CLOSE}{{으로/로}} {OPEN}Google{CLOSE}{{을/를}}") == "물로 Google을(를)"
    # a row holding marker syntax is dataset text: rendered literally
    assert resolve(f"{OPEN}값{{이/가}}{CLOSE}{{은/는}}") == "값{이/가}는"  # 가 is its last letter
    # the template's own text: a quoted literal before a marker
    assert resolve('"그래서"{으로/로} 이어') == '"그래서"로 이어'


def test_particle_sites_find_literal_and_wrong_particles():
    sites = particle_sites(f'낱말 "{OPEN}자전{CLOSE}"가 "{OPEN}배{CLOSE}"{{이/가}} "그래서"으로')
    assert [(s.before, s.written, s.expected, s.marker, s.value) for s in sites] == [
        ("자전", "가", "이", False, True), ("배", "가", "가", True, True), ("그래서", "으로", "로", False, False)]
    # quotes in the template's text are paired in order: no site between "예" and "아니요"
    assert [(s.before, s.written) for s in particle_sites('"예" 또는 "아니요"로 답하세요.')] == [("아니요", "로")]


def _task(task_id):
    return load_catalog().task(task_id)


@pytest.mark.parametrize(("word", "particle"), [("자전", "이"), ("배", "가"), ("물", "이"), ("URL", "이"),
                                               ("Google", "이(가)")])
def test_rendered_record_agrees_with_the_word(word, particle):
    task = _task("kobest_wic_sense")
    tpl = next(t for t in task.templates if t.id == "wic_inst_same")
    out = render_template(task, tpl, {"word": word, "context_1": "가", "context_2": "나"}, "1", "r1")
    assert out["instruction"].startswith(f'두 문장에서 "{word}"{particle} 같은 뜻으로')


@pytest.mark.parametrize(("question", "text"), [("결과", '"그래서"로 이어'), ("원인", '"그래서"로 이어')])
def test_copa_connective_particle(question, text):
    task = _task("kobest_copa_causal")
    tpl = next(t for t in task.templates if t.id == "copa_inst_connect")
    fields = {**task.sample.fields, "question": question}
    out = render_template(task, tpl, fields, "1", "r1")
    assert out["instruction"].startswith(text)
    # 원인: the cause comes first ("A. 그래서 B."), never "B. 왜냐하면 A." (which needs 때문이다)
    alt, premise = fields["alternative_1"].rstrip("."), fields["premise"]
    expected = f"{alt}. 그래서 {premise}" if question == "원인" else f"{premise.rstrip('.')}. 그래서 {alt}."
    assert out["output"] == expected and "왜냐하면" not in out["output"]


def test_a_value_holding_the_sentinels_is_a_clear_error():
    task = _task("kobest_wic_sense")
    tpl = next(t for t in task.templates if t.id == "wic_inst_same")
    with pytest.raises(RenderError, match="U\\+FDD0"):
        render_template(task, tpl, {"word": f"a{OPEN}", "context_1": "가", "context_2": "나"}, "1", "r1")
