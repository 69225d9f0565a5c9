"""Sentence-pair sources: KorNLI, KorSTS, PAWS-X (ko), Question_pair.

Traps handled here: raw ``"`` characters in KorNLI/KorSTS/PAWS-X (read with quoting off), PAWS-X
rows whose sentence is the placeholder ``NS``, Question_pair's UTF-8 BOM, its inverted
``is_duplicate`` (0 = same question) and the test file's trailing empty column.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from dagllm.data.readers import Reject, Row, check_width, delimited, reader

RAW_TSV = {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
NLI_LABELS = ("entailment", "neutral", "contradiction")


def _empty(line: int, rec: list[str], values: list[str]) -> Reject | None:
    return None if all(values) else Reject(line, "empty text", "\t".join(rec)[:500])


@reader("kornli")
def read_kornli(path: Path) -> Iterator[Row | Reject]:
    """KorNLI TSV ``sentence1, sentence2, gold_label`` (XNLI dev/test, SNLI/MNLI train, same header).

    SNLI's ``-`` (no annotator majority) and any other label outside the three are quarantined.
    """
    for line, rec, _ in delimited(path, ["sentence1", "sentence2", "gold_label"], **RAW_TSV):
        if bad := check_width(line, rec, 3):
            yield bad
            continue
        premise, hypothesis, label = (x.strip() for x in rec)
        if label not in NLI_LABELS:
            yield Reject(line, f"unknown label {label!r} (expected {', '.join(NLI_LABELS)})", "\t".join(rec)[:500])
        elif bad := _empty(line, rec, [premise, hypothesis]):
            yield bad
        else:
            yield Row(line, None, {"premise": premise, "hypothesis": hypothesis}, label)


@reader("korsts")
def read_korsts(path: Path) -> Iterator[Row | Reject]:
    """KorSTS TSV ``genre, filename, year, id, score, sentence1, sentence2``; label = score, 2 decimals."""
    header = ["genre", "filename", "year", "id", "score", "sentence1", "sentence2"]
    for line, rec, _ in delimited(path, header, **RAW_TSV):
        if bad := check_width(line, rec, 7):
            yield bad
            continue
        genre, filename, year, rid, score, s1, s2 = (x.strip() for x in rec)
        try:
            value = float(score)
        except ValueError:
            value = -1.0
        if not 0.0 <= value <= 5.0:
            yield Reject(line, f"unknown label {score!r} (expected a 0-5 score)", "\t".join(rec)[:500])
        elif bad := _empty(line, rec, [s1, s2]):
            yield bad
        else:
            # The file's id restarts per original STS file, hence the composite native id.
            yield Row(line, f"{filename}-{year}-{rid}", {"sentence1": s1, "sentence2": s2, "genre": genre},
                      f"{value:.2f}")


@reader("pawsx")
def read_pawsx(path: Path) -> Iterator[Row | Reject]:
    """PAWS-X TSV ``id, sentence1, sentence2, label`` (1 = paraphrase); ``NS`` rows are placeholders."""
    for line, rec, _ in delimited(path, ["id", "sentence1", "sentence2", "label"], **RAW_TSV):
        if bad := check_width(line, rec, 4):
            yield bad
            continue
        rid, s1, s2, label = (x.strip() for x in rec)
        if "NS" in (s1, s2):
            yield Reject(line, "placeholder row (NS: sentence not translated)", "\t".join(rec)[:500])
        elif label not in ("0", "1"):
            yield Reject(line, f"unknown label {label!r} (expected 0 or 1)", "\t".join(rec)[:500])
        elif bad := _empty(line, rec, [s1, s2]):
            yield bad
        else:
            yield Row(line, rid or None, {"sentence1": s1, "sentence2": s2}, label)


QUESTION_PAIR_HEADERS = (
    ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],  # kor_pair_train.csv
    ["test_id", "question1", "question2", "is_duplicate", ""],  # kor_Pair_test.csv: trailing empty column
)
# The files code 0 = same question, 1 = different (README); the canonical label is "same question".
SAME_QUESTION = {"0": "1", "1": "0"}


@reader("question_pair")
def read_question_pair(path: Path) -> Iterator[Row | Reject]:
    """Question_pair CSV (UTF-8 BOM, CRLF); label 1 = same question (the file's 0), 0 = different."""
    for line, rec, header in delimited(path, *QUESTION_PAIR_HEADERS, delimiter=",", quoting=csv.QUOTE_MINIMAL):
        if bad := check_width(line, rec, len(header)):
            yield bad
            continue
        row = dict(zip(header, (x.strip() for x in rec), strict=True))
        raw = ",".join(rec)[:500]
        if row.get("", ""):
            yield Reject(line, f"extra field {row['']!r} in the trailing empty column", raw)
        elif row["is_duplicate"] not in SAME_QUESTION:
            yield Reject(line, f"unknown label {row['is_duplicate']!r} (expected 0 or 1)", raw)
        elif bad := _empty(line, rec, [row["question1"], row["question2"]]):
            yield bad
        else:
            native = row.get("id") or row.get("test_id") or None
            yield Row(line, native, {"question1": row["question1"], "question2": row["question2"]},
                      SAME_QUESTION[row["is_duplicate"]])
