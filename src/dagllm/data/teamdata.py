"""A team's own files in the catalog, and the checks of params.yaml against the catalog.

``ingest.local`` entries become sources of the catalog; each names the task(s) it feeds, either a
catalog task (the local source is added to that task's sources) or a task defined in a YAML file
of the catalog's shape (``task_files``). From there team rows take the catalog's path: render,
gate, decontamination, balance, training. :func:`resolve` returns the params and catalog every
stage uses; :func:`check` finds every problem of params.yaml that needs the catalog (unknown ids
and readers, unknown keys of mapping sections) and every team file its reader refuses (not in its
format, a header and no data rows), before any stage does work.
"""

from __future__ import annotations

from pathlib import Path

from dagllm.data.catalog import (
    Catalog,
    CatalogError,
    Source,
    SourceFile,
    Task,
    TaskSource,
    _check_template_ids,
    _load_yaml_model,
    default_catalog,
)
from dagllm.data.templating import task_template_problems
from dagllm.params import Params, ParamsError


def _local_file(local) -> SourceFile:
    path = Path(local.path)
    return SourceFile(path=str(path), url=path.resolve().as_uri(), split=local.split, reader=local.reader,
                      benchmark=local.benchmark)


def with_local(catalog: Catalog, params: Params) -> Catalog:
    """``catalog`` plus the ``ingest.local`` sources and the tasks they define or feed.

    Raises:
        CatalogError: a local id clashes with a catalog source, a task file is invalid, or a
            named task is neither in the catalog nor in the source's task files.
    """
    if not params.ingest.local:
        return catalog
    sources, tasks = dict(catalog.sources), dict(catalog.tasks)
    for i, local in enumerate(params.ingest.local):
        key = f"ingest.local[{i}]"
        if local.id in catalog.sources:
            raise CatalogError(f"{key}.id: {local.id!r} is a catalog source; give your file another id")
        sources[local.id] = Source(id=local.id, name=local.id, homepage="", license=local.license, citation="",
                                   files=[_local_file(local)])
        defined: dict[str, Task] = {}
        for tf in local.task_files:
            if not Path(tf).is_file():
                raise CatalogError(f"{key}.task_files: {tf} not found")
            task = _load_yaml_model(Path(tf), Task)
            if problems := task_template_problems(task):  # what render would refuse, refused before any work
                raise CatalogError(f"{tf}: " + "; ".join(problems))
            if task.id in tasks:
                raise CatalogError(f"{key}.task_files: {tf} defines task {task.id!r}, which already exists; "
                                   "rename it (the file name is the id)")
            if task.category not in catalog.categories:
                raise CatalogError(f"{tf}: category {task.category!r} is not one of "
                                   f"{', '.join(catalog.categories)}")
            defined[task.id] = task
        for task_id in local.tasks:
            task = defined.get(task_id) or tasks.get(task_id)
            if task is None:
                raise CatalogError(f"{key}.tasks: unknown task {task_id!r}; name a catalog task "
                                   f"(`dagllm catalog ls`) or define it in {key}.task_files")
            feeds = [ts for ts in task.sources if ts.source != local.id]
            tasks[task_id] = task.model_copy(update={"sources": [*feeds, TaskSource(source=local.id,
                                                                                   splits=[local.split])]})
        unnamed = sorted(set(defined) - set(local.tasks))
        if unnamed:
            raise CatalogError(f"{key}.task_files define {', '.join(unnamed)}, not listed in {key}.tasks")
    _check_template_ids(list(tasks.values()), Path("ingest.local task_files"))
    return Catalog(sources=sources, tasks=tasks, categories=catalog.categories)


def local_tasks(params: Params) -> list[str]:
    """The tasks named by ``ingest.local`` (in order, each once)."""
    return list(dict.fromkeys(t for local in params.ingest.local if not local.benchmark for t in local.tasks))


def resolve(params: Params, catalog: Catalog | None = None, *, check_files: bool = True) -> tuple[Params, Catalog]:
    """The params every stage runs with (``render.tasks`` plus the local sources' tasks) and the catalog
    with the local sources; raises :class:`ParamsError` naming the key of every problem.

    ``check_files=False`` skips the existence of ``ingest.local`` paths (a pipeline step other than
    ingest runs where the team's files are not).
    """
    catalog = catalog or default_catalog()
    try:
        merged = with_local(catalog, params)
    except CatalogError as exc:
        raise ParamsError(str(exc)) from None
    check(params, merged, check_files=check_files)
    extra = [t for t in local_tasks(params) if t not in params.render.tasks]
    if extra:
        params = params.model_copy(update={"render": params.render.model_copy(
            update={"tasks": [*params.render.tasks, *extra]})})
    return params, merged


def _unknown(key: str, got: list[str], known: set[str], what: str) -> list[str]:
    return [f"  {key}: unknown {what} {g!r} (known: {', '.join(sorted(known))})" for g in got if g not in known]


def _file_problem(path: str, reader: str) -> str | None:
    """Why a team file cannot feed its tasks, found by its reader up to its first row: not in the
    reader's format (wrong header, JSON array for JSON Lines, another encoding), or no data rows."""
    from dagllm.data.readers import READERS, FileFormatError

    try:
        next(iter(READERS[reader](Path(path))), None)
    except FileFormatError as exc:
        return str(exc)
    return None


def check(params: Params, catalog: Catalog, *, check_files: bool = True) -> None:
    """Every problem of ``params`` that needs the catalog or the reader registry, in one error.

    Raises:
        ParamsError: one line per bad key.
    """
    from dagllm.data.readers import READERS

    problems: list[str] = []
    sources, tasks = set(catalog.sources), set(catalog.tasks)
    categories = set(catalog.categories)
    problems += _unknown("ingest.sources", params.ingest.sources, sources, "source")
    problems += _unknown("ingest.optional_sources", params.ingest.optional_sources, sources, "source")
    problems += _unknown("render.tasks", params.render.tasks, tasks, "task")
    for i, local in enumerate(params.ingest.local):
        problems += _unknown(f"ingest.local[{i}].reader", [local.reader], set(READERS), "reader")
        if not check_files:
            continue
        if Path(local.path).is_dir():
            problems.append(f"  ingest.local[{i}].path: {local.path} is a directory; name one file inside it")
        elif not Path(local.path).is_file():
            problems.append(f"  ingest.local[{i}].path: {local.path} not found (relative to {Path.cwd()})")
        elif local.reader in READERS and (problem := _file_problem(local.path, local.reader)):
            feeds = f" (task {', '.join(map(repr, local.tasks))} would get no records from it)" if local.tasks else ""
            problems.append(f"  ingest.local[{i}].path: {problem}{feeds}")
    problems += _unknown("validate.hangul", list(params.validate_.hangul), {"default"} | tasks | categories,
                         "task or category")
    problems += _unknown("decontaminate.unit_fields", list(params.decontaminate.unit_fields), sources, "source")
    problems += _unknown("balance.category_weights", list(params.balance.category_weights), categories, "category")
    rendered = [*params.render.tasks, *local_tasks(params)]
    if problem := params.balance.empty_mix_problem(
            {t: catalog.tasks[t].category for t in rendered if t in catalog.tasks}):
        problems.append(f"  {problem}")
    if problems:
        raise ParamsError("params do not match the catalog or the files they name:\n" + "\n".join(problems))
