"""Ingest: raw source files in the mirror layout -> one canonical Parquet table.

Every data row ends up either in the canonical table or in ``<rejected>/<source>.jsonl`` with its
line and reason; the report counts both per file and ``read == kept + rejected`` always holds.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dagllm.catalog import Catalog, Source, SourceFile
from dagllm.io import stable_hash, write_json, write_parquet
from dagllm.params import IngestParams
from dagllm.progress import progress
from dagllm.readers import READERS, FileFormatError, Reject, Row

CANONICAL_COLUMNS = [
    "id", "source", "split", "native_id", "fields", "label", "license", "benchmark", "file", "line",
]


class IngestError(RuntimeError):
    """A whole source file is missing or unreadable; the message names it and the fix."""


@dataclass
class FileCount:
    source: str
    file: str
    split: str
    read: int = 0
    kept: int = 0
    rejected: dict[str, int] = field(default_factory=dict)


@dataclass
class IngestSummary:
    mirror: str
    rows: int
    rejected: int
    files: list[FileCount]
    skipped: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "mirror": self.mirror,
            "rows": self.rows,
            "rejected": self.rejected,
            "files": [f.__dict__ for f in self.files],
            "skipped": self.skipped,
        }

    def lines(self) -> list[str]:
        return [f"ingested {self.rows} rows from {len(self.files)} files ({self.rejected} quarantined)"] + [
            f"skipped optional {s['source']} file {s['file']}: {s['reason']}" for s in self.skipped]


def _record_id(source: str, split: str, row: Row, seen: Counter) -> str:
    if row.native_id:
        key = stable_hash(source, split, "id", row.native_id)
    else:
        key = stable_hash(source, split, "content", json.dumps(row.fields, sort_keys=True, ensure_ascii=False))
    seen[key] += 1
    return key if seen[key] == 1 else f"{key}-{seen[key]}"


def _read_file(src: Source, sf: SourceFile, mirror: Path, limit: int | None):
    path = mirror / sf.path
    if not path.is_file():
        raise IngestError(
            f"source {src.id}: file {path} not found; fetch it (`dagllm fetch`) or point "
            f"paths.mirror at a directory holding {sf.path}"
        )
    try:
        read = READERS[sf.reader]
    except KeyError:
        raise IngestError(f"source {src.id}: unknown reader {sf.reader!r}; known: {', '.join(sorted(READERS))}") from None
    count = FileCount(src.id, sf.path, sf.split)
    kept: list[dict] = []
    rejects: list[dict] = []
    seen: Counter = Counter()
    try:
        for item in read(path):
            if limit is not None and count.read >= limit:
                break
            count.read += 1
            if isinstance(item, Reject):
                count.rejected[item.reason] = count.rejected.get(item.reason, 0) + 1
                rejects.append({"source": src.id, "file": sf.path, "line": item.line,
                                "reason": item.reason, "raw": item.raw})
                continue
            kept.append({
                "id": _record_id(src.id, sf.split, item, seen),
                "source": src.id, "split": sf.split, "native_id": item.native_id,
                "fields": json.dumps(item.fields, ensure_ascii=False), "label": item.label,
                "license": src.license, "benchmark": sf.benchmark, "file": sf.path, "line": item.line,
            })
    except FileFormatError as exc:
        raise IngestError(f"source {src.id}: {exc}") from None
    count.kept = len(kept)
    assert count.read == count.kept + sum(count.rejected.values())
    return count, kept, rejects


def _optional_jobs(params: IngestParams, catalog: Catalog, mirror: Path) -> tuple[list, list[dict]]:
    """Files of ``ingest.optional_sources`` present in the mirror, and a note for each absent one.

    Benchmark-only sources such as KLUE YNAT are not in every mirror; evaluation reports them as
    "no data in this mirror" instead of ingest failing on them.
    """
    jobs, skipped = [], []
    for src in (catalog.source(s) for s in params.optional_sources):
        for sf in src.files:
            if (mirror / sf.path).is_file():
                jobs.append((src, sf))
            else:
                skipped.append({"source": src.id, "file": sf.path, "reason": f"not in the mirror {mirror}"})
    return jobs, skipped


def run_ingest(
    params: IngestParams, catalog: Catalog, mirror: Path, out_table: Path, rejected_dir: Path,
    report_path: Path,
) -> IngestSummary:
    """Read every file of the selected sources from ``mirror`` into ``out_table``.

    Raises:
        IngestError: a file is absent or not in its reader's format (one message, no partial output).
    """
    sources = [catalog.source(s) for s in params.sources]
    counts: list[FileCount] = []
    rows: list[dict] = []
    jobs = [(s, f) for s in sources for f in s.files]
    optional, skipped = _optional_jobs(params, catalog, mirror)
    jobs += [j for j in optional if j[0].id not in params.sources]
    rejects: dict[str, list[dict]] = {s.id: [] for s, _ in jobs}
    with progress() as bar:
        task = bar.add_task("ingest", total=len(jobs))
        for src, sf in jobs:
            count, kept, rej = _read_file(src, sf, mirror, params.max_rows_per_file)
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
    summary = IngestSummary(str(mirror), len(table), sum(len(v) for v in rejects.values()), counts, skipped)
    write_json(report_path, summary.to_dict())
    return summary
