"""Text measures: proxy tokens, Hangul ratio, n-gram hashes, MinHash estimates and LSH."""

import random

import numpy as np
import pytest

from dagllm.data.hashing import char_ngram_hashes, clusters, lsh_bands, lsh_pairs, minhash
from dagllm.data.text import compact, hangul_ratios, normalise, token_counts


def test_normalise_and_compact():
    assert normalise("  ＡＢＣ\u3000가나\n\n다 ") == "abc 가나 다"
    assert compact("가 나\t다 ＡＢ") == "가나다ab"


def test_token_counts_and_hangul():
    assert token_counts(["안녕하세요, 세계 abc 123!", "", "가나 다", "x_y"]).tolist() == [6, 0, 2, 3]
    assert hangul_ratios(["안녕 abc", "", "가나다", "12 + 3"]).tolist() == pytest.approx([0.4, 0.0, 1.0, 0.0])


def test_ngram_hashes_are_per_text_and_stable():
    h, off = char_ngram_hashes(["가나다라", "가나다", "나다라", "가"], 3)
    assert off.tolist() == [0, 2, 3, 4, 4]
    assert h[0] == h[2] and h[1] == h[3] and h[0] != h[1]
    again, _ = char_ngram_hashes(["나다라"], 3)
    assert again[0] == h[3]
    padded, poff = char_ngram_hashes(["가", ""], 3, pad_short=True)
    assert poff.tolist() == [0, 1, 2] and padded[0] != padded[1]


def _jaccard(a: str, b: str, n: int = 5) -> float:
    sa, sb = ({t[i:i + n] for i in range(len(t) - n + 1)} for t in (a, b))
    return len(sa & sb) / len(sa | sb)


def test_minhash_estimates_jaccard_and_lsh_finds_near_pairs():
    rng = random.Random(0)
    syl = [chr(0xAC00 + i) for i in range(0, 11172, 13)]
    base = ["".join(rng.choices(syl, k=200)) for _ in range(30)]
    edited = [b[:190] + "".join(rng.choices(syl, k=10)) for b in base[:10]]  # about 0.9 similar
    texts = base + edited
    h, off = char_ngram_hashes(texts, 5)
    sig = minhash(h, off, 128, seed=1)
    for i in range(10):
        est = float((sig[i] == sig[30 + i]).mean())
        assert abs(est - _jaccard(texts[i], texts[30 + i])) < 0.12
    assert float((sig[0] == sig[1]).mean()) < 0.1
    pairs = lsh_pairs(sig, 0.8)
    assert pairs == [(i, 30 + i) for i in range(10)]
    roots = clusters(len(texts), pairs)
    assert roots[35] == 5 and roots[5] == 5 and roots[6] == 6


def test_lsh_bands_put_the_curve_below_the_threshold():
    b, r = lsh_bands(64, 0.85)
    assert b * r == 64 and (1 / b) ** (1 / r) <= 0.85
    assert lsh_bands(64, 0.5) == (16, 4)
    assert np.isclose((1 / 16) ** (1 / 4), 0.5)
