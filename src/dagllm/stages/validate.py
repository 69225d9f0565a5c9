"""Validate: a great-expectations suite over the rendered records, with Data Docs and a summary.

The suite runs in an ephemeral GX context on a pandas DataFrame; its Data Docs site is built into
``<out_dir>/docs`` and a JSON summary (one entry per expectation) into ``<out_dir>/summary.json``.
A failing suite raises :class:`ValidationFailed` *after* both are written, so the reports explain
the failure.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dagllm.io import read_parquet, write_json
from dagllm.params import ValidateParams
from dagllm.runtime import offline
from dagllm.stages.render import RECORD_COLUMNS

SITE_NAME = "dagllm_validation"


class ValidationFailed(RuntimeError):
    """The suite failed; ``summary`` says which expectations failed on how many rows."""

    def __init__(self, summary: ValidationSummary):
        self.summary = summary
        super().__init__("; ".join(summary.failure_lines()))


@dataclass
class ValidationSummary:
    success: bool
    rows: int
    expectations: list[dict]
    data_docs: str

    def to_dict(self) -> dict:
        return self.__dict__

    def failure_lines(self) -> list[str]:
        return [
            f"{e['expectation']}({e['column'] or ''}) failed on {e['unexpected_count']} of {e['element_count']} rows"
            for e in self.expectations if not e["success"]
        ]

    def lines(self) -> list[str]:
        ok = sum(e["success"] for e in self.expectations)
        head = f"validation {'passed' if self.success else 'FAILED'}: {ok}/{len(self.expectations)} expectations on {self.rows} rows"
        return [head, *self.failure_lines(), f"Data Docs: {self.data_docs}"]


def build_suite(gx, params: ValidateParams, tasks: list[str]):
    """The expectations for rendered records (thresholds from params.yaml)."""
    E = gx.expectations
    suite = gx.ExpectationSuite(name="rendered_records")
    for exp in [
        E.ExpectTableColumnsToMatchSet(column_set=RECORD_COLUMNS, exact_match=True),
        E.ExpectTableRowCountToBeBetween(min_value=params.min_records_per_task * len(tasks)),
        E.ExpectColumnValuesToBeUnique(column="id"),
        E.ExpectColumnValuesToNotBeNull(column="instruction"),
        E.ExpectColumnValuesToNotBeNull(column="output"),
        E.ExpectColumnValuesToNotBeNull(column="license"),
        E.ExpectColumnValueLengthsToBeBetween(
            column="instruction", min_value=params.min_instruction_chars, max_value=params.max_instruction_chars),
        E.ExpectColumnValueLengthsToBeBetween(column="input", min_value=0, max_value=params.max_input_chars),
        E.ExpectColumnValueLengthsToBeBetween(column="output", min_value=1, max_value=params.max_output_chars),
        E.ExpectColumnValuesToBeInSet(column="task", value_set=tasks),
        E.ExpectColumnValuesToBeInSet(column="template_kind", value_set=["instruction", "question"]),
        E.ExpectCompoundColumnsToBeUnique(
            column_list=["instruction", "input", "output"], mostly=max(1.0 - params.max_duplicate_fraction, 0.0)),
    ]:
        suite.add_expectation(exp)
    return suite


def validate_frame(df: pd.DataFrame, params: ValidateParams, tasks: list[str], out_dir: Path) -> ValidationSummary:
    """Run the suite over ``df``; write Data Docs and summary.json under ``out_dir``."""
    offline()  # no telemetry calls from a pipeline
    import great_expectations as gx

    out_dir = Path(out_dir)
    docs_dir = out_dir / "docs"
    if docs_dir.exists():
        shutil.rmtree(docs_dir)
    ctx = gx.get_context(mode="ephemeral")
    ctx.add_data_docs_site(site_name=SITE_NAME, site_config={
        "class_name": "SiteBuilder",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir.resolve())},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    })
    batch = ctx.data_sources.add_pandas("pandas").add_dataframe_asset("records").add_batch_definition_whole_dataframe("all")
    suite = ctx.suites.add(build_suite(gx, params, tasks))
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name="rendered", data=batch, suite=suite))
    checkpoint = ctx.checkpoints.add(gx.Checkpoint(
        name="rendered", validation_definitions=[vd], result_format={"result_format": "SUMMARY"},
        actions=[gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=[SITE_NAME])],
    ))
    result = checkpoint.run(batch_parameters={"dataframe": df})
    entries = []
    for run in result.run_results.values():
        for r in run.results:
            cfg = r.expectation_config
            entries.append({
                "expectation": cfg.type, "column": cfg.kwargs.get("column"), "success": bool(r.success),
                "unexpected_count": r.result.get("unexpected_count"),
                "element_count": r.result.get("element_count", r.result.get("observed_value")),
                "kwargs": {k: v for k, v in cfg.kwargs.items() if k not in ("batch_id",)},
            })
    summary = ValidationSummary(bool(result.success), len(df), entries, str(docs_dir / "index.html"))
    write_json(out_dir / "summary.json", summary.to_dict())
    return summary


def run_validate(params: ValidateParams, tasks: list[str], rendered: Path, out_dir: Path) -> ValidationSummary:
    """Validate the rendered records; raises ValidationFailed after writing the reports."""
    summary = validate_frame(read_parquet(rendered, "render"), params, tasks, out_dir)
    if not summary.success:
        raise ValidationFailed(summary)
    return summary
