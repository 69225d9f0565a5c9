import json
from pathlib import Path

import pytest

from dagllm.data.readers import READERS, FileFormatError, Reject, Row

from ..conftest import SAMPLES


def _split(items):
    rows = [i for i in items if isinstance(i, Row)]
    rejects = [i for i in items if isinstance(i, Reject)]
    return rows, rejects


def test_copa_sample_parses_crlf_and_labels():
    rows, rejects = _split(list(READERS["kobest_copa"](SAMPLES / "kobest/v1.0/COPA/train.tsv")))
    assert not rejects and len(rows) == 16
    assert rows[0].fields["premise"] == "아이가 넘어져서 무릎을 다쳤다."
    assert not any(v.endswith("\r") for r in rows for v in r.fields.values())
    assert {r.label for r in rows} == {"1", "2"}
    assert rows[0].line == 2


def test_copa_bad_rows_are_rejected_with_reasons(tmp_path: Path):
    f = tmp_path / "copa.tsv"
    f.write_bytes("ID\tsentence\tquestion\t1\t2\tAnswer\r\n"
                  "1\t문장.\t결과\t가.\t나.\t3\r\n"
                  "2\t문장.\t이유\t가.\t나.\t1\r\n"
                  "3\t문장.\t결과\t가.\r\n"
                  "4\t\t원인\t가.\t나.\t1\r\n"
                  "5\t문장.\t원인\t가.\t나.\t2\r\n".encode())
    rows, rejects = _split(list(READERS["kobest_copa"](f)))
    assert [r.native_id for r in rows] == ["5"]
    assert [(r.line, r.reason.split(" ")[0]) for r in rejects] == [
        (2, "unknown"), (3, "unknown"), (4, "expected"), (5, "empty")]


def test_wrong_header_is_a_file_error(tmp_path: Path):
    f = tmp_path / "copa.tsv"
    f.write_text("id\ttext\tlabel\n1\tx\t1\n", encoding="utf-8")
    with pytest.raises(FileFormatError, match=r"copa\.tsv: header is"):
        list(READERS["kobest_copa"](f))


def test_undecodable_file_is_a_file_error(tmp_path: Path):
    f = tmp_path / "ratings.txt"
    f.write_bytes("id\tdocument\tlabel\n1\t".encode() + "좋다".encode("euc-kr") + b"\t1\n")
    with pytest.raises(FileFormatError, match="not UTF-8"):
        list(READERS["nsmc_ratings"](f))


def test_apeach_multiline_quoted_field_and_labels():
    rows, rejects = _split(list(READERS["apeach"](SAMPLES / "apeach/APEACH/test.csv")))
    assert not rejects and len(rows) == 16
    multi = [r for r in rows if "\n" in r.fields["text"]]
    assert len(multi) == 1 and multi[0].fields["text"].startswith('"외국인 노동자"')
    assert {r.label for r in rows} == {"0", "1"}
    # the row after the two-line record starts two lines later
    idx = rows.index(multi[0])
    assert rows[idx + 1].line == multi[0].line + 2


def test_nsmc_ratings_and_raw():
    rows, _ = _split(list(READERS["nsmc_ratings"](SAMPLES / "nsmc/ratings_test.head5.txt")))
    assert len(rows) == 8 and rows[0].native_id == "9000001" and rows[0].label == "1"
    rows, rejects = _split(list(READERS["nsmc_raw"](SAMPLES / "nsmc/raw/10001.json")))
    assert [r.label for r in rows] == ["1", "0", "1", "0"]
    assert [r.reason for r in rejects] == ["neutral rating 5-8 (NSMC keeps 1-4 and 9-10)"]


def test_nsmc_raw_bad_items(tmp_path: Path):
    f = tmp_path / "1.json"
    f.write_text(json.dumps([{"review": "x", "rating": "ten", "review_id": "1"}, {"review": "y"},
                             {"review": " ", "rating": "1", "review_id": "3"}]), encoding="utf-8")
    rows, rejects = _split(list(READERS["nsmc_raw"](f)))
    assert not rows
    assert [r.reason.split(" ")[0] for r in rejects] == ["rating", "missing", "empty"]
    f.write_text("{not json", encoding="utf-8")
    with pytest.raises(FileFormatError, match="not valid JSON"):
        list(READERS["nsmc_raw"](f))
