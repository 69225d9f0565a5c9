"""Decontaminate: drop validated records that overlap a benchmark item (:mod:`dagllm.data.overlap`)
and list each one, with the item it matches, in ``reports/decontamination.json``. Records that come near
a benchmark text only weakly (a generic phrase many training rows come near; part of an item without its
other text) are kept and listed apart, under ``generic``, each with the item and why, for the user to see
and override (``decontaminate.generic_near_records`` / ``keep_partial_items``).
"""

from __future__ import annotations

from pathlib import Path

from dagllm.data.overlap import DecontaminationSummary, decontaminate_frame
from dagllm.io import read_parquet, write_json, write_parquet
from dagllm.params import DecontaminateParams


def run_decontaminate(params: DecontaminateParams, validated: Path, canonical: Path, out_table: Path,
                      report_path: Path) -> DecontaminationSummary:
    """Check every validated record against every benchmark item of ``canonical``: the canonical rows
    the gate kept (``data/validated/canonical.parquet``), so quarantined benchmark rows are not matched."""
    kept, summary = decontaminate_frame(read_parquet(validated, "validate"), read_parquet(canonical, "validate"),
                                        params)
    write_parquet(kept, out_table)
    write_json(report_path, summary.to_dict())
    return summary
