"""Validate: the quality gate's ``ingested`` and ``rendered`` points over the canonical table and the
rendered records (great-expectations; :mod:`dagllm.data.gate`).

Rows a row-level expectation flags go to ``<quarantine_dir>/<point>.jsonl`` with the reasons; the
kept records go to ``validated`` and the kept canonical rows beside them (``canonical.parquet``),
which decontamination and evaluation read. The Data Docs and ``summary.json`` are written before a
failed gate raises.
"""

from __future__ import annotations

from pathlib import Path

from dagllm.data.catalog import Catalog
from dagllm.data.gate import GateSummary, ValidationFailed, validate_points
from dagllm.io import read_parquet, write_parquet
from dagllm.params import ValidateParams


def run_validate(params: ValidateParams, tasks: list[str], catalog: Catalog, canonical: Path, rendered: Path,
                 out_dir: Path, validated: Path, quarantine_dir: Path, render_seed: int | None = None,
                 validated_canonical: Path | None = None) -> GateSummary:
    """Gate the canonical table and the rendered records; write the kept records to ``validated``
    (and the kept canonical rows to ``validated_canonical``, by default ``canonical.parquet`` beside it).

    Raises:
        ValidationFailed: after the reports, Data Docs and quarantine files are written.
    """
    summary, kept = validate_points(read_parquet(canonical, "ingest"), read_parquet(rendered, "render"), params,
                                    tasks, catalog, out_dir, quarantine_dir, render_seed,
                                    validated_canonical or Path(validated).with_name("canonical.parquet"))
    if not summary.success:
        raise ValidationFailed(summary)
    write_parquet(kept, validated)
    return summary
