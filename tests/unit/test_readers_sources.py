"""Readers of the KIT-19 training sources, each DESIGN.md trap on a self-written sample."""

import json
from pathlib import Path

import pytest

from dagllm.data.catalog import load_catalog
from dagllm.data.readers import READERS, FileFormatError, Reject, Row

from ..conftest import SAMPLES


def _read(reader: str, path: Path) -> tuple[list[Row], list[Reject]]:
    items = list(READERS[reader](path))
    return [i for i in items if isinstance(i, Row)], [i for i in items if isinstance(i, Reject)]


def _write(tmp_path: Path, text: str, name: str = "f.tsv", bom: bool = False) -> Path:
    f = tmp_path / name
    f.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return f


@pytest.mark.parametrize("source_id", sorted(load_catalog().sources))
def test_every_sample_yields_rows_with_the_contract_fields(source_id):
    """Field names per reader are the contract with the templates (docs/data.md)."""
    contract = {
        "unsmile": {"text", "targets"}, "hatescore": {"text", "microlabel"}, "kornli": {"premise", "hypothesis"},
        "korsts": {"sentence1", "sentence2", "genre"}, "pawsx_ko": {"sentence1", "sentence2"},
        "parakqc": {"sentence", "topic", "act", "group"}, "stylekqc_sts": {"sentence1", "sentence2"},
        "stylekqc_act": {"sentence"}, "stylekqc_topic": {"sentence"}, "question_pair": {"question1", "question2"},
        "nsmc": {"text"}, "sae4k": {"utterance", "intent_argument"}, "petitions": {"title", "content", "category"},
        "math_korean": {"question", "answer", "solution"}, "kowiki": {"title", "text"},
        "lbox_summarization": {"precedent", "summary"},
    }
    src = load_catalog().source(source_id)
    for f in src.files:
        rows, _ = _read(f.reader, SAMPLES / f.path)
        assert rows, f.path
        if source_id in contract:
            assert {k for r in rows for k in r.fields} == contract[source_id], f.path


def test_unsmile_multilabel_and_schema_breaks(tmp_path: Path):
    rows, rejects = _read("unsmile", SAMPLES / "unsmile/unsmile_train_v1.0.tsv")
    assert not rejects
    both = [r for r in rows if "," in r.label]
    assert both[0].label == "여성/가족,연령" and both[0].fields["targets"] == "여성/가족,연령"
    assert rows[0].label == "clean" and rows[0].fields["targets"] == ""
    hdr = "문장\t여성/가족\t남성\t성소수자\t인종/국적\t연령\t지역\t종교\t기타 혐오\t악플/욕설\tclean\t개인지칭\n"
    f = _write(tmp_path, hdr + "문장1\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\n"
               "문장2\t1\t0\t0\t0\t0\t0\t0\t0\t0\t1\t0\n" "문장3\t2\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\n"
               "문장4\t0\t0\n")
    rows, rejects = _read("unsmile", f)
    assert not rows
    assert [r.reason.split(" (")[0] for r in rejects] == [
        "no label", "contradictory labels", "unknown label '2'", "expected 12 fields, got 3"]


def test_hatescore_unnamed_index_and_quoted_microlabel():
    rows, rejects = _read("hatescore", SAMPLES / "hatescore/HateScore.csv")
    assert not rejects
    assert rows[0].native_id == "0" and rows[0].fields["microlabel"] == ""
    assert {r.label for r in rows} == {"Clean", "혐오발언", "단순 악플"}
    assert any(r.fields["microlabel"] == "연령,여성/가족" for r in rows)


def test_hatescore_header_without_index_column_is_a_file_error(tmp_path: Path):
    f = _write(tmp_path, "comment,macrolabel,microlabel,source\n글,Clean,None,x\n", "h.csv")
    with pytest.raises(FileFormatError, match=r"h\.csv: header is"):
        list(READERS["hatescore"](f))


def test_kornli_keeps_raw_quotes_and_rejects_snli_dash():
    rows, rejects = _read("kornli", SAMPLES / "kornli/KorNLI/xnli.dev.ko.tsv")
    assert rows[0].fields["premise"] == '그는 "금방 올게"라고 말하고 나갔다.'
    _, rejects = _read("kornli", SAMPLES / "kornli/KorNLI/snli_1.0_train.ko.tsv")
    assert [r.reason for r in rejects] == ["unknown label '-' (expected entailment, neutral, contradiction)"]


def test_korsts_score_is_a_two_decimal_label(tmp_path: Path):
    rows, _ = _read("korsts", SAMPLES / "korsts/KorSTS/sts-train.tsv")
    assert [r.label for r in rows][:3] == ["5.00", "3.80", "0.40"]
    assert rows[2].fields["sentence1"].startswith('"물가 상승"')
    f = _write(tmp_path, "genre\tfilename\tyear\tid\tscore\tsentence1\tsentence2\n"
               "g\tf\t2012\t1\t7.5\t가\t나\n" "g\tf\t2012\t2\tabc\t가\t나\n" "g\tf\t2012\t3\t2.0\t\t나\n")
    rows, rejects = _read("korsts", f)
    assert not rows and [r.reason.split(" ")[0] for r in rejects] == ["unknown", "unknown", "empty"]


def test_pawsx_placeholder_rows_are_quarantined():
    rows, rejects = _read("pawsx", SAMPLES / "pawsx_ko/dev_2k.tsv")
    assert [r.line for r in rejects] == [4, 7]
    assert {r.reason for r in rejects} == {"placeholder row (NS: sentence not translated)"}
    assert all("NS" not in r.fields.values() for r in rows)


def test_parakqc_groups_of_ten_without_header():
    rows, rejects = _read("parakqc", SAMPLES / "parakqc/data/paraKQC_v1.txt")
    assert not rejects and len(rows) == 20
    assert [r.fields["group"] for r in rows] == ["1"] * 10 + ["2"] * 10
    assert rows[0].line == 1 and rows[0].label is None
    assert not any(v.endswith("\r") for r in rows for v in r.fields.values())


def test_parakqc_group_follows_the_line_even_after_a_bad_line(tmp_path: Path):
    lines = [f"0\t1\t문장 {i}" for i in range(12)]
    lines[3] = "0\t9\t나쁜 줄"
    rows, rejects = _read("parakqc", _write(tmp_path, "\r\n".join(lines) + "\r\n"))
    assert [r.line for r in rejects] == [4]
    assert [(r.line, r.fields["group"]) for r in rows if r.line in (10, 11)] == [(10, "1"), (11, "2")]


def test_stylekqc_labels():
    rows, _ = _read("stylekqc_sts", SAMPLES / "stylekqc/sts/dev.tsv")
    assert {r.label for r in rows} == {"0", "1"}
    rows, _ = _read("stylekqc_topic", SAMPLES / "stylekqc/topic/dev.tsv")
    assert [r.label for r in rows] == ["0", "1", "2", "3", "4", "5"]
    rows, _ = _read("stylekqc_act", SAMPLES / "stylekqc/act/dev.tsv")
    assert {r.label for r in rows} == {"0", "1", "2", "3"}


def test_stylekqc_topic_label_out_of_range(tmp_path: Path):
    rows, rejects = _read("stylekqc_topic", _write(tmp_path, "topic\tsentence\n6\t문장\n2\t\n"))
    assert not rows and [r.reason for r in rejects] == ["unknown label '6' (expected 0-5)", "empty text"]


def test_question_pair_bom_inverted_label_and_trailing_column(tmp_path: Path):
    rows, rejects = _read("question_pair", SAMPLES / "question_pair/kor_pair_train.csv")
    assert not rejects and rows[0].native_id == "1"
    assert rows[0].label == "1"  # file says 0 = same question
    assert rows[1].label == "0"
    assert rows[2].fields["question1"] == "썸, 연애의 시작일까?"
    rows, rejects = _read("question_pair", SAMPLES / "question_pair/kor_Pair_test.csv")
    assert not rejects and [r.label for r in rows] == ["1", "0", "1", "0"]
    f = _write(tmp_path, "test_id,question1,question2,is_duplicate,\r\n1,가,나,0,1\r\n2,가,나,3,\r\n", "q.csv", bom=True)
    rows, rejects = _read("question_pair", f)
    assert [r.reason for r in rejects] == ["extra field '1' in the trailing empty column",
                                           "unknown label '3' (expected 0 or 1)"]


def test_sae4k_bom_no_header():
    rows, rejects = _read("sae4k", SAMPLES / "sae4k/data/sae4k_v1.txt")
    assert not rejects and len(rows) == 8
    assert rows[0].fields["utterance"].startswith("최근")  # the BOM is not part of the text
    assert rows[0].label == "4"


def test_petitions_jsonl_and_bad_lines(tmp_path: Path):
    rows, rejects = _read("petitions", SAMPLES / "petitions_archive/petitions_2019-08")
    assert [r.reason for r in rejects] == ["empty text (content)"]
    assert rows[0].native_id == "201" and rows[0].label == "일자리"
    f = _write(tmp_path, '{"title": "가", "content": "나", "category": "기타"}\n{broken\n[1, 2]\n\n'
               '{"title": "가", "content": "나"}\n', "p.jsonl")
    rows, rejects = _read("petitions", f)
    assert len(rows) == 1
    assert [(r.line, r.reason.split(" (")[0]) for r in rejects] == [
        (2, "not valid JSON"), (3, "expected a JSON object, got list"), (5, "missing keys")]


def test_math_splits_gsm8k_answers():
    rows, _ = _read("math_jsonl", SAMPLES / "math_korean/KO-gsm8k-test.jsonl")
    assert (rows[0].fields["answer"], rows[0].fields["solution"]) == ("8", "3 + 5 = 8")
    assert (rows[3].fields["answer"], rows[3].fields["solution"]) == ("5", "20 ÷ 4 = 5")


def test_kowiki_and_lbox(tmp_path: Path):
    rows, _ = _read("kowiki_jsonl", SAMPLES / "kowiki/kowiki-20240301.jsonl")
    assert rows[0].native_id == "5" and set(rows[0].fields) == {"title", "text"}
    rows, _ = _read("lbox_summarization", SAMPLES / "lbox/summarization/train.jsonl")
    assert rows[0].native_id == "1" and rows[0].fields["precedent"].startswith("주문")
    f = _write(tmp_path, json.dumps({"id": 3, "summary": "", "precedent": "판결"}, ensure_ascii=False) + "\n")
    _, rejects = _read("lbox_summarization", f)
    assert [r.reason for r in rejects] == ["empty text (summary)"]


def test_nsmc_ratings_sample_rejects_empty_document():
    rows, rejects = _read("nsmc_ratings", SAMPLES / "nsmc/ratings_train.txt")
    assert len(rows) == 5 and [(r.line, r.reason) for r in rejects] == [(7, "empty text")]


def test_a_few_undecodable_rows_are_quarantined_not_fatal(tmp_path: Path):
    good = "".join(f"{i}\t좋은 영화 {i}\t1\n" for i in range(20)).encode()
    bad = b"99\t" + "좋다".encode("euc-kr") + b"\t1\n"
    f = tmp_path / "ratings.txt"
    f.write_bytes(b"id\tdocument\tlabel\n" + good + bad)
    rows, rejects = _read("nsmc_ratings", f)
    assert len(rows) == 20
    assert [(r.line, r.reason) for r in rejects] == [(22, "undecodable bytes (not UTF-8)")]
    assert "\ufffd" in rejects[0].raw
    json.dumps(rejects[0].raw, ensure_ascii=False).encode("utf-8")  # writable as UTF-8


def test_euc_kr_file_is_a_file_error_naming_the_encoding(tmp_path: Path):
    f = tmp_path / "ratings.txt"
    text = "id\tdocument\tlabel\n" + "".join(f"{i}\t재미있는 영화\t1\n" for i in range(10))
    f.write_bytes(text.encode("euc-kr"))
    with pytest.raises(FileFormatError, match=r"ratings\.txt: not UTF-8 \(it decodes as EUC-KR/CP949\).*iconv"):
        list(READERS["nsmc_ratings"](f))
