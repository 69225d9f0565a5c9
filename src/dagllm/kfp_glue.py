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


def _params(params_json: str) -> Any:
    """The params a task body reads: its stage's slice (:func:`fingerprint`) or whole params."""
    offline()
    data = json.loads(params_json)
    if "stage" in data and "params" in data:
        return ParamsSlice(data)
    from dagllm.teamdata import resolve

    if data["mlflow"]["tracking_uri"] == "env":
        data["mlflow"]["tracking_uri"] = _tracking_uri_from_env()
    return resolve(Params.model_validate(data), check_files=False)[0]


def _catalog(p: Any):
    from dagllm.teamdata import with_local

    return with_local(default_catalog(), p)


# --- per-stage params slices and the run's fingerprint (what pipeline caching keys on) -----------

# The params sections each stage reads. Its task gets only these, so a change elsewhere (serve.*,
# a later stage's settings) leaves its cache key, and everything upstream of the change, alone.
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "ingest": ("paths", "fetch", "ingest"),
    # render and validate read ingest.local too (a team's own sources and their tasks: teamdata)
    "render": ("render", "ingest"),
    "validate": ("validate", "render", "ingest"),
    "decontaminate": ("decontaminate",),
    "balance": ("balance", "validate", "render"),
    "train": ("train", "mlflow", "kubeflow"),
    # evaluate (protocol kit19) also fetches the benchmark sources' files from the mirror
    "evaluate": ("evaluate", "mlflow", "register", "train", "fetch", "paths", "ingest"),
    "register": ("register", "mlflow"),
}
_FIELDS = {(f.alias or name): name for name, f in Params.model_fields.items()}


class ParamsSlice:
    """The sections of one stage's slice, validated by the same models as params.yaml.

    Reading a section that the stage's slice lacks is a KeyError naming the fix
    (:data:`STAGE_SECTIONS`): a stage can never silently read a default instead of the run's value.
    """

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getattr__(self, attr: str) -> Any:
        key = next((k for k, n in _FIELDS.items() if n == attr), None)
        if key is None or attr.startswith("_"):
            raise AttributeError(attr)
        if key not in self._data["params"]:
            raise KeyError(f"stage {self._data['stage']!r} reads params section {key!r}, which its slice lacks: "
                           "add it to dagllm.kfp_glue.STAGE_SECTIONS")
        section = dict(self._data["params"][key])
        if key == "mlflow" and section.get("tracking_uri") == "env":
            section["tracking_uri"] = _tracking_uri_from_env()
        return Params.model_fields[attr].annotation.model_validate(section)

    def digest(self) -> str:
        """The digest of the whole run's params (register records it; only its slice carries it)."""
        if "digest" not in self._data:
            raise KeyError(f"stage {self._data['stage']!r}: the params digest is only in register's slice")
        return str(self._data["digest"])


def _tree_digest(root: Path, h: Any) -> None:
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())


def code_digest() -> str:
    """sha256 of the installed dagllm package: code, catalog, templates, eval tasks.

    Part of every slice, so a new image with changed code misses the cache even under the same tag.
    """
    h = hashlib.sha256()
    _tree_digest(Path(__file__).parent, h)
    return h.hexdigest()


def sources_digest(p: Params, only: set[str] | None = None) -> str:
    """sha256 of the content of every source file ingest would read (mirror and ingest.local).

    A mirror given as a URL (or ``upstream``) is digested through the catalog's sha256 pins; an
    unpinned file there has no content to compare, so the digest then changes on every run
    (ingest is never served stale data from the cache).
    """
    import time

    from dagllm.paths import mirror_location
    from dagllm.stages.ingest import selected_sources

    mirror = mirror_location(p.paths.mirror)
    h = hashlib.sha256()
    for src in selected_sources(p.ingest, _catalog(p)):
        if only is not None and src.id not in only:
            continue
        for sf in src.files:
            h.update(f"{src.id}/{sf.path}\0".encode())
            if isinstance(mirror, Path):
                f = mirror / sf.path
                h.update(hashlib.sha256(f.read_bytes()).digest() if f.is_file() else b"absent")
            else:
                h.update((sf.sha256 or f"unpinned@{time.time_ns()}").encode())
    for local in p.ingest.local if only is None else []:
        root = Path(local.path)
        if root.is_file():
            h.update(hashlib.sha256(root.read_bytes()).digest())
        elif root.is_dir():
            _tree_digest(root, h)
    return h.hexdigest()


def fingerprint(params_json: str) -> dict[str, str]:
    """One params slice (JSON) per stage: its sections, the code digest; ingest's and evaluate's add
    the content digest of the source files they read, register's the whole params digest (register
    is never cached)."""
    from dagllm.teamdata import resolve

    # resolved as the stages would (a team's tasks join render.tasks); no secret here, so the
    # tracking URI stays as given ("env")
    p = resolve(Params.model_validate(json.loads(params_json)), check_files=False)[0]
    data, code = p.to_dict(), code_digest()
    out = {}
    for stage, sections in STAGE_SECTIONS.items():
        s: dict[str, Any] = {"stage": stage, "code": code, "params": {k: data[k] for k in sections}}
        if stage == "ingest":
            s["sources"] = sources_digest(p)
        if stage == "evaluate":  # the benchmark files it reads
            s["sources"] = sources_digest(p, {x.id for x in benchmark_sources(p)})
        if stage == "register":
            s["digest"] = p.digest()
        out[stage] = json.dumps(s, sort_keys=True, ensure_ascii=False)
    return out


def _tracking_uri_from_env() -> str:
    """``mlflow.tracking_uri: env``: the cluster's MLflow URL, from the pod's environment (a Secret)."""
    import os

    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        raise RuntimeError("mlflow.tracking_uri is 'env' but MLFLOW_TRACKING_URI is not set in this pod: give the "
                           "task the dagllm-mlflow Secret (key uri; kubeflow.secrets in params.yaml)")
    return uri


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
    cat = _catalog(p)
    with tempfile.TemporaryDirectory(prefix="dagllm-raw-") as raw:
        run_fetch(p.fetch, selected_sources(p.ingest, cat), mirror_location(p.paths.mirror),
                  Path(raw), out_dir / "fetch.json")
        s = run_ingest(p.ingest, cat, Path(raw), out_dir / "records.parquet", out_dir / "rejected",
                       out_dir / "ingest.json")
    _log(metrics, {"rows": s.rows, "rejected": s.rejected})


def render(params_json: str, canonical_dir: Path, out_dir: Path, metrics: MetricsSink) -> None:
    from dagllm.stages.render import run_render

    p = _params(params_json)
    s = run_render(p.render, _catalog(p), canonical_dir / "records.parquet", out_dir / "records.parquet",
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
                              _catalog(p), report_dir, validated_dir / "quarantine", p.render.seed,
                              validated_dir / "canonical.parquet")
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
    # benchmark items from the gate's kept canonical rows (canonical_dir only orders the DAG)
    s = run_decontaminate(p.decontaminate, validated_dir / "records.parquet", validated_dir / "canonical.parquet",
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
    from dagllm.stages.train_launch import train as run_train, train_params_for_task

    p = _params(params_json)
    tp = train_params_for_task(p)
    if tp.num_nodes > 1:  # several nodes: a Kubeflow TrainJob on the model volume (stages/trainjob.py)
        from dagllm.stages.trainjob import train_on_cluster

        s = train_on_cluster(p, tp, train_dir / "records.parquet", _model_files_for(p, model_dir), model_dir)
    else:
        s = run_train(tp, p.mlflow, train_dir / "records.parquet", _model_files_for(p, model_dir),
                      model_dir / "train_run.json", model_dir / "train_metrics.json", model_dir / "train_loss.csv",
                      pipeline_run="kfp")
    _log(metrics, {"final_loss": s.final_loss, "steps": s.steps, "tokens_per_second": s.tokens_per_second})


def benchmark_sources(p: Any) -> list:
    """The ingested sources that evaluate.tasks score (protocol kit19 reads their files)."""
    from dagllm.evaluation.protocol import protocol
    from dagllm.stages.ingest import selected_sources

    wanted = {protocol()[t].source for t in p.evaluate.tasks}
    return [s for s in selected_sources(p.ingest, default_catalog()) if s.id in wanted]


def evaluate(params_json: str, canonical_dir: Path, model_dir: Path, val_dir: Path, report_dir: Path,
             metrics: MetricsSink, table_path: Path | None = None, html_path: Path | None = None,
             confusion: ConfusionSink | None = None) -> None:
    """Score the model; copy the stage's table (Markdown) and chart page (HTML) to the KFP artifacts.

    The confusion matrix comes from the per-item samples of the promotion policy's primary task,
    when they carry a target and one log-likelihood per choice.
    """
    import tempfile

    from dagllm.paths import mirror_location
    from dagllm.registry import load_policy
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
