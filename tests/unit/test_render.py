import pytest

from dagllm.data.catalog import Task, load_catalog
from dagllm.data.templating import RenderError, choose_templates, render_template


def _task(**kw) -> Task:
    base = dict(id="t", category="c", description="d", sources=[{"source": "apeach"}], fields=["text"],
                labels={"0": "아니요", "1": "예"}, sample={"fields": {"text": "표본"}, "label": "1"},
                templates=[{"id": "a", "kind": "instruction", "instruction": "판단하세요.", "input": "{{ text }}",
                            "output": "{{ answer }}"},
                           {"id": "b", "kind": "question", "instruction": "\"{{ text }}\" 맞나요?", "output": "{{ answer }}"},
                           {"id": "c", "kind": "question", "instruction": "{{ text }}?", "output": "{{ label }}"}])
    base.update(kw)
    return Task.model_validate(base)


def test_dataset_text_is_data_not_template():
    task = _task()
    evil = "{{ 7 * 7 }} {% for x in range(3) %}X{% endfor %} {{ ''.__class__.__mro__ }}"
    out = render_template(task, task.templates[0], {"text": evil}, "1", "r1")
    assert out == {"instruction": "판단하세요.", "input": evil, "output": "예"}


def test_missing_variable_is_an_error_naming_task_template_record():
    task = _task()
    with pytest.raises(RenderError, match=r"task t, template a, record r9: input failed: 'text' is undefined"):
        render_template(task, task.templates[0], {"other": "x"}, "1", "r9")


def test_sandbox_blocks_unsafe_template_code():
    from dagllm.data.templating import task_template_problems

    # written in the template: found without rendering (dagllm check, a team task file as it loads)
    written = _task(templates=[{"id": "x", "kind": "question", "instruction": "{{ text.__class__.__mro__ }}",
                                "output": "o"}])
    assert task_template_problems(written) == [
        f"task t, template x: instruction: attribute {a!r} is private; the sandbox refuses it"
        for a in ("__class__", "__mro__")]
    with pytest.raises(RenderError, match=r"task t, template x, record r: instruction failed: .*unsafe"):
        render_template(written, written.templates[0], {"text": "t"}, "0", "r")
    # built at run time: the sandbox refuses it
    task = _task(templates=[{"id": "x", "kind": "question", "instruction": "{{ text | attr('__cla' ~ 'ss__') }}",
                             "output": "o"}])
    with pytest.raises(RenderError, match=r"task t, template x, record r: instruction failed: .*unsafe"):
        render_template(task, task.templates[0], {"text": "t"}, "0", "r")


def test_template_choice_is_deterministic_and_seeded():
    task = _task()
    picks = [choose_templates(task, f"rec{i}", seed=1)[0].id for i in range(60)]
    assert picks == [choose_templates(task, f"rec{i}", seed=1)[0].id for i in range(60)]
    assert set(picks) == {"a", "b", "c"}
    other = [choose_templates(task, f"rec{i}", seed=2)[0].id for i in range(60)]
    assert other != picks
    two = choose_templates(task, "rec1", seed=1, k=2)
    assert len({t.id for t in two}) == 2


def test_every_task_renders_from_the_sample_files(tmp_path):
    """All sources ingested from the bundled samples, then every task of the registry rendered."""
    import json

    import pandas as pd

    from dagllm.params import IngestParams, RenderParams
    from dagllm.stages.ingest import run_ingest
    from dagllm.stages.render import run_render

    from ..conftest import SAMPLES

    cat = load_catalog()
    run_ingest(IngestParams(sources=sorted(cat.sources)), cat, SAMPLES, tmp_path / "c.parquet", tmp_path / "rej",
               tmp_path / "ingest.json")
    run_render(RenderParams(tasks=sorted(cat.tasks), templates_per_record=2), cat, tmp_path / "c.parquet",
               tmp_path / "r" / "records.parquet", tmp_path / "render.json")
    out = pd.read_parquet(tmp_path / "r" / "records.parquet")
    per_task = out.groupby("task").size().to_dict()
    assert set(per_task) == set(cat.tasks), set(cat.tasks) - set(per_task)
    assert not out["instruction"].str.contains("{{", regex=False).any()
    assert (out["output"].str.len() > 0).all()
    assert json.loads((tmp_path / "render.json").read_text())["records"] == len(out)


def test_bare_variable_fast_path_matches_jinja():
    from dagllm.data.korean import resolve
    from dagllm.data.templating import _compile, _render

    for value in ["  앞뒤 공백  ", None, "{{ 1 + 1 }}", "줄\n바꿈", 3, "{이/가}"]:
        slow = resolve(_compile("{{ text }}").render(text=value)).strip()  # sentinels dropped, markers resolved
        assert _render("{{ text }}", {"text": value}, "w") == slow
    with pytest.raises(RenderError, match="w failed: 'text' is undefined"):
        _render("{{text}}", {}, "w")


def test_a_task_whose_sources_gave_no_rows_is_named_by_render(tmp_path):
    """A selected task with no rows (its file's rows all rejected, say) renders nothing: render says so."""
    from dagllm.params import IngestParams, RenderParams
    from dagllm.stages.ingest import run_ingest
    from dagllm.stages.render import run_render

    from ..conftest import SAMPLES

    cat = load_catalog()
    run_ingest(IngestParams(sources=["nsmc"]), cat, SAMPLES, tmp_path / "c.parquet", tmp_path / "rej",
               tmp_path / "ingest.json")  # nothing of apeach ingested
    s = run_render(RenderParams(tasks=["nsmc_sentiment", "apeach_hate"]), cat, tmp_path / "c.parquet",
                   tmp_path / "r" / "records.parquet", tmp_path / "render.json")
    assert s.per_task.get("nsmc_sentiment", 0) > 0 and "apeach_hate" not in s.per_task
    assert list(s.empty_tasks()) == ["apeach_hate"]
    assert "task 'apeach_hate' has no records: its sources gave it no rows" in "\n".join(s.lines())
