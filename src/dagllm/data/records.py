"""Canonical rows -> instruction records: one task's rows through its Korean templates.

A record (``RECORD_COLUMNS``) is an instruction, an optional input and an output, with the task,
category, template, source, split and licence of the row it came from, and its ``label``: the
Korean verbalisation of the row's label (``answer``, e.g. 긍정) in a task with ``labels`` (a
classification task, or an open-ended one conditioned on the label such as a review of a given
polarity), null in a task without a label set; balance counts and caps labels per task with it.
The exports are the two formats people load elsewhere: ``alpaca.jsonl``
(``instruction``/``input``/``output``) and ``chat.jsonl`` (``messages``), both with the metadata
(``META_COLUMNS``). The templates themselves render in :mod:`dagllm.data.templating`.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dagllm.data.catalog import GroupPairs, Task
from dagllm.data.templating import choose_templates, pair_within_groups, prepare, render_choices, render_parts
from dagllm.io import stable_hash
from dagllm.params import RenderParams

RECORD_COLUMNS = [
    "id", "record_id", "task", "category", "template_id", "template_kind",
    "instruction", "input", "output", "choices", "label", "source", "split", "license",
]
META_COLUMNS = ["id", "record_id", "task", "category", "template_id", "label", "source", "split", "license"]
ALPACA_FILE = "alpaca.jsonl"
CHAT_FILE = "chat.jsonl"


def record_label(task: Task, variables: dict) -> str | None:
    """The label a record carries: the verbalised ``answer`` of a task with ``labels``, else None."""
    return variables.get("answer") if task.labels else None


def label_counts(df: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Records per label of each task with labelled records (tasks without a label are left out)."""
    if "label" not in df or not len(df):
        return {}
    labelled = df[df["label"].notna()]
    return {t: dict(sorted(Counter(g["label"]).items()))
            for t, g in sorted(labelled.groupby("task"), key=lambda kv: kv[0])}


def top_label(counts: dict[str, int]) -> tuple[str, float]:
    """The most common label (ties: the first in sort order) and its share of ``counts``."""
    label = min(counts, key=lambda k: (-counts[k], k))
    return label, counts[label] / sum(counts.values())


@dataclass
class TaskCount:
    rows: int = 0
    kept: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    records: int = 0


def canonical_rows_of(task: Task, table: pd.DataFrame) -> Iterator[tuple]:
    """The ``(id, fields_json, label, source, split, license)`` rows of ``table`` that ``task`` renders."""
    for ts in task.sources:
        rows = table[(table["source"] == ts.source) & (table["split"].isin(ts.splits))]
        yield from rows[["id", "fields", "label", "source", "split", "license"]].itertuples(index=False, name=None)


def render_task(task: Task, rows: list[tuple], params: RenderParams) -> tuple[list[dict], TaskCount]:
    """Render the canonical ``(id, fields_json, label, source, split, license)`` rows of one task.

    Returns:
        The rendered records and the task's counts (``rows == kept + sum(skipped)``).
    """
    count = TaskCount(rows=len(rows))
    fields_of = {r[0]: json.loads(r[1]) for r in rows}
    if any(isinstance(d, GroupPairs) for d in task.derive):
        fields_of, alone = pair_within_groups(task, fields_of.items(), params.seed)
        if alone:
            count.skipped["group of one"] = alone
    records: list[dict] = []
    for rid, _, label, source, split, license_ in rows:
        if rid not in fields_of:
            continue
        variables = prepare(task, fields_of[rid], label, rid)
        if isinstance(variables, str):
            count.skipped[variables] = count.skipped.get(variables, 0) + 1
            continue
        count.kept += 1
        for tpl in choose_templates(task, rid, params.seed, params.templates_per_record, params.question_fraction):
            parts = render_parts(task, tpl, variables, rid)
            choices = render_choices(task, tpl, variables, rid)
            records.append({
                "id": stable_hash(rid, task.id, tpl.id), "record_id": rid, "task": task.id,
                "category": task.category, "template_id": tpl.id, "template_kind": tpl.kind, **parts,
                "choices": json.dumps(choices, ensure_ascii=False), "label": record_label(task, variables),
                "source": source, "split": split, "license": license_,
            })
    count.records = len(records)
    return records, count


def chat_message(record: dict) -> list[dict[str, str]]:
    """The user/assistant turns of one record (input after the instruction, blank line between)."""
    user = record["instruction"] + (f"\n\n{record['input']}" if record["input"] else "")
    return [{"role": "user", "content": user}, {"role": "assistant", "content": record["output"]}]


def write_exports(records: list[dict], out_dir: Path) -> dict[str, str]:
    """Write ``alpaca.jsonl`` and ``chat.jsonl`` (UTF-8, one record per line) atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"alpaca": out_dir / ALPACA_FILE, "chat": out_dir / CHAT_FILE}
    tmp = {k: p.with_name(f".{p.name}.tmp") for k, p in paths.items()}
    with open(tmp["alpaca"], "w", encoding="utf-8") as fa, open(tmp["chat"], "w", encoding="utf-8") as fc:
        for rec in records:
            meta = {k: rec[k] for k in META_COLUMNS}
            alpaca = {"instruction": rec["instruction"], "input": rec["input"], "output": rec["output"], **meta}
            fa.write(json.dumps(alpaca, ensure_ascii=False) + "\n")
            fc.write(json.dumps({"messages": chat_message(rec), **meta}, ensure_ascii=False) + "\n")
    for k, p in paths.items():
        os.replace(tmp[k], p)
    return {k: str(p) for k, p in paths.items()}


