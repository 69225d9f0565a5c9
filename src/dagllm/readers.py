"""Readers: one function per raw file format, each yielding parsed rows or rejects.

A reader never drops a row silently: every data row becomes either a :class:`Row` or a
:class:`Reject` carrying its line number and the reason. A problem with the whole file (wrong
header, undecodable bytes, not the expected container) raises :class:`FileFormatError` naming
the file and the fix.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path


class FileFormatError(ValueError):
    """The whole file is not in the format its reader expects."""


@dataclass(frozen=True)
class Row:
    line: int
    native_id: str | None
    fields: dict[str, str]
    label: str | None


@dataclass(frozen=True)
class Reject:
    line: int
    reason: str
    raw: str = field(default="")


Reader = Callable[[Path], Iterator[Row | Reject]]
READERS: dict[str, Reader] = {}


def reader(name: str) -> Callable[[Reader], Reader]:
    def register(fn: Reader) -> Reader:
        READERS[name] = fn
        return fn

    return register


def _text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileFormatError(
            f"{path}: not UTF-8 (byte {exc.start}); re-download it or convert it to UTF-8"
        ) from None


def _delimited(
    path: Path, header: list[str], *, delimiter: str, quoting: int
) -> Iterator[tuple[int, list[str]]]:
    """Yield (first line number, fields) per record after checking the header."""
    rows = csv.reader(io.StringIO(_text(path), newline=""), delimiter=delimiter, quoting=quoting)
    try:
        got = next(rows)
    except StopIteration:
        raise FileFormatError(f"{path}: empty file; expected header {delimiter.join(header)!r}") from None
    if [h.strip() for h in got] != header:
        raise FileFormatError(
            f"{path}: header is {got!r}, expected {header!r}; is this the right file for its reader?"
        )
    start = rows.line_num + 1
    for rec in rows:
        if rec:
            yield start, rec
        start = rows.line_num + 1


def _check(line: int, rec: list[str], n: int) -> Reject | None:
    if len(rec) != n:
        return Reject(line, f"expected {n} fields, got {len(rec)}", "\t".join(rec)[:500])
    return None


@reader("kobest_copa")
def read_kobest_copa(path: Path) -> Iterator[Row | Reject]:
    """KoBEST COPA TSV: ``ID, sentence, question, 1, 2, Answer`` (CRLF); Answer is 1 or 2."""
    header = ["ID", "sentence", "question", "1", "2", "Answer"]
    for line, rec in _delimited(path, header, delimiter="\t", quoting=csv.QUOTE_NONE):
        if bad := _check(line, rec, 6):
            yield bad
            continue
        rid, premise, question, alt1, alt2, answer = (x.strip() for x in rec)
        if question not in ("원인", "결과"):
            yield Reject(line, f"unknown question type {question!r} (expected 원인 or 결과)", "\t".join(rec))
        elif answer not in ("1", "2"):
            yield Reject(line, f"unknown label {answer!r} (expected 1 or 2)", "\t".join(rec))
        elif not (premise and alt1 and alt2):
            yield Reject(line, "empty text", "\t".join(rec))
        else:
            fields = {"premise": premise, "question": question, "alternative_1": alt1, "alternative_2": alt2}
            yield Row(line, rid, fields, answer)


@reader("apeach")
def read_apeach(path: Path) -> Iterator[Row | Reject]:
    """APEACH CSV with quoted multi-line fields; class Default -> 0, Spoiled (hate) -> 1."""
    header = ["text", "user_age", "user_gender", "text_topic", "class", "age", "text_topic_eng"]
    labels = {"Default": "0", "Spoiled": "1"}
    for line, rec in _delimited(path, header, delimiter=",", quoting=csv.QUOTE_MINIMAL):
        if bad := _check(line, rec, 7):
            yield bad
            continue
        text, cls = rec[0].strip(), rec[4].strip()
        if cls not in labels:
            yield Reject(line, f"unknown label {cls!r} (expected Default or Spoiled)", ",".join(rec)[:500])
        elif not text:
            yield Reject(line, "empty text", ",".join(rec)[:500])
        else:
            yield Row(line, None, {"text": text, "topic": rec[3].strip()}, labels[cls])


@reader("nsmc_ratings")
def read_nsmc_ratings(path: Path) -> Iterator[Row | Reject]:
    """NSMC ``ratings_*.txt``: TSV ``id, document, label`` (1 = positive, 0 = negative)."""
    for line, rec in _delimited(path, ["id", "document", "label"], delimiter="\t", quoting=csv.QUOTE_NONE):
        if bad := _check(line, rec, 3):
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
    try:
        items = json.loads(_text(path))
    except json.JSONDecodeError as exc:
        raise FileFormatError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); re-download it") from None
    if not isinstance(items, list):
        raise FileFormatError(f"{path}: expected a JSON array of reviews, got {type(items).__name__}")
    for i, item in enumerate(items, start=1):
        raw = json.dumps(item, ensure_ascii=False)[:500]
        if not isinstance(item, dict) or not {"review", "rating", "review_id"} <= item.keys():
            yield Reject(i, "missing keys (need review, rating, review_id)", raw)
            continue
        text = str(item["review"]).strip()
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
            yield Row(i, str(item["review_id"]), {"text": text}, "1" if stars >= 9 else "0")
