"""The protocol's metrics and reference predictors: one code path for the model and for chance.

Every metric takes gold and predicted choice indices. The model's predictions come from its
per-choice log-likelihoods (:func:`predict`); reference predictors produce predictions directly.

- ``acc``: fraction of items whose prediction is the gold choice.
- ``acc_norm``: accuracy of the argmax of log-likelihood divided by the choice's length in
  characters (Korean syllables are 3 bytes in UTF-8, so a byte length would weigh them
  differently; lm-eval 0.4.13's own ``acc_norm`` is also by characters and ``acc_bytes`` by bytes).
- ``macro_f1``: unweighted mean of per-class F1 over the classes present in gold or predictions
  (scikit-learn's ``average="macro"``, as the KoBEST configs of lm-eval compute it).
- ``f1``: binary F1 of the positive class (choice 1): KLUE STS.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Sequence

import numpy as np

METRICS = ("acc", "acc_norm", "macro_f1", "f1")


def predict(loglikelihoods: Sequence[float]) -> int:
    """Index of the most likely choice (the first one on ties)."""
    return int(np.argmax(np.asarray(loglikelihoods, dtype=float)))


def predict_char_norm(loglikelihoods: Sequence[float], choices: Sequence[str]) -> int:
    """Index of the largest log-likelihood per character of the choice text.

    Raises:
        ValueError: the lengths differ or a choice is empty (no length to divide by).
    """
    if len(loglikelihoods) != len(choices):
        raise ValueError(f"{len(loglikelihoods)} log-likelihoods for {len(choices)} choices")
    lengths = np.array([len(c) for c in choices], dtype=float)
    if (lengths == 0).any():
        raise ValueError(f"empty choice among {list(choices)!r}: acc_norm needs a length")
    return int(np.argmax(np.asarray(loglikelihoods, dtype=float) / lengths))


def accuracy(golds: Sequence[int], preds: Sequence[int]) -> float:
    """Fraction of equal pairs."""
    _same_length(golds, preds)
    return float(np.mean(np.asarray(golds) == np.asarray(preds)))


def macro_f1(golds: Sequence[int], preds: Sequence[int]) -> float:
    """Mean per-class F1 over the classes present in ``golds`` or ``preds``."""
    from sklearn.metrics import f1_score

    _same_length(golds, preds)
    return float(f1_score(list(golds), list(preds), average="macro", zero_division=0))


def binary_f1(golds: Sequence[int], preds: Sequence[int], positive: int = 1) -> float:
    """F1 of the ``positive`` class (0 when it is never predicted nor gold)."""
    from sklearn.metrics import f1_score

    _same_length(golds, preds)
    return float(f1_score(list(golds), list(preds), average="binary", pos_label=positive, zero_division=0))


def macro_f1_of_pairs(items: Sequence[tuple[int, int]]) -> float:
    """Macro-F1 over (gold, prediction) pairs: the aggregation lm-eval calls (task YAMLs)."""
    golds, preds = zip(*items, strict=True)
    return macro_f1(list(golds), list(preds))


def binary_f1_of_pairs(items: Sequence[tuple[int, int]]) -> float:
    """F1 of the positive class (choice 1) over (gold, prediction) pairs: KLUE STS's aggregation."""
    golds, preds = zip(*items, strict=True)
    return binary_f1(list(golds), list(preds))


def score(names: Sequence[str], golds: Sequence[int], preds: Sequence[int],
          preds_norm: Sequence[int] | None = None) -> dict[str, float]:
    """The metrics ``names`` of one predictor; ``acc_norm`` uses ``preds_norm`` (default ``preds``)."""
    fns = {
        "acc": lambda: accuracy(golds, preds),
        "acc_norm": lambda: accuracy(golds, preds if preds_norm is None else preds_norm),
        "macro_f1": lambda: macro_f1(golds, preds),
        "f1": lambda: binary_f1(golds, preds),
    }
    unknown = [n for n in names if n not in fns]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {', '.join(METRICS)}")
    return {n: fns[n]() for n in names}


def majority_label(golds: Sequence[int]) -> int:
    """The most frequent gold choice (the smallest index on ties)."""
    if not len(golds):
        raise ValueError("no gold labels: the majority label is undefined")
    counts = Counter(int(g) for g in golds)
    return min(counts, key=lambda k: (-counts[k], k))


def random_predictions(n_items: int, n_choices: int, seed: int, task: str) -> list[int]:
    """Uniform random choices, reproducible from ``seed`` and the task name."""
    rng = np.random.default_rng([seed, zlib.crc32(task.encode("utf-8"))])
    return [int(x) for x in rng.integers(0, n_choices, size=n_items)]


def reference_predictions(task: str, golds: Sequence[int], split_golds: Sequence[int], n_choices: int,
                          seed: int) -> dict[str, list[int]]:
    """Predictions of every reference predictor for the scored items ``golds``.

    ``majority`` always answers the most frequent gold label of the whole split (``split_golds``),
    ``constant_k`` always answers choice k (one per choice), ``random`` is seeded per task.
    """
    n = len(golds)
    refs = {"majority": [majority_label(split_golds)] * n}
    refs.update({f"constant_{k}": [k] * n for k in range(n_choices)})
    refs["random"] = random_predictions(n, n_choices, seed, task)
    return refs


def collapsed_to(preds: Sequence[int]) -> int | None:
    """The one choice a predictor always gives, or None when it gives more than one."""
    distinct = set(int(p) for p in preds)
    return distinct.pop() if len(distinct) == 1 else None


def _same_length(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"{len(a)} gold labels but {len(b)} predictions")
    if not len(a):
        raise ValueError("no items to score")
