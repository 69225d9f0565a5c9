"""Korean question corpora by the same authors' family of formats: ParaKQC, StyleKQC, sae4k.

Traps handled here: ParaKQC has no header and its blocks of 10 consecutive lines are paraphrase
sets; sae4k has no header and starts with a UTF-8 BOM (``read_text`` drops it).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from dagllm.data.readers import Reject, Row, check_width, delimited, headerless, reader

RAW_TSV = {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
PARAKQC_BLOCK = 10


@reader("parakqc")
def read_parakqc(path: Path) -> Iterator[Row | Reject]:
    """ParaKQC: ``topic(0-3), act(0-3), sentence`` per line, no header, CRLF.

    ``group`` numbers the paraphrase set: lines 1-10 are set 1, 11-20 set 2, ... It is taken from
    the physical line, so a quarantined line does not shift the sets after it.
    """
    for line, rec in headerless(path, **RAW_TSV):
        if bad := check_width(line, rec, 3):
            yield bad
            continue
        topic, act, sentence = (x.strip() for x in rec)
        raw = "\t".join(rec)[:500]
        if topic not in ("0", "1", "2", "3") or act not in ("0", "1", "2", "3"):
            yield Reject(line, f"unknown label topic={topic!r} act={act!r} (expected 0-3)", raw)
        elif not sentence:
            yield Reject(line, "empty text", raw)
        else:
            group = str((line - 1) // PARAKQC_BLOCK + 1)
            yield Row(line, None, {"sentence": sentence, "topic": topic, "act": act, "group": group}, None)


@reader("stylekqc_sts")
def read_stylekqc_sts(path: Path) -> Iterator[Row | Reject]:
    """StyleKQC STS: ``similarity, sentence1, sentence2``; similarity 0/1 (1 = same meaning)."""
    for line, rec, _ in delimited(path, ["similarity", "sentence1", "sentence2"], **RAW_TSV):
        if bad := check_width(line, rec, 3):
            yield bad
            continue
        label, s1, s2 = (x.strip() for x in rec)
        if label not in ("0", "1"):
            yield Reject(line, f"unknown label {label!r} (expected 0 or 1)", "\t".join(rec)[:500])
        elif not (s1 and s2):
            yield Reject(line, "empty text", "\t".join(rec)[:500])
        else:
            yield Row(line, None, {"sentence1": s1, "sentence2": s2}, label)


def _labelled_sentence(path: Path, column: str, labels: tuple[str, ...]) -> Iterator[Row | Reject]:
    for line, rec, _ in delimited(path, [column, "sentence"], **RAW_TSV):
        if bad := check_width(line, rec, 2):
            yield bad
            continue
        label, sentence = (x.strip() for x in rec)
        if label not in labels:
            yield Reject(line, f"unknown label {label!r} (expected {labels[0]}-{labels[-1]})", "\t".join(rec)[:500])
        elif not sentence:
            yield Reject(line, "empty text", "\t".join(rec)[:500])
        else:
            yield Row(line, None, {"sentence": sentence}, label)


@reader("stylekqc_act")
def read_stylekqc_act(path: Path) -> Iterator[Row | Reject]:
    """StyleKQC speech act: ``act, sentence``; act 0-3."""
    yield from _labelled_sentence(path, "act", ("0", "1", "2", "3"))


@reader("stylekqc_topic")
def read_stylekqc_topic(path: Path) -> Iterator[Row | Reject]:
    """StyleKQC topic: ``topic, sentence``; topic 0-5."""
    yield from _labelled_sentence(path, "topic", ("0", "1", "2", "3", "4", "5"))


@reader("sae4k")
def read_sae4k(path: Path) -> Iterator[Row | Reject]:
    """sae4k: ``utterance, intent_argument, label(0-5)`` per line, no header, UTF-8 BOM, CRLF."""
    for line, rec in headerless(path, **RAW_TSV):
        if bad := check_width(line, rec, 3):
            yield bad
            continue
        utterance, argument, label = (x.strip() for x in rec)
        raw = "\t".join(rec)[:500]
        if label not in ("0", "1", "2", "3", "4", "5"):
            yield Reject(line, f"unknown label {label!r} (expected 0-5)", raw)
        elif not (utterance and argument):
            yield Reject(line, "empty text", raw)
        else:
            yield Row(line, None, {"utterance": utterance, "intent_argument": argument}, label)
