"""What the KFP component bodies call: map artifact paths onto the stage functions.

No kfp import here: ``metrics`` is any object with ``log_metric(name, value)`` and a ``path``
(a ``kfp.dsl.Metrics`` in a pipeline). Folder artifacts hold the stage outputs under the same
names as the DVC layout, so a folder artifact looks like a small slice of the working tree.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Protocol

from dagllm.catalog import default_catalog
from dagllm.params import Params
from dagllm.paths import resolve_mirror
from dagllm.runtime import offline


class MetricsSink(Protocol):
    path: str

    def log_metric(self, metric: str, value: float) -> None: ...


def _params(params_json: str) -> Params:
    offline()
    return Params.model_validate(json.loads(params_json))


def _log(metrics: MetricsSink, values: dict[str, Any]) -> None:
    """Log numeric values to the KFP Metrics artifact and also write them to its file.

    kfp.local only caches a task whose Metrics file exists, hence the file.
    """
    numeric = {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for k, v in numeric.items():
        metrics.log_metric(k, v)
    Path(metrics.path).parent.mkdir(parents=True, exist_ok=True)
    Path(metrics.path).write_text(json.dumps(numeric, sort_keys=True), encoding="utf-8")


def ingest(params_json: str, out_dir: Path, metrics: MetricsSink) -> None:
    from dagllm.stages.ingest import run_ingest

    p = _params(params_json)
    s = run_ingest(p.ingest, default_catalog(), resolve_mirror(p.paths.mirror), out_dir / "records.parquet",
                   out_dir / "rejected", out_dir / "ingest.json")
    _log(metrics, {"rows": s.rows, "rejected": s.rejected})


def render(params_json: str, canonical_dir: Path, out_dir: Path, metrics: MetricsSink) -> None:
    from dagllm.stages.render import run_render

    p = _params(params_json)
    s = run_render(p.render, default_catalog(), canonical_dir / "records.parquet", out_dir / "records.parquet",
                   out_dir / "render.json")
    _log(metrics, {"records": s.records, **{f"task.{t}": n for t, n in s.per_task.items()}})


def _copy_page(docs_dir: Path, suite: str, html_path: Path) -> None:
    """The KFP UI shows one HTML file: the validation-result page of ``suite`` from the Data Docs."""
    pages = sorted(p for p in (docs_dir / "validations").rglob("*.html") if suite in p.parts)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(pages[0] if pages else docs_dir / "index.html", html_path)


def validate(params_json: str, canonical_dir: Path, rendered_dir: Path, validated_dir: Path, html_path: Path,
             report_dir: Path, metrics: MetricsSink) -> None:
    from dagllm.io import read_parquet, write_parquet
    from dagllm.stages.validate import ValidationFailed, validate_points

    p = _params(params_json)
    s, kept = validate_points(read_parquet(canonical_dir / "records.parquet", "ingest"),
                              read_parquet(rendered_dir / "records.parquet", "render"), p.validate_, p.render.tasks,
                              default_catalog(), report_dir, validated_dir / "quarantine")
    _copy_page(report_dir / "docs", "rendered", html_path)
    _log(metrics, {f"{x.point}.{k}": v for x in s.points for k, v in
                   (("passed", sum(e["success"] for e in x.expectations)), ("expectations", len(x.expectations)),
                    ("rows", x.rows), ("kept", x.kept), ("quarantined", x.quarantined))})
    if not s.success:
        raise ValidationFailed(s)
    write_parquet(kept, validated_dir / "records.parquet")


def decontaminate(params_json: str, validated_dir: Path, canonical_dir: Path, out_dir: Path,
                  metrics: MetricsSink) -> None:
    from dagllm.stages.decontaminate import run_decontaminate

    p = _params(params_json)
    s = run_decontaminate(p.decontaminate, validated_dir / "records.parquet", canonical_dir / "records.parquet",
                          out_dir / "records.parquet", out_dir / "decontamination.json")
    _log(metrics, {"records": s.records, "kept": s.kept, "dropped": s.dropped,
                   **{f"from.{k}": v for k, v in s.by_benchmark_source.items()}})


def balance(params_json: str, records_dir: Path, train_dir: Path, val_dir: Path, html_path: Path,
            metrics: MetricsSink) -> None:
    from dagllm.stages.balance import run_balance
    from dagllm.stages.validate import balanced_gate

    p = _params(params_json)
    cap = p.balance.per_task_cap if p.balance.mixing == "cap" else None
    gate = balanced_gate(p.validate_, p.render.tasks, cap, train_dir / "gate", train_dir / "quarantine")
    try:
        s = run_balance(p.balance, records_dir / "records.parquet", train_dir / "records.parquet",
                        val_dir / "records.parquet", train_dir / "balance.json", train_dir / "balance_mix.png", gate)
    finally:
        if (train_dir / "gate" / "docs").is_dir():
            _copy_page(train_dir / "gate" / "docs", "balanced", html_path)
    _log(metrics, {"train": sum(s.train.values()), "validation": sum(s.validation.values()),
                   "duplicates_removed": s.duplicates.exact + s.duplicates.near})


def train(params_json: str, train_dir: Path, model_dir: Path, metrics: MetricsSink) -> None:
    from dagllm.stages.train import run_train

    p = _params(params_json)
    s = run_train(p.train, p.mlflow, train_dir / "records.parquet", model_dir / "hf", model_dir / "train_run.json",
                  model_dir / "train_metrics.json", model_dir / "train_loss.csv", pipeline_run="kfp")
    _log(metrics, {"final_loss": s.final_loss, "steps": s.steps, "tokens_per_second": s.tokens_per_second})


def evaluate(params_json: str, canonical_dir: Path, model_dir: Path, report_dir: Path, metrics: MetricsSink) -> None:
    from dagllm.stages.evaluate import run_evaluate

    p = _params(params_json)
    s = run_evaluate(p.evaluate, p.mlflow, canonical_dir / "records.parquet", model_dir / "hf",
                     model_dir / "train_run.json", report_dir)
    _log(metrics, {f"{t}.{m}": v for t, ms in s.metrics.items() for m, v in ms.items()})


def register(params_json: str, model_dir: Path, eval_dir: Path, report_path: Path, metrics: MetricsSink) -> str:
    from dagllm.stages.register import run_register

    p = _params(params_json)
    s = run_register(p.register_, p.mlflow, model_dir / "hf", model_dir / "train_run.json",
                     eval_dir / "metrics.json", report_path)
    _log(metrics, {"version": int(s.version), "champion": int("champion" in s.aliases)})
    return s.version
