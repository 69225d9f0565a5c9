"""Hostile files, written here, through every reader family: nothing crashes, nothing is lost.

Each fixture holds good rows with one bad row among them; the reader must keep every good row,
quarantine the bad one with a reason, and yield exactly one item per row written (the counts
describe the file).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from dagllm.data.readers import READERS, FileFormatError, Reject, Row

GOOD = ["정말 재미있는 영화였다", "배우들의 연기가 훌륭했다", "다시 보고 싶은 작품이다"]
UNSMILE_COLS = 11


def _csv(header: list[str], rows: list[list[str]], delimiter: str = ",", eol: str = "\n") -> str:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator=eol, quoting=csv.QUOTE_MINIMAL)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _tsv(header: list[str], rows: list[list[str]], eol: str = "\n") -> str:
    return eol.join(["\t".join(header), *("\t".join(r) for r in rows)]) + eol


# reader -> (file name, writer of a file whose rows carry each text in their main text field)
MAKERS: dict[str, tuple[str, Callable[[list], str]]] = {
    "nsmc_ratings": ("ratings.txt", lambda ts: _tsv(["id", "document", "label"],
                                                   [[str(i), t, "1"] for i, t in enumerate(ts)])),
    "kobest_sentineg": ("train.tsv", lambda ts: _tsv(["ID", "Text", "Label"],
                                                    [[f"s{i}", t, "0"] for i, t in enumerate(ts)], "\r\n")),
    "apeach": ("apeach.csv", lambda ts: _csv(
        ["text", "user_age", "user_gender", "text_topic", "class", "age", "text_topic_eng"],
        [[t, "20대", "여", "정치", "Default", "20", "politics"] for t in ts])),
    "unsmile": ("unsmile.tsv", lambda ts: _csv(
        ["문장", "여성/가족", "남성", "성소수자", "인종/국적", "연령", "지역", "종교", "기타 혐오", "악플/욕설", "clean", "개인지칭"],
        [[t, *["0"] * 9, "1", "0"] for t in ts], delimiter="\t")),
    "petitions": ("petitions.jsonl", lambda ts: "".join(
        json.dumps({"category": "육아/교육", "title": "청원 제목", "content": t, "petition_idx": i},
                   ensure_ascii=False) + "\n" for i, t in enumerate(ts))),
    "kowiki_jsonl": ("kowiki.jsonl", lambda ts: "".join(
        json.dumps({"id": str(i), "title": "문서", "text": t}, ensure_ascii=False) + "\n" for i, t in enumerate(ts))),
    "klue_ynat": ("ynat.json", lambda ts: json.dumps(
        [{"guid": f"y{i}", "title": t, "label": "경제"} for i, t in enumerate(ts)], ensure_ascii=False)),
    "nsmc_raw": ("raw.json", lambda ts: json.dumps(
        [{"review": t, "rating": 10, "review_id": str(i)} for i, t in enumerate(ts)], ensure_ascii=False)),
}
JSON_READERS = {"petitions", "kowiki_jsonl", "klue_ynat", "nsmc_raw"}
QUOTING_READERS = {"apeach", "unsmile"}


def _read(tmp_path: Path, name: str, texts: list) -> list[Row | Reject]:
    fname, make = MAKERS[name]
    path = tmp_path / fname
    path.write_text(make(texts), encoding="utf-8", newline="")
    return list(READERS[name](path))


def _texts(rows: list[Row]) -> list[str]:
    return [max(r.fields.values(), key=len) for r in rows]


def _one_bad(items: list, n: int, reason_part: str) -> None:
    rows = [i for i in items if isinstance(i, Row)]
    rejects = [i for i in items if isinstance(i, Reject)]
    assert len(items) == n, "one item per row written"
    assert len(rejects) == 1 and reason_part in rejects[0].reason, rejects
    assert sorted(_texts(rows)) == sorted(GOOD)


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_field_larger_than_the_csv_limit_is_kept(tmp_path: Path, name: str):
    huge = "가나다라마바사 " * 40_000  # 320 KiB, past the csv module's 128 KiB default
    items = _read(tmp_path, name, [*GOOD, huge])
    assert all(isinstance(i, Row) for i in items) and len(items) == 4
    assert max(_texts(items), key=len) == huge.strip()


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_nul_byte_row_is_quarantined(tmp_path: Path, name: str):
    _one_bad(_read(tmp_path, name, [GOOD[0], "좋은\x00영화", *GOOD[1:]]), 4, "NUL byte")


@pytest.mark.parametrize("name", sorted(MAKERS))
@pytest.mark.parametrize("invisible", ["\u200b\u200b", "\u3164", "\u200d\ufe0f\u2060", "\u00ad \u200e"])
def test_invisible_only_text_is_quarantined(tmp_path: Path, name: str, invisible: str):
    _one_bad(_read(tmp_path, name, [*GOOD[:2], invisible, GOOD[2]]), 4, "invisible")


# Korean really misread (the bytes of one encoding decoded as another), as a file converted wrongly
MISREAD = {
    "CP949/EUC-KR text read as Windows-1252": "배송은 늦었지만 물건은 정말 마음에 듭니다".encode("cp949").decode("cp1252", "replace"),
    "UTF-8 text read as CP949": "배송은 늦었지만 물건은 정말 마음에 듭니다".encode("utf-8").decode("cp949", "replace"),
    "U+FFFD": "배송은 늦었지만 물건은 정말 마음에 듭니다".encode("cp949").decode("utf-8", "replace"),
}


@pytest.mark.parametrize("name", sorted(MAKERS))
@pytest.mark.parametrize("kind", sorted(MISREAD))
def test_mojibake_row_is_quarantined_naming_the_misreading(tmp_path: Path, name: str, kind: str):
    _one_bad(_read(tmp_path, name, [GOOD[0], MISREAD[kind], *GOOD[1:]]), 4, kind)


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_real_text_with_a_few_foreign_characters_is_kept(tmp_path: Path, name: str):
    texts = ["Café 라떼가 맛있어요 ® ™ — “최고”", "東京 여행은 즐거웠다 😀", "배송 빠름\ufffd 좋아요"]
    items = _read(tmp_path, name, texts)
    assert all(isinstance(i, Row) for i in items), items
    assert sorted(_texts(items)) == sorted(texts)


LINE_READERS = sorted(n for n, (f, _) in MAKERS.items() if not f.endswith(".json"))  # not one JSON array


@pytest.mark.parametrize("name", LINE_READERS)
def test_bom_in_the_middle_of_a_file_is_removed(tmp_path: Path, name: str):
    fname, make = MAKERS[name]
    path = tmp_path / fname
    body = make(GOOD)
    # Two files concatenated, each with its BOM: the second BOM lands before a data line.
    head, _, tail = body.partition("\n")
    first_line, rest = (head + "\n", tail) if name not in JSON_READERS else ("", body)
    path.write_text("\ufeff" + first_line + rest + "\ufeff" + rest, encoding="utf-8", newline="")
    items = list(READERS[name](path))
    assert len(items) == 6 and all(isinstance(i, Row) for i in items)
    for row in items:
        assert "\ufeff" not in json.dumps([row.fields, row.native_id, row.label], ensure_ascii=False)


@pytest.mark.parametrize("name", sorted(JSON_READERS))
@pytest.mark.parametrize("value", [None, ["목록"], {"a": 1}, True])
def test_json_value_that_is_not_text_is_quarantined_not_str(tmp_path: Path, name: str, value):
    items = _read(tmp_path, name, [*GOOD, value])
    rows = [i for i in items if isinstance(i, Row)]
    rejects = [i for i in items if isinstance(i, Reject)]
    assert len(items) == 4 and len(rejects) == 1
    assert sorted(_texts(rows)) == sorted(GOOD)
    assert not any("None" in t for t in _texts(rows))


@pytest.mark.parametrize("name", sorted(QUOTING_READERS))
def test_unterminated_quote_loses_only_its_own_line(tmp_path: Path, name: str):
    fname, make = MAKERS[name]
    path = tmp_path / fname
    lines = make(GOOD + ["네 번째 좋은 줄", "다섯 번째 좋은 줄"]).split("\n")
    lines[2] = '"' + lines[2]  # the 2nd data row opens a quote that never closes
    path.write_text("\n".join(lines), encoding="utf-8")
    items = list(READERS[name](path))
    rejects = [i for i in items if isinstance(i, Reject)]
    assert len(items) == 5, "rows in the file = kept + rejected"
    assert [r.line for r in rejects] == [3] and "unterminated quote" in rejects[0].reason
    assert sorted(_texts([i for i in items if isinstance(i, Row)])) == sorted(
        [GOOD[0], GOOD[2], "네 번째 좋은 줄", "다섯 번째 좋은 줄"])


@pytest.mark.parametrize("name", ["petitions", "kowiki_jsonl"])
@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\u0085", "\r", "\x1c"])
def test_jsonl_splits_lines_on_newline_only(tmp_path: Path, name: str, sep: str):
    odd = f"첫 문단{sep}둘째 문단"
    items = _read(tmp_path, name, [GOOD[0], odd, *GOOD[1:]])
    assert len(items) == 4 and all(isinstance(i, Row) for i in items)
    assert odd in _texts(items)


@pytest.mark.parametrize("name", sorted(QUOTING_READERS | JSON_READERS))  # unquoted TSV has no such fields
def test_quoted_multiline_field_that_closes_is_one_record(tmp_path: Path, name: str):
    items = _read(tmp_path, name, [GOOD[0], "첫 줄\n둘째 줄", *GOOD[1:]])
    assert len(items) == 4 and all(isinstance(i, Row) for i in items)


@pytest.mark.parametrize("name", sorted(MAKERS))
@pytest.mark.parametrize("kind, expected", [
    ("gzip", "gzip-compressed"), ("utf16", "UTF-16"), ("utf16-nobom", "UTF-16"), ("dir", "directory"),
    ("zip", "zip archive"),
])
def test_wrong_container_says_what_the_file_is(tmp_path: Path, name: str, kind: str, expected: str):
    import gzip
    import zipfile

    fname, make = MAKERS[name]
    path = tmp_path / fname
    body = make(GOOD)
    if kind == "gzip":
        path.write_bytes(gzip.compress(body.encode()))
    elif kind == "utf16":
        path.write_text(body, encoding="utf-16")
    elif kind == "utf16-nobom":
        path.write_bytes(body.encode("utf-16-le"))
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("inner", body)
    else:
        path.mkdir()
    with pytest.raises(FileFormatError) as err:
        list(READERS[name](path))
    assert expected in str(err.value) and str(path) in str(err.value)
    assert "cp949" not in str(err.value)
