"""Particle disagreements over every row the mirror feeds, for one catalog (issue 17's before/after).

Each task with rows in the mirror is rendered as the render stage does (``render.seed`` and one
template per record, the demo's setting) and also through every template; every particle after a
value, an ``{% if %}`` block or a quoted literal is checked (``dagllm.data.lint``). For the count before
the markers, point ``--catalog`` at an older catalog:

    git archive 8ef1847 src/dagllm/catalog | tar -x -C /tmp/old
    .venv/bin/python bench/particle_counts.py --catalog /tmp/old/src/dagllm/catalog
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from dagllm.data.catalog import CATALOG_DIR, load_catalog
from dagllm.data.lint import _rows_with_pairs, real_rows, record_sites
from dagllm.data.templating import choose_templates, prepare, probe_parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalog", type=Path, default=CATALOG_DIR, help="catalog directory (default: the committed one)")
    ap.add_argument("--mirror", type=Path, default=Path("../shared/data"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"), help="render.tasks and render.seed")
    args = ap.parse_args()
    render = yaml.safe_load(args.params.read_text(encoding="utf-8"))["render"]
    catalog, rows_catalog = load_catalog(args.catalog), load_catalog()
    totals = {"demo": [0, 0, 0, 0], "mirror": [0, 0, 0, 0]}
    for tid in sorted(catalog.tasks):
        task = catalog.task(tid)
        rows = _rows_with_pairs(task, list(real_rows(rows_catalog.task(tid), rows_catalog, args.mirror, None)))
        if not rows:
            continue
        counts = [0, 0, 0, 0]  # records, errors (one template each), renders, errors (every template)
        for rid, fields, label in rows:
            variables = prepare(task, fields, label, rid)
            if isinstance(variables, str):
                continue
            picked = {t.id for t in choose_templates(task, rid, render["seed"], render.get("templates_per_record", 1))}
            for tpl in task.templates:
                n = sum(not s.agrees for s in record_sites(probe_parts(task, tpl, variables, rid)))
                counts[2] += 1
                counts[3] += n
                if tpl.id in picked:
                    counts[0] += 1
                    counts[1] += n
        print(f"{tid:36s} records {counts[0]:7d} errors {counts[1]:6d} | every template {counts[2]:8d} errors {counts[3]:6d}",
              flush=True)
        for scope in ("mirror", "demo") if tid in render["tasks"] else ("mirror",):
            totals[scope] = [a + b for a, b in zip(totals[scope], counts, strict=True)]
    for scope, (r, e, ra, ea) in totals.items():
        print(f"{scope}: {r} records, {e} particle errors; every template: {ra} renders, {ea} errors")


if __name__ == "__main__":
    main()
