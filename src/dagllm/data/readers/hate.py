"""Hate-speech sources: APEACH, UnSmile, HateScore.

Traps handled here: APEACH's quoted multi-line CSV fields, UnSmile's multi-label 0/1 columns,
HateScore's unnamed index column.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from dagllm.data.readers import Reject, Row, check_width, delimited, reader


@reader("apeach")
def read_apeach(path: Path) -> Iterator[Row | Reject]:
    """APEACH CSV with quoted multi-line fields; class Default -> 0, Spoiled (hate) -> 1."""
    header = ["text", "user_age", "user_gender", "text_topic", "class", "age", "text_topic_eng"]
    labels = {"Default": "0", "Spoiled": "1"}
    for line, rec, _ in delimited(path, header, delimiter=",", quoting=csv.QUOTE_MINIMAL):
        if bad := check_width(line, rec, 7):
            yield bad
            continue
        text, cls = rec[0].strip(), rec[4].strip()
        if cls not in labels:
            yield Reject(line, f"unknown label {cls!r} (expected Default or Spoiled)", ",".join(rec)[:500])
        elif not text:
            yield Reject(line, "empty text", ",".join(rec)[:500])
        else:
            yield Row(line, None, {"text": text, "topic": rec[3].strip()}, labels[cls])


UNSMILE_CATEGORIES = ["여성/가족", "남성", "성소수자", "인종/국적", "연령", "지역", "종교", "기타 혐오", "악플/욕설"]
UNSMILE_HEADER = ["문장", *UNSMILE_CATEGORIES, "clean", "개인지칭"]


@reader("unsmile")
def read_unsmile(path: Path) -> Iterator[Row | Reject]:
    """UnSmile TSV: ``문장`` + 9 category columns + ``clean`` + ``개인지칭`` (0/1 each, multi-label).

    ``targets`` and the label are the comma-joined categories set on the row (label ``clean``
    when only ``clean`` is set). A row with no category and no ``clean``, or with both, breaks
    the schema and is quarantined. ``개인지칭`` (a person is addressed) is not a category.
    """
    for line, rec, _ in delimited(path, UNSMILE_HEADER, delimiter="\t", quoting=csv.QUOTE_MINIMAL):
        if bad := check_width(line, rec, len(UNSMILE_HEADER)):
            yield bad
            continue
        text, flags = rec[0].strip(), [x.strip() for x in rec[1:]]
        raw = "\t".join(rec)[:500]
        if odd := [v for v in flags if v not in ("0", "1")]:
            yield Reject(line, f"unknown label {odd[0]!r} (category columns are 0 or 1)", raw)
            continue
        cats = [c for c, v in zip(UNSMILE_CATEGORIES, flags, strict=False) if v == "1"]
        clean = flags[len(UNSMILE_CATEGORIES)] == "1"
        if not text:
            yield Reject(line, "empty text", raw)
        elif clean and cats:
            yield Reject(line, "contradictory labels (clean and a hate category)", raw)
        elif not clean and not cats:
            yield Reject(line, "no label (neither clean nor any category)", raw)
        else:
            targets = ",".join(cats)
            yield Row(line, None, {"text": text, "targets": targets}, targets or "clean")


HATESCORE_LABELS = ("Clean", "혐오발언", "단순 악플")


@reader("hatescore")
def read_hatescore(path: Path) -> Iterator[Row | Reject]:
    """HateScore CSV: an unnamed index column, then ``comment, macrolabel, microlabel, source``.

    The index is the native id; label = ``macrolabel``; ``microlabel`` is kept (``None`` -> empty).
    """
    for line, rec, _ in delimited(path, ["", "comment", "macrolabel", "microlabel", "source"],
                                  delimiter=",", quoting=csv.QUOTE_MINIMAL):
        if bad := check_width(line, rec, 5):
            yield bad
            continue
        idx, text, macro, micro = (x.strip() for x in rec[:4])
        raw = ",".join(rec)[:500]
        if macro not in HATESCORE_LABELS:
            yield Reject(line, f"unknown label {macro!r} (expected {', '.join(HATESCORE_LABELS)})", raw)
        elif not text:
            yield Reject(line, "empty text", raw)
        else:
            yield Row(line, idx or None, {"text": text, "microlabel": "" if micro == "None" else micro}, macro)
