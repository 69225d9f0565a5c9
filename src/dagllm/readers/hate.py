"""Hate-speech sources: APEACH."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from dagllm.readers import Reject, Row, check_width, delimited, reader


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
