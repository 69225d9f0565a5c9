"""Render: canonical rows -> instruction records through each task's Korean templates."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dagllm.catalog import Catalog
from dagllm.io import read_parquet, stable_hash, write_json, write_parquet
from dagllm.params import RenderParams
from dagllm.progress import progress
from dagllm.render import choose_templates, render_template

RECORD_COLUMNS = [
    "id", "record_id", "task", "category", "template_id", "template_kind",
    "instruction", "input", "output", "source", "split", "license",
]


@dataclass
class RenderSummary:
    records: int
    per_task: dict[str, int]
    per_template_kind: dict[str, int]

    def to_dict(self) -> dict:
        return self.__dict__

    def lines(self) -> list[str]:
        tasks = ", ".join(f"{t}={n}" for t, n in self.per_task.items())
        return [f"rendered {self.records} records ({tasks})"]


def run_render(params: RenderParams, catalog: Catalog, canonical: Path, out_table: Path,
               report_path: Path) -> RenderSummary:
    """Render every training row of each selected task (benchmark splits are never rendered)."""
    table = read_parquet(canonical, "ingest")
    table = table[~table["benchmark"]]
    records: list[dict] = []
    tasks = [catalog.task(t) for t in params.tasks]
    with progress() as bar:
        job = bar.add_task("render", total=len(tasks))
        for task in tasks:
            for ts in task.sources:
                rows = table[(table["source"] == ts.source) & (table["split"].isin(ts.splits))]
                for row in rows.itertuples(index=False):
                    fields = json.loads(row.fields)
                    for tpl in choose_templates(task, row.id, params.seed, params.templates_per_record):
                        parts = render_template(task, tpl, fields, row.label, row.id)
                        records.append({
                            "id": stable_hash(row.id, task.id, tpl.id), "record_id": row.id,
                            "task": task.id, "category": task.category, "template_id": tpl.id,
                            "template_kind": tpl.kind, **parts, "source": row.source,
                            "split": row.split, "license": row.license,
                        })
            bar.advance(job)
    out = pd.DataFrame(records, columns=RECORD_COLUMNS)
    write_parquet(out, out_table)
    summary = RenderSummary(
        len(out),
        dict(sorted(Counter(out["task"]).items())),
        dict(sorted(Counter(out["template_kind"]).items())),
    )
    write_json(report_path, summary.to_dict())
    return summary
