"""What the KFP component bodies call: map artifact paths onto the stage functions.

Each step reads its params slice (:mod:`dagllm.pipeline.slices`), runs its stage with the
artifact folders as paths, and logs its figures to the task's Metrics artifact
(:mod:`dagllm.pipeline.artifacts`). No kfp import here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from dagllm.params import Params, TrainParams
from dagllm.pipeline.artifacts import (
    ConfusionSink,
    MetricsSink,
    confusion_matrix,
    copy_page,
    log_metrics,
    model_files,
    model_files_for,
)
from dagllm.pipeline.slices import ParamsSlice, benchmark_sources, run_catalog, tracking_uri_from_env
from dagllm.runtime import offline


def _params(params_json: str) -> Any:
    """The params a task body reads: its stage's slice (:func:`fingerprint`) or whole params."""
    offline()
    data = json.loads(params_json)
    if "stage" in data and "params" in data:
        return ParamsSlice(data)
    from dagllm.data.teamdata import resolve

    if data["mlflow"]["tracking_uri"] == "env":
        data["mlflow"]["tracking_uri"] = tracking_uri_from_env()
    return resolve(Params.model_validate(data), check_files=False)[0]



def ingest(params_json: str, out_dir: Path, metrics: MetricsSink) -> None:
    """Fetch the selected sources (verified) into a scratch dir, then ingest them into ``out_dir``."""
    import tempfile

    from dagllm.data.canonical import selected_sources
    from dagllm.paths import mirror_location
    from dagllm.stages.fetch import run_fetch
    from dagllm.stages.ingest import run_ingest

    p = _params(params_json)
    cat = run_catalog(p)
    with tempfile.TemporaryDirectory(prefix="dagllm-raw-") as raw:
        run_fetch(p.fetch, selected_sources(p.ingest, cat), mirror_location(p.paths.mirror),
                  Path(raw), out_dir / "fetch.json")
        s = run_ingest(p.ingest, cat, Path(raw), out_dir / "records.parquet", out_dir / "rejected",
                       out_dir / "ingest.json")
    log_metrics(metrics, {"rows": s.rows, "rejected": s.rejected})


def render(params_json: str, canonical_dir: Path, out_dir: Path, metrics: MetricsSink) -> None:
    from dagllm.stages.render import run_render

    p = _params(params_json)
    s = run_render(p.render, run_catalog(p), canonical_dir / "records.parquet", out_dir / "records.parquet",
                   out_dir / "render.json")
    log_metrics(metrics, {"records": s.records, **{f"task.{t}": n for t, n in s.per_task.items()}})


def validate(params_json: str, canonical_dir: Path, rendered_dir: Path, validated_dir: Path, html_path: Path,
             report_dir: Path, metrics: MetricsSink) -> None:
    from dagllm.data.gate import ValidationFailed, validate_points
    from dagllm.io import read_parquet, write_parquet

    p = _params(params_json)
    s, kept = validate_points(read_parquet(canonical_dir / "records.parquet", "ingest"),
                              read_parquet(rendered_dir / "records.parquet", "render"), p.validate_, p.render.tasks,
                              run_catalog(p), report_dir, validated_dir / "quarantine", p.render.seed,
                              validated_dir / "canonical.parquet")
    copy_page(report_dir / "docs", "rendered", html_path)
    log_metrics(metrics, {f"{x.point}.{k}": v for x in s.points for k, v in
                   (("passed", sum(e["success"] for e in x.expectations)), ("expectations", len(x.expectations)),
                    ("rows", x.rows), ("kept", x.kept), ("quarantined", x.quarantined))})
    if not s.success:
        raise ValidationFailed(s)
    write_parquet(kept, validated_dir / "records.parquet")


def decontaminate(params_json: str, validated_dir: Path, canonical_dir: Path, out_dir: Path,
                  metrics: MetricsSink) -> None:
    from dagllm.stages.decontaminate import run_decontaminate

    p = _params(params_json)
    # benchmark items from the gate's kept canonical rows (canonical_dir only orders the DAG)
    s = run_decontaminate(p.decontaminate, validated_dir / "records.parquet", validated_dir / "canonical.parquet",
                          out_dir / "records.parquet", out_dir / "decontamination.json")
    log_metrics(metrics, {"records": s.records, "kept": s.kept, "dropped": s.dropped,
                   **{f"from.{k}": v for k, v in s.by_benchmark_source.items()}})


def balance(params_json: str, records_dir: Path, train_dir: Path, val_dir: Path, html_path: Path,
            metrics: MetricsSink) -> None:
    from dagllm.data.gate import balanced_gate
    from dagllm.stages.balance import run_balance

    p = _params(params_json)
    cap = p.balance.per_task_cap if p.balance.mixing == "cap" else None
    gate = balanced_gate(p.validate_, p.render.tasks, cap, train_dir / "gate", train_dir / "quarantine")
    try:
        s = run_balance(p.balance, records_dir / "records.parquet", train_dir / "records.parquet",
                        val_dir / "records.parquet", train_dir / "balance.json", train_dir / "balance_mix.png", gate)
    finally:
        if (train_dir / "gate" / "docs").is_dir():
            copy_page(train_dir / "gate" / "docs", "balanced", html_path)
    log_metrics(metrics, {"train": sum(s.train.values()), "validation": sum(s.validation.values()),
                   "duplicates_removed": s.duplicates.exact + s.duplicates.near,
                   "label_skewed_tasks": len(s.label_skew)})


def train_params_for_task(params) -> TrainParams:
    """The train section for the KFP train task: one rank per GPU the task was given.

    ``kubeflow.gpu.train.count`` GPUs are attached to the task's pod; unless ``train.num_processes``
    asks for more (or fewer, > 1) explicitly, the task starts one rank per GPU.
    """
    gpu = params.kubeflow.gpu.get("train")
    if gpu is not None and gpu.count > 1 and params.train.num_processes == 1:
        return params.train.model_copy(update={"num_processes": gpu.count})
    return params.train


def train(params_json: str, train_dir: Path, model_dir: Path, metrics: MetricsSink) -> None:
    from dagllm.stages.train import run_train

    p = _params(params_json)
    tp = train_params_for_task(p)
    if tp.num_nodes > 1:  # several nodes: a Kubeflow TrainJob on the model volume (training/trainjob.py)
        from dagllm.training.trainjob import train_on_cluster

        s = train_on_cluster(p, tp, train_dir / "records.parquet", model_files_for(p, model_dir), model_dir)
    else:
        s = run_train(tp, p.mlflow, train_dir / "records.parquet", model_files_for(p, model_dir),
                      model_dir / "train_run.json", model_dir / "train_metrics.json", model_dir / "train_loss.csv",
                      pipeline_run="kfp")
    fitted = {f"encoding.{k}": v for k, v in s.encoding.items()  # how records fitted max_seq_len
              if k in ("input_truncated", "instruction_truncated", "dropped")}
    log_metrics(metrics, {"final_loss": s.final_loss, "steps": s.steps, "tokens_per_second": s.tokens_per_second,
                          **fitted})


def evaluate(params_json: str, canonical_dir: Path, model_dir: Path, val_dir: Path, report_dir: Path,
             metrics: MetricsSink, table_path: Path | None = None, html_path: Path | None = None,
             confusion: ConfusionSink | None = None) -> None:
    """Score the model; copy the stage's table (Markdown) and chart page (HTML) to the KFP artifacts.

    The confusion matrix comes from the per-item samples of the promotion policy's primary task,
    when they carry a target and one log-likelihood per choice.
    """
    import tempfile

    from dagllm.paths import mirror_location
    from dagllm.registry.policy import load_policy
    from dagllm.stages.evaluate import run_evaluate
    from dagllm.stages.fetch import run_fetch

    p = _params(params_json)
    with tempfile.TemporaryDirectory(prefix="dagllm-raw-") as raw:
        # protocol kit19 reads the benchmark files themselves (the loaders' documents): fetch them, verified
        run_fetch(p.fetch, benchmark_sources(p), mirror_location(p.paths.mirror),
                  Path(raw), Path(raw) / "fetch.json")
        # canonical_dir is the validate step's output: canonical.parquet holds the benchmark rows the gate kept
        s = run_evaluate(p.evaluate, p.mlflow, canonical_dir / "canonical.parquet", model_files(model_dir),
                         model_dir / "train_run.json", report_dir, val_dir / "records.parquet",
                         raw_dir=Path(raw), preset=p.train.model)
    log_metrics(metrics, {f"{t}.{m}": v for t, ms in s.metrics.items() for m, v in ms.items()})
    for src, dest in ((report_dir / "table.md", table_path), (report_dir / "report.html", html_path)):
        if dest is not None:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
    if confusion is not None:
        task = load_policy(p.register_.policy).primary.metric.split(".")[0]
        cm = confusion_matrix(report_dir / "samples" / f"{task}.jsonl")
        if cm is not None:
            confusion.log_confusion_matrix(*cm)
        # The matrix lives in the artifact's metadata; a file at its path too, since kfp.local's
        # cache treats an artifact without a file as missing (the task would never be a cache hit).
        Path(confusion.path).parent.mkdir(parents=True, exist_ok=True)
        Path(confusion.path).write_text(json.dumps({"categories": cm[0], "matrix": cm[1]} if cm else {}),
                                        encoding="utf-8")


def register(params_json: str, model_dir: Path, eval_dir: Path, report_path: Path, metrics: MetricsSink) -> str:
    from dagllm.stages.register import run_register

    p = _params(params_json)
    s = run_register(p.register_, p.mlflow, model_files(model_dir), model_dir / "train_run.json",
                     eval_dir / "metrics.json", report_path, params_digest=p.digest())
    log_metrics(metrics, {"version": int(s.version), "champion": int("champion" in s.aliases)})
    return s.version


# --- model files: inside the Model artifact, or on the PVC the cluster mounts ----------------------


# --- typed report artifacts ----------------------------------------------------------------------


