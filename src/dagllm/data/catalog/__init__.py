"""The catalog: sources and tasks (with their templates) kept as YAML data, schema-checked.

One YAML per source under ``catalog/sources/`` and one per task under ``catalog/tasks/``, plus
``catalog/categories.yaml``; files are loaded with ``yaml.safe_load`` and validated with pydantic.
``load_catalog`` raises :class:`CatalogError` naming the file and key of the first problem it
finds in each file.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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
    id: str = Field(pattern=r"^[a-z0-9_]+$", description="unique across the whole registry")
    kind: Literal["instruction", "question"]
    instruction: str = Field(min_length=1)
    input: str = ""
    output: str = Field(min_length=1)
    choices: list[str] | None = Field(
        None,
        description="answer choices (Jinja, rendered per record, e.g. COPA's two alternatives); when "
        "omitted in a task with `labels`, the output rendered once per label",
    )

    @model_validator(mode="after")
    def _known_particle_markers(self) -> Template:
        from dagllm.data import korean

        for part in ("instruction", "input", "output", *(self.choices or [])):
            text = getattr(self, part, part)
            for m in korean.MARKER.finditer(text):
                korean.pair(f"{m.group(1)}/{m.group(2)}")
        return self


class Category(_Strict):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    name: str = Field(min_length=1, description="Korean display name")
    kit19: bool = Field(description="one of KIT-19's ten categories (the rest are DaG's additions)")
    description: str


class Condition(_Strict):
    """Keep a record only when ``field`` (a source field or ``label``) satisfies every test given."""

    field: str
    in_: list[str] | None = Field(None, alias="in")
    not_in: list[str] | None = None
    nonempty: bool = False
    matches: str | None = Field(None, description="a Python regular expression found in the value (re.search)")
    not_matches: str | None = Field(None, description="a Python regular expression not found in the value")
    differs_from: str | None = Field(None, description="another field whose value must differ in its letters and "
                                     "digits (spacing, punctuation and case ignored)")
    not_within: str | None = Field(None, description="another field whose letters and digits must not contain "
                                   "this value's (a shortened copy of the other text)")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("matches", "not_matches")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{value!r} is not a valid regular expression: {exc}") from exc
        return value


class GroupPairs(_Strict):
    """Pair each record with another member of its group (e.g. ParaKQC's 10 paraphrases of a set).

    Runs over all rows of a task in the render stage: the partner is chosen deterministically from
    the seed and the record id among the other members; a group of one yields no record.
    """

    kind: Literal["group_pairs"]
    group_field: str
    field: str = Field(description="the field copied from the partner")
    as_: str = Field(alias="as", pattern=r"^[a-z0-9_]+$")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FirstParagraph(_Strict):
    """The first non-empty paragraph (blank-line or newline separated) of ``field``."""

    kind: Literal["first_paragraph"]
    field: str
    as_: str = Field(alias="as", pattern=r"^[a-z0-9_]+$")
    max_chars: int = Field(1500, ge=20, description="cut at the last sentence end before this length")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FirstSentence(_Strict):
    """The first sentence of ``field`` (up to the first '. ', '? ', '! ' or line break)."""

    kind: Literal["first_sentence"]
    field: str
    as_: str = Field(alias="as", pattern=r"^[a-z0-9_]+$")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class AnswerUnit(_Strict):
    """The unit a worked solution writes right after its final answer (GSM8K: ``… = 2400원입니다.``
    with answer ``2400`` gives ``원``; ``$18`` gives ``달러``); empty when the solution names none."""

    kind: Literal["answer_unit"]
    field: str = Field(description="the worked solution")
    number: str = Field(description="the field holding the bare final answer")
    as_: str = Field(alias="as", pattern=r"^[a-z0-9_]+$")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Derivation = Annotated[GroupPairs | FirstParagraph | FirstSentence | AnswerUnit, Field(discriminator="kind")]


class Sample(_Strict):
    """A record written by the project in Korean, so a task renders even without its source."""

    fields: dict[str, str]
    label: str | None = None


class TaskSource(_Strict):
    source: str
    splits: list[Literal["train", "validation", "test"]] = ["train"]


class Task(_Strict):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    category: str
    description: str
    sources: list[TaskSource] = Field(min_length=1)
    fields: list[str] = Field(min_length=1, description="source fields a template may use")
    label_field: str | None = Field(
        None, description="take the label from this source field instead of the record's `label`"
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="native label -> Korean verbalisation (as `answer`)"
    )
    label_default: str | None = Field(
        None, description="verbalisation of any label not listed in `labels` (e.g. every UnSmile hate category)"
    )
    open_ended: bool = Field(
        False, description="the output is free text even though `labels` verbalise the label (e.g. write a "
        "review of a given polarity): no automatic answer choices")
    where: list[Condition] = Field(default_factory=list, description="keep only records passing all")
    derive: list[Derivation] = Field(default_factory=list, description="fields computed before rendering")
    sample: Sample
    templates: list[Template] = Field(min_length=1)

    @property
    def variables(self) -> set[str]:
        """Every name a template of this task may use."""
        return set(self.fields) | {d.as_ for d in self.derive} | {"label", "answer"}

    @property
    def classification(self) -> bool:
        """True when the output is one of a fixed set of verbalised labels."""
        return bool(self.labels) and not self.open_ended

    @model_validator(mode="after")
    def _consistent(self) -> Task:
        ids = [t.id for t in self.templates]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"template ids repeated: {', '.join(dupes)}")
        known = set(self.fields) | {"label"} | {d.as_ for d in self.derive}
        for name in ([c.field for c in self.where] + [c.differs_from for c in self.where]
                     + [c.not_within for c in self.where]
                     + [d.field for d in self.derive] + [self.label_field]
                     + [d.number for d in self.derive if isinstance(d, AnswerUnit)]):
            if name is not None and name not in known:
                raise ValueError(f"{name!r} is not one of the task's fields ({', '.join(sorted(known))})")
        for d in self.derive:
            if isinstance(d, GroupPairs) and d.group_field not in self.fields:
                raise ValueError(f"group_field {d.group_field!r} is not one of the task's fields")
        group_derived = {d.as_ for d in self.derive if isinstance(d, GroupPairs)}
        missing = (set(self.fields) | group_derived) - set(self.sample.fields)
        if missing:
            raise ValueError(f"sample.fields lacks {', '.join(sorted(missing))}")
        label = self.sample.fields.get(self.label_field) if self.label_field else self.sample.label
        if self.labels and self.label_default is None and label not in self.labels:
            raise ValueError(f"the sample's label {label!r} is not one of labels ({', '.join(self.labels)})")
        return self


class Catalog(_Strict):
    sources: dict[str, Source]
    tasks: dict[str, Task]
    categories: dict[str, Category] = Field(default_factory=dict)

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


class _Categories(_Strict):
    categories: list[Category] = Field(min_length=1)


def load_categories(root: Path = CATALOG_DIR) -> dict[str, Category]:
    """The task categories (``categories.yaml``); an empty mapping when the file is absent."""
    path = root / "categories.yaml"
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        cats = _Categories.model_validate(data).categories
    except (yaml.YAMLError, ValidationError) as exc:
        raise CatalogError(f"{path}: {exc}") from None
    return {c.id: c for c in cats}


def _check_categories(tasks: dict[str, Task], categories: dict[str, Category], folder: Path) -> None:
    if not categories:
        return
    for task in tasks.values():
        if task.category not in categories:
            raise CatalogError(f"{folder / task.id}.yaml: category {task.category!r} is not in "
                               f"categories.yaml ({', '.join(categories)})")


def _check_template_ids(tasks: list[Task], where: Path) -> None:
    owner: dict[str, str] = {}
    for task in tasks:
        for tpl in task.templates:
            if tpl.id in owner and owner[tpl.id] != task.id:
                raise CatalogError(f"{where}: template id {tpl.id!r} is used by tasks {owner[tpl.id]!r} "
                                   f"and {task.id!r}; template ids must be unique in the registry")
            owner[tpl.id] = task.id


def load_tasks(folder: Path) -> dict[str, Task]:
    """Schema-check every task YAML in ``folder`` (no cross-check against sources)."""
    return {p.stem: _load_yaml_model(p, Task) for p in sorted(folder.glob("*.yaml"))}  # type: ignore[misc]


def load_catalog(root: Path = CATALOG_DIR) -> Catalog:
    """Load and cross-check every source and task YAML under ``root``.

    Raises:
        CatalogError: a file is invalid, or a task names a source, split or category that does
            not exist, or two templates share an id.
    """
    sources = {p.stem: _load_yaml_model(p, Source) for p in sorted((root / "sources").glob("*.yaml"))}
    tasks = load_tasks(root / "tasks")
    categories = load_categories(root)
    _check_categories(tasks, categories, root / "tasks")
    _check_template_ids(list(tasks.values()), root / "tasks")
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
    return Catalog(sources=sources, tasks=tasks, categories=categories)  # type: ignore[arg-type]


@lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    """The catalog bundled with dagllm (cached)."""
    return load_catalog()
