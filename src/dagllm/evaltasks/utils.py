"""Functions the task YAMLs name with ``!function utils.NAME`` (lm-eval resolves them here)."""

from __future__ import annotations

CONNECTORS = {"원인": "왜냐하면", "결과": "그래서"}


def copa_doc_to_text(doc: dict) -> str:
    """Premise plus the connector; each alternative is the continuation."""
    return f"{doc['premise'].strip()} {CONNECTORS[doc['question'].strip()]}"


def copa_doc_to_choice(doc: dict) -> list[str]:
    return [doc["alternative_1"], doc["alternative_2"]]


def macro_f1(items: list[tuple[int, int]]) -> float:
    """Macro-F1 over (gold, prediction) pairs, as the KIT-19 table reports it."""
    from sklearn.metrics import f1_score

    golds, preds = zip(*items)
    return float(f1_score(golds, preds, average="macro"))
