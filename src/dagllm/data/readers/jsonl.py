"""JSON Lines sources: the petitions archive, a Korean math set, a kowiki text dump, LBox Open.

One object per line. A line that is not a JSON object, lacks a key or has empty text is
quarantined with its line number; only a file that is not text at all is a file error.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from dagllm.data.readers import Reject, Row, load_jsonl, reader, text_fields


def _native_id(item: dict, key: str) -> str | None:
    value = item.get(key)
    return None if value is None or str(value).strip() == "" else str(value).strip()


@reader("petitions")
def read_petitions(path: Path) -> Iterator[Row | Reject]:
    """lovit/petitions_archive ``petitions_YYYY-MM``: ``{category, title, content, petition_idx, ...}``.

    The label is the petition's category (Korean, e.g. 육아/교육) as given.
    """
    for line, item, raw, problem in load_jsonl(path):
        fields, problem = (None, problem) if problem else text_fields(item, ["title", "content", "category"])
        if problem:
            yield Reject(line, problem, raw)
        else:
            yield Row(line, _native_id(item, "petition_idx"), fields, fields["category"])


GSM8K_MARK = "####"


@reader("math_jsonl")
def read_math_jsonl(path: Path) -> Iterator[Row | Reject]:
    """A Korean GSM8K-style set: ``{question, answer[, solution][, id]}`` per line.

    GSM8K's own layout puts the worked solution and the final answer in ``answer`` separated by
    ``####``; it is split into ``solution`` and ``answer``. ``solution`` may be empty.
    """
    for line, item, raw, problem in load_jsonl(path):
        fields, problem = (None, problem) if problem else text_fields(item, ["question", "answer"], ["solution"])
        if problem:
            yield Reject(line, problem, raw)
            continue
        if GSM8K_MARK in fields["answer"]:
            worked, _, final = fields["answer"].rpartition(GSM8K_MARK)
            fields = {**fields, "answer": final.strip(), "solution": fields["solution"] or worked.strip()}
            if not fields["answer"]:
                yield Reject(line, "empty text (answer after ####)", raw)
                continue
        yield Row(line, _native_id(item, "id"), fields, None)


@reader("kowiki_jsonl")
def read_kowiki_jsonl(path: Path) -> Iterator[Row | Reject]:
    """A Korean Wikipedia text dump, one article per line: ``{id, title, text}``."""
    for line, item, raw, problem in load_jsonl(path):
        fields, problem = (None, problem) if problem else text_fields(item, ["id", "title", "text"])
        if problem:
            yield Reject(line, problem, raw)
        else:
            yield Row(line, fields.pop("id"), fields, None)


@reader("lbox_summarization")
def read_lbox_summarization(path: Path) -> Iterator[Row | Reject]:
    """LBox Open ``summarization`` config: ``{id, summary, precedent}`` per line."""
    for line, item, raw, problem in load_jsonl(path):
        fields, problem = (None, problem) if problem else text_fields(item, ["id", "precedent", "summary"])
        if problem:
            yield Reject(line, problem, raw)
        else:
            native = fields.pop("id")
            yield Row(line, native, fields, None)

