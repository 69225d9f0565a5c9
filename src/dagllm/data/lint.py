"""The Korean lint of the catalog: form (particles, answer formats) and meaning, per rendered record.

Every template of a task is rendered (through the project's renderer) on the task's own sample
and on real rows read through the project's readers. A record is read from its *probe* render
(:func:`dagllm.data.templating.probe_parts`), where every substituted value is still wrapped in
:data:`korean.OPEN`/:data:`korean.CLOSE`, so a rule can tell the template's own words from a value.
The rules, by their ids (:data:`RULES`; the report counts each per task and per template):

- ``particles``: a particle written right after a value (or a quoted literal) that disagrees with
  its last character (:mod:`dagllm.data.korean`); counted per particle;
- ``literal``: a particle written literally after a value (not as a ``{이/가}`` marker), flagged even
  when it happens to agree, since the next value may end differently; counted per particle;
- ``format``: what the instruction names is not what the output gives: a list of quoted answers
  (``"예" 또는 "아니요"로``; an option with ``…`` is a pattern, ``'물음: …'``), ``예 또는 아니요로``,
  a ``보기:``/``선택지:`` line, numbered options (``1번과 2번 중``, ``몇 번``), one of the options
  copied (``그대로 쓰세요``), a reason (``왜``, ``이유``, ``근거``), a sentence (``한 문장으로``: an
  output ending in the template's words ends like one);
- ``repeat``: the output, normalised (:func:`normalise`: NFC, whitespace, punctuation, quotes and
  symbols removed), equals the whole input or one value of at least 2 (normalised) characters shown in the
  instruction or input; an output that is one of the record's answer choices (a closed label, an
  option copied) is a choice, not a repeat;
- ``giveaway``: a short answer (one word, or words not ending like a sentence, no ``.?!`` at the
  end, one line) begins the input or a value shown in the instruction or input, followed by a
  particle, a space or punctuation (``김치`` and ``김치는 배추나…``); answer choices are exempt;
- ``form``: the instruction (its own words) asks for a number of sentences (``한 문장으로`` 1,
  ``한두`` 1-2, ``두`` 2, ``두세`` 2-3, ``세`` 3, ``서너`` 3-4, then ``문장으로``/``문장 이내로``/``문장
  정도로``) and the whole output has another count (:func:`sentences`), or asks for a number
  (``숫자로``, ``수치로``, ``몇 점``, ``점수를``/``점수로``) and the output has no digit;
- ``labels_stated``: a template of a closed-label task (``labels``, not ``open_ended``) whose own
  words (instruction and input source, every Jinja tag removed) do not contain every answer of its
  :func:`answer_space` (the verbalisations, the ``labels`` values and ``label_default``, for an
  ``{{ answer }}`` output); answers only 예 and 아니요 are exempt when the words name 아니요 and
  예/네, or hold a question (``?``) without a question word (무엇, 어떤, 어느, 왜, 몇, ...). Checked
  once per template, counted once per template;
- ``doubled_quotes``: a quote of the template directly against a quote of the same kind that
  begins or ends the value it wraps (``""완벽한 재연출이군""``), read at the value sentinels;
- ``identical_pair``: two different variables shown in the instruction or input whose values, of at
  least 5 characters, are the same after whitespace is collapsed (a question pair of one string);
- ``connective``: a sentence with 왜냐하면 (or 왜냐면) that does not end in 때문 (+ a copula:
  때문이다, 때문입니다, 때문이에요, 때문일 것이다, ...): in the whole output, and in the instruction
  and input where the 왜냐하면 is the template's own word; a quoted ``"왜냐하면"`` is a mention.

Sentences (:func:`sentences`) end at a line break or at ``.``, ``?``, ``!`` (a run of them) followed
by a space, a closing quote or bracket, the end, or (after Hangul) Hangul; not inside a quotation
of the line (when its quotes pair up), not in a decimal (``3.5점``), an ellipsis (``..``, ``…``), a
single-letter abbreviation (``U.S.``) or an address (``naver.com``).

``dagllm catalog lint`` prints the per-task table; ``tests/unit/test_korean_lint.py`` runs it over
every committed task and every real row in ``make test`` (:func:`lint_catalog`, one worker process
per CPU). The rendered point of the quality gate counts the same record rules
(:func:`count_particle_errors`).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from dagllm.data import korean
from dagllm.data.catalog import Catalog, GroupPairs, Task, Template
from dagllm.data.templating import (RenderError, pair_within_groups, prepare, probe_parts, render_choices,
                                    template_variables)

RULES = ("particles", "literal", "format", "repeat", "giveaway", "form", "labels_stated", "doubled_quotes",
         "identical_pair", "connective")
MEANING_RULES = ("repeat", "giveaway", "form", "doubled_quotes", "identical_pair", "connective")  # per record

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


def _option_fits(option: str, output: str) -> bool:
    """``output`` is the quoted ``option``; an option with ``…`` (or ``...``) is a pattern: ``'물음: …'``."""
    if "…" not in option and "..." not in option:
        return output == option
    pattern = ".+".join(re.escape(piece) for piece in re.split(r"…|\.\.\.", option))
    return re.fullmatch(pattern, output, re.S) is not None


def format_findings(instruction: str, output: str, choices: list[str], output_ends_literal: bool) -> list[str]:
    """What the instruction names but the output does not give (an empty list when it fits)."""
    out = output.strip()
    problems: list[str] = []
    m = _QUOTED_LIST.search(instruction)
    if m:
        options = _QUOTED.findall(m.group(0))
        if not any(_option_fits(o, out) for o in options):
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


# --- meaning rules -------------------------------------------------------------------------------

_VALUE = re.compile(korean.OPEN + "([^" + korean.CLOSE + "]*)" + korean.CLOSE)
_QUOTE_CHARS = "\"'“”‘’「」『』"
_CLOSERS = "\"'”’」』)]》〉"
_OPENER_OF = {"”": "“", "’": "‘", "」": "「", "』": "『"}


_NOT_TEXT = re.compile(r"[\W_]+")  # whitespace, punctuation, quotes, symbols


def normalise(text: str) -> str:
    """NFC, without whitespace, punctuation, quote characters and symbols (what ``repeat`` compares)."""
    return _NOT_TEXT.sub("", unicodedata.normalize("NFC", text))


def _collapse(text: str) -> str:
    return " ".join(text.split())


def values(probe: str) -> list[str]:
    """The substituted values of a probe render, in order."""
    return [korean.strip_sentinels(v) for v in _VALUE.findall(probe)]


def own_words(probe: str, fill: str = "…") -> str:
    """A probe render with every value replaced by ``fill`` and the markers resolved."""
    return korean.resolve(_VALUE.sub(fill, probe)).strip()


def _hangul(c: str) -> bool:
    return "가" <= c <= "힣"


def _quotes_pair(line: str) -> bool:
    straight = [c for i, c in enumerate(line) if c == '"' or (c == "'" and not _inside_word(line, i))]
    return (straight.count('"') % 2 == 0 and straight.count("'") % 2 == 0
            and all(line.count(o) == line.count(c) for c, o in _OPENER_OF.items()))


def _inside_word(line: str, i: int) -> bool:  # don't, 90's: an apostrophe, not a quote
    return 0 < i < len(line) - 1 and line[i - 1].isascii() and line[i - 1].isalpha() and line[i + 1].isalpha()


def _is_end(line: str, i: int, j: int) -> bool:
    """Whether the run of ``.?!`` at ``line[i:j + 1]`` ends a sentence."""
    run, prev = line[i:j + 1], line[i - 1] if i else ""
    nxt = line[j + 1] if j + 1 < len(line) else ""
    if not nxt.strip() or nxt in _CLOSERS:
        if run == "." and prev.isascii() and prev.isalpha() and (i < 2 or not line[i - 2].isalpha()):
            return not line[j + 1:].strip()  # U.S. 정부: a single-letter abbreviation
        return set(run) != {"."} or len(run) == 1 or not line[j + 1:].strip()  # "..": an ellipsis
    return _hangul(nxt) and _hangul(prev)  # 했다.왜냐하면; not 3.5, naver.com


def _line_sentences(line: str) -> list[str]:
    quotes = _quotes_pair(line)
    parts, stack, start, i = [], [], 0, 0
    while i < len(line):
        c = line[i]
        if quotes and c in _QUOTE_CHARS and not (c == "'" and _inside_word(line, i)):
            opener = _OPENER_OF.get(c, c)
            if stack and stack[-1] == opener and (c in _OPENER_OF or c in "\"'"):
                stack.pop()
            elif c not in _OPENER_OF:
                stack.append(c)
        elif c in ".?!" and not stack:
            j = i
            while j + 1 < len(line) and line[j + 1] in ".?!":
                j += 1
            if _is_end(line, i, j):
                k = j + 1
                while k < len(line) and line[k] in _CLOSERS:
                    k += 1
                parts.append(line[start:k])
                start = i = k
                continue
            i = j
        i += 1
    parts.append(line[start:])
    return parts


def sentences(text: str) -> list[str]:
    """The sentences of ``text`` (see the module docstring), stripped; pieces without a letter or
    digit are not sentences."""
    return [s.strip() for line in text.splitlines() for s in _line_sentences(line)
            if any(ch.isalnum() for ch in s)]


# form: the number of sentences an instruction asks for, and a number
_SENTENCE_COUNT = re.compile(r"(?<![가-힣])(한두|두세|서너|세네|한|두|세)\s*(?:개의\s*)?문장\s*(?:으로|이내로|이내에|정도로|안으로)")
_COUNTS = {"한": (1, 1), "한두": (1, 2), "두": (2, 2), "두세": (2, 3), "세": (3, 3), "서너": (3, 4), "세네": (3, 4)}
_NUMBER_ASKED = re.compile(r"숫자로|수치로|몇\s*점|점수(?:를|로)")


def form_findings(instruction: str, output: str) -> list[str]:
    """``form``: the sentence count or the number the instruction's own words ask for and the output lacks."""
    problems = []
    m = _SENTENCE_COUNT.search(instruction)
    if m:
        low, high = _COUNTS[m.group(1)]
        n = len(sentences(output))
        if not low <= n <= high:
            want = f"{low}" if low == high else f"{low}-{high}"
            problems.append(f"asks for {want} sentence(s) ({m.group(0)!r}) but the output has {n}")
    if _NUMBER_ASKED.search(instruction) and not re.search(r"\d", output):
        problems.append(f"asks for a number but the output {output[:40]!r} has no digit")
    return problems


# connective: 왜냐하면 ... 때문이다
_BECAUSE = re.compile(r"(?<![\"'“‘「『])왜냐(?:하)?면(?![\"'”’」』])")  # quoted ("왜냐하면"으로): a mention
_BECAUSE_END = re.compile(r"때문(?:[이입일][가-힣\s]{0,10})?$")
_PLACES = 0x1000  # values told apart in a part (private-use characters stand for them)
_PLACE = re.compile("[\ue000-\uefff]")


def _ends_with_because(sentence: str) -> bool:
    return bool(_BECAUSE_END.search(sentence.rstrip(" .?!…~" + _CLOSERS)))


def connective_findings(probe: dict[str, str]) -> list[str]:
    """``connective``: sentences with 왜냐하면 not ending in 때문(이다): the whole output, and the
    instruction and input where 왜냐하면 is the template's own word."""
    problems = []
    if _BECAUSE.search(probe["output"]):
        for s in sentences(korean.resolve(probe["output"])):
            if _BECAUSE.search(s) and not _ends_with_because(s):
                problems.append(f"output: {s[-40:]!r} has 왜냐하면 but does not end in 때문이다")
    for part in ("instruction", "input"):
        if not _BECAUSE.search(probe[part]):
            continue
        held = values(probe[part])[:_PLACES]
        numbered = iter(range(_PLACES))
        words = korean.resolve(_VALUE.sub(lambda _m: chr(0xE000 + next(numbered, _PLACES - 1)), probe[part]))
        for s in sentences(words):
            if _BECAUSE.search(s):
                whole = _PLACE.sub(lambda m: _held(held, m.group(0)), s)
                if not _ends_with_because(whole):
                    problems.append(f"{part}: {whole[-40:]!r} has 왜냐하면 but does not end in 때문이다")
    return problems


# giveaway: a short answer at the start of the text it is asked about
_PARTICLE_AFTER = sorted({f for pair in korean.PAIRS for f in pair}
                         | {"의", "에", "에서", "에게", "께", "께서", "도", "만", "란", "이란", "부터", "까지", "보다",
                            "처럼", "입니다", "이자"}, key=len, reverse=True)
_AFTER_ANSWER = re.compile(r"(?:" + "|".join(_PARTICLE_AFTER) + r")?(?=[\s\W_]|$)")


def _is_short(answer: str) -> bool:
    s = answer.rstrip(" " + _CLOSERS)
    if not s or "\n" in s or s[-1] in ".?!":
        return False
    return " " not in s or not re.search(r"(?:다|요|죠|까|니다|네)$", s)


def _begins(text: str, answer: str) -> bool:
    """``text`` starts with ``answer`` followed by a particle, a space or punctuation."""
    t = unicodedata.normalize("NFC", text).lstrip()
    if not t.startswith(answer) or len(t) == len(answer):
        return False
    return bool(_AFTER_ANSWER.match(t, len(answer)))


def meaning_findings(task: Task, tpl: Template, probe: dict[str, str], variables: dict,
                     choices: Callable[[], list[str]]) -> list[tuple[str, str]]:
    """The record rules of :data:`MEANING_RULES` that ``probe`` (a probe render) breaks, as ``(rule, message)``.

    Args:
        task: the record's task.
        tpl: the template rendered.
        probe: :func:`probe_parts` of the record (values wrapped in the sentinels).
        variables: the record's prepared variables (``identical_pair`` reads which variable is which).
        choices: the record's answer choices, called only when a finding may be exempt.
    """
    found: list[tuple[str, str]] = []
    output = korean.resolve(probe["output"]).strip()
    prompt_values = values(probe["instruction"]) + values(probe["input"])
    text = korean.resolve(probe["input"]).strip()
    for rule, message in (("repeat", _repeat(output, text, prompt_values)),
                          ("giveaway", _giveaway(output, text, prompt_values))):
        if message and output not in choices():
            found.append((rule, message))
    instruction = own_words(probe["instruction"])
    found += [("form", p) for p in form_findings(instruction, output)]
    found += [("doubled_quotes", p) for p in doubled_quotes(probe)]
    pair = identical_pair(tpl, variables, prompt_values)
    if pair:
        found.append(("identical_pair", pair))
    found += [("connective", p) for p in connective_findings(probe)]
    return found


def _repeat(output: str, text: str, prompt_values: list[str]) -> str | None:
    out = normalise(output)
    if not out:
        return None
    if len(text) >= len(out) and out == normalise(text):
        return f"the output repeats the input {output[:40]!r}"
    for v in prompt_values:
        if len(v) < max(len(out), 2):  # normalising never lengthens a text
            continue
        nv = normalise(v)
        if len(nv) >= 2 and out == nv:
            return f"the output repeats a value shown in the prompt {v[:40]!r}"
    return None


def _giveaway(output: str, text: str, prompt_values: list[str]) -> str | None:
    answer = unicodedata.normalize("NFC", output)
    if not _is_short(answer):
        return None
    for t in (text, *prompt_values):
        if _begins(t, answer):
            return f"the answer {output[:30]!r} begins the text it is asked about: {t.strip()[:40]!r}"
    return None


_QUOTE_CLASS = "[" + re.escape(_QUOTE_CHARS) + "]"
_BLOCKS = "[" + korean.BLOCK_OPEN + korean.BLOCK_CLOSE + "]*"
_DOUBLED = re.compile(_QUOTE_CLASS + _BLOCKS + korean.OPEN + r"\s*" + _QUOTE_CLASS + "|"
                      + _QUOTE_CLASS + r"\s*" + korean.CLOSE + _BLOCKS + _QUOTE_CLASS)


_QUOTE_FAMILY = {**dict.fromkeys("\"“”", "double"), **dict.fromkeys("'‘’", "single"), **dict.fromkeys("「」", "corner"),
                 **dict.fromkeys("『』", "white corner")}


def doubled_quotes(probe: dict[str, str]) -> list[str]:
    """``doubled_quotes``: a template quote against a quote of the same kind (double, single, corner)
    at the edge of the value it wraps; ``"'빈곤법' 개선"`` nests two kinds and is not flagged."""
    found = []
    for part in ("instruction", "input", "output"):
        for m in _DOUBLED.finditer(probe[part]):
            a, b = m.group(0)[0], m.group(0)[-1]
            if _QUOTE_FAMILY[a] == _QUOTE_FAMILY[b]:
                around = korean.strip_sentinels(probe[part][max(m.start() - 12, 0):m.end() + 12])
                found.append(f"{part}: the template quotes a value that is quoted already ({around!r})")
    return found


def identical_pair(tpl: Template, variables: dict, prompt_values: list[str]) -> str | None:
    """``identical_pair``: two variables shown in the prompt with one value (whitespace collapsed, >= 5 chars)."""
    if len(prompt_values) < 2:
        return None
    seen: dict[str, str] = {}
    shown = {_collapse(v) for v in prompt_values}
    for name in sorted(_prompt_variables(tpl)):
        value = variables.get(name)
        if not isinstance(value, str):
            continue
        v = _collapse(value)
        if len(v) < 5 or v not in shown:
            continue
        if v in seen:
            return f"{seen[v]} and {name} are the same text {v[:40]!r}"
        seen[v] = name
    return None


def _prompt_variables(tpl: Template) -> frozenset[str]:
    return _variables_of(tpl.instruction, tpl.input)


@lru_cache(maxsize=4096)
def _variables_of(instruction: str, input_: str) -> frozenset[str]:
    return (template_variables(instruction) | template_variables(input_)) - {"label", "answer"}


# labels_stated: a closed-label template states its answer space
_JINJA_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_QUESTION_WORD = re.compile(r"무엇|뭐|뭘|무슨|어떤|어떻게|어느|어디|언제|누구|누가|왜|몇|얼마")


def template_words(tpl: Template) -> str:
    """The template's own words in its prompt: instruction and input sources, every Jinja tag removed."""
    return _JINJA_TAG.sub(" ", f"{tpl.instruction}\n{tpl.input}")


def verbalisations(task: Task) -> list[str]:
    """The distinct answers of a closed-label task (``labels`` values, then ``label_default``)."""
    return list(dict.fromkeys([*task.labels.values(), *([task.label_default] if task.label_default else [])]))


def answer_space(task: Task, tpl: Template) -> list[str]:
    """The closed answers a template asks for, which its prompt must state ([] when none).

    A template of a closed-label task whose output reads only ``label``/``answer`` answers with its
    output rendered per label: when these are short (labels, not sentences: ``예``, ``1번``, the
    verbalisations for ``{{ answer }}``) they are its answer space; sentences state what they say.
    An output that also reads other fields answers with the verbalisations when it reads ``answer``;
    otherwise (explicit ``choices``, an option copied) the options are values the prompt shows.
    """
    if not task.classification or tpl.choices is not None:
        return []
    names = template_variables(tpl.output)
    if names <= {"label", "answer"}:
        try:
            outs = render_choices(task, tpl, {}, "labels_stated")
        except RenderError:
            return []  # the render stage reports it
        return outs if all(_is_short(o) for o in outs) else []
    return verbalisations(task) if "answer" in names else []


def unstated_labels(task: Task, tpl: Template) -> list[str]:
    """``labels_stated``: the answers of :func:`answer_space` the template's own words do not state."""
    answers = answer_space(task, tpl)
    if not answers:
        return []
    words = _collapse(korean.MARKER.sub(" ", template_words(tpl)))
    if set(answers) <= {"예", "아니요"} and _yes_no_prompt(words):
        return []
    return [a for a in answers if _collapse(a) not in words]


def _yes_no_prompt(words: str) -> bool:
    if "아니요" in words and re.search(r"(?<![가-힣])(?:예|네)(?![가-힣])", words):
        return True
    return any(s.endswith("?") and not _QUESTION_WORD.search(s) for s in sentences(words))


def _held(held: list[str], place: str) -> str:
    i = ord(place) - 0xE000
    return held[i] if i < len(held) else place


# --- per task ------------------------------------------------------------------------------------

@dataclass
class TaskLint:
    """What the lint found in one task: counts per rule (:data:`RULES`) and per template.

    ``findings[rule]`` counts particles for ``particles`` and ``literal``, templates for
    ``labels_stated`` and records for the others; ``templates[template_id][rule]`` the same per template.
    """

    task: str
    rows: int = 0            # rows rendered (sample + real)
    real_rows: int = 0
    read_from: str = ""      # the directory the real rows came from ("" when none)
    records: int = 0          # rows x templates
    sites: int = 0            # particles after a value (or quoted literal) checked
    markers: int = 0          # of which written as markers
    format_checked: int = 0   # records whose instruction names an answer format
    findings: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RULES, 0))
    templates: dict[str, dict[str, int]] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.findings.values())

    @property
    def disagreements(self) -> int:
        """Particles that do not agree with the value before them."""
        return self.findings["particles"]

    @property
    def literal(self) -> int:
        """Particles written literally after a value."""
        return self.findings["literal"]

    @property
    def format_errors(self) -> int:
        return self.findings["format"]

    def flag(self, rule: str, template_id: str, example: str, n: int = 1) -> None:
        """Count ``n`` findings of ``rule`` in ``template_id``, keeping a few examples per rule."""
        self.findings[rule] += n
        per = self.templates.setdefault(template_id, {})
        per[rule] = per.get(rule, 0) + n
        kept = self.examples.setdefault(rule, [])
        text = f"{template_id}: {example}"
        if len(kept) < 3 and text not in kept:
            kept.append(text)

    def to_dict(self) -> dict:
        return {"task": self.task, "ok": self.ok, "rows": self.rows, "real_rows": self.real_rows,
                "read_from": self.read_from,
                "records": self.records, "sites": self.sites, "markers": self.markers,
                "disagreements": self.disagreements, "literal": self.literal, "format_checked": self.format_checked,
                "format_errors": self.format_errors, "findings": dict(self.findings),
                "templates": {t: dict(sorted(c.items())) for t, c in sorted(self.templates.items())},
                "examples": self.examples}


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
    ``labels_stated`` is read once per template.
    """
    rows = list(rows)
    result = TaskLint(task.id, real_rows=len(rows))
    for tpl in task.templates:
        missing = unstated_labels(task, tpl)
        if missing:
            result.flag("labels_stated", tpl.id, f"the prompt does not state {' / '.join(missing)}")
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
    """Check one record (``tpl`` rendered from ``variables``) against every record rule."""
    result.records += 1
    probe = probe_parts(task, tpl, variables, rid)
    for site in record_sites(probe):
        result.sites += 1
        result.markers += site.marker
        if not site.agrees:
            result.flag("particles", tpl.id, f"{site.before[-12:]!r} + {site.written} (should be {site.expected})")
        elif site.value and not site.marker:
            result.flag("literal", tpl.id, f"literal particle {site.written!r} after a value; write a marker "
                                           f"{{{'/'.join(_pair_for(site))}}}")
    # the rules read the template's own words: a value (a comment asking 왜) names no format
    instruction = own_words(probe["instruction"])
    output = korean.resolve(probe["output"]).strip()
    ends_literal = not probe["output"].rstrip().endswith(korean.CLOSE)
    choices = render_choices(task, tpl, variables, rid)
    problems = format_findings(instruction, output, choices, ends_literal)
    if _names_format(instruction):
        result.format_checked += 1
    if problems:
        result.flag("format", tpl.id, problems[0])
    for rule, message in _first_per_rule(meaning_findings(task, tpl, probe, variables, lambda: choices)):
        result.flag(rule, tpl.id, f"{rid}: {message}")


def _first_per_rule(found: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A record counts once per rule (the first message kept)."""
    return list({rule: message for rule, message in reversed(found)}.items())[::-1]


def _pair_for(site: korean.Site) -> tuple[str, str]:
    for c, v in korean.PAIRS:
        if site.written in (c, v):
            return c, v
    return site.written, site.written


def _names_format(instruction: str) -> bool:
    return any(r.search(instruction) for r in (_QUOTED_LIST, _YES_NO, _OPTIONS_LINE, _NUMBERED, _WHICH_NUMBER,
                                               _COPY, _REASON, _SENTENCE))


# --- real rows -----------------------------------------------------------------------------------

def _task_files(task: Task, catalog: Catalog, mirror: Path) -> Iterator[tuple[str, object, Path]]:
    for ts in task.sources:
        if ts.source not in catalog.sources:
            continue
        for sf in catalog.source(ts.source).files:
            path = Path(mirror) / sf.path
            if not sf.benchmark and sf.split in ts.splits and path.is_file():
                yield ts.source, sf, path


def real_rows(task: Task, catalog: Catalog, mirror: Path, limit: int | None) -> Iterator[tuple[str, dict, str | None]]:
    """Up to ``limit`` rows per file of the task's (non-benchmark) source files found in ``mirror``,
    read through the project's readers."""
    from dagllm.data.readers import READERS, Row

    for source, sf, path in _task_files(task, catalog, mirror):
        items = (i for i in READERS[sf.reader](path) if isinstance(i, Row))
        for n, row in enumerate(itertools.islice(items, limit)):
            yield f"{source}/{sf.path}/{row.line}/{n}", dict(row.fields), row.label


def _lint_one(catalog: Catalog, task_id: str, mirror: Path | None, limit: int | None,
              fallback: Path | None = None) -> TaskLint:
    """One task's lint (top level, so a spawned worker process can run it)."""
    task = catalog.task(task_id)
    where = next((d for d in (mirror, fallback) if d is not None and any(_task_files(task, catalog, d))), None)
    result = lint_task(task, list(real_rows(task, catalog, where, limit)) if where is not None else [])
    result.read_from = str(where) if where is not None else ""
    return result


def _cost(catalog: Catalog, task_id: str, mirror: Path | None) -> int:
    """A task's expected lint time: its source bytes times its templates (the largest go first)."""
    task = catalog.task(task_id)
    size = sum(p.stat().st_size for _, _, p in _task_files(task, catalog, mirror)) if mirror is not None else 0
    return (size + 1) * len(task.templates)


def lint_catalog(catalog: Catalog, mirror: Path | None, limit: int | None = 200,
                 tasks: Iterable[str] | None = None, jobs: int | None = None,
                 fallback: Path | None = None) -> list[TaskLint]:
    """Lint every task (or ``tasks``) on its sample and up to ``limit`` real rows per file (None: all).

    Args:
        catalog: the catalog whose tasks are linted.
        mirror: a directory in the mirror layout, or None for the task samples alone.
        limit: real rows read per source file (None: every row).
        tasks: the task ids (default: every task, sorted).
        jobs: worker processes, one task at a time each (default ``os.cpu_count()``; 1: in this
            process). The results are the same and in the same order for any ``jobs``.
        fallback: where a task none of whose files is in ``mirror`` reads its rows (the bundled
            sample files); ``TaskLint.read_from`` says which directory each task read.
    """
    ids = list(tasks) if tasks is not None else sorted(catalog.tasks)
    for tid in ids:
        catalog.task(tid)  # an unknown task is an error before any work
    jobs = min(jobs or os.cpu_count() or 1, len(ids))
    if jobs <= 1:
        return [_lint_one(catalog, tid, mirror, limit, fallback) for tid in ids]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    order = sorted(ids, key=lambda t: -_cost(catalog, t, mirror))
    # fork where there is one (a calling script needs no __main__ guard); the worker is top level,
    # so spawn works as well
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context(method)) as pool:
        futures = {tid: pool.submit(_lint_one, catalog, tid, mirror, limit, fallback) for tid in order}
        return [futures[tid].result() for tid in ids]


_COLUMNS = {"particles": "particle", "literal": "literal", "format": "format", "repeat": "repeat",
            "giveaway": "giveaway", "form": "form", "labels_stated": "labels", "doubled_quotes": "quotes",
            "identical_pair": "pair", "connective": "connect"}


def table(results: list[TaskLint]) -> str:
    """The per-task table: counts, findings per rule, then per failing template its rules and examples."""
    head = ("task", "rows", "real", "records", "sites", "markers", *_COLUMNS.values())
    lines = ["  ".join(f"{h:>8}" if i else f"{h:<36}" for i, h in enumerate(head))]
    for r in results:
        vals = (r.task, r.rows, r.real_rows, r.records, r.sites, r.markers, *(r.findings[k] for k in _COLUMNS))
        lines.append("  ".join(f"{v:>8}" if i else f"{v:<36}" for i, v in enumerate(vals)))
        for tpl, counts in sorted(r.templates.items()):
            lines.append(f"    {tpl}: " + ", ".join(f"{k} {counts[k]}" for k in RULES if counts.get(k)))
        lines += [f"    - {e}" for rule in RULES for e in r.examples.get(rule, [])]
    return "\n".join(lines)


def to_json(results: list[TaskLint]) -> str:
    return json.dumps([r.to_dict() for r in results], ensure_ascii=False, indent=1)


# --- the quality gate's count ------------------------------------------------------------------

@dataclass
class ParticleCount:
    """Particle disagreements and lint findings of rendered records, found by rendering them again
    from their rows.

    The particle counts (``errors``, ``unverified``, ``per_task``, ``rendered``, ``by_markers``) read
    the records of the templates that may write a disagreeing particle (:func:`may_disagree`); the
    lint counts (``lint*``) read every record: the record rules of :data:`MEANING_RULES` and
    ``labels_stated`` (each record of a template that does not state its labels).
    """

    errors: list[int]        # per record, in the order given
    unverified: int = 0      # records whose re-render differs from the record (not checked)
    per_task: dict[str, int] = field(default_factory=dict)
    rendered: int = 0        # records rendered again and read
    by_markers: int = 0      # records whose template writes every particle after a value as a marker
    lint: list[int] = field(default_factory=list)  # per record: the lint rules it breaks
    lint_checked: int = 0    # records read by the lint rules
    lint_rendered: int = 0   # of which rendered again (the others read from their text)
    lint_from_text: int = 0  # of which read from their text: no rule needed the values
    lint_unverified: int = 0  # records the re-render does not reproduce (no lint rule read)
    lint_per_task: dict[str, dict[str, int]] = field(default_factory=dict)      # task -> rule -> records
    lint_per_template: dict[str, dict[str, int]] = field(default_factory=dict)  # template -> rule -> records
    lint_examples: dict[str, list[str]] = field(default_factory=dict)           # rule -> a few findings

    def flag(self, task_id: str, tpl_id: str, rid: str, rule: str, message: str) -> None:
        """Count one record of ``task_id``/``tpl_id`` breaking ``rule``."""
        for key, per in ((task_id, self.lint_per_task), (tpl_id, self.lint_per_template)):
            counts = per.setdefault(key, {})
            counts[rule] = counts.get(rule, 0) + 1
        kept = self.lint_examples.setdefault(rule, [])
        if len(kept) < 3:
            kept.append(f"{task_id}/{tpl_id}/{rid}: {message}")

    def lint_report(self) -> dict:
        """The lint part of the gate's report (``particles.json``, key ``lint``)."""
        per_rule = {r: sum(c.get(r, 0) for c in self.lint_per_task.values()) for r in (*MEANING_RULES, "labels_stated")}
        return {"records_with_findings": sum(1 for n in self.lint if n), "findings": sum(self.lint),
                "per_rule": per_rule, "checked": self.lint_checked, "rendered_again": self.lint_rendered,
                "from_text": self.lint_from_text, "unverified": self.lint_unverified,
                "per_task": {t: dict(sorted(c.items())) for t, c in sorted(self.lint_per_task.items())},
                "per_template": {t: dict(sorted(c.items())) for t, c in sorted(self.lint_per_template.items())},
                "examples": self.lint_examples}


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


@dataclass(frozen=True)
class _Plan:
    """What the gate must read of a template's records (worked out once per template)."""

    risky: bool                   # may write a particle that disagrees (particles need the re-render)
    unstated: tuple[str, ...]     # labels_stated: the answers its prompt does not state
    always: bool                  # a rule reads its own words (form, 왜냐하면): every record rendered again
    quotes: bool                  # a quote of it stands against a value: doubled_quotes possible
    pair: bool                    # two or more variables in its prompt: identical_pair possible
    choices: tuple[str, ...] | None  # its answers when they do not depend on the row (else None)


_QUOTE_AT_VALUE = re.compile(_QUOTE_CLASS + r"(?:\{%.*?%\})*\{\{|\}\}(?:\{%.*?%\})*" + _QUOTE_CLASS, re.S)
_QUOTES_MEET = re.compile(_QUOTE_CLASS + r"\s*" + _QUOTE_CLASS)


def _asks_form(source: str) -> bool:
    """Whether the words of an instruction source (every Jinja tag a space, a marker either form)
    can ask for a sentence count or a number (``form``)."""
    words = _JINJA_TAG.sub(" ", source)
    return any(r.search(korean.MARKER.sub(lambda m, g=g: m.group(g), words))
               for r in (_SENTENCE_COUNT, _NUMBER_ASKED) for g in (1, 2))


def _plan(task: Task, tpl: Template | None) -> _Plan:
    if tpl is None:
        return _Plan(True, (), True, True, True, None)
    sources = (tpl.instruction, tpl.input, tpl.output)
    choices = None
    if tpl.choices is None and template_variables(tpl.output) <= {"label", "answer"}:
        try:
            choices = tuple(render_choices(task, tpl, {}, "gate"))
        except RenderError:
            pass  # read per record
    # a 왜냐하면 of the output is read from the record's text; one of the prompt needs its values
    return _Plan(risky=may_disagree(tpl), unstated=tuple(unstated_labels(task, tpl)),
                 always=_asks_form(tpl.instruction) or any("왜냐" in src for src in (tpl.instruction, tpl.input)),
                 quotes=any(_QUOTE_AT_VALUE.search(src) for src in sources),
                 pair=len(_prompt_variables(tpl)) >= 2, choices=choices)


def _needs_values(plan: _Plan, parts: tuple[str, str, str], variables: Callable[[], dict | None]) -> bool:
    """Whether a record rule may find something that only the value boundaries can tell.

    Each test is implied by its rule's finding (a repeated value is in the prompt, a giveaway answer
    too, doubled quotes meet in the text, an identical pair holds two equal variables), so a record
    that passes none of them breaks no rule that reads the values.
    """
    if plan.always:
        return True
    instruction, text, output = (p or "" for p in parts)
    if plan.quotes and any(_QUOTES_MEET.search(p) for p in (instruction, text, output)):
        return True
    raw = output.strip()
    if raw and (plan.choices is None or raw not in plan.choices):
        out = unicodedata.normalize("NFC", raw)
        prompt = unicodedata.normalize("NFC", f"{instruction}\n{text}")
        norm = normalise(out)
        if (norm and norm in normalise(prompt)) or (_is_short(out) and out in prompt):
            return True
    if plan.pair:
        v = variables()
        values_ = [_collapse(x) for x in (v or {}).values() if isinstance(x, str)]
        long = [x for x in values_ if len(x) >= 5]
        return v is None or len(set(long)) < len(long)
    return False


def count_particle_errors(records: Iterable[tuple[str, str, str, tuple[str, str, str]]], canonical,
                          catalog: Catalog, seed: int) -> ParticleCount:
    """Count each record's particle errors and lint findings, rendering it again from its canonical row
    where a rule needs to know where its values are.

    Particles are read in the records of templates that can write one that disagrees
    (:func:`may_disagree`). The lint rules (:data:`MEANING_RULES`, ``labels_stated``) are read in
    every record, each at most once per record: from the re-render when the template's own words
    ask for something (a sentence count, a number, 왜냐하면) or a cheap test on the record's text
    says a value may be involved (:func:`_needs_values`), else from the record's text (only
    ``connective`` of an output can fire then). A record the re-render does not reproduce is
    ``lint_unverified`` (and ``unverified`` when its particles were to be read).

    Args:
        records: ``(task, template_id, record_id, (instruction, input, output))`` per record.
        canonical: the canonical table (``id``, ``source``, ``split``, ``benchmark``, ``fields``, ``label``).
        catalog: the catalog the records were rendered from.
        seed: the render seed (group pairing depends on it).
    """
    records = list(records)
    count = ParticleCount(errors=[0] * len(records), lint=[0] * len(records))
    rows_of: dict[str, dict[str, tuple[dict, str | None]]] = {}
    templates = {(t.id, tpl.id): tpl for t in catalog.tasks.values() for tpl in t.templates}
    plans: dict[tuple[str, str], _Plan] = {}
    for i, (task_id, tpl_id, rid, parts) in enumerate(records):
        task = catalog.tasks.get(task_id)
        if task is None:  # the gate's task expectation reports it
            count.unverified += 1
            count.lint_unverified += 1
            continue
        key = (task_id, tpl_id)
        tpl = templates.get(key)
        if key not in plans:
            plans[key] = _plan(task, tpl)
        plan = plans[key]
        if not plan.risky:
            count.by_markers += 1  # every particle after a value is chosen from it: nothing can disagree

        def rows(task=task, task_id=task_id) -> dict:
            if task_id not in rows_of:
                rows_of[task_id] = _task_rows(task, canonical, seed)
            return rows_of[task_id]

        def variables(task=task, rid=rid, rows=rows) -> dict | None:
            try:
                v = prepare(task, *rows()[rid], rid) if rid in rows() else None
            except RenderError:
                return None
            return v if isinstance(v, dict) else None

        if plan.risky or _needs_values(plan, parts, variables):
            found = _read_again(count, i, task, tpl, rid, parts, rows(), plan.risky)
            if found is None:
                continue
        else:
            count.lint_from_text += 1  # the output as one value: what looks like a marker in it stays
            output = korean.OPEN + (parts[2] or "") + korean.CLOSE
            found = [("connective", p) for p in connective_findings({"instruction": "", "input": "", "output": output})]
        count.lint_checked += 1
        found = _first_per_rule(found)
        if plan.unstated:
            found.append(("labels_stated", f"the prompt does not state {' / '.join(plan.unstated)}"))
        count.lint[i] = len(found)
        for rule, message in found:
            count.flag(task_id, tpl_id, rid, rule, message)
    return count


def _read_again(count: ParticleCount, i: int, task: Task, tpl: Template | None, rid: str,
                parts: tuple[str, str, str], rows: dict, risky: bool) -> list[tuple[str, str]] | None:
    """Render record ``i`` again: count its particles (when ``risky``) and return its lint findings
    (None when the re-render does not reproduce it)."""
    variables, probe = _render_again(task, tpl, rows, rid, parts)
    if probe is None:
        count.lint_unverified += 1
        count.unverified += risky
        return None
    count.lint_rendered += 1
    if risky:
        count.rendered += 1
        n = sum(not s.agrees for s in record_sites(probe))
        count.errors[i] = n
        if n:
            count.per_task[task.id] = count.per_task.get(task.id, 0) + n
    return meaning_findings(task, tpl, probe, variables, lambda: _choices(task, tpl, variables, rid))


def _render_again(task: Task, tpl: Template | None, rows: dict, rid: str,
                  parts: tuple[str, str, str]) -> tuple[dict | None, dict[str, str] | None]:
    """The record's variables and probe render, or ``(None, None)`` when its row does not give it."""
    try:
        variables = prepare(task, *rows[rid], rid) if tpl is not None and rid in rows else "missing"
        probe = None if isinstance(variables, str) else probe_parts(task, tpl, variables, rid)
    except RenderError:
        return None, None
    if probe is None or any(korean.resolve(probe[p]).strip() != (text or "")
                            for p, text in zip(probe, parts, strict=True)):
        return None, None  # not what this template renders from this row: nothing to check
    return variables, probe


def _choices(task: Task, tpl: Template, variables: dict, rid: str) -> list[str]:
    try:
        return render_choices(task, tpl, variables, rid)
    except RenderError:
        return []


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
