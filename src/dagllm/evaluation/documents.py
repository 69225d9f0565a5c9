"""Benchmark documents as the Hugging Face loaders give them (protocol ``kit19``).

KIT-19's numbers were computed on the rows of ``skt/kobest_v1`` and ``klue``, not on a cleaned-up
version of them. This module reads the same raw files the same way, so the prompts of
:mod:`dagllm.evaluation.tasks.kit19` see the same characters:

- KoBEST TSVs: ``pandas.read_csv(sep="\\t")`` with its default (CSV) quoting, so ``""빙고""`` inside a
  quoted field is ``"빙고"``; rows with an empty field dropped (``dropna``) as the loader does; the
  columns renamed to the loader's names; nothing stripped, WiC's ``[..]`` brackets kept; SentiNeg
  test = ``Text`` / ``Label`` (the negated sentence).
- KLUE JSON arrays: the items' strings as they are (STS gold = ``labels.binary-label``, YNAT gold =
  the topic's index in KLUE's label order).

The training path reads the same files through :mod:`dagllm.data.readers` (stripped, brackets removed);
the two never share rows, so a change to one cannot move the other.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from dagllm.data.readers.klue import YNAT_TOPICS


class DocumentError(ValueError):
    """A benchmark file does not have the loader's columns or labels; the message names file and row."""


def _tsv(path: Path, columns: dict[str, str]) -> pd.DataFrame:
    """The loader's frame: read as pandas does, rows with an empty field dropped, columns renamed."""
    df = pd.read_csv(path, sep="\t")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DocumentError(f"{path}: missing column(s) {', '.join(missing)} (has {', '.join(map(str, df.columns))})")
    return df.dropna()[list(columns)].rename(columns=columns)


def _bool_label(path: Path) -> Callable[[int, object], int]:
    def conv(row: int, value: object) -> int:
        # pandas parses True/TRUE/False/FALSE columns as bool; anything else is not a label the loader knows
        if isinstance(value, (bool, np.bool_)):
            return int(value)
        raise DocumentError(f"{path} data row {row}: label {value!r} is not True/False")
    return conv


def _int_label(allowed: range, offset: int = 0) -> Callable[[Path], Callable[[int, object], int]]:
    def make(path: Path) -> Callable[[int, object], int]:
        def conv(row: int, value: object) -> int:
            try:
                v = int(value) - offset  # type: ignore[call-overload]
            except (TypeError, ValueError):
                v = None
            if v is None or v not in allowed:
                raise DocumentError(f"{path} data row {row}: label {value!r} is not one of "
                                    f"{[a + offset for a in allowed]}")
            return v
        return conv
    return make


def _kobest(columns: dict[str, str], label: Callable[[Path], Callable[[int, object], int]]
            ) -> Callable[[Path], list[dict]]:
    """A KoBEST loader: ``columns`` maps the file's names to the loader's (``ID`` -> ``id`` if present)."""
    text = [v for k, v in columns.items() if v not in ("id", "label")]

    def load(path: Path) -> list[dict]:
        conv = label(path)
        docs = []
        for idx, r in _tsv(path, columns).iterrows():
            doc = {"id": str(r["id"]) if "id" in r else str(idx), **{k: str(r[k]) for k in text}}
            doc["label"] = conv(int(idx) + 1, r["label"])  # data row, counted from 1 after the header
            docs.append(doc)
        return docs
    return load


def _klue_items(path: Path) -> list[dict]:
    items = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(items, list):
        raise DocumentError(f"{path}: expected a JSON array of items")
    return items


def _klue_sts(path: Path) -> list[dict]:
    docs = []
    for i, item in enumerate(_klue_items(path)):
        try:
            docs.append({"id": item["guid"], "sentence1": item["sentence1"], "sentence2": item["sentence2"],
                         "label": int(item["labels"]["binary-label"])})
        except (KeyError, TypeError, ValueError) as exc:
            raise DocumentError(f"{path} item {i}: needs guid, sentence1, sentence2, labels.binary-label ({exc!r})") from None
    return docs


def _klue_ynat(path: Path) -> list[dict]:
    docs = []
    for i, item in enumerate(_klue_items(path)):
        try:
            docs.append({"id": item["guid"], "title": item["title"], "label": YNAT_TOPICS.index(item["label"])})
        except (KeyError, TypeError, ValueError) as exc:
            raise DocumentError(f"{path} item {i}: needs guid, title and a label in {list(YNAT_TOPICS)} ({exc!r})") from None
    return docs


LOADERS: dict[str, Callable[[Path], list[dict]]] = {
    "kobest_boolq": _kobest({"ID": "id", "Text": "paragraph", "Question": "question", "Answer": "label"},
                            _bool_label),
    "kobest_copa": _kobest({"ID": "id", "sentence": "premise", "question": "question", "1": "alternative_1",
                            "2": "alternative_2", "Answer": "label"}, _int_label(range(2), offset=1)),
    "kobest_hellaswag": _kobest({"context": "context", **{f"choice{i}": f"ending_{i}" for i in range(1, 5)},
                                 "label": "label"}, _int_label(range(4))),
    "kobest_sentineg": _kobest({"ID": "id", "Text": "sentence", "Label": "label"}, _int_label(range(2))),
    "kobest_wic": _kobest({"ID": "id", "Target": "word", "SENTENCE1": "context_1", "SENTENCE2": "context_2",
                           "ANSWER": "label"}, _bool_label),
    "klue_sts": _klue_sts,
    "klue_ynat": _klue_ynat,
}


def load_documents(task: str, path: Path) -> list[dict]:
    """The loader's documents of ``task`` from its raw file, each with ``id`` and ``label`` (gold index).

    Raises:
        DocumentError: the file lacks the loader's columns, or a label is not one the loader knows.
    """
    try:
        return LOADERS[task](path)
    except pd.errors.ParserError as exc:
        raise DocumentError(f"{path}: not a readable TSV ({exc})") from None
