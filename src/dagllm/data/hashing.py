"""Hashing for near-duplicate and overlap search (vectorised with numpy).

- ``char_ngram_hashes``: 64-bit hashes of every character n-gram of many texts at once.
- ``minhash`` / ``lsh_pairs``: MinHash signatures (multiply-shift hash family) and banded LSH.
- ``clusters``: union-find over the candidate pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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
