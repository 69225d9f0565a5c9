"""Hostile team templates: refused with the task and template named, at `dagllm check` and at render,
in bounded time and memory, never a traceback; user-facing text is printed literally.

Team rows are real NSMC rows read from the mirror (../shared/data) at test time and written to
tmp_path; the task file is the catalog's nsmc_sentiment.yaml with one template part made hostile.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import jinja2.filters
import pytest
import yaml
from typer.testing import CliRunner

from dagllm.cli import app
from dagllm.data.catalog import Task, default_catalog
from dagllm.data.lint import real_rows
from dagllm.data.sandbox import _FILTER_ESTIMATES, _LINEAR_FILTERS, _LINEAR_STR_METHODS, _STR_ESTIMATES, LIMITS
from dagllm.data.templating import RenderError, environment, render_template

from ..conftest import REPO, SAMPLES

runner = CliRunner()
MIRROR = Path(os.environ.get("DAGLLM_SHARED_DATA", REPO.parent / "shared" / "data"))


def _real_reviews(n: int = 12) -> list[tuple[str, str, str]]:
    """(id, document, label) of real NSMC rows: the mirror's when it has them, else the bundled sample."""
    cat = default_catalog()
    task = cat.task("nsmc_sentiment")
    where = MIRROR if any(True for _ in real_rows(task, cat, MIRROR, 1)) else SAMPLES
    rows = [(str(i + 1), f["text"], label) for i, (_, f, label) in enumerate(real_rows(task, cat, where, 400))
            if f.get("text", "").strip() and "\t" not in f["text"] and label in ("0", "1")]
    assert len(rows) >= n
    return rows[:n]


def _team(workdir: Path, part: str, source: str, rows=None) -> Path:
    """A team file of real rows and a task file whose first template's ``part`` is ``source``."""
    task = yaml.safe_load((REPO / "src/dagllm/data/catalog/tasks/nsmc_sentiment.yaml").read_text(encoding="utf-8"))
    task.update(id="team_hostile", description="팀 과제", sources=[{"source": "team_reviews", "splits": ["train"]}])
    for tpl in task["templates"]:
        tpl["id"] = "team_" + tpl["id"]
    task["templates"][0][part] = source
    team = workdir / "team"
    team.mkdir(exist_ok=True)
    (team / "team_hostile.yaml").write_text(yaml.safe_dump(task, allow_unicode=True), encoding="utf-8")
    rows = rows or _real_reviews()
    (team / "reviews.tsv").write_text("id\tdocument\tlabel\n" + "".join(f"{a}\t{b}\t{c}\n" for a, b, c in rows),
                                      encoding="utf-8")
    data = yaml.safe_load((workdir / "params.yaml").read_text(encoding="utf-8"))
    data["ingest"]["local"] = [{"id": "team_reviews", "path": "team/reviews.tsv", "reader": "nsmc_ratings",
                                "license": "internal", "tasks": ["team_hostile"],
                                "task_files": ["team/team_hostile.yaml"]}]
    data["render"]["tasks"] = ["nsmc_sentiment"]
    (workdir / "params.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return team / "team_hostile.yaml"


def _refused(result, *needles: str) -> str:
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), f"a traceback, not a message: {result.exception!r}"
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text!r}"
    return text


# --- tags that need a loader: refused when the task file loads ----------------------------------

LOADER_TAGS = [
    ("{% include 'header.txt' %}{{ text }}", "{% include %}"),
    ("{% extends 'base.txt' %}", "{% extends %}"),
    ("{% import 'macros.txt' as m %}{{ text }}", "{% import %}"),
    ("{% from 'macros.txt' import quote %}{{ text }}", "{% from ... import %}"),
]


@pytest.mark.parametrize("source, tag", LOADER_TAGS)
def test_check_refuses_a_tag_that_needs_a_loader_naming_task_and_template(workdir: Path, source: str, tag: str):
    path = _team(workdir, "input", source)
    result = runner.invoke(app, ["check"])
    _refused(result, str(path.relative_to(workdir)), "task team_hostile", "template team_nsmc_inst_polarity",
             "input", tag, "needs a template loader")
    # and every stage refuses it before work: ingest reads nothing
    result = runner.invoke(app, ["ingest"])
    _refused(result, tag)
    assert not (workdir / "data" / "canonical").exists()


@pytest.mark.parametrize("source, problem", [
    ("{{ txet }}", "reads 'txet', not a variable of the task"),
    ("{{ text | shout }}", "no filter named 'shout'"),
    ("{% if text is loud %}x{% endif %}", "no test named 'loud'"),
    ("{{ text.__class__ }}", "attribute '__class__' is private"),
    ("{% for c in text %}{{ c }}", "not valid Jinja"),
    ("{% for c in text recursive %}{{ loop(c) }}{% endfor %}", "recursive"),
    ("{{ lipsum(10**9) }}", "reads 'lipsum'"),
    ("{{ ['좋다', '싫다'] | random }}", "the filter 'random' makes a record depend on chance"),
])
def test_check_refuses_what_render_could_never_run(workdir: Path, source: str, problem: str):
    _team(workdir, "input", source)
    _refused(runner.invoke(app, ["check"]), "task team_hostile", "template team_nsmc_inst_polarity", problem)


# --- work and memory bounds --------------------------------------------------------------------

HUGE = [
    ("{% for i in range(10**20) %}x{% endfor %}", f"over the limit of {LIMITS.range_items:,}"),
    ("{{ range(10**20) | list }}", f"over the limit of {LIMITS.range_items:,}"),
    ("{{ 'a' * 10**10 }}", f"over the limit of {LIMITS.chars:,}"),
    ("{{ [text] * 10**9 }}", f"over the limit of {LIMITS.chars:,}"),
    ("{{ text.ljust(10**10) }}", f"over the limit of {LIMITS.chars:,}"),
    ("{{ text | center(10**10) }}", f"over the limit of {LIMITS.chars:,}"),
    ("{{ text | indent(10**10) }}", f"over the limit of {LIMITS.chars:,}"),
    ("{{ '%0999999999d' % 1 }}", f"over the limit of {LIMITS.chars:,}"),
    ("{{ '{:>9999999999}'.format(text) }}", f"over the limit of {LIMITS.chars:,}"),
    ("{{ 10 ** 100000 }}", f"over the limit of {LIMITS.int_bits:,}"),
    ("{% set a = text %}" + "{% set a = a ~ a %}" * 40 + "{{ a }}", f"over the limit of {LIMITS.chars:,}"),
    ("{% set a = text %}" + "{% set a = a.replace(' ', a) %}" * 8 + "{{ a }}", "over the limit of"),
    ("{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
     f"more than {LIMITS.steps:,} steps"),
    ("{% for i in range(10000) %}{% for j in range(10000) %}{{ text }}{% endfor %}{% endfor %}",
     "more than"),
    ("{% set t = 'x' * 900000 %}{% for i in range(10000) %}{% if '가' in t %}{% endif %}{% endfor %}",
     "characters read and built"),
    ("{% macro f(n) %}{% set a = f(n) %}{% set b = f(n) %}{% endmacro %}{% set z = f(1) %}", "failed"),
    ("{% set x %}{% for i in range(10000) %}" + "긴 문장을 반복합니다. " * 20 + "{% endfor %}{% endset %}{{ x }}",
     "characters of text produced"),
]


@pytest.mark.parametrize("source, limit", HUGE)
def test_a_template_that_would_hang_or_exhaust_memory_is_refused_in_bounded_time(source: str, limit: str):
    rows = _real_reviews(1)
    task = Task.model_validate({
        "id": "t", "category": "sentiment", "description": "d", "sources": [{"source": "nsmc"}],
        "fields": ["text"], "sample": {"fields": {"text": rows[0][1]}},
        "templates": [{"id": "x", "kind": "question", "instruction": "판단하세요.", "input": source, "output": "o"}]})
    start = time.perf_counter()
    with pytest.raises(RenderError) as err:
        render_template(task, task.templates[0], {"text": rows[0][1]}, None, "nsmc/9")
    assert time.perf_counter() - start < 10
    message = " ".join(str(err.value).split())
    assert message.startswith("task t, template x, record nsmc/9: input failed"), message
    assert limit in message, message


@pytest.mark.parametrize("source", ["{% for i in range(10**20) %}x{% endfor %}", "{{ 'a' * 10**10 }}",
                                    "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"])
def test_check_refuses_a_template_its_own_sample_cannot_render(workdir: Path, source: str):
    _team(workdir, "input", source)
    _refused(runner.invoke(app, ["check"]), "task team_hostile", "template team_nsmc_inst_polarity",
             "record sample: input failed: over a template limit")


def test_a_limit_that_only_real_rows_reach_fails_render_with_a_message(workdir: Path):
    """The sample is short; a real review over 10 characters makes the template build a huge range:
    check passes (it cannot know the rows), render stops with the task, template, record and limit."""
    rows = [r for r in _real_reviews(40) if len(r[1]) > 10][:6]
    _team(workdir, "instruction", "{% if text | length > 10 %}{{ range(10**20) | list }}{% endif %}판단하세요.",
          rows=rows)
    task = yaml.safe_load((workdir / "team/team_hostile.yaml").read_text(encoding="utf-8"))
    task["sample"]["fields"]["text"] = "짧다"
    (workdir / "team/team_hostile.yaml").write_text(yaml.safe_dump(task, allow_unicode=True), encoding="utf-8")
    for stage in ("check", "fetch", "ingest"):
        result = runner.invoke(app, [stage])
        assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["render", "render.templates_per_record=4"])
    text = _refused(result, "task team_hostile, template team_nsmc_inst_polarity, record ",
                    f"range() of 100,000,000,000,000,000,000 items, over the limit of {LIMITS.range_items:,}")
    assert "instruction failed: over a template limit" in text
    assert not (workdir / "data" / "rendered" / "records.parquet").exists()


def test_every_str_method_and_jinja_filter_is_classified():
    """Each operation is either estimated before it runs or builds at most a few times what it reads:
    a str method or Jinja filter added upstream fails here until it is classified."""
    methods = {m for m in dir(str) if not m.startswith("_")}
    assert methods == set(_STR_ESTIMATES) | _LINEAR_STR_METHODS
    assert set(jinja2.filters.FILTERS) | {"unquote"} == set(_FILTER_ESTIMATES) | _LINEAR_FILTERS
    assert not set(_STR_ESTIMATES) & _LINEAR_STR_METHODS and not set(_FILTER_ESTIMATES) & _LINEAR_FILTERS
    assert "lipsum" not in environment().globals


def test_every_catalog_template_renders_real_rows_within_the_limits():
    """The limits leave the bundled templates room: the two tasks with loops over real rows."""
    cat = default_catalog()
    for task_id in ("petitions_title_generation", "math_korean_solution"):
        task = cat.task(task_id)
        where = MIRROR if any(True for _ in real_rows(task, cat, MIRROR, 1)) else SAMPLES
        n = 0
        for rid, fields, label in real_rows(task, cat, where, 60):
            for tpl in task.templates:
                try:
                    render_template(task, tpl, fields, label, rid)
                except RenderError as exc:
                    assert "skipped" in str(exc) and "limit" not in str(exc), exc
                n += 1
        assert n > 0


# --- literal printing -------------------------------------------------------------------------

def test_error_messages_keep_their_brackets(workdir: Path):
    """A pattern in an error message (pydantic's `^[a-z0-9_]+$`) is printed as it is, not read as markup."""
    path = _team(workdir, "input", "{{ text }}")
    task = yaml.safe_load(path.read_text(encoding="utf-8"))
    task["templates"][0]["id"] = "Team-Bad"
    path.write_text(yaml.safe_dump(task, allow_unicode=True), encoding="utf-8")
    text = _refused(runner.invoke(app, ["check"]), "'^[a-z0-9_]+$'")
    assert "'^+$'" not in text


def test_progress_descriptions_are_printed_as_they_are():
    from dagllm.progress import progress

    bar = progress()
    bar.add_task("render [bold]x[/bold] [a-z0-9_]", total=1)
    assert bar.columns[0].render(bar.tasks[0]).plain == "render [bold]x[/bold] [a-z0-9_]"
