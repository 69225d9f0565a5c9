"""The Korean lint of the catalog: particles that agree, answers that fit their instructions.

Every template of a task is rendered (through the project's renderer) on the task's own sample
and on real rows read through the project's readers, and two things are checked per record:

- **particles**: every particle written right after a substituted value (or after a quoted
  literal) agrees with that value's last character (:mod:`dagllm.data.korean`); a particle written
  literally after a value (not as a ``{이/가}`` marker) is flagged even when it happens to agree,
  since the next value may end differently;
- **answer format**: what the instruction names is what the output gives: a list of quoted
  answers (``"예" 또는 "아니요"로``), ``예 또는 아니요로``, a ``보기:``/``선택지:`` line, numbered options
  (``1번과 2번 중``, ``몇 번``), one of the options copied (``그대로 쓰세요``: the output is one of
  the record's choices), a reason (``왜``, ``이유``, ``근거``), a sentence (``한 문장으로``).

``dagllm catalog lint`` prints the per-task table; ``tests/unit/test_korean_lint.py`` runs it
over every committed task in ``make test``.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dagllm.data import korean
from dagllm.data.catalog import Catalog, GroupPairs, Task, Template
from dagllm.data.templating import RenderError, pair_within_groups, prepare, probe_parts, render_choices

# --- answer format rules -----------------------------------------------------------------------

_QUOTE = r"[\"'“”‘’]"
_QUOTED_LIST = re.compile(rf"{_QUOTE}([^\"'“”‘’\n]+){_QUOTE}(?:\s*(?:또는|,|이나|나|아니면|혹은|/)\s*[^\"'“”‘’\n]{{0,8}}?"
                          rf"{_QUOTE}([^\"'“”‘’\n]+){_QUOTE})+\s*(?:[가-힣]{{0,3}})\s*(?:중|가운데)?\s*"
                          r"(?:하나로|하나를|으로|로|라고|이라고)\s*(?:만\s*)?(?:답|쓰|분류|고르|적)")
_QUOTED = re.compile(rf"{_QUOTE}([^\"'“”‘’\n]+){_QUOTE}")
_YES_NO = re.compile(r"예\s*(?:또는|/|나)\s*아니요\s*(?:로|중)\s*(?:만\s*)?(?:답하세요|답해|답하십시오|고르세요|쓰세요)")
_OPTIONS_LINE = re.compile(r"(?:보기|선택지)\s*:\s*(.+)$", re.M)
_NUMBERED = re.compile(r"(\d+)번\s*(?:과|와|,|또는)\s*(\d+)번")
_WHICH_NUMBER = re.compile(r"몇\s*번")
_REASON = re.compile(r"왜(?!냐)|(?<!판결 )이유(?! 부분)|근거(?!하|해|로 하)")
_REASON_GIVEN = re.compile(r"때문|므로|으니|니까|이유|왜냐하면|따라서|그래서|근거|[아어해여]서\s")
_COPY = re.compile(r"그대로\s*쓰")
_SENTENCE = re.compile(r"(?:한|완전한|두세|한두)?\s*문장으로\s*(?:답|쓰|설명|판단|판정|밝히|말|정의|평가)")
_SENTENCE_END = re.compile(r"(?:다|요|죠|까|니다)[.!?]?[\"'”’]?$")


def format_findings(instruction: str, output: str, choices: list[str], output_ends_literal: bool) -> list[str]:
    """What the instruction names but the output does not give (an empty list when it fits)."""
    out = output.strip()
    problems: list[str] = []
    m = _QUOTED_LIST.search(instruction)
    if m:
        options = _QUOTED.findall(m.group(0))
        if out not in options:
            problems.append(f"asks for one of {' / '.join(options)} but the output is {out[:40]!r}")
    elif _YES_NO.search(instruction) and out not in ("예", "아니요"):
        problems.append(f"asks for 예 or 아니요 but the output is {out[:40]!r}")
    line = _OPTIONS_LINE.search(instruction)
    if line:
        text = line.group(1).strip()
        options = [o.strip() for o in (text.split(" / ") if " / " in text else text.split(", "))]
        if out not in options:
            problems.append(f"lists the options {text[:60]!r} but the output is {out[:40]!r}")
    nums = _NUMBERED.search(instruction)
    if (nums or _WHICH_NUMBER.search(instruction)) and not re.match(r"^\d+번", out):
        problems.append(f"asks for a numbered option (N번) but the output is {out[:40]!r}")
    if _COPY.search(instruction) and choices and out not in choices:
        problems.append(f"asks to copy one of the options but the output {out[:40]!r} is none of them")
    if _REASON.search(instruction) and not _REASON_GIVEN.search(out):
        problems.append("asks for a reason (왜/이유/근거) but the output gives none")
    if output_ends_literal and _SENTENCE.search(instruction) and not _SENTENCE_END.search(out):
        problems.append(f"asks for a sentence but the output {out[-30:]!r} does not end like one")
    return problems


# --- per task ------------------------------------------------------------------------------------

@dataclass
class TaskLint:
    task: str
    rows: int = 0            # rows rendered (sample + real)
    real_rows: int = 0
    records: int = 0          # rows x templates
    sites: int = 0            # particles after a value (or quoted literal) checked
    markers: int = 0          # of which written as markers
    disagreements: int = 0    # particles that do not agree with the value before them
    literal: int = 0          # particles written literally after a value
    format_checked: int = 0   # records whose instruction names an answer format
    format_errors: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.disagreements == 0 and self.literal == 0 and self.format_errors == 0

    def note(self, text: str) -> None:
        if len(self.examples) < 5 and text not in self.examples:
            self.examples.append(text)


def record_sites(probe: dict[str, str]) -> list[korean.Site]:
    """The particle sites of a probe render's three parts."""
    return [s for part in ("instruction", "input", "output") for s in korean.particle_sites(probe[part])]


def _rows_with_pairs(task: Task, rows: list[tuple[str, dict, str | None]]) -> list[tuple[str, dict, str | None]]:
    if not any(isinstance(d, GroupPairs) for d in task.derive):
        return rows
    fields, _ = pair_within_groups(task, [(rid, f) for rid, f, _ in rows], seed=0)
    return [(rid, fields[rid], lab) for rid, _, lab in rows if rid in fields]


def lint_task(task: Task, rows: Iterable[tuple[str, dict, str | None]] = ()) -> TaskLint:
    """Render every template of ``task`` on its sample and on real ``rows`` (``(id, fields, label)``).

    A ``group_pairs`` task pairs the rows among themselves (the sample carries its derived field).
    """
    rows = list(rows)
    result = TaskLint(task.id, real_rows=len(rows))
    sample = (f"{task.id}/sample", dict(task.sample.fields), task.sample.label)
    rows = _rows_with_pairs(task, rows)
    for rid, fields, label in [sample, *rows]:
        variables = prepare(task, fields, label, rid)
        if isinstance(variables, str):
            continue  # skipped by a `where` (counted by the render stage)
        result.rows += 1
        for tpl in task.templates:
            lint_record(task, tpl, variables, rid, result)
    return result


def lint_record(task: Task, tpl: Template, variables: dict, rid: str, result: TaskLint) -> None:
    result.records += 1
    probe = probe_parts(task, tpl, variables, rid)
    for site in record_sites(probe):
        result.sites += 1
        result.markers += site.marker
        if not site.agrees:
            result.disagreements += 1
            result.note(f"{tpl.id}: {site.before[-12:]!r} + {site.written} (should be {site.expected})")
        elif site.value and not site.marker:
            result.literal += 1
            result.note(f"{tpl.id}: literal particle {site.written!r} after a value; write a marker "
                        f"{{{'/'.join(_pair_for(site))}}}")
    # the rules read the template's own words: a value (a comment asking 왜) names no format
    instruction = korean.resolve(re.sub(korean.OPEN + "[^" + korean.CLOSE + "]*" + korean.CLOSE, "…",
                                        probe["instruction"])).strip()
    output = korean.resolve(probe["output"]).strip()
    ends_literal = not probe["output"].rstrip().endswith(korean.CLOSE)
    problems = format_findings(instruction, output, render_choices(task, tpl, variables, rid), ends_literal)
    if _names_format(instruction):
        result.format_checked += 1
    if problems:
        result.format_errors += 1
        result.note(f"{tpl.id}: {problems[0]}")


def _pair_for(site: korean.Site) -> tuple[str, str]:
    for c, v in korean.PAIRS:
        if site.written in (c, v):
            return c, v
    return site.written, site.written


def _names_format(instruction: str) -> bool:
    return any(r.search(instruction) for r in (_QUOTED_LIST, _YES_NO, _OPTIONS_LINE, _NUMBERED, _WHICH_NUMBER,
                                               _COPY, _REASON, _SENTENCE))


# --- real rows -----------------------------------------------------------------------------------

def real_rows(task: Task, catalog: Catalog, mirror: Path, limit: int | None) -> Iterator[tuple[str, dict, str | None]]:
    """Up to ``limit`` rows per file of the task's (non-benchmark) source files found in ``mirror``,
    read through the project's readers."""
    from dagllm.data.readers import READERS, Row

    for ts in task.sources:
        if ts.source not in catalog.sources:
            continue
        for sf in catalog.source(ts.source).files:
            path = Path(mirror) / sf.path
            if sf.benchmark or sf.split not in ts.splits or not path.is_file():
                continue
            items = (i for i in READERS[sf.reader](path) if isinstance(i, Row))
            for n, row in enumerate(itertools.islice(items, limit)):
                yield f"{ts.source}/{sf.path}/{row.line}/{n}", dict(row.fields), row.label


def lint_catalog(catalog: Catalog, mirror: Path | None, limit: int | None = 200,
                 tasks: Iterable[str] | None = None) -> list[TaskLint]:
    """Lint every task (or ``tasks``) on its sample and up to ``limit`` real rows per file."""
    out = []
    for tid in (list(tasks) if tasks is not None else sorted(catalog.tasks)):
        task = catalog.task(tid)
        rows = list(real_rows(task, catalog, mirror, limit)) if mirror is not None else []
        out.append(lint_task(task, rows))
    return out


def table(results: list[TaskLint]) -> str:
    head = ("task", "rows", "real", "records", "sites", "markers", "disagree", "literal", "format", "fmt_err")
    lines = ["  ".join(f"{h:>8}" if i else f"{h:<36}" for i, h in enumerate(head))]
    for r in results:
        vals = (r.task, r.rows, r.real_rows, r.records, r.sites, r.markers, r.disagreements, r.literal,
                r.format_checked, r.format_errors)
        lines.append("  ".join(f"{v:>8}" if i else f"{v:<36}" for i, v in enumerate(vals)))
        lines += [f"    {e}" for e in r.examples]
    return "\n".join(lines)


def to_json(results: list[TaskLint]) -> str:
    return json.dumps([{**asdict(r), "ok": r.ok} for r in results], ensure_ascii=False, indent=1)


# --- the quality gate's count ------------------------------------------------------------------

@dataclass
class ParticleCount:
    """Particle disagreements of rendered records, found by rendering them again from their rows."""

    errors: list[int]        # per record, in the order given
    unverified: int = 0      # records whose re-render differs from the record (not checked)
    per_task: dict[str, int] = field(default_factory=dict)
    rendered: int = 0        # records rendered again and read
    by_markers: int = 0      # records whose template writes every particle after a value as a marker


# A particle can disagree only where the template writes it literally right after a value or an
# {% if %} block (a marker is chosen from the value itself): the first letter of a particle form
# after `}}` or `endif %}`, closing quotes/brackets passed. A particle after a quotation of the
# template's own words reads the same in every record: it is checked once, from the source.
_PARTICLE_INITIALS = "".join(sorted({f[0] for pair in korean.PAIRS for f in pair}))
_VALUE_SITE = re.compile(r"(?:\}\}|endif\s*-?%\})[\"'”’」』)\]]*[" + _PARTICLE_INITIALS + "]")
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)


def may_disagree(template: Template) -> bool:
    """Whether a record of ``template`` can hold a particle that disagrees (checked per record)."""
    for part in ("instruction", "input", "output"):
        source = getattr(template, part)
        if _VALUE_SITE.search(source):
            return True
        literal = _JINJA.sub(lambda m: "\x00" * len(m.group(0)), source)
        for quoted, end in korean._quoted_literals(literal):
            if "\x00" in quoted or not quoted.strip():
                continue
            site = korean._site_after(quoted, literal[end:end + 12])
            if site is not None and not site.agrees:
                return True
    return False


def count_particle_errors(records: Iterable[tuple[str, str, str, tuple[str, str, str]]], canonical,
                          catalog: Catalog, seed: int) -> ParticleCount:
    """Count each record's particle errors, rendering it again from its canonical row when its
    template can write one that disagrees (:func:`may_disagree`).

    Args:
        records: ``(task, template_id, record_id, (instruction, input, output))`` per record.
        canonical: the canonical table (``id``, ``source``, ``split``, ``benchmark``, ``fields``, ``label``).
        catalog: the catalog the records were rendered from.
        seed: the render seed (group pairing depends on it).
    """
    records = list(records)
    count = ParticleCount(errors=[0] * len(records))
    rows_of: dict[str, dict[str, tuple[dict, str | None]]] = {}
    templates = {(t.id, tpl.id): tpl for t in catalog.tasks.values() for tpl in t.templates}
    risky: dict[tuple[str, str], bool] = {}  # per (task, template): may a record hold a disagreement?
    for i, (task_id, tpl_id, rid, parts) in enumerate(records):
        task = catalog.tasks.get(task_id)
        if task is None:  # the gate's task expectation reports it
            count.unverified += 1
            continue
        tpl = templates.get((task_id, tpl_id))
        if (task_id, tpl_id) not in risky:
            risky[task_id, tpl_id] = tpl is None or may_disagree(tpl)
        if not risky[task_id, tpl_id]:
            count.by_markers += 1  # every particle after a value is chosen from it: nothing can disagree
            continue
        if task_id not in rows_of:
            rows_of[task_id] = _task_rows(task, canonical, seed)
        rows = rows_of[task_id]
        try:
            variables = prepare(task, *rows[rid], rid) if tpl is not None and rid in rows else "missing"
            probe = None if isinstance(variables, str) else probe_parts(task, tpl, variables, rid)
        except RenderError:
            probe = None
        if probe is None:
            count.unverified += 1
            continue
        if any(korean.resolve(probe[p]).strip() != (text or "") for p, text in zip(probe, parts, strict=True)):
            count.unverified += 1  # not what this template renders from this row: nothing to check
            continue
        count.rendered += 1
        n = sum(not s.agrees for s in record_sites(probe))
        count.errors[i] = n
        if n:
            count.per_task[task_id] = count.per_task.get(task_id, 0) + n
    return count


def _task_rows(task: Task, canonical, seed: int) -> dict[str, tuple[dict, str | None]]:
    """``record_id -> (fields, label)`` of the task's training rows, group pairs applied as rendered."""
    keep = ~canonical["benchmark"].astype(bool)
    sel = None
    for ts in task.sources:
        m = keep & (canonical["source"] == ts.source) & canonical["split"].isin(ts.splits)
        sel = m if sel is None else sel | m
    rows = canonical[sel]
    fields = {rid: _fields(f) for rid, f in zip(rows["id"], rows["fields"], strict=True)}
    fields = {rid: f for rid, f in fields.items() if f is not None}  # a broken row is the ingested gate's
    labels = {rid: (lab if isinstance(lab, str) else None) for rid, lab in zip(rows["id"], rows["label"], strict=True)}
    if any(isinstance(d, GroupPairs) for d in task.derive):
        fields, _ = pair_within_groups(task, fields.items(), seed)
    return {rid: (f, labels[rid]) for rid, f in fields.items()}


def _fields(text) -> dict | None:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None
