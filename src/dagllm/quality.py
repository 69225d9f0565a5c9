"""Text measures shared by the quality gate, dedup and decontamination (vectorised with numpy).

- ``normalise``: NFKC, casefold, whitespace collapsed: the key of an exact duplicate.
- ``token_counts``: a cheap tokenizer proxy: runs of Hangul, of Latin letters, of digits, of other
  letters, and single punctuation marks. Polyglot-Ko's BPE gives roughly 1-2 tokens per such run on Korean text, so bounds
  on this count are bounds on model tokens within a small factor, without loading a tokenizer.
- ``hangul_ratios``: Hangul (syllables and jamo) among the non-space characters.
- ``char_ngram_hashes``: 64-bit hashes of every character n-gram of many texts at once.
- ``minhash`` / ``lsh_pairs``: MinHash signatures (multiply-shift hash family) and banded LSH.
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


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads the bits of a polynomial hash."""
    with np.errstate(over="ignore"):
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return h ^ (h >> np.uint64(31))


def char_ngram_hashes(texts: Sequence[str], n: int, pad_short: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every character n-gram of each text.

    Args:
        texts: the texts.
        n: n-gram length in characters.
        pad_short: give a text shorter than ``n`` one n-gram (itself, NUL-padded) instead of none.

    Returns:
        ``(hashes, offsets)``: text ``i`` owns ``hashes[offsets[i]:offsets[i + 1]]`` (uint64).
    """
    if pad_short:
        texts = [t if len(t) >= n else t.ljust(n, "\0") for t in texts]
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    counts = np.maximum(lengths - n + 1, 0)
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    total = int(offsets[-1])
    if total == 0:
        return np.zeros(0, dtype=np.uint64), offsets
    cps = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    m = len(cps) - n + 1
    h = np.zeros(m, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):  # polynomial rolling hash over all texts at once (wraps mod 2**64)
            h = h * np.uint64(1_000_003) + cps[k:k + m]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    # position j of text i is starts[i] + j, for j < counts[i]; n-grams crossing texts are skipped
    pos = np.repeat(starts - offsets[:-1], counts) + np.arange(total)
    return _mix(h[pos]), offsets


def minhash(hashes: np.ndarray, offsets: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """MinHash signatures, one row per text (every text must own at least one hash).

    The permutations are the multiply-shift family ``(a*x + b) >> 32`` with odd 64-bit ``a``
    applied to the (already mixed) 64-bit n-gram hashes.
    """
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    sig = np.empty((len(offsets) - 1, num_perm), dtype=np.uint32)
    starts = offsets[:-1]
    v = np.empty_like(hashes)
    with np.errstate(over="ignore"):
        for j in range(num_perm):
            np.multiply(hashes, a[j], out=v)
            np.add(v, b[j], out=v)
            np.right_shift(v, np.uint64(32), out=v)
            sig[:, j] = np.minimum.reduceat(v, starts)
    return sig


def lsh_bands(num_perm: int, threshold: float) -> tuple[int, int]:
    """``(bands, rows)`` with ``bands * rows == num_perm`` whose S-curve midpoint
    ``(1/bands) ** (1/rows)`` is the highest one at or below ``threshold`` (recall first)."""
    options = [(num_perm // r, r) for r in range(1, num_perm + 1) if num_perm % r == 0]
    below = [(b, r) for b, r in options if (1 / b) ** (1 / r) <= threshold]
    return max(below, key=lambda br: (1 / br[0]) ** (1 / br[1])) if below else options[-1]


def lsh_pairs(sig: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs ``(i, j)`` (``i < j``) sharing an LSH bucket whose estimated Jaccard is >= threshold.

    Each bucket member is compared with the bucket's first member only: clusters are then joined
    by union-find, which keeps the candidate count linear in the number of records.
    """
    n, num_perm = sig.shape
    bands, rows = lsh_bands(num_perm, threshold)
    with np.errstate(over="ignore"):
        powers = np.uint64(0x9E3779B97F4A7C15) ** np.arange(rows, dtype=np.uint64)
    pairs: set[tuple[int, int]] = set()
    for band in range(bands):
        with np.errstate(over="ignore"):
            keys = _mix(sig[:, band * rows:(band + 1) * rows].astype(np.uint64) @ powers)
        order = np.argsort(keys, kind="stable")
        sk = keys[order]
        same = np.flatnonzero(sk[1:] == sk[:-1]) + 1
        if not len(same):
            continue
        run_start = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
        first = order[run_start[np.searchsorted(run_start, same, side="right") - 1]]
        other = order[same]
        est = (sig[first] == sig[other]).mean(axis=1)
        for i, j in zip(first[est >= threshold].tolist(), other[est >= threshold].tolist(), strict=True):
            pairs.add((min(i, j), max(i, j)))
    return sorted(pairs)


def clusters(n: int, pairs: list[tuple[int, int]]) -> np.ndarray:
    """Union-find over ``pairs``: the smallest index of each record's cluster."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in pairs:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return np.array([find(i) for i in range(n)], dtype=np.int64)
