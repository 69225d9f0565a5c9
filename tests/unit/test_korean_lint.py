"""The Korean lint over the whole catalog (samples and every real row), and what its form rules catch
(the meaning rules: tests/unit/test_meaning_lint.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dagllm.data.catalog import Template, load_catalog
from dagllm.data.lint import RULES, format_findings, lint_catalog, lint_task, table

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "src" / "dagllm" / "data" / "catalog" / "samples"
# the real public files, as test_catalog finds them (a worktree sits one level deeper than main)
SHARED = next((p for p in (REPO.parent.parent / "shared" / "data", REPO.parent / "shared" / "data") if p.is_dir()),
              None)
ROWS_PER_FILE = None  # every real row: the lint's meaning rules are about the rows a template meets


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def test_every_template_passes_on_its_sample_and_real_rows(catalog):
    """Every rule (particles, formats and meaning: dagllm.data.lint.RULES) finds nothing in any task,
    over every real row of the mirror and the bundled sample files of the tasks it does not feed
    (one worker process per CPU)."""
    results = lint_catalog(catalog, SHARED or SAMPLES, ROWS_PER_FILE, fallback=SAMPLES)
    bad = [r for r in results if not r.ok]
    assert not bad, table(bad)
    assert all(set(r.findings) == set(RULES) for r in results)
    # a task the mirror does not feed reads the bundled sample files
    assert all(r.read_from for r in results)
    assert {r.task for r in results} == set(catalog.tasks)
    assert all(r.rows >= 1 and r.records >= len(catalog.task(r.task).templates) for r in results)
    # real rows were read through the readers, and particles after values were really checked
    assert sum(r.real_rows for r in results) > (3000 if SHARED else 100)
    assert sum(r.sites for r in results) > (5000 if SHARED else 100)
    assert sum(r.markers for r in results) > 0


def _with_template(task, **changes):
    base = task.templates[0]
    tpl = Template(**{**base.model_dump(), "id": "probe_tpl", **changes})
    return task.model_copy(update={"templates": [tpl]})


def test_a_literal_particle_after_a_value_is_flagged(catalog):
    wic = catalog.task("kobest_wic_sense")
    task = _with_template(wic, instruction='두 문장에서 "{{ word }}"가 같은 뜻으로 쓰였나요?')
    rows = [("r1", {"word": "자전", "context_1": "가", "context_2": "나"}, "1"),
            ("r2", {"word": "배", "context_1": "가", "context_2": "나"}, "1")]
    result = lint_task(task, rows)
    # the sample's 배 and r2's 배 happen to agree (literal), r1's 자전 does not
    assert (result.disagreements, result.literal) == (1, 2)
    fixed = lint_task(_with_template(wic, instruction='두 문장에서 "{{ word }}"{이/가} 같은 뜻으로 쓰였나요?'), rows)
    assert fixed.ok and fixed.markers == 3


def test_a_particle_after_a_constant_expression_is_checked(catalog):
    copa = catalog.task("kobest_copa_generation")
    task = _with_template(copa, instruction="일어났을 법한 {{ '원인' if question == '원인' else '결과' }}을 쓰세요.")
    rows = [("r1", {**copa.sample.fields, "question": "결과"}, "1")]
    assert lint_task(task, rows).disagreements == 1  # r1: 결과을 (the sample asks for 원인: 원인을)


@pytest.mark.parametrize(("instruction", "output", "problem"), [
    ("더 알맞은 것은 1번과 2번 중 무엇인가요?", "두 번째 대안", "numbered"),
    ("더 자연스러운 것은 무엇이며, 왜 그런가요?", '"나는 우산을 챙겼다."가 더 자연스럽습니다.', "reason"),
    ('"예" 또는 "아니요"로 답하세요.', "네", "one of"),
    ("예 또는 아니요로 답해 주세요.", "맞습니다", "예 or 아니요"),
    ("글쓴이의 평가를 고르세요.\n보기: 긍정 / 부정", "좋음", "options"),
    ('"첫 번째 대안" 또는 "두 번째 대안"으로 답하세요.', "2번", "one of"),
    ("어느 분야인지 한 문장으로 답하세요.", "경제 분야", "sentence"),
    ("알맞은 것을 골라 그 문장을 그대로 쓰세요.", "첫 번째 대안", "copy"),
])
def test_an_answer_that_does_not_fit_its_instruction_is_flagged(instruction, output, problem):
    problems = format_findings(instruction, output, ["나는 우산을 챙겼다.", "나는 선글라스를 썼다."],
                               output_ends_literal=True)
    assert problems and problem in problems[0]


@pytest.mark.parametrize(("instruction", "output"), [
    ("더 알맞은 것은 1번과 2번 중 무엇인가요?", "2번"),
    ('"예" 또는 "아니요"로 답하세요.', "아니요"),
    ("보기: 정치개혁, 외교/통일/국방, 기타", "외교/통일/국방"),
    ("이유와 함께 답해 주세요.", "네, 특정 집단을 겨냥한 혐오 발언이므로 신고해야 합니다."),
    ("어느 분야인지 한 문장으로 답하세요.", "이 기사는 경제 분야의 뉴스입니다."),
    ("지문에 근거하여 답하세요.", "예"),  # 근거하여 asks for no reason
])
def test_an_answer_that_fits_passes(instruction, output):
    assert format_findings(instruction, output, [], output_ends_literal=True) == []


@pytest.mark.parametrize(("instruction", "risky"), [
    ('"{{ word }}"가 같은 뜻인가요?', True),          # literal after a value: per record
    ('{% if x %}원인{% else %}결과{% endif %}을 쓰세요.', True),
    ('"그래서"으로 이어 쓰세요.', True),                # a constant quotation, wrong once and for all
    ('"그래서"로 이어 쓰세요.', False),                 # a constant quotation that agrees
    ('"{{ word }}"{이/가} 같은 뜻인가요?', False),      # a marker is chosen from the value
    ('"{{ word }}"의 뜻은 같나요?', False),             # 의 reads the same after any value
])
def test_which_templates_the_gate_renders_again(catalog, instruction, risky):
    from dagllm.data.lint import may_disagree

    tpl = catalog.task("kobest_wic_sense").templates[0].model_copy(update={"instruction": instruction})
    assert may_disagree(tpl) is risky


def test_an_unknown_particle_marker_is_a_catalog_error_naming_the_file(tmp_path):
    import shutil

    from dagllm.data.catalog import CATALOG_DIR, CatalogError

    root = tmp_path / "catalog"
    shutil.copytree(CATALOG_DIR, root)
    f = root / "tasks" / "kobest_wic_sense.yaml"
    f.write_text(f.read_text(encoding="utf-8").replace("{이/가} 같은 뜻으로", "{이/를} 같은 뜻으로"), encoding="utf-8")
    with pytest.raises(CatalogError, match=r"kobest_wic_sense.yaml: templates.0: .*unknown particle marker \{이/를\}"):
        load_catalog(root)
