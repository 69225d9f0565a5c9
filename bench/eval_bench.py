"""Evaluation speed: dagllm's evaluate (protocol kit19) against plain lm-eval, same model, same tasks.

Usage (repository root; the benchmark files from the mirror):

    .venv/bin/python bench/eval_bench.py prepare --mirror /work/shared/data --out tmp/evalbench
    .venv/bin/python bench/eval_bench.py ours --mirror /work/shared/data --out tmp/evalbench --limit 150
    .venv/bin/lm_eval ... (the command ``prepare`` prints: the same kit19 YAMLs on the same JSONL docs)

``prepare`` builds the default ``tiny`` model (train.tiny shape, untrained: the speed does not
depend on the weights) with a tokenizer trained on the benchmark texts, ingests the six benchmark
sources into a canonical table, writes the kit19 docs and a copy of ``evaluation/tasks/kit19`` whose
``data_files`` point at them, and prints the plain ``lm_eval`` command. ``ours`` runs
:func:`dagllm.stages.evaluate.run_evaluate` (documents, lm-eval, scoring, reports; no validation
loss, no MLflow) and prints one JSON line with the request count and requests/s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

TASKS = ["kobest_copa", "kobest_boolq", "kobest_hellaswag", "kobest_sentineg", "kobest_wic", "klue_sts"]


def prepare(mirror: Path, out: Path, limit: int, batch: int) -> None:
    from dagllm.data.catalog import load_catalog
    from dagllm.evaluation import protocol as P
    from dagllm.evaluation.harness import prepare_task
    from dagllm.params import IngestParams, TrainParams
    from dagllm.stages.ingest import run_ingest
    from dagllm.training.presets import build_tiny_model, train_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    run_ingest(IngestParams(sources=TASKS), load_catalog(), mirror, out / "canonical.parquet", out / "rejected",
               out / "ingest.json")
    tasks = out / "tasks"
    shutil.copytree(P.TASK_DIR / "kit19", tasks, dirs_exist_ok=True)
    texts = []
    for t in TASKS:
        state = prepare_task(t, P.protocol()[t], None, out / "data", 0, "kit19", mirror)
        docs = [json.loads(x) for x in (out / "data" / f"{t}.jsonl").read_text(encoding="utf-8").splitlines()]
        texts += [v for d in docs for v in d.values() if isinstance(v, str)]
        cfg_path = tasks / f"{t}.yaml"
        text = cfg_path.read_text(encoding="utf-8")
        cfg_path.write_text(text.replace("    test: null", f"    test: {state['config']['dataset_kwargs']['data_files']['test']}"),
                            encoding="utf-8")
    params = TrainParams()
    tok = train_tokenizer(texts, params.tiny.vocab_size)
    model = build_tiny_model(params, tok)
    model.save_pretrained(out / "model")
    tok.save_pretrained(out / "model")
    print(f"lm_eval --model hf --model_args pretrained={(out / 'model').resolve()} --include_path {tasks.resolve()} "
          f"--tasks {','.join(TASKS)} --limit {limit} --batch_size {batch} --device cpu --num_fewshot 0 "
          f"--seed 1234")


def ours(mirror: Path, out: Path, limit: int, batch: int) -> None:
    from dagllm.params import EvaluateParams, MlflowParams
    from dagllm.stages.evaluate import run_evaluate

    params = EvaluateParams(tasks=TASKS, limit=limit, batch_size=batch, device="cpu", validation_loss=False)
    t0 = time.perf_counter()
    s = run_evaluate(params, MlflowParams(), out / "canonical.parquet", out / "model", None, out / "eval",
                     raw_dir=mirror)
    wall = time.perf_counter() - t0
    m = json.loads((out / "eval/metrics.json").read_text(encoding="utf-8"))
    requests = sum(len(json.loads(x)["choices"]) for t in s.samples
                   for x in (out / "eval/samples" / f"{t}.jsonl").read_text(encoding="utf-8").splitlines())
    print(json.dumps({"items": sum(s.samples.values()), "requests": requests, "wall_s": round(wall, 1),
                      "requests_per_s": round(requests / wall, 1), "protocol": m["protocol"]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["prepare", "ours"])
    ap.add_argument("--mirror", type=Path, required=True, help="raw data directory (mirror layout)")
    ap.add_argument("--out", type=Path, required=True, help="scratch directory")
    ap.add_argument("--limit", type=int, default=150, help="items per task")
    ap.add_argument("--batch-size", type=int, default=16)
    a = ap.parse_args()
    (prepare if a.what == "prepare" else ours)(a.mirror, a.out, a.limit, a.batch_size)


if __name__ == "__main__":
    main()
