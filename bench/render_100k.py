"""Benchmark: render ~100k instruction records with the tasks of params.yaml.

Ingests the ready sources from the mirror (``../shared/data``; bundled samples stand in for files
it lacks), repeats the training rows (fresh ids) until the selected tasks yield about 100k records,
then times (a) a baseline pass that only reads the canonical table and decodes every row's fields
and (b) ``run_render`` itself (templates, choices, Parquet and both JSONL exports).

    .venv/bin/python bench/render_100k.py [--target 100000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd

from dagllm.data.catalog import default_catalog
from dagllm.params import load_params
from dagllm.paths import resolve_mirror
from dagllm.stages.ingest import run_ingest
from dagllm.stages.render import run_render


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", type=int, default=100_000, help="records to render (about)")
    args = ap.parse_args()
    p = load_params("params.yaml")
    cat = default_catalog()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run_ingest(p.ingest, cat, resolve_mirror(p.paths.mirror), tmp / "c.parquet", tmp / "rej", tmp / "i.json")
        base = pd.read_parquet(tmp / "c.parquet")
        base = base[~base["benchmark"]]
        per_copy = sum(len(base[(base.source == ts.source) & base.split.isin(ts.splits)])
                       for t in p.render.tasks for ts in cat.task(t).sources)
        copies = max(1, round(args.target / per_copy))
        big = pd.concat([base.assign(id=base["id"] + f"~{i}") for i in range(copies)], ignore_index=True)
        big.to_parquet(tmp / "big.parquet", index=False)

        t0 = time.perf_counter()
        df = pd.read_parquet(tmp / "big.parquet")
        n = sum(len(json.loads(f)) for f in df["fields"])
        baseline = time.perf_counter() - t0

        t0 = time.perf_counter()
        s = run_render(p.render, cat, tmp / "big.parquet", tmp / "out" / "records.parquet", tmp / "r.json")
        elapsed = time.perf_counter() - t0
    print(json.dumps({"canonical_rows": len(big), "copies": copies, "tasks": len(p.render.tasks),
                      "records": s.records, "baseline_read_decode_s": round(baseline, 2), "fields": n,
                      "render_s": round(elapsed, 2), "records_per_s": round(s.records / elapsed),
                      "ratio_render_to_baseline": round(elapsed / baseline, 1)}, indent=2))


if __name__ == "__main__":
    main()
