"""Readers: one function per raw file format, each yielding parsed rows or rejects.

Readers live in one module per family (``kobest``, ``klue``, ``hate``, ``nsmc``, ...) and register
themselves by name in :data:`READERS`; source YAMLs name them in ``files[].reader``. The canonical
field names each reader produces are listed in ``docs/data.md`` (templates rely on them).

A reader never drops a row silently: every data row becomes either a :class:`Row` or a
:class:`Reject` carrying its line number and the reason. A problem with the whole file (wrong
header, undecodable bytes, not the expected container) raises :class:`FileFormatError` naming
the file and the fix.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import re
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


# Undecodable bytes survive decoding as lone surrogates (``surrogateescape``) so that the row
# holding them can be quarantined instead of failing the whole file.
UNDECODABLE = re.compile("[\udc80-\udcff]")
UNDECODABLE_REASON = "undecodable bytes (not UTF-8)"
# When more than this share of the non-ASCII lines fail to decode, the file is in another
# encoding (EUC-KR turns every Korean line bad), not a UTF-8 file with a few damaged rows.
MAX_UNDECODABLE_FRACTION = 0.5
NON_ASCII = re.compile("[^\x00-\x7f]")


def printable(text: str) -> str:
    """``text`` with undecodable bytes shown as U+FFFD, safe to write as UTF-8."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _has_undecodable(item: Row | Reject) -> bool:
    if isinstance(item, Reject):
        return bool(UNDECODABLE.search(item.raw) or UNDECODABLE.search(item.reason))
    parts = [*item.fields.values(), item.label or "", item.native_id or ""]
    return any(UNDECODABLE.search(p) for p in parts)


def _guarded(fn: Reader) -> Reader:
    """Turn every row holding undecodable bytes into a reject (whatever the reader made of it)."""

    @functools.wraps(fn)
    def read(path: Path) -> Iterator[Row | Reject]:
        for item in fn(path):
            if not _has_undecodable(item):
                yield item
            elif isinstance(item, Reject):
                yield Reject(item.line, UNDECODABLE_REASON, printable(item.raw))
            else:
                raw = "\t".join(item.fields.values())
                yield Reject(item.line, UNDECODABLE_REASON, printable(raw)[:500])

    return read


def reader(name: str) -> Callable[[Reader], Reader]:
    """Register ``fn`` under ``name``; rows with undecodable bytes become rejects on the way out."""

    def register(fn: Reader) -> Reader:
        READERS[name] = _guarded(fn)
        return fn

    return register


def read_text(path: Path) -> str:
    """The file as text (UTF-8, optional BOM).

    A few lines with bytes that are not UTF-8 are kept (as lone surrogates, so the readers
    quarantine those rows); a file where many lines fail is in another encoding (EUC-KR/CP949 is
    the usual suspect for Korean data) and is a file error.
    """
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        first_bad = exc.start
    text = data.decode("utf-8-sig", "surrogateescape")
    lines = text.splitlines() or [""]
    bad = sum(1 for line in lines if UNDECODABLE.search(line))
    non_ascii = sum(1 for line in lines if NON_ASCII.search(line))
    if UNDECODABLE.search(lines[0]) or bad > MAX_UNDECODABLE_FRACTION * non_ascii:
        hint = " (it decodes as EUC-KR/CP949)" if _is_cp949(data) else ""
        raise FileFormatError(
            f"{path}: not UTF-8{hint}: {bad} of {len(lines)} lines have undecodable bytes, the first at "
            f"byte {first_bad}; convert it (`iconv -f cp949 -t utf-8 FILE > FILE.utf8`) or re-download it"
        )
    return text


def _is_cp949(data: bytes) -> bool:
    try:
        data.decode("cp949")
    except UnicodeDecodeError:
        return False
    return True


def delimited(
    path: Path, *headers: list[str], delimiter: str, quoting: int
) -> Iterator[tuple[int, list[str], list[str]]]:
    """Yield ``(first line number, fields, header)`` per record after checking the header.

    ``headers`` lists the accepted headers (some sources change column order between splits); the
    one found is yielded with each record. A header matching none is a file error.
    """
    rows = csv.reader(io.StringIO(read_text(path), newline=""), delimiter=delimiter, quoting=quoting)
    try:
        got = [h.strip() for h in next(rows)]
    except StopIteration:
        raise FileFormatError(f"{path}: empty file; expected header {delimiter.join(headers[0])!r}") from None
    if got not in [list(h) for h in headers]:
        expected = " or ".join(repr(list(h)) for h in headers)
        raise FileFormatError(f"{path}: header is {got!r}, expected {expected}; is this the right file for its reader?")
    start = rows.line_num + 1
    for rec in rows:
        if rec:
            yield start, rec, got
        start = rows.line_num + 1


def headerless(path: Path, *, delimiter: str, quoting: int) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(first line number, fields)`` per record of a file without a header row."""
    rows = csv.reader(io.StringIO(read_text(path), newline=""), delimiter=delimiter, quoting=quoting)
    start = 1
    for rec in rows:
        if rec:
            yield start, rec
        start = rows.line_num + 1


def load_jsonl(path: Path) -> Iterator[tuple[int, dict | None, str, str | None]]:
    """``(line, object or None, raw line, problem)`` per non-blank line of a JSON Lines file.

    A line that is not a JSON object is a row problem (quarantined by the caller), not a file error.
    """
    for n, text in enumerate(read_text(path).splitlines(), start=1):
        if not text.strip():
            continue
        try:
            item = json.loads(text)
        except json.JSONDecodeError as exc:
            yield n, None, text[:500], f"not valid JSON ({exc.msg})"
            continue
        if not isinstance(item, dict):
            yield n, None, text[:500], f"expected a JSON object, got {type(item).__name__}"
        else:
            yield n, item, text[:500], None


def text_fields(item: dict, required: list[str], optional: list[str] = ()) -> tuple[dict[str, str], str | None]:
    """String fields of a JSON object (stripped) and the first problem: missing key or empty text."""
    missing = [k for k in required if k not in item]
    if missing:
        return {}, f"missing keys ({', '.join(missing)})"
    out = {k: ("" if item.get(k) is None else str(item.get(k))).strip() for k in [*required, *optional]}
    empty = [k for k in required if not out[k]]
    return out, (f"empty text ({', '.join(empty)})" if empty else None)


def load_json_array(path: Path) -> list:
    """A whole-file JSON array; anything else is a file error naming the file."""
    try:
        items = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise FileFormatError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); re-download it") from None
    if not isinstance(items, list):
        raise FileFormatError(f"{path}: expected a JSON array, got {type(items).__name__}")
    return items


def check_width(line: int, rec: list[str], n: int) -> Reject | None:
    """A reject when the record does not have ``n`` fields (missing or extra columns)."""
    if len(rec) != n:
        return Reject(line, f"expected {n} fields, got {len(rec)}", "\t".join(rec)[:500])
    return None


def truthy(value: str) -> str | None:
    """KoBEST booleans come as True/TRUE/False/FALSE: '1', '0', or None when neither."""
    return {"true": "1", "false": "0"}.get(value.strip().lower())


# Register the reader families (imported for their side effect of filling READERS).
from dagllm.readers import hate, jsonl, klue, kobest, kqc, nsmc, pairs  # noqa: E402,F401
