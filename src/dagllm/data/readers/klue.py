"""KLUE (STS, YNAT): JSON arrays of objects."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from dagllm.data.readers import Reject, Row, as_text, load_json_array, reader

YNAT_TOPICS = ("IT과학", "경제", "사회", "생활문화", "세계", "스포츠", "정치")


def _items(path: Path, keys: set[str]) -> Iterator[tuple[int, dict | None, str, str | None]]:
    """(index, item or None, raw text, problem) for each element of the array."""
    for i, item in enumerate(load_json_array(path), start=1):
        raw = json.dumps(item, ensure_ascii=False)[:500]
        if not isinstance(item, dict) or not keys <= item.keys():
            yield i, None, raw, f"missing keys (need {', '.join(sorted(keys))})"
        else:
            yield i, item, raw, None


@reader("klue_sts")
def read_klue_sts(path: Path) -> Iterator[Row | Reject]:
    """KLUE STS: label = ``binary-label`` (1 iff the 0-5 score >= 3.0); the score is kept as a field."""
    for i, item, raw, problem in _items(path, {"guid", "sentence1", "sentence2", "labels"}):
        if problem:
            yield Reject(i, problem, raw)
            continue
        labels = item["labels"] if isinstance(item["labels"], dict) else {}
        score, binary = labels.get("label"), labels.get("binary-label")
        if not isinstance(score, (int, float)) or binary not in (0, 1):
            yield Reject(i, f"bad labels {labels!r} (need a 0-5 label and a 0/1 binary-label)", raw)
        elif not isinstance(item["sentence1"], str) or not isinstance(item["sentence2"], str):
            yield Reject(i, "sentence1/sentence2 is not text (null or not a string)", raw)
        elif not (item["sentence1"].strip() and item["sentence2"].strip()):
            yield Reject(i, "empty text", raw)
        else:
            fields = {"sentence1": item["sentence1"].strip(), "sentence2": item["sentence2"].strip(),
                      "score": f"{float(score):.2f}", "origin": as_text(item.get("source")) or ""}
            yield Row(i, as_text(item["guid"]) or None, fields, str(binary))


@reader("klue_ynat")
def read_klue_ynat(path: Path) -> Iterator[Row | Reject]:
    """KLUE YNAT: ``{guid, title, label}``; label is one of the 7 Korean topic names."""
    for i, item, raw, problem in _items(path, {"guid", "title", "label"}):
        if problem:
            yield Reject(i, problem, raw)
        elif item["label"] not in YNAT_TOPICS:
            yield Reject(i, f"unknown label {item['label']!r} (expected one of {', '.join(YNAT_TOPICS)})", raw)
        elif not isinstance(item["title"], str):
            yield Reject(i, "title is not text (null or not a string)", raw)
        elif not item["title"].strip():
            yield Reject(i, "empty text", raw)
        else:
            yield Row(i, as_text(item["guid"]) or None, {"title": item["title"].strip()}, item["label"])
