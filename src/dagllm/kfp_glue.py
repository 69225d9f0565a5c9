"""What the KFP component bodies call: map artifact paths onto the stage functions.

No kfp import here: ``metrics`` is any object with ``log_metric(name, value)`` and a ``path``
(a ``kfp.dsl.Metrics`` in a pipeline). Folder artifacts hold the stage outputs under the same
names as the DVC layout, so a folder artifact looks like a small slice of the working tree.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Protocol

from dagllm.catalog import default_catalog
from dagllm.params import Params
from dagllm.runtime import offline


class MetricsSink(Protocol):
    path: str

    def log_metric(self, metric: str, value: float) -> None: ...


class ConfusionSink(Protocol):
    path: str

    def log_confusion_matrix(self, categories: list[str], matrix: list[list[int]]) -> None: ...


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
    """Fetch the selected sources (verified) into a scratch dir, then ingest them into ``out_dir``."""
    import tempfile

    from dagllm.paths import mirror_location
    from dagllm.stages.fetch import run_fetch
    from dagllm.stages.ingest import selected_sources
    from dagllm.stages.ingest import run_ingest

    p = _params(params_json)
    cat = default_catalog()
    with tempfile.TemporaryDirectory(prefix="dagllm-raw-") as raw:
        run_fetch(p.fetch, selected_sources(p.ingest, cat), mirror_location(p.paths.mirror),
                  Path(raw), out_dir / "fetch.json")
        s = run_ingest(p.ingest, cat, Path(raw), out_dir / "records.parquet", out_dir / "rejected",
                       out_dir / "ingest.json")
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
                              default_catalog(), report_dir, validated_dir / "quarantine", p.render.seed)
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
    from dagllm.training.launch import train as run_train, train_params_for_task

    p = _params(params_json)
    tp = train_params_for_task(p)
    if tp.num_nodes > 1:  # several nodes: a Kubeflow TrainJob on the model volume (training/kubejob.py)
        from dagllm.training.kubejob import train_on_cluster

        s = train_on_cluster(p, tp, train_dir / "records.parquet", _model_files_for(p, model_dir), model_dir)
    else:
        s = run_train(tp, p.mlflow, train_dir / "records.parquet", _model_files_for(p, model_dir),
                      model_dir / "train_run.json", model_dir / "train_metrics.json", model_dir / "train_loss.csv",
                      pipeline_run="kfp")
    _log(metrics, {"final_loss": s.final_loss, "steps": s.steps, "tokens_per_second": s.tokens_per_second})


def benchmark_sources(p, catalog, selected) -> list:
    """The ingested sources that evaluate.tasks score (protocol kit19 reads their files)."""
    from dagllm.evaluation.protocol import protocol

    wanted = {protocol()[t].source for t in p.evaluate.tasks}
    return [s for s in selected(p.ingest, catalog) if s.id in wanted]


def evaluate(params_json: str, canonical_dir: Path, model_dir: Path, val_dir: Path, report_dir: Path,
             metrics: MetricsSink, table_path: Path | None = None, html_path: Path | None = None,
             confusion: ConfusionSink | None = None) -> None:
    """Score the model; copy the stage's table (Markdown) and chart page (HTML) to the KFP artifacts.

    The confusion matrix comes from the per-item samples of the promotion policy's primary task,
    when they carry a target and one log-likelihood per choice.
    """
    from dagllm.registry import load_policy
    from dagllm.stages.evaluate import run_evaluate

    import tempfile

    from dagllm.paths import mirror_location
    from dagllm.stages.fetch import run_fetch
    from dagllm.stages.ingest import selected_sources

    p = _params(params_json)
    with tempfile.TemporaryDirectory(prefix="dagllm-raw-") as raw:
        # protocol kit19 reads the benchmark files themselves (the loaders' documents): fetch them, verified
        run_fetch(p.fetch, benchmark_sources(p, default_catalog(), selected_sources), mirror_location(p.paths.mirror),
                  Path(raw), Path(raw) / "fetch.json")
        s = run_evaluate(p.evaluate, p.mlflow, canonical_dir / "records.parquet", model_files(model_dir),
                         model_dir / "train_run.json", report_dir, val_dir / "records.parquet",
                         raw_dir=Path(raw), preset=p.train.model)
    _log(metrics, {f"{t}.{m}": v for t, ms in s.metrics.items() for m, v in ms.items()})
    for src, dest in ((report_dir / "table.md", table_path), (report_dir / "report.html", html_path)):
        if dest is not None:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
    if confusion is not None:
        task = load_policy(p.register_.policy).primary.metric.split(".")[0]
        cm = confusion_matrix(report_dir / "samples" / f"{task}.jsonl")
        if cm is not None:
            confusion.log_confusion_matrix(*cm)


def register(params_json: str, model_dir: Path, eval_dir: Path, report_path: Path, metrics: MetricsSink) -> str:
    from dagllm.stages.register import run_register

    p = _params(params_json)
    s = run_register(p.register_, p.mlflow, model_files(model_dir), model_dir / "train_run.json",
                     eval_dir / "metrics.json", report_path, params_digest=p.digest())
    _log(metrics, {"version": int(s.version), "champion": int("champion" in s.aliases)})
    return s.version


# --- model files: inside the Model artifact, or on the PVC the cluster mounts ----------------------

LOCATION_FILE = "location.json"


def _model_files_for(p: Params, model_dir: Path) -> Path:
    """Where train writes the HF model: ``model_dir/hf``, or a per-run folder on the model PVC.

    On a cluster (``kubeflow.model_pvc`` set) large files stay on the PVC and the Model artifact
    holds ``location.json`` pointing at them, so nothing big is copied to the object store between
    tasks. The folder name is derived from the artifact path, which is unique per run and task.
    """
    if p.kubeflow.model_pvc is None:
        return model_dir / "hf"
    mount = Path(p.kubeflow.model_mount)
    if not mount.is_dir():
        raise FileNotFoundError(f"kubeflow.model_pvc={p.kubeflow.model_pvc!r} but {mount} is not mounted; mount the "
                                "PVC (the compiled pipeline does) or set kubeflow.model_pvc: null")
    key = hashlib.sha256(str(model_dir.resolve()).encode()).hexdigest()[:16]
    target = mount / "runs" / key / "hf"
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / LOCATION_FILE).write_text(json.dumps({"hf": str(target)}), encoding="utf-8")
    return target


def model_files(model_dir: Path) -> Path:
    """The HF model folder of a Model artifact (follows ``location.json`` to the PVC)."""
    loc = model_dir / LOCATION_FILE
    if loc.is_file():
        return Path(json.loads(loc.read_text(encoding="utf-8"))["hf"])
    return model_dir / "hf"


# --- typed report artifacts ----------------------------------------------------------------------


def confusion_matrix(samples_path: Path) -> tuple[list[str], list[list[int]]] | None:
    """Confusion matrix (target x argmax log-likelihood) of a per-item samples file.

    Returns None when the file is absent or its items carry no integer ``target`` and
    ``loglikelihoods`` (a task that is not multiple choice).
    """
    if not samples_path.is_file():
        return None
    pairs: list[tuple[int, int]] = []
    n_choices = 0
    for line in samples_path.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        lls, target = item.get("loglikelihoods"), item.get("target")
        if not lls or not isinstance(target, int):
            return None
        n_choices = max(n_choices, len(lls), target + 1)
        pairs.append((target, max(range(len(lls)), key=lls.__getitem__)))
    if not pairs:
        return None
    matrix = [[0] * n_choices for _ in range(n_choices)]
    for t, pred in pairs:
        matrix[t][pred] += 1
    return [str(i) for i in range(n_choices)], matrix
