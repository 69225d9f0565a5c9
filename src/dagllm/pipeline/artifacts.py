"""KFP artifacts of the stage steps: metrics, report pages, model files and the confusion matrix.

No kfp import here: a metrics sink is any object with ``log_metric(name, value)`` and a ``path``
(a ``kfp.dsl.Metrics`` in a pipeline). Folder artifacts hold the stage outputs under the same
names as the DVC layout, so a folder artifact looks like a small slice of the working tree.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Protocol

from dagllm.params import Params


class MetricsSink(Protocol):
    path: str

    def log_metric(self, metric: str, value: float) -> None: ...


class ConfusionSink(Protocol):
    path: str

    def log_confusion_matrix(self, categories: list[str], matrix: list[list[int]]) -> None: ...


def log_metrics(metrics: MetricsSink, values: dict[str, Any]) -> None:
    """Log numeric values to the KFP Metrics artifact and also write them to its file.

    kfp.local only caches a task whose Metrics file exists, hence the file.
    """
    numeric = {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for k, v in numeric.items():
        metrics.log_metric(k, v)
    Path(metrics.path).parent.mkdir(parents=True, exist_ok=True)
    Path(metrics.path).write_text(json.dumps(numeric, sort_keys=True), encoding="utf-8")


def copy_page(docs_dir: Path, suite: str, html_path: Path) -> None:
    """The KFP UI shows one HTML file: the validation-result page of ``suite`` from the Data Docs."""
    pages = sorted(p for p in (docs_dir / "validations").rglob("*.html") if suite in p.parts)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(pages[0] if pages else docs_dir / "index.html", html_path)


LOCATION_FILE = "location.json"


def check_writable(folder: Path, what: str) -> None:
    """Refuse a mounted volume this process cannot write, saying why and what to do.

    KFP's SDK sets no ``fsGroup`` on task pods (kfp-kubernetes' ``set_security_context`` takes only
    the user, group and non-root flag), and NFS-like RWX volumes ignore it anyway: the volume
    itself must be writable by the images' uid/gid (``kubeflow.run_as_user``).
    """
    import os

    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"{what}: {folder} is not writable by uid {os.getuid()} gid {os.getgid()}; make "
                              f"the volume's root writable by that user (on the NFS export: chown "
                              f"{os.getuid()}:{os.getgid()}), docs/deploy.md, 2")


def model_files_for(p: Params, model_dir: Path) -> Path:
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
    check_writable(mount, f"kubeflow.model_pvc={p.kubeflow.model_pvc!r}")
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
