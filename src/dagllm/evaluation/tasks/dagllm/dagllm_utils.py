"""Functions the task YAMLs name with ``!function dagllm_utils.NAME`` (lm-eval resolves them here).

The F1 aggregations delegate to :mod:`dagllm.evaluation.metrics`, the one metric code that also
scores the report and the reference predictors.
"""

from __future__ import annotations

from dagllm.evaluation import metrics

CONNECTORS = {"원인": "왜냐하면", "결과": "그래서"}


def copa_doc_to_text(doc: dict) -> str:
    """Premise plus the connector (왜냐하면 for 원인, 그래서 for 결과); each alternative continues it."""
    return f"{doc['premise'].strip()} {CONNECTORS[doc['question'].strip()]}"


def copa_doc_to_choice(doc: dict) -> list[str]:
    """The two alternatives, in the order of the label (1, 2)."""
    return [doc["alternative_1"], doc["alternative_2"]]


def hellaswag_doc_to_choice(doc: dict) -> list[str]:
    """The four endings, in the order of the label (0-3)."""
    return [doc[f"ending_{i}"] for i in range(1, 5)]


# The F1 aggregations the task YAMLs name (``!function dagllm_utils.macro_f1``): one code for every protocol.
macro_f1 = metrics.macro_f1_of_pairs
binary_f1 = metrics.binary_f1_of_pairs
