"""The protocol as data: ``tasks/protocol.yaml`` (what is scored), the lm-eval task YAMLs of
each prompt protocol (``tasks/kit19/``: KIT-19's prompts, the default; ``tasks/dagllm/``:
our readable prompts) and ``tasks/kit19_published.yaml`` (the published table).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dagllm.params import EvaluateParams

TASK_DIR = Path(__file__).resolve().parent / "tasks"
NO_DATA = "no data in this mirror"
PROTOCOLS = ("kit19", "dagllm")
Protocol = Literal["kit19", "dagllm"]
# what a caller that names no protocol gets: the params default (evaluate.protocol), never another
DEFAULT_PROTOCOL: Protocol = EvaluateParams.model_fields["protocol"].default


class ProtocolError(ValueError):
    """A protocol or published-results file is invalid; the message names the file and key."""


class TaskSpec(BaseModel):
    """One benchmark task of the protocol."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    split: Literal["train", "validation", "test"]
    size: int = Field(ge=1, description="items in the full split")
    labels: list[str] = Field(min_length=2, description="canonical labels in choice order")
    metrics: list[Literal["acc", "acc_norm", "macro_f1", "f1"]] = Field(min_length=1)
    fewshot_split: Literal["train", "validation"] | None = None

    @model_validator(mode="after")
    def _binary_f1_needs_two_labels(self) -> TaskSpec:
        if "f1" in self.metrics and len(self.labels) != 2:
            raise ValueError("binary f1 needs exactly two labels (negative, positive)")
        return self

    def label_index(self, label: str) -> int:
        """Choice index of a canonical label; an unknown label is an error naming the allowed ones."""
        try:
            return self.labels.index(str(label))
        except ValueError:
            raise ValueError(f"label {label!r} is not one of {self.labels} ({self.source}/{self.split})") from None


class Published(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    unit: Literal["percent"]
    models: list[str] = Field(min_length=1)
    results: dict[str, dict[str, dict[str, float]]]


def _load(path: Path, model: type[BaseModel]):
    try:
        return model.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (yaml.YAMLError, ValidationError) as exc:
        raise ProtocolError(f"{path}: {exc}") from None


@lru_cache(maxsize=1)
def protocol(path: Path = TASK_DIR / "protocol.yaml") -> dict[str, TaskSpec]:
    """Every task spec, keyed by task name (the lm-eval task YAML of the same name must exist)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))["tasks"]
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise ProtocolError(f"{path}: expected a mapping under 'tasks' ({exc})") from None
    specs = {}
    for name, entry in raw.items():
        try:
            specs[name] = TaskSpec.model_validate(entry)
        except ValidationError as exc:
            raise ProtocolError(f"{path}: tasks.{name}: {exc}") from None
        for prompts in PROTOCOLS:
            if not (path.parent / prompts / f"{name}.yaml").is_file():
                raise ProtocolError(f"{path}: tasks.{name} has no lm-eval config {prompts}/{name}.yaml")
    return specs


@lru_cache(maxsize=1)
def published(path: Path = TASK_DIR / "kit19_published.yaml") -> Published:
    """The published KIT-19 figures (percent)."""
    return _load(path, Published)


def lm_eval_config(task: str, prompts: Protocol = DEFAULT_PROTOCOL) -> dict:
    """The task YAML of protocol ``prompts`` loaded the way lm-eval loads it (``!function`` resolved)."""
    from lm_eval.tasks._yaml_loader import load_yaml

    if prompts not in PROTOCOLS:
        raise ProtocolError(f"unknown protocol {prompts!r}; known: {', '.join(PROTOCOLS)}")
    return load_yaml(TASK_DIR / prompts / f"{task}.yaml")


def choice_names(task: str, n_choices: int, prompts: Protocol = DEFAULT_PROTOCOL) -> list[str]:
    """Printable names of the choices: the YAML's fixed choice strings, else ``choice 1..n``."""
    choices = lm_eval_config(task, prompts).get("doc_to_choice")
    if isinstance(choices, list) and len(choices) == n_choices:
        return [str(c) for c in choices]
    return [f"choice {i + 1}" for i in range(n_choices)]


def rows_of(canonical: pd.DataFrame, source: str, split: str) -> pd.DataFrame:
    """Canonical rows of one source and split, in file order."""
    rows = canonical[(canonical["source"] == source) & (canonical["split"] == split)]
    return rows.sort_values(["file", "line"], kind="stable")


def to_docs(spec: TaskSpec, rows: pd.DataFrame) -> list[dict]:
    """lm-eval docs: the canonical fields plus ``label`` as the gold choice index."""
    docs = []
    for r in rows.itertuples(index=False):
        try:
            docs.append({**json.loads(r.fields), "id": r.id, "label": spec.label_index(r.label)})
        except ValueError as exc:
            raise ValueError(f"{r.file} line {r.line}: {exc}") from None
    return docs


def write_jsonl(docs: list[dict], out: Path) -> Path:
    """One doc per line (UTF-8), the format lm-eval's ``json`` loader reads."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)
    return out
