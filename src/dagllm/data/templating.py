"""Template rendering: a sandboxed, bounded Jinja2 environment with StrictUndefined.

Dataset text is only ever passed as template *variables*, never compiled, so a row holding
``{{ ... }}`` or ``{% ... %}`` is rendered literally. Template choice is a pure function of the
seed, the task and the record id, so every machine and every run picks the same template.

A template is one self-contained text: :func:`template_problems` refuses, when a task file is
loaded (``dagllm check`` and every stage), what needs a template loader (``{% include %}``,
``{% extends %}``, ``{% import %}``, ``{% from ... import %}``), recursive loops, unknown filters and
tests, private attributes and Jinja syntax errors. Its work is bounded when it runs, in the
sandbox of :mod:`dagllm.data.sandbox` (its ``LIMITS``); a template over a limit fails with a
:class:`RenderError` naming the task, template, record and the limit, never a traceback, a hang or
exhausted memory.

A task's declarative options are applied here, in this order: ``label_field`` (the label comes
from a field), row-level ``derive`` steps (``first_paragraph``, ``first_sentence``, ``answer_unit``), ``where``
conditions, then ``labels``/``label_default`` verbalise the label as ``answer``. The one
derivation that needs every row of a task, ``group_pairs``, is :func:`pair_within_groups`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from functools import lru_cache

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, meta, nodes

from dagllm.data import korean
from dagllm.data.catalog import AnswerUnit, Condition, FirstParagraph, FirstSentence, GroupPairs, Task, Template
from dagllm.data.sandbox import (
    LOADER_NODES,
    BoundedEnvironment,
    Meter,
    TemplateLimitError,
    budget,
    metered,
)
from dagllm.data.text import skeleton


class RenderError(ValueError):
    """A template failed to render for a record; the message names the task, template and record."""


def _mark_value(value) -> str:
    """Wrap every ``{{ ... }}`` output in the value sentinels (see :mod:`dagllm.data.korean`)."""
    text = str(value)
    if korean.OPEN in text or korean.CLOSE in text:
        raise ValueError("a value holds U+FDD0/U+FDD1, the noncharacters the renderer reserves to mark "
                         "where values end; remove them from the source row")
    budget().charge(work=len(text), chars=len(text))
    return korean.OPEN + text + korean.CLOSE


@lru_cache(maxsize=1)
def environment() -> BoundedEnvironment:
    # autoescape off: the output is training text, not HTML. `finalize` marks where each value
    # ends, so particle markers ({이/가}) are resolved against the value, never inside it.
    env = BoundedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False,
                             finalize=_mark_value)
    env.filters["unquote"] = unquote
    env.bound_filters_and_tests()
    return env


@lru_cache(maxsize=8192)
def _parse(source: str) -> nodes.Template:
    return environment().parse(source)


@lru_cache(maxsize=8192)
def _compile(source: str):
    env = environment()
    tree = Meter().visit(env.parse(source))
    tree.set_environment(env)
    return env.from_string(tree)


@lru_cache(maxsize=8192)
def template_variables(source: str) -> frozenset[str]:
    """The variable names a template string reads."""
    return frozenset(meta.find_undeclared_variables(_parse(source)))


def template_problems(source: str, variables: Iterable[str]) -> list[str]:
    """Why a template string cannot be rendered for any record, found without rendering it.

    Args:
        source: one part of a template (instruction, input, output or a choice).
        variables: the names the task provides (its fields, derived fields, ``label``, ``answer``).

    Returns:
        One line per problem (empty when there is none): a Jinja syntax error; a tag that needs a
        template loader (a template is one self-contained text); a recursive loop; a filter or test
        Jinja does not have; the ``random`` filter (a record must depend on the seed only); a private
        attribute (``__class__``); a variable the task does not have.
    """
    env = environment()
    try:
        tree = _parse(source)
    except TemplateSyntaxError as exc:
        return [f"not valid Jinja: {exc.message} (line {exc.lineno})"]
    problems: list[str] = []
    for kind, tag in LOADER_NODES:
        if any(True for _ in tree.find_all(kind)):
            problems.append(f"{tag} needs a template loader, which templates do not have: a template is one "
                            "self-contained text; write the shared text into it")
    if any(n.recursive for n in tree.find_all(nodes.For)):
        problems.append("a recursive {% for %} loop: fields are flat text; write the loop without `recursive`")
    for name in sorted({n.name for n in tree.find_all(nodes.Filter) if n.name not in env.filters}):
        problems.append(f"no filter named {name!r} (Jinja's filters and unquote)")
    if any(n.name == "random" for n in tree.find_all(nodes.Filter)):
        problems.append("the filter 'random' makes a record depend on chance, not on the seed: every run would "
                        "render other text; write the variants as templates of the task (render.seed picks them)")
    for name in sorted({n.name for n in tree.find_all(nodes.Test) if n.name not in env.tests}):
        problems.append(f"no test named {name!r}")
    private = {n.attr for n in tree.find_all(nodes.Getattr) if n.attr.startswith("_")}
    private |= {n.arg.value for n in tree.find_all(nodes.Getitem)
                if isinstance(n.arg, nodes.Const) and isinstance(n.arg.value, str) and n.arg.value.startswith("_")}
    for name in sorted(private):
        problems.append(f"attribute {name!r} is private; the sandbox refuses it")
    if problems:  # the variable scan compiles the template: only once it can be compiled
        return problems
    try:
        unknown = sorted(template_variables(source) - set(variables))
    except TemplateError as exc:
        return [f"not valid Jinja: {exc}"]
    if unknown:
        problems.append(f"reads {', '.join(map(repr, unknown))}, not a variable of the task "
                        f"({', '.join(sorted(variables))})")
    return problems


def task_template_problems(task: Task) -> list[str]:
    """:func:`template_problems` of every part of every template of ``task``, each line naming the
    task, the template and the part (empty when all can render)."""
    return [f"task {task.id}, template {tpl.id}: {part}: {problem}"
            for tpl in task.templates
            for part, source in (("instruction", tpl.instruction), ("input", tpl.input), ("output", tpl.output),
                                 *((f"choices[{i}]", c) for i, c in enumerate(tpl.choices or [])))
            for problem in template_problems(source, task.variables)]


# --- template choice ---------------------------------------------------------------------------

def _digest(seed: int, task_id: str, record_id: str) -> bytes:
    return hashlib.sha256(f"{seed}\x1f{task_id}\x1f{record_id}".encode()).digest()


def choose_templates(task: Task, record_id: str, seed: int, k: int = 1,
                     question_fraction: float | None = None) -> list[Template]:
    """Pick ``k`` distinct templates for a record, deterministically from (seed, task, record id).

    Args:
        task: the task whose templates are drawn.
        record_id: the canonical record id.
        seed: the render seed.
        k: templates per record (capped at the number of templates).
        question_fraction: ``None`` draws uniformly over all templates; otherwise each pick is a
            question-based template with this probability (an instruction-based one otherwise),
            falling back to the other kind when one kind is used up.
    """
    templates = task.templates
    k = min(k, len(templates))
    digest = _digest(seed, task.id, record_id)
    if question_fraction is None:
        start = int.from_bytes(digest[:8], "big") % len(templates)
        return [templates[(start + i) % len(templates)] for i in range(k)]
    pools = {kind: [t for t in templates if t.kind == kind] for kind in ("question", "instruction")}
    offsets = {kind: int.from_bytes(digest[8 + 4 * j:12 + 4 * j], "big") for j, kind in enumerate(pools)}
    used = {kind: 0 for kind in pools}
    picks: list[Template] = []
    for i in range(k):
        u = int.from_bytes(hashlib.sha256(digest + bytes([i])).digest()[:4], "big") / 2**32
        kind = "question" if u < question_fraction else "instruction"
        if used[kind] >= len(pools[kind]):
            kind = "instruction" if kind == "question" else "question"
        pool = pools[kind]
        picks.append(pool[(offsets[kind] + used[kind]) % len(pool)])
        used[kind] += 1
    return picks


# --- derivations and conditions -----------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.?!])\s+|\n+")


def first_paragraph(text: str, max_chars: int) -> str:
    """The first non-empty line of ``text``, cut at a sentence end before ``max_chars``."""
    para = next((p.strip() for p in text.splitlines() if p.strip()), "")
    if len(para) <= max_chars:
        return para
    head = para[:max_chars]
    cut = max(head.rfind(". "), head.rfind("다."))
    return head[: cut + (2 if head[cut:cut + 2] == "다." else 1)].strip() if cut > 0 else head.strip()


def first_sentence(text: str) -> str:
    """The first sentence of ``text`` (up to '.', '?', '!' followed by a space, or a line break)."""
    return next((s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()), "")


# Units a Korean word problem writes after a number, longest first so 킬로미터 wins over 미터.
UNITS = tuple(sorted((
    "원 달러 센트 유로 엔 위안 파운드 개 명 마리 권 쪽 페이지 장 살 세 시간 분 초 일 주 주일 개월 달 년 "
    "킬로미터 km 미터 m 센티미터 cm 밀리미터 mm 마일 피트 야드 인치 킬로그램 kg 그램 g 톤 온스 "
    "리터 L 밀리리터 mL ml 갤런 쿼트 컵 퍼센트 % 점 번 회 대 병 잔 송이 그루 켤레 벌 자루 조각 상자 "
    "봉지 가지 층 배 줄 통 팩 판 묶음 포기 그릇 접시 알 곡 편 채 척 인분 칸 바퀴 걸음"
).split(), key=len, reverse=True))
_CALC = re.compile(r"<<[^<>]*>>")
# what may follow a unit in the same word: a particle, the copula, or punctuation
_AFTER_UNIT = re.compile(r"$|[.,!?)\]」』\"']|(?:입니다|이다|이며|이고|이므로|이니|이에요|예요|이야|이었|였|"
                         r"을|를|이|가|은|는|의|에|에서|으로|로|과|와|도|만|씩|짜리|이나|나|부터|까지|보다|마다|당|이라|라)")


def answer_unit(solution: str, number: str) -> str:
    """The unit ``solution`` writes right after its last mention of ``number`` (``2,400원입니다`` -> ``원``),
    ``달러`` for ``$number``; empty when it writes the number bare or with a word not in :data:`UNITS`.

    The unit is read from the solution, never guessed; ``N분의 M`` is a fraction, not minutes.
    """
    number = number.strip()
    if not number:
        return ""
    text = _CALC.sub("", solution)
    pattern = re.compile(r"(\$\s*)?(?<![\d.,])" + _with_commas(number) + r"(?!\d|[.,]\d)\s?(\S*)")
    matches = list(pattern.finditer(text))
    if not matches:
        return ""
    dollar, after = matches[-1].groups()
    if dollar:
        return "달러"
    for unit in UNITS:
        rest = after[len(unit):]
        if after.startswith(unit) and _AFTER_UNIT.match(rest) and not (unit == "분" and rest.startswith("의")):
            return unit
    return ""


def _with_commas(number: str) -> str:
    """A pattern for ``number`` written with or without thousands separators (``2400`` / ``2,400``)."""
    head, dot, tail = number.partition(".")
    if not head.isdigit():
        return re.escape(number)
    groups: list[str] = []
    while len(head) > 3:
        head, groups = head[:-3], [head[-3:], *groups]
    return ",?".join([head, *groups]) + (r"\." + re.escape(tail) if dot else "")


def _letters(value: str | None) -> str:
    return skeleton(value or "")


def _passes(cond: Condition, value: str | None, variables: dict) -> bool:
    if cond.nonempty and not (value or "").strip():
        return False
    if cond.in_ is not None and value not in cond.in_:
        return False
    if cond.not_in is not None and value in cond.not_in:
        return False
    if cond.matches is not None and not re.search(cond.matches, value or ""):
        return False
    if cond.not_matches is not None and re.search(cond.not_matches, value or ""):
        return False
    if cond.differs_from is not None and _letters(value) == _letters(variables.get(cond.differs_from)):
        return False
    return cond.not_within is None or _letters(value) not in _letters(variables.get(cond.not_within))


_TESTS = (("in_", "in {}"), ("not_in", "not in {}"), ("matches", "matches {!r}"),
          ("not_matches", "not matches {!r}"), ("differs_from", "differs from {}"), ("not_within", "not within {}"))


def _describe(cond: Condition) -> str:
    tests = ["nonempty"] if cond.nonempty else []
    tests += [fmt.format(getattr(cond, name)) for name, fmt in _TESTS if getattr(cond, name) is not None]
    return f"where {cond.field} {' and '.join(tests)}"


_QUOTE_PAIRS = {'"': '"', "'": "'", "“": "”", "‘": "’", "「": "」", "『": "』"}


def unquote(value) -> str:
    """``value`` without one pair of quotes around the whole of it (``"좋네요"`` -> ``좋네요``), so a
    template that quotes a value (``"{{ text | unquote }}"``) never doubles the quotes a row already has."""
    text = str(value).strip()
    if len(text) >= 2 and _QUOTE_PAIRS.get(text[0]) == text[-1] and text[0] not in text[1:-1]:
        return text[1:-1].strip()
    return text


def prepare(task: Task, fields: dict[str, str], label: str | None, record_id: str) -> dict | str:
    """The template variables of one record, or the reason it is skipped (a ``where`` failed).

    Raises:
        RenderError: a field the task needs is missing, or the label has no verbalisation.
    """
    variables: dict = dict(fields)
    if task.label_field is not None:
        if task.label_field not in fields:
            raise RenderError(f"task {task.id}, record {record_id}: label_field {task.label_field!r} "
                              f"is not in the record's fields ({', '.join(sorted(fields))})")
        label = fields[task.label_field]
    variables["label"] = label
    for d in task.derive:
        if isinstance(d, GroupPairs):
            if d.as_ not in variables:
                raise RenderError(f"task {task.id}, record {record_id}: {d.as_!r} comes from group_pairs; "
                                  "render the task through the render stage (pair_within_groups)")
            continue
        source = variables.get(d.field)
        if source is None:
            raise RenderError(f"task {task.id}, record {record_id}: derive needs field {d.field!r}")
        if isinstance(d, FirstParagraph):
            variables[d.as_] = first_paragraph(source, d.max_chars)
        elif isinstance(d, FirstSentence):
            variables[d.as_] = first_sentence(source)
        elif isinstance(d, AnswerUnit):
            variables[d.as_] = answer_unit(source, variables.get(d.number) or "")
    for cond in task.where:
        if not _passes(cond, variables.get(cond.field), variables):
            return _describe(cond)
    if task.labels or "answer" not in fields:
        # a source field named `answer` (math_korean's final answer) is kept for open-ended tasks
        variables["answer"] = verbalise(task, label, record_id)
    return variables


def verbalise(task: Task, label: str | None, record_id: str) -> str | None:
    """The Korean verbalisation of ``label`` (``answer``); the raw label for open-ended tasks."""
    if not task.labels:
        return label
    if label in task.labels:
        return task.labels[label]
    if task.label_default is not None and label is not None:
        return task.label_default
    raise RenderError(f"task {task.id}, record {record_id}: label {label!r} is not one of "
                      f"{', '.join(task.labels)}; add it to the task's labels (or set label_default)")


def pair_within_groups(task: Task, rows: Iterable[tuple[str, dict[str, str]]], seed: int
                       ) -> tuple[dict[str, dict[str, str]], int]:
    """Apply the task's ``group_pairs`` derivations to all its rows at once.

    Args:
        task: a task with a ``group_pairs`` derivation.
        rows: ``(record_id, fields)`` pairs.
        seed: the render seed; the partner of a record is a pure function of it and the ids.

    Returns:
        The fields of every record that has a partner (with the derived field added), and the
        number of records dropped because their group has a single member.
    """
    rows = list(rows)
    out = {rid: dict(f) for rid, f in rows}
    dropped: set[str] = set()
    for d in (d for d in task.derive if isinstance(d, GroupPairs)):
        groups: dict[str, list[str]] = {}
        for rid, f in rows:
            groups.setdefault(f.get(d.group_field, ""), []).append(rid)
        for members in groups.values():
            members = sorted(members)
            if len(members) < 2:
                dropped.update(members)
                continue
            for i, rid in enumerate(members):
                step = 1 + int.from_bytes(_digest(seed, task.id + "/pair", rid)[:4], "big") % (len(members) - 1)
                out[rid][d.as_] = out[members[(i + step) % len(members)]][d.field]
    return {rid: f for rid, f in out.items() if rid not in dropped}, len(dropped)


# --- rendering -----------------------------------------------------------------------------------

_BARE_VARIABLE = re.compile(r"^\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$")


@lru_cache(maxsize=8192)
def _bare_variable(source: str) -> str | None:
    match = _BARE_VARIABLE.match(source.strip())
    return match.group(1) if match else None


_IF = re.compile(r"\{%-?\s*if\b")
_ENDIF = re.compile(r"\{%-?\s*endif\s*-?%\}")


@lru_cache(maxsize=8192)
def _with_blocks(source: str) -> str:
    """``source`` with each ``{% if %}...{% endif %}`` wrapped in the block sentinels (probe only)."""
    return _ENDIF.sub(lambda m: m.group(0) + korean.BLOCK_CLOSE, _IF.sub(lambda m: korean.BLOCK_OPEN + m.group(0), source))


def _probe(source: str, variables: dict, where: str, blocks: bool = False) -> str:
    """Render with the value sentinels kept and the particle markers not yet resolved."""
    try:
        with metered(variables):
            return _compile(_with_blocks(source) if blocks else source).render(variables)
    except TemplateLimitError as exc:
        raise RenderError(f"{where} failed: over a template limit: {exc}") from None
    except (TemplateError, ValueError) as exc:
        raise RenderError(f"{where} failed: {exc}") from None
    except RecursionError:
        raise RenderError(f"{where} failed: calls nested too deeply (a macro calling itself?)") from None
    except Exception as exc:  # a template's own arithmetic or types: 1/0, 1 + 'a', 2.0 ** 9999
        raise RenderError(f"{where} failed: {type(exc).__name__}: {exc}") from None


def _render(source: str, variables: dict, where: str) -> str:
    if not source:
        return ""
    # fast path for "{{ name }}" (most inputs and outputs): same result as Jinja, a fifth of the time
    name = _bare_variable(source)
    if name is not None:
        if name not in variables:
            raise RenderError(f"{where} failed: '{name}' is undefined")
        return str(variables[name]).strip()
    try:
        return korean.resolve(_probe(source, variables, where)).strip()
    except korean.ParticleError as exc:
        raise RenderError(f"{where} failed: {exc}") from None


def probe_parts(task: Task, template: Template, variables: dict, record_id: str) -> dict[str, str]:
    """``render_parts`` with every value and ``{% if %}`` block still wrapped in the sentinels and
    markers unresolved: what the Korean lint and the quality gate read particles from."""
    where = f"task {task.id}, template {template.id}, record {record_id}"
    return {part: (_probe(getattr(template, part), variables, f"{where}: {part}", blocks=True)
                   if getattr(template, part) else "")
            for part in ("instruction", "input", "output")}


def render_parts(task: Task, template: Template, variables: dict, record_id: str) -> dict[str, str]:
    """Render ``instruction``, ``input`` and ``output`` of one template from prepared variables."""
    where = f"task {task.id}, template {template.id}, record {record_id}"
    return {part: _render(getattr(template, part), variables, f"{where}: {part}")
            for part in ("instruction", "input", "output")}


@lru_cache(maxsize=4096)
def _constant_choices(output: str, labels: tuple[tuple[str, str], ...], default: str | None) -> tuple[str, ...]:
    options = [{"label": k, "answer": v} for k, v in labels]
    if default is not None:
        options.append({"label": None, "answer": default})
    return tuple(dict.fromkeys(_render(output, o, "choices") for o in options))


def render_choices(task: Task, template: Template, variables: dict, record_id: str) -> list[str]:
    """The answer choices of a template for one record ([] when the output is open-ended).

    Explicit ``choices`` are rendered as templates; otherwise, in a task with ``labels``, the
    output is rendered once per label (so a full-sentence answer has full-sentence choices).
    """
    where = f"task {task.id}, template {template.id}, record {record_id}: choices"
    if template.choices is not None:
        return list(dict.fromkeys(_render(c, variables, where) for c in template.choices))
    if not task.labels or task.open_ended:
        return []
    labels = tuple(task.labels.items())
    if template_variables(template.output) <= {"label", "answer"}:
        return list(_constant_choices(template.output, labels, task.label_default))
    options = [{**variables, "label": k, "answer": v} for k, v in labels]
    if task.label_default is not None:
        options.append({**variables, "label": None, "answer": task.label_default})
    return list(dict.fromkeys(_render(template.output, o, where) for o in options))


def render_template(task: Task, template: Template, fields: dict[str, str], label: str | None,
                    record_id: str) -> dict[str, str]:
    """Render one template for one record into ``instruction``, ``input`` and ``output``.

    Raises:
        RenderError: the record fails a ``where`` condition, lacks a field, or a template fails.
    """
    variables = prepare(task, fields, label, record_id)
    if isinstance(variables, str):
        raise RenderError(f"task {task.id}, record {record_id}: skipped ({variables})")
    return render_parts(task, template, variables, record_id)


def render_sample(task: Task) -> list[dict]:
    """Render the task's own ``sample`` through every template (what `catalog show` prints)."""
    variables = prepare(task, task.sample.fields, task.sample.label, "sample")
    if isinstance(variables, str):
        raise RenderError(f"task {task.id}: its sample is skipped by {variables}; fix the sample")
    return [{"template_id": t.id, "kind": t.kind, **render_parts(task, t, variables, "sample"),
             "choices": render_choices(task, t, variables, "sample")} for t in task.templates]
