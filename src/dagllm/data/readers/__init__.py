"""Readers: one function per raw file format, each yielding parsed rows or rejects.

Readers live in one module per family (``kobest``, ``klue``, ``hate``, ``nsmc``, ...) and register
themselves by name in :data:`READERS`; source YAMLs name them in ``files[].reader``. The canonical
field names each reader produces are listed in ``docs/data.md`` (templates rely on them).

A reader never drops a row silently: every data row becomes either a :class:`Row` or a
:class:`Reject` carrying its line number and the reason. Rows are records as the format defines
them, not physical lines: a line ends at CRLF, LF or a lone CR (in any mix), and a quoted CSV
field ends where its quote closes however many lines it spans. A problem with the whole file
(wrong header, undecodable bytes, not the expected container, a JSON array where JSON Lines is
expected or the reverse, no data rows) raises :class:`FileFormatError`: one line naming the file
and the fix.
"""

from __future__ import annotations

import csv
import functools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dagllm.data.noise import garbage


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


# Characters that show nothing: whitespace, controls, format characters (zero-width space/joiners,
# direction marks, word joiner, BOM), Hangul fillers, variation selectors, soft hyphen.
INVISIBLE = re.compile(
    "[\\s\x00-\x1f\x7f-\x9f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180e"
    "\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0]*"
)


def text_problem(item: Row) -> str | None:
    """Why a parsed row is not text, or None: the per-row text check every reader's rows pass.

    Checked for every reader's rows on the way out, so a reader only has to parse its format. It
    runs each text value through :func:`value_problem` (one place to add a check of text content).
    """
    named = {**item.fields, "label": item.label, "id": item.native_id}
    for name, value in named.items():
        if value is None and name in ("label", "id"):
            continue
        if not isinstance(value, str):
            return f"field {name!r} is {type(value).__name__}, expected text"
        if problem := value_problem(name, value):
            return problem
    return None


def value_problem(name: str, value: str) -> str | None:
    """Why the text ``value`` of field ``name`` is not text to train on (NUL bytes, nothing visible,
    mojibake or U+FFFD: :mod:`dagllm.data.noise`), or None."""
    if "\x00" in value:
        return f"NUL byte in field {name!r} (binary data, not text)"
    if value and INVISIBLE.fullmatch(value):
        return f"field {name!r} holds only invisible characters (zero-width spaces, fillers, controls)"
    if found := garbage(value):  # the class only: one reason (one count) per misreading, not per row
        return (f"field {name!r} is decoding noise, not text: {found[0]}; re-read the source in its real "
                "encoding (e.g. `iconv -f cp949 -t utf-8`)")
    return None


def _raw_of(item: Row) -> str:
    return printable("\t".join(str(v) for v in item.fields.values()).replace("\x00", "\\0"))[:500]


# A reject's reason is a key of the ingest report's counts: a value quoted in it (a label cell
# holding a whole text) is cut so that one bad row cannot make a reason of many kilobytes.
MAX_REASON_CHARS = 300


def _reason(text: str) -> str:
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS] + "…"


def _guarded(fn: Reader) -> Reader:
    """Turn every row holding undecodable bytes, NUL bytes or no visible text into a reject.

    A file that yields no row at all (a header and nothing else, blank lines, an empty array) is a
    file error: it would feed its tasks 0 records and no later stage would say why.
    """

    @functools.wraps(fn)
    def read(path: Path) -> Iterator[Row | Reject]:
        n = 0
        for item in fn(path):
            n += 1
            if isinstance(item, Reject):
                if _has_undecodable(item):
                    yield Reject(item.line, UNDECODABLE_REASON, printable(item.raw))
                else:
                    yield Reject(item.line, _reason(item.reason), item.raw.replace("\x00", "\\0"))
            elif _has_undecodable(item):
                yield Reject(item.line, UNDECODABLE_REASON, _raw_of(item))
            elif problem := text_problem(item):
                yield Reject(item.line, _reason(problem), _raw_of(item))
            else:
                yield item
        if n == 0:
            raise FileFormatError(f"{path}: no data rows: the file holds nothing to read past its header or "
                                  "blank lines; add rows, or leave the file out")

    return read


def reader(name: str) -> Callable[[Reader], Reader]:
    """Register ``fn`` under ``name``; rows with undecodable bytes become rejects on the way out."""

    def register(fn: Reader) -> Reader:
        READERS[name] = _guarded(fn)
        return fn

    return register


# Containers and encodings recognised by their first bytes: (magic, what it is, what to do).
MAGIC = [
    (b"\x1f\x8b", "gzip-compressed", "decompress it first (`gunzip -k FILE`) and point at the result"),
    (b"PK\x03\x04", "a zip archive", "unpack it first (`unzip FILE`) and point at the file inside"),
    (b"BZh", "bzip2-compressed", "decompress it first (`bunzip2 -k FILE`)"),
    (b"\xfd7zXZ\x00", "xz-compressed", "decompress it first (`unxz -k FILE`)"),
    (b"\xff\xfe", "UTF-16 (little-endian BOM)", "convert it (`iconv -f utf-16 -t utf-8 FILE > FILE.utf8`)"),
    (b"\xfe\xff", "UTF-16 (big-endian BOM)", "convert it (`iconv -f utf-16 -t utf-8 FILE > FILE.utf8`)"),
]


def _sniff(path: Path, data: bytes) -> None:
    """A file error when ``data`` is a compressed/archived file or UTF-16 rather than UTF-8 text."""
    for magic, what, fix in MAGIC:
        if data.startswith(magic):
            raise FileFormatError(f"{path}: the file is {what}, not UTF-8 text; {fix}")
    head = data[:4096]
    # UTF-16 without a BOM: every other byte of ASCII/Hangul text is a NUL.
    if len(head) >= 8 and head.count(0) > len(head) // 4:
        even, odd = head[0::2].count(0), head[1::2].count(0)
        which = "UTF-16" if max(even, odd) > 0.8 * head.count(0) else "binary data"
        fix = ("convert it (`iconv -f utf-16 -t utf-8 FILE > FILE.utf8`)" if which == "UTF-16"
               else "is this the right file? (`file FILE` says what it is)")
        raise FileFormatError(f"{path}: the file looks like {which} ({head.count(0)} NUL bytes in the "
                              f"first {len(head)}), not UTF-8 text; {fix}")


def read_text(path: Path) -> str:
    """The file as text (UTF-8, optional BOM; a BOM further inside, left by concatenating files, is removed).

    A few lines with bytes that are not UTF-8 are kept (as lone surrogates, so the readers
    quarantine those rows); a file where many lines fail is in another encoding (EUC-KR/CP949 is
    the usual suspect for Korean data) and is a file error, as is a compressed or UTF-16 file.
    """
    if path.is_dir():
        raise FileFormatError(f"{path}: is a directory, not a file; name one file inside it")
    data = path.read_bytes()
    _sniff(path, data)
    try:
        return data.decode("utf-8-sig").replace("\ufeff", "")
    except UnicodeDecodeError as exc:
        first_bad = exc.start
    text = data.decode("utf-8-sig", "surrogateescape").replace("\ufeff", "")
    lines = text.split("\n") or [""]
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


# Fields may be as long as the file (a judgement's full text): lift the csv module's 128 KiB limit.
csv.field_size_limit(2**31 - 1)

# A line ends at CRLF, LF or a lone CR, in any mix (files pass through Windows, old Mac and Unix
# tools); the end is kept so a quoted field spanning lines keeps its own line breaks.
LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
LINE_END = re.compile(r"\r\n|\r|\n")


def physical_lines(text: str) -> list[str]:
    """The lines of ``text``, each with its line end (CRLF, LF or lone CR); the last may have none."""
    return LINE.findall(text)


class _Lines:
    """The file's physical lines, handed to ``csv.reader`` one at a time.

    ``pos`` is the index of the next line to read, so a record's span is known and parsing can
    restart on any line; ``ran_out`` tells that the reader asked for a line past the last one,
    i.e. the record in progress was still inside a quoted field at the end of the file.
    """

    def __init__(self, text: str) -> None:
        self.lines = physical_lines(text)
        self.pos = 0
        self.ran_out = False

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self.pos >= len(self.lines):
            self.ran_out = True
            raise StopIteration
        self.pos += 1
        return self.lines[self.pos - 1]

    def raw(self, i: int) -> str:
        return self.lines[i].rstrip("\r\n")[:500]


def records(
    text: str, *, delimiter: str, quoting: int, width: int | None = None, lines_seen: int = 0
) -> Iterator[tuple[int, list[str] | Reject]]:
    """``(first line number, fields or Reject)`` per non-blank record of delimited ``text``.

    Records are decided by the format: a line end (CRLF, LF, lone CR) ends a record unless it is
    inside a quoted field, and a quoted field ends where its quote closes, however many lines
    that takes (one record, counted once). A quote that never closes (the file ends inside it),
    or one that closes but leaves a multi-line record with the wrong number of fields, would
    swallow the good rows after it: only its first line is rejected and parsing restarts on the
    next line, so every line is either in a record or in a reject. ``lines_seen`` skips a header.
    """
    src = _Lines(text)
    src.pos = lines_seen

    def fresh() -> Iterator[list[str]]:
        return csv.reader(src, delimiter=delimiter, quoting=quoting)

    rows = fresh()
    while True:
        begin = src.pos
        try:
            rec = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:
            yield begin + 1, Reject(begin + 1, f"unreadable record ({exc})", src.raw(begin))
            src.pos, src.ran_out, rows = begin + 1, False, fresh()
            continue
        span = src.pos - begin
        malformed = span > 1 and not src.ran_out and not _well_formed(src.lines[begin:src.pos], delimiter, quoting)
        if src.ran_out or malformed or (span > 1 and width is not None and len(rec) != width):
            why = ("the file ends inside it" if src.ran_out else
                   f"it closes {span - 1} lines later with text after the closing quote (a quote of the "
                   "text, not of the field)" if malformed else
                   f"it closes {span - 1} lines later with {len(rec)} fields, not {width}")
            yield begin + 1, Reject(
                begin + 1, f"unterminated quote: a quoted field opens on this line and {why}, which would "
                "swallow the rows after it (fix the quote on this line)", src.raw(begin))
            src.pos, src.ran_out, rows = begin + 1, False, fresh()
            continue
        if rec and (len(rec) > 1 or rec[0].strip()):  # a blank line (or one of spaces) is no record
            yield begin + 1, rec


def _well_formed(lines: list[str], delimiter: str, quoting: int) -> bool:
    """Whether a record of several lines is one by the format's strict rule: each closing quote is
    followed by a delimiter or the line end. Lenient parsing (kept for one-line records, where a
    stray quote harms no other row) would join a line that opens with a stray quote to the next line
    that opens with one, and read two rows as one."""
    try:
        for _ in csv.reader(lines, delimiter=delimiter, quoting=quoting, strict=True):
            pass
    except csv.Error:
        return False
    return True


def shorten(value: str, n: int = 40) -> str:
    """``value`` cut to ``n`` characters (with …), for quoting file content in a message."""
    return value if len(value) <= n else value[: n - 1] + "…"


def names(values: list[str], n: int = 6) -> str:
    """A list of names for a one-line message: the first ``n``, each cut short, and how many in all."""
    shown = ", ".join(repr(shorten(v)) for v in values[:n])
    return f"[{shown}]" if len(values) <= n else f"{len(values):,} columns [{shown}, ...]"


DELIMITERS = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}


def _header_problem(path: Path, got: list[str], headers: tuple[list[str], ...], delimiter: str) -> str:
    """One line saying how the header differs from what the reader expects."""
    expected = " or ".join(repr(list(h)) for h in headers)
    msg = f"{path}: header is {names(got)}, expected {expected}"
    line = delimiter.join(got)
    for other, what in DELIMITERS.items():
        if other != delimiter and any([x.strip() for x in line.split(other)] == list(h) for h in headers):
            return (f"{msg}; the file is {what}-separated but its reader reads "
                    f"{DELIMITERS.get(delimiter, repr(delimiter))}-separated values: convert it or pick the reader "
                    "for this format")
    return f"{msg}; is this the right file for its reader?"


def delimited(
    path: Path, *headers: list[str], delimiter: str, quoting: int
) -> Iterator[tuple[int, list[str] | Reject, list[str]]]:
    """Yield ``(first line number, fields or Reject, header)`` per record after checking the header.

    ``headers`` lists the accepted headers (some sources change column order between splits); the
    one found is yielded with each record. A header matching none, or a header and no record
    after it, is a file error. Rows that the csv module cannot parse arrive as a :class:`Reject`
    (see :func:`records`).
    """
    text = read_text(path)
    if not text.strip():
        raise FileFormatError(f"{path}: empty file; expected header {delimiter.join(headers[0])!r}")
    head = LINE_END.split(text, maxsplit=1)[0]
    try:
        first = next(csv.reader([head], delimiter=delimiter, quoting=quoting), [])
    except csv.Error as exc:
        raise FileFormatError(f"{path}: the header line cannot be read ({exc}); expected "
                              f"{delimiter.join(headers[0])!r}") from None
    got = [h.strip() for h in first]
    if got not in [list(h) for h in headers]:
        raise FileFormatError(_header_problem(path, got, headers, delimiter))
    n = 0
    for line, rec in records(text, delimiter=delimiter, quoting=quoting, width=len(got), lines_seen=1):
        n += 1
        yield line, rec, got
    if n == 0:
        raise FileFormatError(f"{path}: the file holds only its header ({shorten(head, 80)!r}), no data rows; "
                              "add rows, or leave the file out")


def headerless(
    path: Path, *, delimiter: str, quoting: int, width: int | None = None
) -> Iterator[tuple[int, list[str] | Reject]]:
    """Yield ``(first line number, fields or Reject)`` per record of a file without a header row."""
    yield from records(read_text(path), delimiter=delimiter, quoting=quoting, width=width)


JQ_LINES = "`jq -c '.[]' FILE > FILE.jsonl`"


def load_jsonl(path: Path) -> Iterator[tuple[int, dict | None, str, str | None]]:
    """``(line, object or None, raw line, problem)`` per non-blank line of a JSON Lines file.

    A line that is not a JSON object is a row problem (quarantined by the caller), not a file
    error; a file that is one JSON document (an array, or an object over many lines) is a file
    error naming the format, not one or many rejected lines.
    """
    # A line ends at LF, CRLF or a lone CR (JSON has no raw CR inside a string: only as whitespace);
    # U+2028, U+0085 and the other Unicode line separators are valid inside a JSON string.
    text = read_text(path)
    lines = LINE_END.split(text)
    _not_json_lines(path, text, lines)
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            yield n, None, line[:500], f"not valid JSON ({exc.msg})"
            continue
        if not isinstance(item, dict):
            yield n, None, line[:500], f"expected a JSON object, got {type(item).__name__}"
        else:
            yield n, item, line[:500], None


def _not_json_lines(path: Path, text: str, lines: list[str]) -> None:
    """A file error when ``text`` is one JSON document (array, or object over lines), not JSON Lines."""
    first = next((line for line in lines if line.strip()), "")
    try:
        json.loads(first)
        first_ok = True
    except json.JSONDecodeError:
        first_ok = False
    if first.lstrip().startswith("["):
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None
        if isinstance(whole, list) or not first_ok:
            size = f" of {len(whole):,} items" if isinstance(whole, list) else ""
            raise FileFormatError(
                f"{path}: the file is one JSON array{size} (it starts with '['), but its reader reads JSON "
                f"Lines (one object per line); convert it ({JQ_LINES}) or pick a reader for JSON arrays")
    elif not first_ok and first.lstrip().startswith("{"):
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            return
        if isinstance(whole, dict):
            raise FileFormatError(
                f"{path}: the file is one JSON object over {len(lines):,} lines, but its reader reads JSON Lines "
                "(one object per line); write each record on one line (`jq -c . FILE > FILE.jsonl`)")


def as_text(value: object) -> str | None:
    """A JSON value as text: strings as they are, numbers written out, ``null`` as ''; None for others."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def text_fields(item: dict, required: list[str], optional: list[str] = ()) -> tuple[dict[str, str], str | None]:
    """String fields of a JSON object (stripped) and the first problem: missing key, not text, empty text.

    JSON ``null`` is empty text (never the string "None"); a list, object or boolean is not text.
    """
    missing = [k for k in required if k not in item]
    if missing:
        return {}, f"missing keys ({', '.join(missing)})"
    out = {}
    for k in [*required, *optional]:
        text = as_text(item.get(k))
        if text is None:
            return {}, f"field {k!r} is a JSON {type(item.get(k)).__name__}, expected text"
        out[k] = text.strip()
    empty = [k for k in required if not out[k]]
    return out, (f"empty text ({', '.join(empty)})" if empty else None)


def load_json_array(path: Path) -> list:
    """A whole-file JSON array; anything else (JSON Lines, an object, an empty array) is a file error."""
    text = read_text(path)
    if not text.strip():
        raise FileFormatError(f"{path}: empty file, no data rows; expected one JSON array of records")
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        first = next((line for line in LINE_END.split(text) if line.strip()), "")
        try:
            lines_format = isinstance(json.loads(first), dict)
        except json.JSONDecodeError:
            lines_format = False
        if lines_format:
            raise FileFormatError(
                f"{path}: the file is JSON Lines (one object per line), but its reader reads one JSON array; "
                "convert it (`jq -s . FILE > FILE.json`) or pick a reader for JSON Lines") from None
        raise FileFormatError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); re-download it") from None
    if isinstance(items, dict):
        inner = [k for k, v in items.items() if isinstance(v, list)]
        hint = f" (the records may be the array under key {shorten(inner[0])!r}: extract it)" if len(inner) == 1 else ""
        raise FileFormatError(f"{path}: expected a JSON array, got a JSON object{hint}")
    if not isinstance(items, list):
        raise FileFormatError(f"{path}: expected a JSON array, got {type(items).__name__}")
    if not items:
        raise FileFormatError(f"{path}: an empty JSON array ([]), no data rows; add records, or leave the file out")
    return items


def check_width(line: int, rec: list[str] | Reject, n: int) -> Reject | None:
    """A reject when the record does not have ``n`` fields (or could not be parsed at all)."""
    if isinstance(rec, Reject):
        return rec
    if len(rec) != n:
        return Reject(line, f"expected {n} fields, got {len(rec)}", "\t".join(rec)[:500])
    return None


def truthy(value: str) -> str | None:
    """KoBEST booleans come as True/TRUE/False/FALSE: '1', '0', or None when neither."""
    return {"true": "1", "false": "0"}.get(value.strip().lower())


# Register the reader families (imported for their side effect of filling READERS).
from dagllm.data.readers import hate, jsonl, klue, kobest, kqc, nsmc, pairs  # noqa: E402,F401
