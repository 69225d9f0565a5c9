"""Per-stage params slices and the run's fingerprint: what KFP's cache keys each stage on.

The pipeline's first step (``fingerprint``, never cached) hands each stage task only the params
sections it reads (:data:`STAGE_SECTIONS`), the code digest and, for ingest and evaluate, the
content digest of the source files they read; a change elsewhere leaves the task's cache key, and
everything upstream of the change, alone.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import dagllm
from dagllm.data.catalog import default_catalog
from dagllm.params import Params


def run_catalog(p: Any):
    """The catalog with the run's ``ingest.local`` sources and their tasks."""
    from dagllm.data.teamdata import with_local

    return with_local(default_catalog(), p)

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
                           "add it to dagllm.pipeline.slices.STAGE_SECTIONS")
        section = dict(self._data["params"][key])
        if key == "mlflow" and section.get("tracking_uri") == "env":
            section["tracking_uri"] = tracking_uri_from_env()
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
    _tree_digest(Path(dagllm.__file__).parent, h)
    return h.hexdigest()


def sources_digest(p: Params, only: set[str] | None = None) -> str:
    """sha256 of the content of every source file ingest would read (mirror and ingest.local).

    A mirror given as a URL (or ``upstream``) is digested through the catalog's sha256 pins; an
    unpinned file there has no content to compare, so the digest then changes on every run
    (ingest is never served stale data from the cache).
    """
    import time

    from dagllm.data.canonical import selected_sources
    from dagllm.paths import mirror_location

    mirror = mirror_location(p.paths.mirror)
    h = hashlib.sha256()
    for src in selected_sources(p.ingest, run_catalog(p)):
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
    from dagllm.data.teamdata import resolve

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


def tracking_uri_from_env() -> str:
    """``mlflow.tracking_uri: env``: the cluster's MLflow URL, from the pod's environment (a Secret)."""
    import os

    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        raise RuntimeError("mlflow.tracking_uri is 'env' but MLFLOW_TRACKING_URI is not set in this pod: give the "
                           "task the dagllm-mlflow Secret (key uri; kubeflow.secrets in params.yaml)")
    return uri


def benchmark_sources(p: Any) -> list:
    """The ingested sources that evaluate.tasks score (protocol kit19 reads their files)."""
    from dagllm.data.canonical import selected_sources
    from dagllm.evaluation.protocol import protocol

    wanted = {protocol()[t].source for t in p.evaluate.tasks}
    return [s for s in selected_sources(p.ingest, default_catalog()) if s.id in wanted]
