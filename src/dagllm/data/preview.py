"""What `dagllm catalog ls/show` print: task rows and sample renderings (no printing here)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd

from dagllm.data.catalog import Catalog, Task, default_catalog, load_categories
from dagllm.data.templating import prepare, render_choices, render_parts, render_sample


def _canonical(path: Path) -> pd.DataFrame | None:
    if not Path(path).is_file():
        return None
    df = pd.read_parquet(path, columns=["id", "source", "split", "fields", "label", "benchmark"])
    return df[~df["benchmark"]]


def _rows_for(task: Task, table: pd.DataFrame) -> pd.DataFrame:
    mask = pd.Series(False, index=table.index)
    for ts in task.sources:
        mask |= (table["source"] == ts.source) & table["split"].isin(ts.splits)
    return table[mask]


def task_rows(canonical: Path, catalog: Catalog | None = None) -> list[dict]:
    """One dict per task: id, category, sources, template counts, canonical rows available, status.

    ``records`` is ``None`` when ``canonical`` does not exist (ingest has not run); ``status`` says
    whether the task has rows to render (``ready``), none in the ingested data (``no rows``: its
    sources were not selected or not in the mirror; its sample still renders), or ``not ingested``.
    """
    cat = catalog or default_catalog()  # with the ingest.local tasks when the CLI passes them
    cats = load_categories()
    table = _canonical(canonical)
    counts = Counter() if table is None else Counter(zip(table["source"], table["split"], strict=True))
    out = []
    for task in sorted(cat.tasks.values(), key=lambda t: (t.category, t.id)):
        kinds = Counter(t.kind for t in task.templates)
        records = None if table is None else sum(counts[(ts.source, s)] for ts in task.sources for s in ts.splits)
        out.append({
            "task": task.id, "category": task.category,
            "category_name": cats[task.category].name if task.category in cats else task.category,
            "sources": [ts.source for ts in task.sources],
            "templates": len(task.templates), "instruction_templates": kinds["instruction"],
            "question_templates": kinds["question"],
            "records": records,
            "status": "not ingested" if records is None else ("ready" if records else "no rows"),
        })
    return out


def find_task(task_id: str, catalog: Catalog | None = None) -> Task:
    """A task of the registry; an unknown id raises CatalogError listing the known ones."""
    return (catalog or default_catalog()).task(task_id)


def show_task(task_id: str, canonical: Path, real_rows: int = 1, catalog: Catalog | None = None) -> list[dict]:
    """Every template rendered on the task's sample, then on up to ``real_rows`` canonical rows."""
    task = find_task(task_id, catalog)
    blocks = [{**b, "record": "sample"} for b in render_sample(task)]
    table = _canonical(canonical)
    if table is not None and real_rows > 0:
        shown = 0
        for row in _rows_for(task, table).itertuples(index=False):
            variables = prepare(task, json.loads(row.fields), row.label, row.id)
            if isinstance(variables, str):
                continue
            for tpl in task.templates:
                blocks.append({"template_id": tpl.id, "kind": tpl.kind, "record": f"{row.source}/{row.split}/{row.id}",
                               **render_parts(task, tpl, variables, row.id),
                               "choices": render_choices(task, tpl, variables, row.id)})
            shown += 1
            if shown >= real_rows:
                break
    return blocks
