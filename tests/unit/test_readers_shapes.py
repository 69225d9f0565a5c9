"""File shapes and line endings, through every reader family, on real rows (../shared/data).

Each real file is rewritten here (tmp_path) in another shape: lone-CR or mixed line endings, a
JSON array where JSON Lines is expected (and the reverse), a header of thousands of columns, a
header and no rows, a quoted field spanning thousands of lines. Records are decided by the
format and counted as records: rows in the file = kept + rejected, whatever the line endings;
a file in the wrong shape is one clear error naming the file and the format, never a traceback,
never exit 0 with every line rejected. Where the real mirror is absent the bundled samples (the
same formats) stand in.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dagllm.cli import app
from dagllm.data.canonical import IngestError, read_source_file
from dagllm.data.catalog import load_catalog
from dagllm.data.readers import READERS, FileFormatError, Reject, Row
from dagllm.paths import SAMPLES_DIR, resolve_mirror

MIRROR = resolve_mirror("auto")
CATALOG = load_catalog()
EOL = re.compile(r"\r\n|\r|\n")
# Readers whose files are read with CSV quoting (a quoted field may span lines).
QUOTING = {"apeach", "unsmile", "hatescore", "question_pair"}
JSON_ARRAY = {"klue_sts", "klue_ynat", "nsmc_raw"}
JSON_LINES = {"petitions", "math_jsonl", "kowiki_jsonl", "lbox_summarization"}
HEADERLESS = {"parakqc", "sae4k"}
DELIMITED = sorted(set(READERS) - JSON_ARRAY - JSON_LINES)
WITH_HEADER = sorted(set(DELIMITED) - HEADERLESS)
MAX_LINES = 400  # line-based files are cut to their first lines (every line is a record there)


def _files(reader: str) -> list[tuple[object, object, Path]]:
    """(source, catalog file, path) of every catalog file read by ``reader``: the real mirror's, else the sample."""
    out = []
    for src in CATALOG.sources.values():
        for sf in src.files:
            if sf.reader != reader:
                continue
            for base in (MIRROR, SAMPLES_DIR):
                if (base / sf.path).is_file():
                    out.append((src, sf, base / sf.path))
                    break
    return sorted(out, key=lambda t: (t[2].is_relative_to(SAMPLES_DIR), t[2].stat().st_size))  # real, small first


def _real(reader: str) -> tuple[object, object, str]:
    """The smallest real file of ``reader`` as text (line-based formats cut to ``MAX_LINES`` lines)."""
    src, sf, path = _files(reader)[0]
    text = path.read_bytes().decode("utf-8")
    if reader not in QUOTING | JSON_ARRAY:
        text = "".join(re.findall(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+", text)[:MAX_LINES])
    return src, sf, text


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def _with_endings(text: str, endings: list[str]) -> str:
    """``text`` with its i-th line end replaced by ``endings[i % len(endings)]``."""
    parts = EOL.split(text)
    out = [parts[0]]
    for i, part in enumerate(parts[1:]):
        out += [endings[i % len(endings)], part]
    return "".join(out)


def _plain(items: list) -> list:
    """Items with line breaks inside fields written as LF (a quoted field keeps the file's own)."""
    def nl(v):
        return EOL.sub("\n", v) if isinstance(v, str) else v
    return [Row(i.line, i.native_id, {k: nl(v) for k, v in i.fields.items()}, i.label) if isinstance(i, Row)
            else Reject(i.line, i.reason, nl(i.raw)) for i in items]


def _records_in(reader: str, text: str) -> int:
    """How many records the file holds, counted independently of the readers."""
    if reader in JSON_ARRAY:
        return len(json.loads(text))
    if reader in QUOTING:  # the csv module on the whole text (it reads CR, LF and CRLF alike)
        delim = "\t" if reader == "unsmile" else ","
        return sum(1 for r in csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""), delimiter=delim) if r) - 1
    lines = [line for line in EOL.split(text) if line.strip()]
    return len(lines) - (0 if reader in HEADERLESS | JSON_LINES else 1)


@pytest.mark.parametrize("endings", [["\r"], ["\r\n"], ["\n", "\r", "\r\n"], ["\r", "\r", "\n"]],
                         ids=["lone-CR", "CRLF", "mixed", "CR-rows-in-LF"])
@pytest.mark.parametrize("reader", sorted(r for r in READERS if _files(r)))
def test_line_endings_do_not_change_the_records(tmp_path: Path, reader: str, endings: list[str]):
    _, sf, text = _real(reader)
    name = Path(sf.path).name
    original = list(READERS[reader](_write(tmp_path, "orig_" + name, text)))
    assert len(original) == _records_in(reader, text), "the reader sees every record of the real file"
    rewritten = _with_endings(text, endings)
    items = list(READERS[reader](_write(tmp_path, name, rewritten)))
    assert len(items) == len(original), "rows in the file = kept + rejected, whatever the line endings"
    assert _plain(items) == _plain(original)


def test_lone_cr_tsv_ingests_with_its_counts(tmp_path: Path):
    """The case that crashed ingest with a _csv.Error traceback: a real KoBEST TSV with lone-CR line ends."""
    src, sf, text = _real("kobest_copa")
    path = _write(tmp_path, "dev.tsv", _with_endings(text, ["\r"]))
    count, kept, rejects = read_source_file(src, sf, path, None)
    assert count.read == _records_in("kobest_copa", text) == len(kept) + len(rejects)
    assert not rejects


@pytest.mark.parametrize("reader", sorted(QUOTING))
def test_quoted_field_over_thousands_of_lines_is_one_record(tmp_path: Path, reader: str):
    """21 records, one holding a valid quoted 200,000-character text over thousands of lines: read 21."""
    _, sf, text = _real(reader)
    delim = "\t" if reader == "unsmile" else ","
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""), delimiter=delim))
    header, data = rows[0], [r for r in rows[1:] if r][:21]
    text_col = header.index({"apeach": "text", "unsmile": "문장", "hatescore": "comment",
                             "question_pair": "question1"}[reader])
    real_lines = [r[text_col].replace("\n", " ") for r in data]
    long_text = ""
    while len(long_text) < 200_000:
        long_text += "\n".join(real_lines) + "\n"
    long_text = long_text[:200_000].strip()
    assert long_text.count("\n") > 3_000
    data[10] = [*data[10][:text_col], long_text, *data[10][text_col + 1:]]
    buf = io.StringIO()
    csv.writer(buf, delimiter=delim, lineterminator="\n").writerows([header, *data])
    path = _write(tmp_path, Path(sf.path).name, buf.getvalue())
    items = list(READERS[reader](path))
    assert len(items) == 21
    assert all(isinstance(i, Row) for i in items), [i for i in items if isinstance(i, Reject)][:2]
    assert long_text in [v for i in items for v in i.fields.values()]
    src = next(s for s in CATALOG.sources.values() if sf in s.files)
    count, kept, rejects = read_source_file(src, sf, path, None)
    assert (count.read, len(kept), len(rejects)) == (21, 21, 0)


@pytest.mark.parametrize("reader", sorted(QUOTING))
def test_quote_open_at_the_end_of_the_file_loses_only_its_line(tmp_path: Path, reader: str):
    """A quote opened in the LAST column (the record would have the right width) and never closed."""
    _, sf, text = _real(reader)
    delim = "\t" if reader == "unsmile" else ","
    rows = [r for r in csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""), delimiter=delim) if r]
    # real rows whose cells hold no quote, line break or delimiter: each is one line of the file
    rows = [rows[0], *[r for r in rows[1:] if not any(c in cell for cell in r for c in '"\r\n' + delim)][:11]]
    lines = [delim.join(r) for r in rows]
    cells = lines[4].split(delim)
    cells[-1] = '"' + cells[-1]  # opens a quoted field that nothing closes
    lines[4] = delim.join(cells)
    items = list(READERS[reader](_write(tmp_path, Path(sf.path).name, "\n".join(lines) + "\n")))
    rejects = [i for i in items if isinstance(i, Reject)]
    assert len(items) == len(lines) - 1, "rows in the file = kept + rejected"
    assert [r.line for r in rejects] == [5] and "unterminated quote" in rejects[0].reason
    assert "the file ends inside it" in rejects[0].reason


@pytest.mark.parametrize("reader", sorted(QUOTING))
def test_stray_quotes_opening_many_lines_never_join_two_rows(tmp_path: Path, reader: str):
    """Every other real row starts its text with a stray quote (a quote of the text, not CSV quoting):
    by the lenient rule each would close at the next one and two rows would read as one record of
    the right width. Strictly, text after a closing quote is no field end, so each is rejected alone."""
    _, sf, text = _real(reader)
    delim = "\t" if reader == "unsmile" else ","
    rows = [r for r in csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""), delimiter=delim) if r]
    rows = [rows[0], *[r for r in rows[1:] if not any(c in cell for cell in r for c in '"\r\n' + delim)][:20]]
    lines = [delim.join(r) for r in rows]
    stray = list(range(1, len(lines), 2))  # lines 2, 4, ... of the file (1-based)
    for i in stray:
        lines[i] = '"' + lines[i]
    items = list(READERS[reader](_write(tmp_path, Path(sf.path).name, "\n".join(lines) + "\n")))
    rejects = [i for i in items if isinstance(i, Reject)]
    assert len(items) == len(lines) - 1, "rows in the file = kept + rejected"
    assert [r.line for r in rejects] == [i + 1 for i in stray]
    assert all("unterminated quote" in r.reason for r in rejects)
    kept = [i for i in items if isinstance(i, Row)]
    assert len(kept) == len(lines) - 1 - len(stray)


def _objects(n: int = 12) -> list[dict]:
    """Real petitions (title, content, category) as JSON objects."""
    _, _, path = _files("petitions")[0]
    lines = path.read_text(encoding="utf-8").splitlines()[:n]
    return [json.loads(line) for line in lines]


def _as_reader_objects(reader: str, objs: list[dict]) -> list[dict]:
    if reader == "petitions":
        return objs
    if reader == "math_jsonl":
        return [{"question": o["title"], "answer": o["content"][:50], "id": str(i)} for i, o in enumerate(objs)]
    if reader == "kowiki_jsonl":
        return [{"id": str(i), "title": o["title"], "text": o["content"]} for i, o in enumerate(objs)]
    return [{"id": str(i), "precedent": o["content"], "summary": o["title"]} for i, o in enumerate(objs)]


@pytest.mark.parametrize("indent", [None, 2], ids=["one-line", "pretty"])
@pytest.mark.parametrize("reader", sorted(JSON_LINES))
def test_json_array_where_json_lines_is_expected_is_one_file_error(tmp_path: Path, reader: str, indent):
    objs = _as_reader_objects(reader, _objects())
    path = _write(tmp_path, "data.jsonl", json.dumps(objs, ensure_ascii=False, indent=indent))
    with pytest.raises(FileFormatError) as err:
        list(READERS[reader](path))
    msg = str(err.value)
    assert str(path) in msg and "JSON array" in msg and "JSON Lines" in msg and "\n" not in msg
    assert f"{len(objs)} items" in msg


@pytest.mark.parametrize("reader", sorted(JSON_LINES))
def test_pretty_printed_object_where_json_lines_is_expected_is_one_file_error(tmp_path: Path, reader: str):
    obj = _as_reader_objects(reader, _objects(1))[0]
    path = _write(tmp_path, "data.jsonl", json.dumps(obj, ensure_ascii=False, indent=2))
    with pytest.raises(FileFormatError, match="one JSON object over .* lines.*JSON Lines"):
        list(READERS[reader](path))


@pytest.mark.parametrize("reader", sorted(r for r in JSON_ARRAY if _files(r)))
def test_json_lines_where_a_json_array_is_expected_is_one_file_error(tmp_path: Path, reader: str):
    _, sf, text = _real(reader)
    items = json.loads(text)
    path = _write(tmp_path, Path(sf.path).name, "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items))
    with pytest.raises(FileFormatError) as err:
        list(READERS[reader](path))
    assert str(path) in str(err.value) and "is JSON Lines" in str(err.value) and "one JSON array" in str(err.value)


@pytest.mark.parametrize("reader", WITH_HEADER)
def test_header_of_thousands_of_columns_is_a_one_line_error(tmp_path: Path, reader: str):
    _, sf, text = _real(reader)
    delim = "," if reader in QUOTING - {"unsmile"} else "\t"
    words = [w for w in (w.replace(delim, "").replace('"', "") for w in re.split(r"\s+", text)) if w][:5_000]
    words += [f"col{i}" for i in range(5_000 - len(words))]  # real words as column names, 5,000 of them
    body = EOL.split(text, maxsplit=1)[1]
    path = _write(tmp_path, Path(sf.path).name, delim.join(words) + "\n" + body)
    with pytest.raises(FileFormatError) as err:
        list(READERS[reader](path))
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 800, msg
    assert "5,000 columns" in msg and str(path) in msg


@pytest.mark.parametrize("reader", ["kobest_copa", "nsmc_ratings", "korsts"])
def test_header_with_another_delimiter_says_which(tmp_path: Path, reader: str):
    _, sf, text = _real(reader)
    header, body = EOL.split(text, maxsplit=1)
    path = _write(tmp_path, Path(sf.path).name, header.replace("\t", ",") + "\n" + body)
    with pytest.raises(FileFormatError, match="comma-separated but its reader reads tab-separated"):
        list(READERS[reader](path))


@pytest.mark.parametrize("reader", sorted(HEADERLESS))
def test_row_of_thousands_of_fields_is_one_short_reject(tmp_path: Path, reader: str):
    _, sf, text = _real(reader)
    lines = EOL.split(text)[:10]
    lines[4] = "\t".join(["가"] * 5_000)
    items = list(READERS[reader](_write(tmp_path, Path(sf.path).name, "\n".join(lines) + "\n")))
    rejects = [i for i in items if isinstance(i, Reject)]
    assert len(items) == 10 and [r.line for r in rejects] == [5]
    assert rejects[0].reason == "expected 3 fields, got 5000"


@pytest.mark.parametrize("reader", ["nsmc_ratings", "kobest_copa", "unsmile"])
def test_label_cell_holding_a_long_text_gives_a_short_reason(tmp_path: Path, reader: str):
    _, sf, text = _real(reader)
    header, *rows = [line for line in EOL.split(text) if line][:8]
    cells = rows[2].split("\t")
    long_label = " ".join(rows) * 20
    cells[-1 if reader != "unsmile" else 1] = long_label.replace("\t", " ")
    rows[2] = "\t".join(cells)
    items = list(READERS[reader](_write(tmp_path, Path(sf.path).name, "\n".join([header, *rows]) + "\n")))
    rejects = [i for i in items if isinstance(i, Reject)]
    assert len(items) == len(rows) and len(rejects) == 1
    assert len(rejects[0].reason) <= 301 and "unknown" in rejects[0].reason


@pytest.mark.parametrize("trailer", ["", "\n", "\r\n\r\n  \n"], ids=["bare", "LF", "blank-lines"])
@pytest.mark.parametrize("reader", WITH_HEADER)
def test_header_only_file_is_an_error_naming_it(tmp_path: Path, reader: str, trailer: str):
    _, sf, text = _real(reader)
    header = EOL.split(text, maxsplit=1)[0]
    path = _write(tmp_path, Path(sf.path).name, header + trailer)
    with pytest.raises(FileFormatError) as err:
        list(READERS[reader](path))
    assert str(path) in str(err.value) and "only its header" in str(err.value) and "no data rows" in str(err.value)


@pytest.mark.parametrize("content", ["", "\n\n", "[]", "[\n]\n"],
                         ids=["empty", "blank", "empty-array", "pretty-empty-array"])
@pytest.mark.parametrize("reader", sorted(JSON_LINES | JSON_ARRAY | HEADERLESS))
def test_file_with_no_rows_is_an_error_naming_it(tmp_path: Path, reader: str, content: str):
    if reader in HEADERLESS and content.startswith("["):
        content = content.replace("[", "").replace("]", "")  # nothing but blank lines
    path = _write(tmp_path, "data.txt", content)
    with pytest.raises(FileFormatError) as err:
        list(READERS[reader](path))
    msg = str(err.value)
    assert str(path) in msg
    if reader in JSON_LINES and content.startswith("["):
        assert "JSON array" in msg
    else:
        assert "no data rows" in msg


def test_header_only_file_is_an_ingest_error_naming_the_source(tmp_path: Path):
    src, sf, text = _real("kobest_copa")
    path = _write(tmp_path, "dev.tsv", EOL.split(text, maxsplit=1)[0] + "\r\n")
    with pytest.raises(IngestError, match=r"source kobest_copa: .*dev\.tsv: the file holds only its header"):
        read_source_file(src, sf, path, None)


runner = CliRunner()


def _team(workdir: Path, name: str, content: str, reader: str, task: str = "nsmc_sentiment") -> None:
    (workdir / "team").mkdir(exist_ok=True)
    (workdir / "team" / name).write_bytes(content.encode("utf-8"))
    data = yaml.safe_load((workdir / "params.yaml").read_text(encoding="utf-8"))
    data["ingest"]["local"] = [{"id": "team_rows", "path": f"team/{name}", "reader": reader,
                                "license": "internal", "tasks": [task]}]
    (workdir / "params.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


@pytest.mark.parametrize("command", ["check", "ingest"])
def test_team_file_with_only_a_header_is_refused_naming_file_and_task(workdir: Path, command: str):
    _team(workdir, "reviews.tsv", "id\tdocument\tlabel\n", "nsmc_ratings")
    result = runner.invoke(app, [command])
    out = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "ingest.local[0].path" in out and "reviews.tsv" in out and "only its header" in out
    assert "'nsmc_sentiment' would get no records" in out
    assert not (workdir / "data").exists(), "refused before any stage works"


def test_team_json_array_for_a_json_lines_reader_is_refused_at_check(workdir: Path):
    _team(workdir, "petitions.jsonl", json.dumps(_objects(), ensure_ascii=False, indent=2), "petitions",
          task="petitions_category")
    result = runner.invoke(app, ["check"])
    out = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "petitions.jsonl" in out and "one JSON array" in out and "JSON Lines" in out


def test_team_file_with_rows_passes_check(workdir: Path):
    src, sf, text = _real("kobest_sentineg")
    rows = [line.split("\t") for line in EOL.split(text)[1:] if line][:6]
    head = EOL.split(text, maxsplit=1)[0].split("\t")
    body = "".join(f"{i}\t{r[head.index('Text')]}\t{r[head.index('Label')]}\r" for i, r in enumerate(rows))
    _team(workdir, "reviews.tsv", "id\tdocument\tlabel\r" + body, "nsmc_ratings")  # lone-CR endings
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
