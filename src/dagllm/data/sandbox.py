"""The bounded Jinja sandbox templates render in: every operation metered against :data:`LIMITS`.

A team's task file is untrusted code of a small language. :class:`BoundedEnvironment` is Jinja's
immutable sandbox (no private attributes, no mutation of values) with its work bounded per record
and template part: ``range()`` sizes, steps (loop items, calls, filters, tests, operators, attribute
reads, outputs), the characters every operation reads and builds, the size of every value built and
of the text produced, and integer sizes. Operations whose result an argument sizes (a width, a
count, a fill) are estimated *before* they run; :class:`Meter` rewrites a parsed template so loops,
macro bodies, comparisons and ``~`` are charged too. Over a limit, :class:`TemplateLimitError` is
raised inside Jinja; :mod:`dagllm.data.templating` reports it as a ``RenderError`` naming the task,
template, record and the limit. :data:`LOADER_NODES` are the tags a template cannot use (it has no
loader: one template is one self-contained text).
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from jinja2 import nodes, pass_context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

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


def budget() -> _Budget:
    return _BUDGET.get() or _UNMETERED


@contextmanager
def metered(variables: dict):
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
    limit = budget().max_chars
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
    b = budget()
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
        budget().charge(work=_size(result))
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
        budget().charge(work=1 + literal, chars=literal)
        yield item


@pass_context
def _charge_text(context, value, literal: int = 0) -> str:
    """A macro or call block run once more: its own text counts as produced."""
    budget().charge(work=1 + literal, chars=literal)
    return ""


@pass_context
def _read(context, value):
    """An operand of a comparison (``in``, ``==``, ``<``...): the characters it reads count."""
    _charge_op((value,))
    return value


@pass_context
def _concatenated(context, value):
    """The result of ``~``: checked like every value built."""
    budget().charge(work=_size(value))
    return _built(value, "a ~ concatenation")


_INTERNAL_FILTERS = {"dagllm_loop": _loop_items, "dagllm_text": _charge_text, "dagllm_read": _read,
                     "dagllm_concat": _concatenated}
# nodes of which a template file may not hold any: (node type, what the author wrote, why)
LOADER_NODES = ((nodes.Include, "{% include %}"), (nodes.Extends, "{% extends %}"),
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


class Meter(NodeTransformer):
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
        budget().charge(work=_size(result))
        return _built(result, f"a call of {getattr(method, '__name__', 'a function')}")

    def getattr(self, obj, attribute):
        budget().charge(work=1)
        return super().getattr(obj, attribute)

    def getitem(self, obj, argument):
        result = super().getitem(obj, argument)
        budget().charge(work=1 + _size(result))
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
