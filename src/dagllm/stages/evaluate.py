"""Evaluate: lm-evaluation-harness with the project's own task YAMLs, on local files only.

The benchmark split is taken from the canonical table (ingest reads it from the mirror), written
as JSONL next to the reports, and handed to lm-eval through the task YAML's ``data_files``; no
hub is contacted. Metrics go to ``<out_dir>/metrics.json`` and to the training run in MLflow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dagllm.io import read_json, read_parquet, write_json
from dagllm.params import EvaluateParams, MlflowParams
from dagllm.runtime import offline

TASK_DIR = Path(__file__).resolve().parent.parent / "evaltasks"

# Benchmark -> (source, split) in the catalog, and how a canonical row becomes an lm-eval doc.
BENCHMARKS = {
    "kobest_copa": ("kobest_copa", "test"),
}
METRIC_NAMES = {"acc": "acc", "f1": "macro_f1", "acc_norm": "acc_norm"}


@dataclass
class EvalSummary:
    metrics: dict[str, dict[str, float]]
    samples: dict[str, int]
    lm_eval_version: str

    def to_dict(self) -> dict:
        return self.__dict__

    def lines(self) -> list[str]:
        return [f"{task}: " + ", ".join(f"{m}={v:.4f}" for m, v in ms.items()) + f" on {self.samples[task]} items"
                for task, ms in self.metrics.items()]


def _doc(task: str, fields: dict, label: str) -> dict:
    if task == "kobest_copa":
        return {**fields, "label": int(label) - 1}
    raise KeyError(task)


def write_benchmark_docs(canonical: pd.DataFrame, task: str, out: Path) -> int:
    """Write the benchmark split of ``task`` as lm-eval JSONL docs; returns the item count."""
    source, split = BENCHMARKS[task]
    rows = canonical[(canonical["source"] == source) & (canonical["split"] == split)]
    if rows.empty:
        raise ValueError(f"{task}: no {source}/{split} rows in the canonical table; add {source} to ingest.sources")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        for r in rows.itertuples(index=False):
            fh.write(json.dumps(_doc(task, json.loads(r.fields), r.label), ensure_ascii=False) + "\n")
    return len(rows)


def task_config(task: str, data_file: Path) -> dict:
    """The task YAML, loaded the way lm-eval loads it, pointed at the local data file."""
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = load_yaml(TASK_DIR / f"{task}.yaml")
    cfg["dataset_kwargs"] = {"data_files": {"test": str(data_file.resolve())}}
    return cfg


def run_evaluate(params: EvaluateParams, mlflow_params: MlflowParams, canonical: Path, model_dir: Path,
                 run_file: Path | None, out_dir: Path) -> EvalSummary:
    """Score the model in ``model_dir`` on each configured benchmark."""
    offline()
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    table = read_parquet(canonical, "ingest")
    configs, counts = [], {}
    for task in params.tasks:
        data_file = out_dir / "data" / f"{task}.jsonl"
        counts[task] = write_benchmark_docs(table, task, data_file)
        configs.append(task_config(task, data_file))
    lm = HFLM(pretrained=str(model_dir), device=params.device, batch_size=params.batch_size)
    results = lm_eval.simple_evaluate(
        model=lm, tasks=configs, num_fewshot=params.num_fewshot, limit=params.limit, log_samples=True,
        random_seed=params.seed, numpy_random_seed=params.seed, torch_random_seed=params.seed,
        fewshot_random_seed=params.seed,
    )
    metrics: dict[str, dict[str, float]] = {}
    for task in params.tasks:
        raw = results["results"][task]
        metrics[task] = {METRIC_NAMES[k.split(",")[0]]: float(v) for k, v in raw.items()
                         if k.split(",")[0] in METRIC_NAMES and not k.split(",")[0].endswith("_stderr")}
        (out_dir / "samples").mkdir(parents=True, exist_ok=True)
        with open(out_dir / "samples" / f"{task}.jsonl", "w", encoding="utf-8") as fh:
            for s in results["samples"][task]:
                fh.write(json.dumps({"doc_id": s["doc_id"], "target": s["target"],
                                     "loglikelihoods": [float(x[0]) for x in s["filtered_resps"]],
                                     "acc": s.get("acc")}, ensure_ascii=False) + "\n")
        counts[task] = len(results["samples"][task])
    summary = EvalSummary(metrics, counts, lm_eval.__version__)
    write_json(out_dir / "metrics.json", {
        "lm_eval_version": summary.lm_eval_version,
        "task_versions": {t: results.get("versions", {}).get(t) for t in params.tasks},
        "num_fewshot": params.num_fewshot, "samples": counts, "metrics": metrics,
    })
    if run_file is not None and Path(run_file).is_file():
        import mlflow

        from dagllm.tracking import configure

        configure(mlflow_params)
        with mlflow.start_run(run_id=read_json(run_file)["run_id"]):
            mlflow.log_metrics({f"eval.{t}.{m}": v for t, ms in metrics.items() for m, v in ms.items()})
            mlflow.log_artifact(str(out_dir / "metrics.json"), artifact_path="eval")
    return summary
