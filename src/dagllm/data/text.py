"""Text normal forms and measures shared by the quality gate, dedup and decontamination (numpy).

- ``normalise``: NFKC, casefold, whitespace collapsed: the key of an exact duplicate.
- ``compact`` / ``skeleton`` / ``skeleton_words``: the forms decontamination compares.
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

import numpy as np

_WS = re.compile(r"\s+")


def normalise(text: str) -> str:
    """NFKC, casefold and collapse whitespace: equal output means an exact duplicate."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def compact(text: str) -> str:
    """``normalise`` without any whitespace: Korean spacing varies between copies of a text."""
    return _WS.sub("", unicodedata.normalize("NFKC", text).casefold())


_NOT_ALNUM = re.compile(r"[\W_]+")


def skeleton(text: str) -> str:
    """Letters and digits only (NFKC, casefolded): copies that differ in spacing or punctuation are equal."""
    return _NOT_ALNUM.sub("", unicodedata.normalize("NFKC", text).casefold())


_NOT_ALNUM_OR_SPACE = re.compile(r"[^\w\s]|_")


def skeleton_words(text: str) -> list[str]:
    """The skeletons of the whitespace-separated words of ``text`` (words of punctuation only are gone)."""
    return _NOT_ALNUM_OR_SPACE.sub("", unicodedata.normalize("NFKC", text).casefold()).split()


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


