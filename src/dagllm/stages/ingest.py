"""Ingest: fetched source files (``data/raw``, mirror layout) and local files -> one Parquet table.

Every data row ends up either in the canonical table or in ``<rejected>/<source>.jsonl`` with its
line and reason; the report counts both per file and ``read == kept + rejected`` always holds.
Catalog files come from ``raw_dir`` (filled by ``dagllm fetch``); a team's own files
(``ingest.local``) are read where they are, through the same readers (:mod:`dagllm.data.canonical`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dagllm.data.canonical import CANONICAL_COLUMNS, FileCount, ingest_jobs, read_source_file
from dagllm.data.catalog import Catalog
from dagllm.io import write_json, write_parquet
from dagllm.params import IngestParams
from dagllm.progress import progress


@dataclass
class IngestSummary:
    raw_dir: str
    rows: int
    rejected: int
    files: list[FileCount]
    skipped: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "raw_dir": self.raw_dir,
            "rows": self.rows,
            "rejected": self.rejected,
            "files": [f.__dict__ for f in self.files],
            "skipped": self.skipped,
        }

    def lines(self) -> list[str]:
        out = [f"ingested {self.rows} rows from {len(self.files)} files ({self.rejected} quarantined)"]
        out += [f"skipped {s['source']} {s['file']}: {s['reason']}" for s in self.skipped]
        return out


def run_ingest(
    params: IngestParams, catalog: Catalog, raw_dir: Path, out_table: Path, rejected_dir: Path,
    report_path: Path,
) -> IngestSummary:
    """Read every file of the selected sources from ``raw_dir`` (and ``params.local``) into ``out_table``.

    Optional catalog files (absent from the public mirror) and the files of ``optional_sources``
    that were not fetched are skipped and listed in the report; a required source none of whose
    files is present is an error.

    Raises:
        IngestError: a file is absent or not in its reader's format (one message, no partial output).
    """
    jobs, skipped = ingest_jobs(params, catalog, raw_dir)
    counts: list[FileCount] = []
    rows: list[dict] = []
    rejects: dict[str, list[dict]] = {src.id: [] for src, _, _ in jobs}
    with progress() as bar:
        task = bar.add_task("ingest", total=len(jobs))
        for src, sf, path in jobs:
            count, kept, rej = read_source_file(src, sf, path, params.max_rows_per_file)
            counts.append(count)
            rows.extend(kept)
            rejects[src.id].extend(rej)
            bar.advance(task)
    table = pd.DataFrame(rows, columns=CANONICAL_COLUMNS)
    table["line"] = table["line"].astype("int64")
    write_parquet(table, out_table)
    rejected_dir.mkdir(parents=True, exist_ok=True)
    for source_id, items in rejects.items():
        with open(rejected_dir / f"{source_id}.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in items)
    summary = IngestSummary(str(raw_dir), len(table), sum(len(v) for v in rejects.values()), counts, skipped)
    write_json(report_path, summary.to_dict())
    return summary
