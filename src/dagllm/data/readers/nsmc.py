"""NSMC: the ratings files and the raw crawl it was built from."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from dagllm.data.readers import Reject, Row, as_text, check_width, delimited, load_json_array, reader


@reader("nsmc_ratings")
def read_nsmc_ratings(path: Path) -> Iterator[Row | Reject]:
    """NSMC ``ratings_*.txt``: TSV ``id, document, label`` (1 = positive, 0 = negative)."""
    for line, rec, _ in delimited(path, ["id", "document", "label"], delimiter="\t", quoting=csv.QUOTE_NONE):
        if bad := check_width(line, rec, 3):
            yield bad
            continue
        rid, text, label = (x.strip() for x in rec)
        if label not in ("0", "1"):
            yield Reject(line, f"unknown label {label!r} (expected 0 or 1)", "\t".join(rec))
        elif not text:
            yield Reject(line, "empty text", "\t".join(rec))
        else:
            yield Row(line, rid, {"text": text}, label)


@reader("nsmc_raw")
def read_nsmc_raw(path: Path) -> Iterator[Row | Reject]:
    """NSMC raw crawl JSON (array of reviews); labelled as NSMC was: 1-4 stars 0, 9-10 stars 1.

    Reviews rated 5-8 are not part of NSMC; they are rejected with that reason, not dropped.
    """
    items = load_json_array(path)
    for i, item in enumerate(items, start=1):
        raw = json.dumps(item, ensure_ascii=False)[:500]
        if not isinstance(item, dict) or not {"review", "rating", "review_id"} <= item.keys():
            yield Reject(i, "missing keys (need review, rating, review_id)", raw)
            continue
        text = as_text(item["review"])
        if text is None:
            yield Reject(i, f"review is a JSON {type(item['review']).__name__}, expected text", raw)
            continue
        text = text.strip()
        try:
            stars = int(item["rating"])
        except (TypeError, ValueError):
            yield Reject(i, f"rating {item['rating']!r} is not an integer", raw)
            continue
        if not text:
            yield Reject(i, "empty text", raw)
        elif 5 <= stars <= 8:
            yield Reject(i, "neutral rating 5-8 (NSMC keeps 1-4 and 9-10)", raw)
        elif not 1 <= stars <= 10:
            yield Reject(i, f"rating {stars} outside 1-10", raw)
        else:
            yield Row(i, as_text(item["review_id"]) or None, {"text": text}, "1" if stars >= 9 else "0")
