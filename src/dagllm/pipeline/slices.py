"""Per-stage params slices and the run's fingerprint: what KFP's cache keys each stage on.

The pipeline's first step (``fingerprint``, never cached) hands each stage task only the params
sections it reads (:data:`STAGE_SECTIONS`), the code digest and, for ingest and evaluate, the
content digest of the source files they read; a change elsewhere leaves the task's cache key, and
everything upstream of the change, alone.
"""

from __future__ import annotations

import ast
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

# The params each stage reads: a whole section ("ingest"), or one field or one entry of a per-task
# map of it ("kubeflow.images.train", "kubeflow.resources.train"). Its task gets only these, so a
# change elsewhere (serve.*, another stage's resources, the KFP experiment) leaves its cache key,
# and everything upstream of the change, alone.
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "ingest": ("paths", "fetch", "ingest"),
    # render and validate read ingest.local too (a team's own sources and their tasks: teamdata)
    "render": ("render", "ingest"),
    "validate": ("validate", "render", "ingest"),
    "decontaminate": ("decontaminate",),
    "balance": ("balance", "validate", "render"),
    # one rank per GPU of the task (steps.train_params_for_task); the model PVC; on several nodes the
    # TrainJob's image, resources, GPUs, placement, Secrets and user (training/trainjob.py)
    "train": ("train", "mlflow", "kubeflow.images.train", "kubeflow.resources.train", "kubeflow.gpu.train",
              "kubeflow.node_selector", "kubeflow.tolerations", "kubeflow.model_pvc", "kubeflow.model_mount",
              "kubeflow.shm_size", "kubeflow.secrets", "kubeflow.run_as_user", "kubeflow.train_job",
              "kubeflow.image_pull_secrets"),
    # evaluate (protocol kit19) also fetches the benchmark sources' files from the mirror; the preset
    # names the model's prompt settings; the policy's primary task gets the confusion matrix
    "evaluate": ("evaluate", "mlflow", "fetch", "paths", "ingest", "train.model", "register.policy"),
    "register": ("register", "mlflow"),
}
# The library code each stage runs: its function in pipeline/steps.py, and what that imports.
STEPS_MODULE = "dagllm.pipeline.steps"
# The installed package the code digests read (a test points it at a copy).
PACKAGE_ROOT = Path(dagllm.__file__).parent


_FIELDS = {(f.alias or name): name for name, f in Params.model_fields.items()}


def _pick(data: dict[str, Any], paths: tuple[str, ...]) -> dict[str, Any]:
    """The parts of the params mapping ``data`` that ``paths`` name (absent map entries stay absent)."""
    out: dict[str, Any] = {}
    for path in paths:
        keys, src, dest = path.split("."), data, out
        for key in keys[:-1]:
            src = src.get(key, {}) if isinstance(src, dict) else {}
            dest = dest.setdefault(key, {})
        if isinstance(src, dict) and keys[-1] in src:
            dest[keys[-1]] = src[keys[-1]]
    return out


def _allowed(paths: tuple[str, ...], section: str) -> dict[str, Any] | None:
    """The field tree of ``section`` the paths name: None = the whole section; leaves are True."""
    tree: dict[str, Any] = {}
    for path in paths:
        head, *rest = path.split(".")
        if head != section:
            continue
        if not rest:
            return None
        node = tree
        for key in rest[:-1]:
            node = node.setdefault(key, {}) if node.get(key) is not True else {}
        node[rest[-1]] = True
    return tree


def _refused(stage: str, path: str) -> KeyError:
    return KeyError(f"stage {stage!r} reads params {path!r}, which its slice lacks: "
                    "add it to dagllm.pipeline.slices.STAGE_SECTIONS")


class SectionView:
    """A params section of which a stage's slice holds only some fields: reading another is a KeyError.

    Methods and pydantic's own attributes pass through to the validated section.
    """

    def __init__(self, model: Any, allowed: dict[str, Any], stage: str, prefix: str) -> None:
        self._model, self._allowed, self._stage, self._prefix = model, allowed, stage, prefix

    def __getattr__(self, attr: str) -> Any:
        if attr not in type(self._model).model_fields:
            return getattr(self._model, attr)
        if attr not in self._allowed:
            raise _refused(self._stage, f"{self._prefix}.{attr}")
        value, sub = getattr(self._model, attr), self._allowed[attr]
        if sub is True or not hasattr(type(value), "model_fields"):
            return value  # a leaf, or a per-task map holding only the stage's own entry
        return SectionView(value, sub, self._stage, f"{self._prefix}.{attr}")


class ParamsSlice:
    """The params of one stage's slice, validated by the same models as params.yaml.

    Reading a section (or a field of a partly sliced section) that the stage's slice lacks is a
    KeyError naming the fix (:data:`STAGE_SECTIONS`): a stage can never silently read a default
    instead of the run's value.
    """

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getattr__(self, attr: str) -> Any:
        key = next((k for k, n in _FIELDS.items() if n == attr), None)
        if key is None or attr.startswith("_"):
            raise AttributeError(attr)
        stage = self._data["stage"]
        if key not in self._data["params"]:
            raise _refused(stage, key)
        section = dict(self._data["params"][key])
        if key == "mlflow" and section.get("tracking_uri") == "env":
            section["tracking_uri"] = tracking_uri_from_env()
        model = Params.model_fields[attr].annotation.model_validate(section)
        allowed = _allowed(STAGE_SECTIONS[stage], key)
        return model if allowed is None else SectionView(model, allowed, stage, key)

    def digest(self) -> str:
        """The digest of the whole run's params (register records it; only its slice carries it)."""
        if "digest" not in self._data:
            raise KeyError(f"stage {self._data['stage']!r}: the params digest is only in register's slice")
        return str(self._data["digest"])


def _tree_digest(root: Path, h: Any) -> None:
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())


def _module_file(module: str) -> Path | None:
    """The file of a dagllm module (``dagllm.a.b``), or None when the name is not a module."""
    root = PACKAGE_ROOT
    rel = Path(*module.split(".")[1:])
    for candidate in (root / rel / "__init__.py", (root / rel).with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported(tree: ast.AST, module: str) -> set[str]:
    """The dagllm modules an ``ast`` (sub)tree imports, anywhere in it (function bodies too)."""
    package = module if _module_file(module) and _module_file(module).name == "__init__.py" else \
        module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            found |= {base, *(f"{base}.{a.name}" for a in node.names)}
    return {m for m in found if m.split(".")[0] == "dagllm" and _module_file(m)}


def _steps_parts(stage: str) -> tuple[str, list[ast.AST]]:
    """The source of :data:`STEPS_MODULE` that ``stage``'s task runs, and its nodes: the module
    minus the other stages' functions."""
    text = _module_file(STEPS_MODULE).read_text(encoding="utf-8")
    tree = ast.parse(text)
    if not any(isinstance(n, ast.FunctionDef) and n.name == stage for n in tree.body):
        raise KeyError(f"{STEPS_MODULE} has no function {stage!r}")
    nodes = [n for n in tree.body
             if not (isinstance(n, ast.FunctionDef) and n.name in STAGE_SECTIONS and n.name != stage)]
    return "\n".join(ast.get_source_segment(text, n) or "" for n in nodes), nodes


def stage_modules(stage: str) -> set[str]:
    """The dagllm modules the KFP task of ``stage`` runs: its part of :data:`STEPS_MODULE`
    (:func:`_steps_parts`), then everything that imports, transitively, with the packages around them."""
    todo: set[str] = set()
    for node in _steps_parts(stage)[1]:
        todo |= _imported(node, STEPS_MODULE)
    seen: set[str] = {STEPS_MODULE}
    todo -= seen
    todo |= {"dagllm", "dagllm.pipeline"}
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        parts = mod.split(".")
        todo |= {".".join(parts[:i]) for i in range(1, len(parts))}  # importing a.b runs a/__init__.py
        todo |= _imported(ast.parse(_module_file(mod).read_text(encoding="utf-8")), mod)
    return seen


def code_digest(stage: str) -> str:
    """sha256 of the installed dagllm code a stage runs (:func:`stage_modules`).

    A stage's digest covers its modules' files (of :data:`STEPS_MODULE`, only its part) and, for a
    package among them, the data files beside it (catalog, templates, eval tasks, DeepSpeed
    configs): a change in ``serving/`` reruns no pipeline stage, one in ``evaluation/harness.py``
    only evaluate; a data file counts for every stage importing its package (the eval task folder
    holds the benchmark protocol, which every stage reads). docs/deploy.md, "Caching", has the table.
    """
    root = PACKAGE_ROOT
    modules = {_module_file(m) for m in stage_modules(stage) - {STEPS_MODULE}}
    packages = {f.parent for f in modules if f.name == "__init__.py"}
    files = set(modules)
    for folder in packages:
        files |= set(_data_files(folder, packages))
    h = hashlib.sha256()
    h.update(f"{STEPS_MODULE}:{stage}\0".encode() + hashlib.sha256(_steps_parts(stage)[0].encode()).digest())
    for path in sorted(files):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _data_files(folder: Path, imported: set[Path]) -> list[Path]:
    """The files of package ``folder`` that no import reaches: data (YAML, templates, JSON) and code
    loaded by path (lm-eval's task ``utils`` in a plain folder), under it, except under the packages
    in ``imported`` (they count on their own). The top package counts only its own folder."""
    out = []
    for path in sorted(folder.rglob("*") if folder != PACKAGE_ROOT else folder.iterdir()):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        if any(folder in d.parents and d in path.parents for d in imported):
            continue
        if path.suffix != ".py" or not (path.parent / "__init__.py").is_file():
            out.append(path)
    return out


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
    data = p.to_dict()
    out = {}
    for stage, sections in STAGE_SECTIONS.items():
        s: dict[str, Any] = {"stage": stage, "code": code_digest(stage), "params": _pick(data, sections)}
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
