"""Template rendering: a sandboxed, bounded Jinja2 environment with StrictUndefined.

Dataset text is only ever passed as template *variables*, never compiled, so a row holding
``{{ ... }}`` or ``{% ... %}`` is rendered literally. Template choice is a pure function of the
seed, the task and the record id, so every machine and every run picks the same template.

A template is one self-contained text: :func:`template_problems` refuses, when a task file is
loaded (``dagllm check`` and every stage), what needs a template loader (``{% include %}``,
``{% extends %}``, ``{% import %}``, ``{% from ... import %}``), recursive loops, unknown filters and
tests, private attributes and Jinja syntax errors. Its work is bounded when it runs (see
:data:`LIMITS`): ``range()`` sizes, steps (loop items, calls, filters, operators, outputs), the
characters every operation reads and builds, the size of every value built and of the text
produced, and integer sizes; a template over a limit fails with a :class:`RenderError` naming the
task, template, record and the limit, never a traceback, a hang or exhausted memory.

A task's declarative options are applied here, in this order: ``label_field`` (the label comes
from a field), row-level ``derive`` steps (``first_paragraph``, ``first_sentence``, ``answer_unit``), ``where``
conditions, then ``labels``/``label_default`` verbalise the label as ``answer``. The one
derivation that needs every row of a task, ``group_pairs``, is :func:`pair_within_groups`.
"""

from __future__ import annotations

import hashlib
import re
import types
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, meta, nodes, pass_context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

from dagllm.data import korean
from dagllm.data.catalog import AnswerUnit, Condition, FirstParagraph, FirstSentence, GroupPairs, Task, Template
from dagllm.data.text import skeleton


class RenderError(ValueError):
    """A template failed to render for a record; the message names the task, template and record."""


# --- bounds --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Limits:
    """What one template part (instruction, input, output or a choice) may do for one record."""

    range_items: int = 10_000
    """items one ``range()`` may produce"""
    steps: int = 100_000
    """loop items, calls, filters, tests, operators, attribute/item reads and outputs, together"""
    chars: int = 1_000_000
    """characters of any one value a template builds and of all the text it produces (the value of
    every ``{{ }}``, loop and macro text), or 4 times the record's own text when that is longer"""
    work: int = 20_000_000
    """characters all operations read and build together, or 40 times the record's text when longer"""
    int_bits: int = 14_000
    """bits of an integer a template computes (about Python's 4,300-digit limit for printing one)"""


LIMITS = Limits()


class TemplateLimitError(Exception):
    """A template went over one of :data:`LIMITS` (raised inside Jinja, reported as RenderError)."""


class _Budget:
    __slots__ = ("steps", "chars", "work", "max_chars", "max_work")

    def __init__(self, record_chars: int = 0) -> None:
        self.steps = self.chars = self.work = 0
        self.max_chars = max(LIMITS.chars, 4 * record_chars)
        self.max_work = max(LIMITS.work, 40 * record_chars)

    def charge(self, work: int = 0, chars: int = 0) -> None:
        self.steps += 1
        self.work += work
        self.chars += chars
        if self.steps > LIMITS.steps:
            raise TemplateLimitError(f"more than {LIMITS.steps:,} steps (loop items, calls, filters, "
                                     "operators, outputs); a template does a bounded amount of work per record")
        if self.work > self.max_work:
            raise TemplateLimitError(f"more than {self.max_work:,} characters read and built by its operations")
        if self.chars > self.max_chars:
            raise TemplateLimitError(f"more than {self.max_chars:,} characters of text produced")


_BUDGET: ContextVar[_Budget | None] = ContextVar("dagllm_template_budget", default=None)
# outside a render (Jinja folds constants while compiling) the limits on sizes still hold
_UNMETERED = _Budget()


def _budget() -> _Budget:
    return _BUDGET.get() or _UNMETERED


@contextmanager
def _metered(variables: dict):
    record_chars = sum(len(v) for v in variables.values() if isinstance(v, str))
    token = _BUDGET.set(_Budget(record_chars))
    try:
        yield
    finally:
        _BUDGET.reset(token)


_SIZED = (str, bytes, list, tuple, dict, set, frozenset)


def _size(value) -> int:
    if isinstance(value, _SIZED):
        return len(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value.bit_length() // 64
    return 0


def _check_size(size: int, what: str) -> None:
    limit = _budget().max_chars
    if size > limit:
        raise TemplateLimitError(f"{what} would hold {size:,} characters or items, over the limit of {limit:,}")


def _check_int(value, what: str) -> None:
    if isinstance(value, int) and value.bit_length() > LIMITS.int_bits:
        raise TemplateLimitError(f"{what} would be an integer of over {LIMITS.int_bits:,} bits")


def _built(value, what: str):
    """Charge and check a value an operation built."""
    _check_size(_size(value), what)
    _check_int(value, what)
    return value


def _charge_op(inputs: Iterable, estimate: int = 0, work: int = 0) -> None:
    b = _budget()
    b.charge(work=1 + sum(_size(x) for x in inputs) + estimate + work)


def bounded_range(*args: int) -> range:
    """``range`` refusing more than ``LIMITS.range_items`` items (however large its bounds)."""
    rng = range(*args)
    n = (rng.stop - rng.start + rng.step - (1 if rng.step > 0 else -1)) // rng.step if rng.step else 0
    if n > LIMITS.range_items:
        raise TemplateLimitError(f"range() of {n:,} items, over the limit of {LIMITS.range_items:,}")
    return rng


# printf-style conversions: %[(key)][flags][width][.precision]type; width/precision may be '*'
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")


def _check_widths(numbers: Iterable[int], what: str) -> int:
    total = 0
    for n in numbers:
        _check_size(n, what)
        total += n
    return total


def _percent_estimate(fmt: str, args) -> int:
    """Characters ``fmt % args`` may build, beyond its arguments: the widths and precisions it asks for."""
    ints = [a for a in (args if isinstance(args, tuple) else (args,)) if isinstance(a, int)]
    widths = []
    for m in _PERCENT_SPEC.finditer(fmt):
        for g in m.groups():
            if g == "*":
                widths.append(max((abs(i) for i in ints), default=0))
            elif g:
                widths.append(int(g))
    return len(fmt) + _check_widths(widths, "a % format width")


def _spec_widths(spec: str) -> list[int]:
    return [int(d) for d in re.findall(r"\d+", spec)]


class _BoundedFormatter(SandboxedFormatter):
    def format_field(self, value, format_spec: str):
        _check_widths(_spec_widths(format_spec), "a format width")
        return super().format_field(value, format_spec)


class _BoundedEscapeFormatter(SandboxedEscapeFormatter):
    def format_field(self, value, format_spec: str):
        _check_widths(_spec_widths(format_spec), "a format width")
        return super().format_field(value, format_spec)


def _replace_estimate(s: str, old, new, count=-1) -> int:
    if not (isinstance(old, str) and isinstance(new, str)):
        return 0
    n = s.count(old) if old else len(s) + 1
    if count is not None and count >= 0:
        n = min(n, count)
    return len(s) + n * max(0, len(new) - len(old))


def _join_estimate(sep: str, items: list) -> int:
    return sum(len(x) if isinstance(x, str) else len(str(x)) for x in items) + len(sep) * max(0, len(items) - 1)


def _width_arg(args, kwargs, name: str, default: int = 0) -> int:
    w = args[0] if args else kwargs.get(name, default)
    return w if isinstance(w, int) else 0


# The operations whose result an *argument* sizes (a width, a count, a fill) or whose result grows
# with the product of their inputs: each gets an estimate of the characters (or items) it would
# build before it runs. Every other str method and Jinja filter builds at most a few times what it
# reads (tests/unit/test_templates_hostile.py checks that this table and _LINEAR_* cover str and
# jinja2's filters completely). Estimators take (self-or-value, args, kwargs) and return
# (estimated size, args to call with).
def _est_pad(s, args, kwargs):
    return max(len(s), _width_arg(args, kwargs, "width")), args


def _est_expandtabs(s, args, kwargs):
    return len(s) + s.count("\t") * _width_arg(args, kwargs, "tabsize", 8), args


def _est_replace(s, args, kwargs):
    count = args[2] if len(args) > 2 else kwargs.get("count", -1)
    return (_replace_estimate(s, *args[:2], count) if len(args) >= 2 else len(s)), args


def _est_join(s, args, kwargs):
    if not args:
        return 0, args
    items = list(args[0])
    _check_size(len(items), "join()")
    return _join_estimate(s, items), (items, *args[1:])


def _est_translate(s, args, kwargs):
    table = args[0] if args else None
    longest = max((len(v) for v in table.values() if isinstance(v, str)), default=1) if isinstance(table, dict) else 1
    return len(s) * longest, args


_STR_ESTIMATES: dict[str, Callable] = {
    "ljust": _est_pad, "rjust": _est_pad, "center": _est_pad, "zfill": _est_pad,
    "expandtabs": _est_expandtabs, "replace": _est_replace, "join": _est_join, "translate": _est_translate,
}
# str methods whose result is at most a few times the string (format/format_map: widths are checked
# field by field by _BoundedFormatter; encode: at most 4 bytes a character)
_LINEAR_STR_METHODS = frozenset({
    "capitalize", "casefold", "count", "encode", "endswith", "find", "format", "format_map", "index",
    "isalnum", "isalpha", "isascii", "isdecimal", "isdigit", "isidentifier", "islower", "isnumeric",
    "isprintable", "isspace", "istitle", "isupper", "lower", "lstrip", "maketrans", "partition",
    "removeprefix", "removesuffix", "rfind", "rindex", "rpartition", "rsplit", "rstrip", "split",
    "splitlines", "startswith", "strip", "swapcase", "title", "upper",
})


def _f_center(value, args, kwargs):
    return max(len(str(value)), _width_arg(args, kwargs, "width", 80)), args


def _f_indent(value, args, kwargs):
    s = str(value)
    width = args[0] if args else kwargs.get("width", 4)
    w = width if isinstance(width, int) else len(str(width))
    return len(s) + (s.count("\n") + 1) * w, args


def _f_format(value, args, kwargs):
    return _percent_estimate(str(value), tuple(args)), args


def _f_join(value, args, kwargs):
    items = list(value)
    _check_size(len(items), "join")
    sep = args[0] if args else kwargs.get("d", "")
    return _join_estimate(str(sep), items), args, items


def _f_replace(value, args, kwargs):
    count = args[2] if len(args) > 2 else kwargs.get("count")
    return (_replace_estimate(str(value), *args[:2], count) if len(args) >= 2 else 0), args


def _f_batch_slice(value, args, kwargs):
    n = args[0] if args else kwargs.get("linecount", kwargs.get("slices", 0))
    return max(_size(value), n if isinstance(n, int) else 0), args


def _f_sum(value, args, kwargs):
    items = list(value)
    start = args[1] if len(args) > 1 else kwargs.get("start", 0)
    if isinstance(start, (int, float)) and not isinstance(start, bool):
        return 0, args, items
    # adding sequences copies the running total each time: quadratic
    total = sum(_size(x) for x in items) + _size(start)
    _check_size(total, "sum")
    return 0, args, items, len(items) * total


def _f_wordwrap(value, args, kwargs):
    s = str(value)
    width = args[0] if args else kwargs.get("width", 79)
    wrap = args[3] if len(args) > 3 else kwargs.get("wrapstring") or "\n"
    width = width if isinstance(width, int) and width > 0 else 1
    return len(s) + (len(s) // width + 1) * len(str(wrap)), args


def _f_striptags(value, args, kwargs):
    s = str(value)
    # its tag pattern rescans the rest of the text from every '<' without a '>'
    return 0, args, None, s.count("<") * len(s)


_FILTER_ESTIMATES: dict[str, Callable] = {
    "center": _f_center, "indent": _f_indent, "format": _f_format, "join": _f_join, "replace": _f_replace,
    "batch": _f_batch_slice, "slice": _f_batch_slice, "sum": _f_sum, "wordwrap": _f_wordwrap,
    "striptags": _f_striptags,
}
# filters whose result is at most a few times what they read (per item for map/select/...: those
# call the bounded filters and tests by name)
_LINEAR_FILTERS = frozenset({
    "abs", "attr", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "filesizeformat",
    "first", "float", "forceescape", "groupby", "int", "items", "last", "length", "list", "lower", "map", "max",
    "min", "pprint", "random", "reject", "rejectattr", "reverse", "round", "safe", "select", "selectattr",
    "sort", "string", "title", "tojson", "trim", "truncate", "unique", "upper", "urlencode", "urlize",
    "wordcount", "xmlattr", "unquote",
})


def _bounded_filter(name: str, func: Callable) -> Callable:
    estimate = _FILTER_ESTIMATES.get(name)

    def run(*args, **kwargs):
        # filters marked pass_context/pass_eval_context/pass_environment get that first
        lead = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0
        head, value, rest = args[:lead], args[lead] if len(args) > lead else None, args[lead + 1:]
        work = 0
        if estimate is not None:
            size, rest, *more = estimate(value, rest, kwargs)
            if more and more[0] is not None:
                value = more[0]
            if len(more) > 1:
                work = more[1]
            _check_size(size, f"filter {name}")
        _charge_op((value, *rest), work=work)
        result = func(*head, value, *rest, **kwargs) if len(args) > lead else func(*head, **kwargs)
        _budget().charge(work=_size(result))
        return _built(result, f"filter {name}")

    if getattr(func, "jinja_pass_arg", None) is not None:
        run.jinja_pass_arg = func.jinja_pass_arg  # type: ignore[attr-defined]
    return run


def _bounded_test(func: Callable) -> Callable:
    def run(*args, **kwargs):
        _charge_op(args)
        return func(*args, **kwargs)

    if getattr(func, "jinja_pass_arg", None) is not None:
        run.jinja_pass_arg = func.jinja_pass_arg  # type: ignore[attr-defined]
    return run


@pass_context
def _loop_items(context, iterable, literal: int = 0):
    """A ``{% for %}`` loop's iterable: every item is a step, and the loop body's own text."""
    _charge_op((iterable,))
    for item in iterable:
        _budget().charge(work=1 + literal, chars=literal)
        yield item


@pass_context
def _charge_text(context, value, literal: int = 0) -> str:
    """A macro or call block run once more: its own text counts as produced."""
    _budget().charge(work=1 + literal, chars=literal)
    return ""


@pass_context
def _read(context, value):
    """An operand of a comparison (``in``, ``==``, ``<``...): the characters it reads count."""
    _charge_op((value,))
    return value


@pass_context
def _concatenated(context, value):
    """The result of ``~``: checked like every value built."""
    _budget().charge(work=_size(value))
    return _built(value, "a ~ concatenation")


_INTERNAL_FILTERS = {"dagllm_loop": _loop_items, "dagllm_text": _charge_text, "dagllm_read": _read,
                     "dagllm_concat": _concatenated}
# nodes of which a template file may not hold any: (node type, what the author wrote, why)
_LOADER_NODES = ((nodes.Include, "{% include %}"), (nodes.Extends, "{% extends %}"),
                 (nodes.Import, "{% import %}"), (nodes.FromImport, "{% from ... import %}"))


def _own_text(body: list[nodes.Node]) -> int:
    """Characters of literal text in ``body`` outside nested loops, macros and call blocks."""
    total = 0
    stack = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, nodes.TemplateData):
            total += len(node.data)
        elif not isinstance(node, (nodes.For, nodes.Macro, nodes.CallBlock)):
            stack.extend(node.iter_child_nodes())
    return total


def _internal(node: nodes.Expr, name: str, *args) -> nodes.Filter:
    return nodes.Filter(node, name, [nodes.Const(a) for a in args], [], None, None, lineno=node.lineno)


class _Meter(NodeTransformer):
    """Rewrite a parsed template so its loops, macros, comparisons and concatenations are metered."""

    def visit_For(self, node: nodes.For) -> nodes.For:
        self.generic_visit(node)
        node.iter = _internal(node.iter, "dagllm_loop", _own_text(node.body))
        return node

    def _metered_body(self, node):
        self.generic_visit(node)
        charge = nodes.ExprStmt(_internal(nodes.Const(None, lineno=node.lineno), "dagllm_text", _own_text(node.body)),
                                lineno=node.lineno)
        node.body = [charge, *node.body]
        return node

    visit_Macro = visit_CallBlock = _metered_body

    def visit_Compare(self, node: nodes.Compare) -> nodes.Compare:
        self.generic_visit(node)
        node.expr = _internal(node.expr, "dagllm_read")
        for op in node.ops:
            op.expr = _internal(op.expr, "dagllm_read")
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Filter:
        self.generic_visit(node)
        return _internal(node, "dagllm_concat")


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox with every operation metered against :data:`LIMITS` (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**", "%", "+", "//"})

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.globals["range"] = bounded_range
        # lorem ipsum is no training text, and its length is set by its arguments
        self.globals.pop("lipsum", None)

    def bound_filters_and_tests(self) -> None:
        self.filters = {n: _bounded_filter(n, f) for n, f in self.filters.items()}
        self.filters.update(_INTERNAL_FILTERS)
        self.tests = {n: _bounded_test(f) for n, f in self.tests.items()}

    def call_binop(self, context, operator: str, left, right):
        estimate = 0
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, bytes, list, tuple)) and isinstance(n, int):
                    estimate = len(seq) * max(n, 0)
                    _check_size(estimate, "a * repetition")
            if isinstance(left, int) and isinstance(right, int) and \
                    left.bit_length() + right.bit_length() > LIMITS.int_bits + 1:
                raise TemplateLimitError(f"a product would be an integer of over {LIMITS.int_bits:,} bits")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
                bits = right * abs(left).bit_length()
                if bits > LIMITS.int_bits + right:
                    raise TemplateLimitError(f"a power would be an integer of about {bits:,} bits, over the "
                                             f"limit of {LIMITS.int_bits:,}")
        elif operator == "%" and isinstance(left, str):
            estimate = _percent_estimate(left, right)
            _check_size(estimate, "a % format")
        elif operator == "+" and isinstance(left, _SIZED) and isinstance(right, _SIZED):
            estimate = _size(left) + _size(right)
            _check_size(estimate, "a + concatenation")
        _charge_op((left, right), estimate)
        return _built(self.binop_table[operator](left, right), f"the {operator} operator")

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - the sandbox's signature
        method = getattr(__obj, "__wrapped__", __obj)
        target = getattr(method, "__self__", None)
        estimate = 0
        if isinstance(target, str) and isinstance(method, types.BuiltinMethodType):
            est = _STR_ESTIMATES.get(method.__name__)
            if est is not None:
                estimate, args = est(target, args, kwargs)
                _check_size(estimate, f"str.{method.__name__}()")
        _charge_op((target, *args, *kwargs.values()), estimate)
        result = super().call(__context, __obj, *args, **kwargs)
        _budget().charge(work=_size(result))
        return _built(result, f"a call of {getattr(method, '__name__', 'a function')}")

    def getattr(self, obj, attribute):
        _budget().charge(work=1)
        return super().getattr(obj, attribute)

    def getitem(self, obj, argument):
        result = super().getitem(obj, argument)
        _budget().charge(work=1 + _size(result))
        return result

    def wrap_str_format(self, value):
        if not isinstance(value, (types.MethodType, types.BuiltinMethodType)) or \
                value.__name__ not in ("format", "format_map") or not isinstance(value.__self__, str):
            return None
        f_self = value.__self__
        formatter = (_BoundedEscapeFormatter(self, escape=f_self.escape) if isinstance(f_self, Markup)
                     else _BoundedFormatter(self))
        is_map = value.__name__ == "format_map"

        def wrapper(*args, **kwargs):
            if is_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one positional argument")
                args, kwargs = (), args[0]
            return type(f_self)(formatter.vformat(f_self, args, kwargs))

        wrapper.__name__ = value.__name__
        return wrapper


def _mark_value(value) -> str:
    """Wrap every ``{{ ... }}`` output in the value sentinels (see :mod:`dagllm.data.korean`)."""
    text = str(value)
    if korean.OPEN in text or korean.CLOSE in text:
        raise ValueError("a value holds U+FDD0/U+FDD1, the noncharacters the renderer reserves to mark "
                         "where values end; remove them from the source row")
    _budget().charge(work=len(text), chars=len(text))
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
    tree = _Meter().visit(env.parse(source))
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
        Jinja does not have; a private attribute (``__class__``); a variable the task does not have.
    """
    env = environment()
    try:
        tree = _parse(source)
    except TemplateSyntaxError as exc:
        return [f"not valid Jinja: {exc.message} (line {exc.lineno})"]
    problems: list[str] = []
    for kind, tag in _LOADER_NODES:
        if any(True for _ in tree.find_all(kind)):
            problems.append(f"{tag} needs a template loader, which templates do not have: a template is one "
                            "self-contained text; write the shared text into it")
    if any(n.recursive for n in tree.find_all(nodes.For)):
        problems.append("a recursive {% for %} loop: fields are flat text; write the loop without `recursive`")
    for name in sorted({n.name for n in tree.find_all(nodes.Filter) if n.name not in env.filters}):
        problems.append(f"no filter named {name!r} (Jinja's filters and unquote)")
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
        with _metered(variables):
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
