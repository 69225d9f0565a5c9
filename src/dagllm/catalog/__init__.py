"""The catalog: sources and tasks (with their templates) kept as YAML data, schema-checked.

One YAML per source under ``catalog/sources/`` and one per task under ``catalog/tasks/``; files
are loaded with ``yaml.safe_load`` and validated with pydantic. ``load_catalog`` raises
:class:`CatalogError` naming the file and key of the first problem it finds in each file.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

CATALOG_DIR = Path(__file__).parent


class CatalogError(ValueError):
    """A catalog YAML is malformed or refers to something that does not exist."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceFile(_Strict):
    path: str = Field(description="path inside the mirror layout")
    url: str = Field(description="canonical download URL pinned to a commit or version")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    split: Literal["train", "validation", "test"]
    reader: str
    benchmark: bool = Field(False, description="an evaluation split: never rendered for training")
    optional: bool = Field(False, description="absent from the public mirror (too large, not on "
                           "GitHub): fetch and ingest note its absence instead of failing")
    prepare: str | None = Field(None, description="the URL is the upstream artifact this file is made "
                                "from (how, in words); fetch takes it only from a mirror that has the file")


class Source(_Strict):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    name: str
    homepage: str
    license: str
    citation: str
    files: list[SourceFile] = Field(min_length=1)


class Template(_Strict):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    kind: Literal["instruction", "question"]
    instruction: str = Field(min_length=1)
    input: str = ""
    output: str = Field(min_length=1)


class TaskSource(_Strict):
    source: str
    splits: list[Literal["train", "validation", "test"]] = ["train"]


class Task(_Strict):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    category: str
    description: str
    sources: list[TaskSource] = Field(min_length=1)
    fields: list[str] = Field(min_length=1, description="variables a template may use")
    labels: dict[str, str] = Field(
        default_factory=dict, description="native label -> Korean verbalisation (as `answer`)"
    )
    templates: list[Template] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_templates(self) -> Task:
        ids = [t.id for t in self.templates]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"template ids repeated: {', '.join(dupes)}")
        return self


class Catalog(_Strict):
    sources: dict[str, Source]
    tasks: dict[str, Task]

    def source(self, source_id: str) -> Source:
        return _lookup("source", self.sources, source_id)

    def task(self, task_id: str) -> Task:
        return _lookup("task", self.tasks, task_id)


def _lookup(kind: str, entries: dict, key: str):
    if key not in entries:
        raise CatalogError(f"unknown {kind} {key!r}; the catalog has: {', '.join(sorted(entries))}")
    return entries[key]


def _load_yaml_model(path: Path, model: type[_Strict]) -> _Strict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML ({exc})") from None
    try:
        obj = model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors()
        )
        raise CatalogError(f"{path}: {problems}") from None
    if getattr(obj, "id", path.stem) != path.stem:
        raise CatalogError(f"{path}: id {obj.id!r} must equal the file name {path.stem!r}")
    return obj


def load_catalog(root: Path = CATALOG_DIR) -> Catalog:
    """Load and cross-check every source and task YAML under ``root``.

    Raises:
        CatalogError: a file is invalid, or a task names a source or split that does not exist.
    """
    sources = {p.stem: _load_yaml_model(p, Source) for p in sorted((root / "sources").glob("*.yaml"))}
    tasks = {p.stem: _load_yaml_model(p, Task) for p in sorted((root / "tasks").glob("*.yaml"))}
    for task in tasks.values():
        for ts in task.sources:
            if ts.source not in sources:
                raise CatalogError(f"{root / 'tasks' / task.id}.yaml: source {ts.source!r} is not in the catalog")
            have = {f.split for f in sources[ts.source].files}
            for split in ts.splits:
                if split not in have:
                    raise CatalogError(
                        f"{root / 'tasks' / task.id}.yaml: source {ts.source!r} has no {split!r} split "
                        f"(it has {', '.join(sorted(have))})"
                    )
    return Catalog(sources=sources, tasks=tasks)  # type: ignore[arg-type]


@lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    """The catalog bundled with dagllm (cached)."""
    return load_catalog()
