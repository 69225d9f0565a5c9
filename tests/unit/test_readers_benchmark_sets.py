"""Readers of the KoBEST and KLUE files, each trap from DESIGN.md on a self-written sample."""

import json
from pathlib import Path

import pytest

from dagllm.data.readers import READERS, FileFormatError, Reject, Row

from ..conftest import SAMPLES


def _read(reader: str, path: Path) -> tuple[list[Row], list[Reject]]:
    items = list(READERS[reader](path))
    return [i for i in items if isinstance(i, Row)], [i for i in items if isinstance(i, Reject)]


def test_boolq_mixed_case_booleans():
    rows, rejects = _read("kobest_boolq", SAMPLES / "kobest/v1.0/BoolQ/test.tsv")
    assert not rejects
    assert [r.label for r in rows] == ["1", "0", "1", "0", "1", "0", "1", "0"]  # TRUE, False, True, FALSE, ...
    assert set(rows[0].fields) == {"passage", "question"}


def test_boolq_unknown_answer_is_rejected(tmp_path: Path):
    f = tmp_path / "b.tsv"
    f.write_bytes("ID\tText\tQuestion\tAnswer\r\n1\t본문\t질문?\tYes\r\n2\t본문\t질문?\ttrue\r\n".encode())
    rows, rejects = _read("kobest_boolq", f)
    assert [r.label for r in rows] == ["1"]
    assert rejects[0].reason == "unknown label 'Yes' (expected True or False)" and rejects[0].line == 2


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_sentineg_column_order_per_split(split: str):
    rows, rejects = _read("kobest_sentineg", SAMPLES / f"kobest/v1.0/SentiNeg/{split}.tsv")
    assert not rejects and len(rows) == 6
    first = {"train": "음식이 따뜻하게 와서 맛있게 먹었어요", "dev": "직원이 친절해서 기분이 좋았어요"}
    if split == "test":  # the negated sentence is scored; the original is kept
        assert rows[0].fields == {"text": "배송이 빨라서 정말 좋지는 않았어요", "text_origin": "배송이 빨라서 정말 좋았어요",
                                  "label_origin": "1"}
        assert rows[0].label == "0"
    else:  # train and dev read the same columns in another order
        assert rows[0].fields == {"text": first[split]} and rows[0].label == "1"


def test_sentineg_unknown_header_is_a_file_error(tmp_path: Path):
    f = tmp_path / "s.tsv"
    f.write_text("ID\tSentence\tLabel\n1\t좋다\t1\n", encoding="utf-8")
    with pytest.raises(FileFormatError, match=r"s\.tsv: header is .* expected .* or "):
        list(READERS["kobest_sentineg"](f))


def test_hellaswag_lf_no_id_and_four_endings():
    rows, rejects = _read("kobest_hellaswag", SAMPLES / "kobest/v1.0/HellaSwag/test.tsv")
    assert not rejects and all(r.native_id is None for r in rows)
    assert set(rows[0].fields) == {"context", "ending_1", "ending_2", "ending_3", "ending_4"}
    assert [r.label for r in rows] == ["0", "1", "2", "3", "0", "1"]


def test_wic_brackets_removed_and_booleans():
    rows, rejects = _read("kobest_wic", SAMPLES / "kobest/v1.0/WiC/test.tsv")
    assert not rejects
    assert rows[0].fields == {"word": "눈", "context_1": "아침에 일어나니 눈이 많이 쌓여 있었다.",
                              "context_2": "겨울이 되자 산에 눈이 내렸다."}
    assert [r.label for r in rows] == ["1", "0", "0", "1", "0", "1"]


def test_klue_sts_binary_label_and_score():
    rows, rejects = _read("klue_sts", SAMPLES / "klue_sts/klue-sts-v1.1_dev.json")
    assert not rejects
    assert all(r.label == ("1" if float(r.fields["score"]) >= 3.0 else "0") for r in rows)
    assert rows[0].native_id == "klue-sts-sample_dev_00000"


def test_klue_ynat_labels_and_bad_items(tmp_path: Path):
    rows, _ = _read("klue_ynat", SAMPLES / "klue_ynat/ynat-v1.1_dev.json")
    assert len(rows) == 7 and {r.label for r in rows} <= {"IT과학", "경제", "사회", "생활문화", "세계", "스포츠", "정치"}
    f = tmp_path / "y.json"
    f.write_text(json.dumps([{"guid": "a", "title": "제목", "label": "연예"}, {"guid": "b", "title": "제목"},
                             {"guid": "c", "title": "증시 상승", "label": "경제"}], ensure_ascii=False))
    rows, rejects = _read("klue_ynat", f)
    assert [r.native_id for r in rows] == ["c"]
    assert [r.reason.split(" ")[0] for r in rejects] == ["unknown", "missing"]
    f.write_text('{"guid": "a"}')
    with pytest.raises(FileFormatError, match="expected a JSON array"):
        list(READERS["klue_ynat"](f))
