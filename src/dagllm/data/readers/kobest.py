"""KoBEST (BoolQ, COPA, HellaSwag, SentiNeg, WiC): TSV files, CRLF except HellaSwag.

Traps handled here: mixed-case booleans (True/TRUE/False/FALSE), SentiNeg's column order that
differs per split, HellaSwag without an ID column, WiC's bracketed target word.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

from dagllm.data.readers import Reject, Row, check_width, delimited, reader, truthy

TSV = {"delimiter": "\t", "quoting": csv.QUOTE_NONE}


def _rows(path: Path, *headers: list[str]) -> Iterator[tuple[int, dict[str, str] | Reject]]:
    """Records as dicts keyed by the header found, or a width reject."""
    for line, rec, header in delimited(path, *headers, **TSV):
        bad = check_width(line, rec, len(header))
        yield line, bad if bad else dict(zip(header, (x.strip() for x in rec), strict=True))


def _reject_empty(line: int, rec: dict[str, str], names: list[str]) -> Reject | None:
    empty = [n for n in names if not rec[n]]
    return Reject(line, f"empty text ({', '.join(empty)})", "\t".join(rec.values())) if empty else None


@reader("kobest_copa")
def read_kobest_copa(path: Path) -> Iterator[Row | Reject]:
    """COPA: ``ID, sentence, question, 1, 2, Answer``; question 원인/결과; Answer 1 or 2 (kept as is)."""
    for line, rec in _rows(path, ["ID", "sentence", "question", "1", "2", "Answer"]):
        if isinstance(rec, Reject):
            yield rec
        elif rec["question"] not in ("원인", "결과"):
            yield Reject(line, f"unknown question type {rec['question']!r} (expected 원인 or 결과)", "\t".join(rec.values()))
        elif rec["Answer"] not in ("1", "2"):
            yield Reject(line, f"unknown label {rec['Answer']!r} (expected 1 or 2)", "\t".join(rec.values()))
        elif bad := _reject_empty(line, rec, ["sentence", "1", "2"]):
            yield bad
        else:
            fields = {"premise": rec["sentence"], "question": rec["question"],
                      "alternative_1": rec["1"], "alternative_2": rec["2"]}
            yield Row(line, rec["ID"], fields, rec["Answer"])


@reader("kobest_boolq")
def read_kobest_boolq(path: Path) -> Iterator[Row | Reject]:
    """BoolQ: ``ID, Text, Question, Answer``; Answer True/TRUE/False/FALSE -> 1/0."""
    for line, rec in _rows(path, ["ID", "Text", "Question", "Answer"]):
        if isinstance(rec, Reject):
            yield rec
        elif (label := truthy(rec["Answer"])) is None:
            yield Reject(line, f"unknown label {rec['Answer']!r} (expected True or False)", "\t".join(rec.values()))
        elif bad := _reject_empty(line, rec, ["Text", "Question"]):
            yield bad
        else:
            yield Row(line, rec["ID"], {"passage": rec["Text"], "question": rec["Question"]}, label)


def _csv_unquote(text: str) -> str:
    """A field the file wrote CSV-style (``"... ""교정"" ..."``: wrapped in quotes, inner quotes
    doubled) as its text (``... "교정" ...``); any other field as it is."""
    if len(text) >= 2 and text[0] == text[-1] == '"' and '"' not in text[1:-1].replace('""', ""):
        return text[1:-1].replace('""', '"')
    return text


@reader("kobest_hellaswag")
def read_kobest_hellaswag(path: Path) -> Iterator[Row | Reject]:
    """HellaSwag: ``context, choice1..choice4, label`` (LF, no ID: ids come from the content).

    A few fields are CSV-quoted although the file is read without quoting (``"…""v"" 모양…"``):
    they are unquoted, so the text reads ``…"v" 모양…``.
    """
    for line, rec in _rows(path, ["context", "choice1", "choice2", "choice3", "choice4", "label"]):
        if not isinstance(rec, Reject):
            rec = {k: _csv_unquote(v) for k, v in rec.items()}
        if isinstance(rec, Reject):
            yield rec
        elif rec["label"] not in ("0", "1", "2", "3"):
            yield Reject(line, f"unknown label {rec['label']!r} (expected 0-3)", "\t".join(rec.values()))
        elif bad := _reject_empty(line, rec, ["context", "choice1", "choice2", "choice3", "choice4"]):
            yield bad
        else:
            fields = {"context": rec["context"], **{f"ending_{i}": rec[f"choice{i}"] for i in range(1, 5)}}
            yield Row(line, None, fields, rec["label"])


SENTINEG_HEADERS = (
    ["ID", "Text", "Label"],  # train
    ["ID", "Label", "Text"],  # dev
    ["ID", "Label_origin", "Text_origin", "Label", "Text", "Category_neg"],  # test
)


@reader("kobest_sentineg")
def read_kobest_sentineg(path: Path) -> Iterator[Row | Reject]:
    """SentiNeg: the column order differs per split; Label 0 = negative, 1 = positive.

    The test split's ``Text`` is the negated sentence (what is scored); the original sentence and
    its label are kept as ``text_origin`` / ``label_origin``.
    """
    for line, rec in _rows(path, *SENTINEG_HEADERS):
        if isinstance(rec, Reject):
            yield rec
        elif rec["Label"] not in ("0", "1"):
            yield Reject(line, f"unknown label {rec['Label']!r} (expected 0 or 1)", "\t".join(rec.values()))
        elif bad := _reject_empty(line, rec, ["Text"]):
            yield bad
        else:
            fields = {"text": rec["Text"]}
            if "Text_origin" in rec:
                fields.update(text_origin=rec["Text_origin"], label_origin=rec["Label_origin"])
            yield Row(line, rec["ID"], fields, rec["Label"])


BRACKETED = re.compile(r"\[([^\[\]]+)\]")


@reader("kobest_wic")
def read_kobest_wic(path: Path) -> Iterator[Row | Reject]:
    """WiC: target word bracketed ``[..]`` in both sentences (brackets removed); ANSWER True/False -> 1/0."""
    header = ["ID", "Target", "SENTENCE1", "Dictionary 1", "Link 1", "SENTENCE2", "Dictionary 2", "Link2", "ANSWER"]
    for line, rec in _rows(path, header):
        if isinstance(rec, Reject):
            yield rec
        elif (label := truthy(rec["ANSWER"])) is None:
            yield Reject(line, f"unknown label {rec['ANSWER']!r} (expected True or False)", "\t".join(rec.values()))
        elif bad := _reject_empty(line, rec, ["Target", "SENTENCE1", "SENTENCE2"]):
            yield bad
        else:
            fields = {"word": rec["Target"], "context_1": BRACKETED.sub(r"\1", rec["SENTENCE1"]),
                      "context_2": BRACKETED.sub(r"\1", rec["SENTENCE2"])}
            yield Row(line, rec["ID"], fields, label)
