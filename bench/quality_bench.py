"""Benchmark: quality gate + decontamination + dedup + balance over ~200k rendered records.

The records are synthesised from the real rendered records of ../shared/data: the skeleton's
ingest and render run on the mirror in a temporary directory (KoBEST COPA train, APEACH, NSMC
crawl; two templates per row), then each record is copied with its input rebuilt from words of
other records of the same task (seeded), so the copies are distinct Korean text with the real
length and Hangul profile. 1% exact duplicates, 1% near duplicates and 200 copies of KoBEST COPA
test items are planted. Usage (from the repository root)::

    .venv/bin/python bench/quality_bench.py [--records 200000] [--mirror ../shared/data]

Prints one JSON object: seconds per step, counts, and a baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dagllm.data.catalog import default_catalog
from dagllm.data.gate import balanced_gate, validate_points
from dagllm.data.mixing import balance_frame, balance_records
from dagllm.data.overlap import decontaminate_frame
from dagllm.io import stable_hash
from dagllm.params import load_params
from dagllm.stages.ingest import run_ingest
from dagllm.stages.render import run_render


def real_records(mirror: Path, work: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    p = load_params("params.yaml", [f"paths.mirror={mirror}", "render.templates_per_record=2"])
    run_ingest(p.ingest, default_catalog(), mirror, work / "canonical.parquet", work / "rejected", work / "i.json")
    run_render(p.render, default_catalog(), work / "canonical.parquet", work / "rendered.parquet", work / "r.json")
    return pd.read_parquet(work / "canonical.parquet"), pd.read_parquet(work / "rendered.parquet")


def synthesise(rendered: pd.DataFrame, canonical: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    reps = -(-n // len(rendered))
    out = pd.concat([rendered] * reps, ignore_index=True).head(n)
    copy_no = np.repeat(np.arange(reps), len(rendered))[:n]
    for task, idx in out.groupby("task").groups.items():
        words = " ".join(rendered.loc[rendered["task"] == task, "input"].tolist() +
                         rendered.loc[rendered["task"] == task, "instruction"].tolist()).split()
        idx = np.asarray(idx)
        fresh = idx[copy_no[idx] > 0]
        lengths = rng.integers(6, 40, size=len(fresh))
        picks = rng.integers(0, len(words), size=int(lengths.sum()))
        cuts = np.cumsum(lengths)[:-1]
        out.loc[fresh, "input"] = [" ".join(words[j] for j in part) for part in np.split(picks, cuts)]
    out["id"] = [stable_hash(i, str(k)) for i, k in zip(out["id"], copy_no, strict=True)]
    k = n // 100
    dup = rng.choice(n, size=2 * k, replace=False)
    src, exact, near = dup[:k], dup[k:k + k // 2], dup[k + k // 2:]
    cols = ["instruction", "input", "output"]
    out.loc[exact, cols] = out.loc[src[:len(exact)], cols].to_numpy()
    out.loc[near, cols] = out.loc[src[:len(near)], cols].to_numpy()
    out.loc[near, "input"] = out.loc[near, "input"] + " 정말"
    bench = canonical[canonical["benchmark"]].head(200)
    planted = rng.choice(n, size=len(bench), replace=False)
    out.loc[planted, "input"] = [json.loads(f)["premise"] + " " + json.loads(f)["alternative_1"] for f in bench["fields"]]
    out.attrs["planted"] = out.loc[planted, "id"].tolist()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--mirror", type=Path, default=Path("../shared/data"))
    args = ap.parse_args()
    p = load_params("params.yaml")
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        canonical, rendered = real_records(args.mirror, work)
        records = synthesise(rendered, canonical, args.records)
        vparams = p.validate_.model_copy(update={"max_duplicate_fraction": 0.05})

        t, c = time.perf_counter(), time.process_time()
        base = records.drop_duplicates(["instruction", "input", "output"])
        balance_frame(base, p.balance)
        timings["baseline_pandas_drop_duplicates_and_cap_split"], cpu["baseline_pandas_drop_duplicates_and_cap_split"] = time.perf_counter() - t, time.process_time() - c

        t, c = time.perf_counter(), time.process_time()
        gate, kept = validate_points(canonical, records, vparams, p.render.tasks, default_catalog(), work / "v", work / "q")
        timings["validate_ingested_and_rendered"], cpu["validate_ingested_and_rendered"] = time.perf_counter() - t, time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        clean, report = decontaminate_frame(kept, canonical, p.decontaminate)
        timings["decontaminate"], cpu["decontaminate"] = time.perf_counter() - t, time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        train, val, summary = balance_records(clean, p.balance)
        timings["dedup_and_balance"], cpu["dedup_and_balance"] = time.perf_counter() - t, time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        train, val, _ = balanced_gate(vparams, p.render.tasks, p.balance.per_task_cap, work / "b", work / "bq")(train, val)
        timings["validate_balanced"], cpu["validate_balanced"] = time.perf_counter() - t, time.process_time() - c
    total = sum(v for k, v in timings.items() if not k.startswith("baseline"))
    total_cpu = sum(v for k, v in cpu.items() if not k.startswith("baseline"))
    print(json.dumps({
        "records": len(records), "canonical_rows": len(canonical), "real_rendered_records": len(rendered),
        "gate_success": gate.success, "quarantined": {s.point: s.quarantined for s in gate.points},
        "decontaminated": report.dropped,
        "planted_benchmark_copies_caught": f"{len(set(records.attrs['planted']) & {h['id'] for h in report.contaminated})}"
                                           f" of {len(records.attrs['planted'])}", "by_benchmark_source": report.by_benchmark_source,
        "exact_duplicates": summary.duplicates.exact, "near_duplicates": summary.duplicates.near,
        "train": len(train), "validation": len(val),
        "seconds": {k: round(v, 2) for k, v in timings.items()}, "total_seconds": round(total, 2),
        "cpu_seconds": {k: round(v, 2) for k, v in cpu.items()}, "total_cpu_seconds": round(total_cpu, 2),
        "ratio_to_baseline": round(total / timings["baseline_pandas_drop_duplicates_and_cap_split"], 1),
    }, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
