"""Render: canonical rows -> instruction records through each task's Korean templates.

Writes the records table (Parquet) and two exports next to it, in the formats people load
elsewhere: ``alpaca.jsonl`` (``instruction``/``input``/``output``) and ``chat.jsonl`` (``messages``).
Every record keeps its source, split, record id, task, category, template id and licence
(:mod:`dagllm.data.records`). Per task the report reconciles ``rows == kept + skipped`` and
``records == kept * templates``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from dagllm.data.catalog import Catalog
from dagllm.data.records import RECORD_COLUMNS, TaskCount, canonical_rows_of, render_task, write_exports
from dagllm.io import read_parquet, write_json, write_parquet
from dagllm.params import RenderParams
from dagllm.progress import progress


@dataclass
class RenderSummary:
    records: int
    per_task: dict[str, int]
    per_template_kind: dict[str, int]
    counts: dict[str, TaskCount] = field(default_factory=dict)
    exports: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        tasks = ", ".join(f"{t}={n}" for t, n in self.per_task.items())
        skipped = sum(sum(c.skipped.values()) for c in self.counts.values())
        out = [f"rendered {self.records} records ({tasks})",
               f"{skipped} rows skipped by task conditions; exports: {', '.join(self.exports.values())}"]
        return out + [f"task {t!r} has no records: {why}" for t, why in self.empty_tasks().items()]

    def empty_tasks(self) -> dict[str, str]:
        """Tasks that rendered nothing, each with why (no rows read from its sources, or every row skipped)."""
        out = {}
        for task, c in self.counts.items():
            if c.records == 0:
                out[task] = (f"its sources gave it no rows (look at the ingest report's rejects for them)"
                             if c.rows == 0 else f"all {c.rows} rows skipped ({dict(c.skipped)})")
        return out


def run_render(params: RenderParams, catalog: Catalog, canonical: Path, out_table: Path,
               report_path: Path) -> RenderSummary:
    """Render every training row of each selected task (benchmark splits are never rendered).

    The exports are written next to ``out_table``.
    """
    table = read_parquet(canonical, "ingest")
    table = table[~table["benchmark"]]
    records: list[dict] = []
    counts: dict[str, TaskCount] = {}
    tasks = [catalog.task(t) for t in params.tasks]
    with progress() as bar:
        job = bar.add_task("render", total=len(tasks))
        for task in tasks:
            recs, counts[task.id] = render_task(task, list(canonical_rows_of(task, table)), params)
            records.extend(recs)
            bar.advance(job)
    out = pd.DataFrame(records, columns=RECORD_COLUMNS)
    write_parquet(out, out_table)
    exports = write_exports(records, Path(out_table).parent)
    summary = RenderSummary(
        len(out),
        dict(sorted(Counter(out["task"]).items())),
        dict(sorted(Counter(out["template_kind"]).items())),
        counts,
        exports,
    )
    write_json(report_path, summary.to_dict())
    return summary
