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


def read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileFormatError(
            f"{path}: not UTF-8 (byte {exc.start}); re-download it or convert it to UTF-8"
        ) from None


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
from dagllm.readers import hate, klue, kobest, nsmc  # noqa: E402,F401
