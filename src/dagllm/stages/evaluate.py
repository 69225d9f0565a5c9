"""Evaluate: the KIT-19 protocol with lm-evaluation-harness, on local files only.

Protocol ``kit19`` (the default) builds each benchmark split from its raw file the way the Hugging
Face loader does and prompts it with KIT-19's contexts; protocol ``dagllm`` takes the split from
the canonical table and uses our readable prompts (:mod:`dagllm.evaluation.harness`). A task whose
rows are absent (KLUE YNAT in the shared mirror) is reported as "no data in this mirror" instead of
failing the stage.

Outputs in ``out_dir``: ``metrics.json``, ``samples/<task>.jsonl``, ``data/<task>.jsonl``,
``table.md``, ``chart.png`` and ``report.html`` (the chart embedded); all logged to the training
run in MLflow. With ``val_split``, the validation loss per category is added.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from dagllm.evaluation import protocol as P
from dagllm.evaluation import report
from dagllm.evaluation.harness import (
    comparability,
    lm_eval_metrics,
    prepare_task,
    run_lm_eval,
    sample_records,
    score_task,
)
from dagllm.io import read_json, read_parquet, write_json
from dagllm.params import EvaluateParams, MlflowParams
from dagllm.runtime import offline

REPORT_FILES = ("metrics.json", "table.md", "chart.png", "report.html")


@dataclass
class EvalSummary:
    metrics: dict[str, dict[str, float]]
    samples: dict[str, int]
    lm_eval_version: str
    missing: dict[str, str] = field(default_factory=dict)
    flags: dict[str, list[str]] = field(default_factory=dict)
    validation_loss: dict[str, dict] = field(default_factory=dict)
    comparable: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return self.__dict__

    def lines(self) -> list[str]:
        out = [f"{task}: " + ", ".join(f"{m}={v:.4f}" for m, v in ms.items()) + f" on {self.samples[task]} items"
               for task, ms in self.metrics.items()]
        out += [f"{task}: {why}" for task, why in self.missing.items()]
        out += [f"{task}: {flag}" for task, fs in self.flags.items() for flag in fs]
        out += [f"{task}: not comparable with the published table ({'; '.join(c['why'])})"
                for task, c in self.comparable.items() if not c["comparable"] and task not in self.missing]
        if "all" in self.validation_loss:
            out.append(f"validation loss {self.validation_loss['all']['loss']:.4f} over "
                       f"{len(self.validation_loss) - 1} categories")
        return out


def write_reports(out_dir: Path, doc: dict, results: dict, meta: dict) -> None:
    """metrics.json, table.md, chart.png and report.html in ``out_dir``."""
    pub = P.published()
    write_json(out_dir / "metrics.json", doc)
    (out_dir / "table.md").write_text(report.markdown(results, pub, meta), encoding="utf-8")
    png = report.chart(results, pub, out_dir / "chart.png")
    (out_dir / "report.html").write_text(report.html_page(results, pub, meta, png), encoding="utf-8")


def run_evaluate(params: EvaluateParams, mlflow_params: MlflowParams, canonical: Path, model_dir: Path,
                 run_file: Path | None, out_dir: Path, val_split: Path | None = None, *,
                 raw_dir: Path | None = None, preset: str | None = None) -> EvalSummary:
    """Score the model in ``model_dir`` on each configured benchmark of the KIT-19 protocol.

    Args:
        raw_dir: the verified raw files (``data/raw``); protocol kit19 reads its documents there.
        preset: ``train.model``; with ``evaluate.limit: auto`` it decides the limit (tiny: demo_limit).

    Raises:
        ValueError: none of the configured tasks has rows in the canonical table.
    """
    offline()
    import lm_eval

    specs = P.protocol()
    table = read_parquet(canonical, "validate")
    limit, device = params.resolved_limit(preset), params.resolved_device()
    states = {t: prepare_task(t, specs[t], table, out_dir / "data", params.num_fewshot, params.protocol, raw_dir)
              for t in params.tasks}
    configs = [s["config"] for s in states.values() if s["status"] == "scored"]
    if not configs:
        raise ValueError(f"{canonical}: none of evaluate.tasks ({', '.join(params.tasks)}) has benchmark rows; "
                         "add their sources to ingest.sources and run `dagllm ingest`")
    raw = run_lm_eval(params, model_dir, configs, limit, device)
    results: dict[str, dict] = {}
    (out_dir / "samples").mkdir(parents=True, exist_ok=True)
    for task, state in states.items():
        if state["status"] != "scored":
            results[task] = state
            continue
        records = sample_records(raw["samples"][task], state["config"].get("target_delimiter", " "))
        results[task] = score_task(task, specs[task], state, records, params.seed, params.protocol)
        results[task]["lm_eval"] = lm_eval_metrics(raw["results"][task])
        with open(out_dir / "samples" / f"{task}.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    for task, r in results.items():
        r["comparable"] = comparability(specs[task], r, params.protocol, params.num_fewshot, limit)
    val_loss = {}
    if params.validation_loss and val_split is not None:
        from dagllm.evaluation.val_loss import validation_loss

        val_loss = validation_loss(model_dir, read_parquet(val_split, "balance"),
                                   params.batch_size if isinstance(params.batch_size, int) else 8, device)
    scored = {t: r for t, r in results.items() if r["status"] == "scored"}
    versions = {t: raw.get("versions", {}).get(t) for t in scored}
    meta = {"lm-eval": lm_eval.__version__, "protocol": params.protocol, "num_fewshot": params.num_fewshot,
            "limit": limit, "seed": params.seed, "model": str(model_dir), "device": device,
            "batch_size": str(params.batch_size)}
    doc = {
        "lm_eval_version": lm_eval.__version__, "task_versions": versions,
        "protocol": {"name": params.protocol, "num_fewshot": params.num_fewshot, "limit": limit,
                     "batch_size": params.batch_size, "device": device, "seed": params.seed},
        "comparable": {t: r["comparable"] for t, r in results.items()},
        "samples": {t: r["items"] for t, r in scored.items()},
        "metrics": {t: r["model"] for t, r in scored.items()},
        "reference": {t: r["reference"] for t, r in scored.items()},
        "tasks": results, "missing": {t: r["status"] for t, r in results.items() if t not in scored},
        "validation_loss": val_loss,
    }
    write_reports(out_dir, doc, results, meta)
    summary = EvalSummary(doc["metrics"], doc["samples"], lm_eval.__version__, doc["missing"],
                          {t: r["flags"] for t, r in scored.items() if r["flags"]}, val_loss, doc["comparable"])
    if run_file is not None and Path(run_file).is_file():
        log_to_mlflow(mlflow_params, read_json(run_file)["run_id"], out_dir, doc)
    return summary


def _metric_key(*parts: str) -> str:
    # MLflow metric names allow letters, digits, _ - . / and space
    return ".".join(re.sub(r"[^\w\-./ ]", "_", p, flags=re.ASCII) for p in parts)


def log_to_mlflow(mlflow_params: MlflowParams, run_id: str, out_dir: Path, doc: dict) -> None:
    """Model, reference and validation-loss metrics, versions and report files, on the training run."""
    import mlflow

    from dagllm.registry.tracking import configure

    configure(mlflow_params)
    values = {_metric_key("eval", t, m): v for t, ms in doc["metrics"].items() for m, v in ms.items()}
    values.update({_metric_key("eval_ref", t, k, m): v for t, refs in doc["reference"].items()
                   for k, ms in refs.items() for m, v in ms.items()})
    values.update({_metric_key("eval_val_loss", c): v["loss"] for c, v in doc["validation_loss"].items()})
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics(values)
        mlflow.set_tags({"eval.lm_eval_version": doc["lm_eval_version"], "eval.protocol": doc["protocol"]["name"],
                         **{f"eval.{t}.comparable": str(c["comparable"]).lower() for t, c in doc["comparable"].items()},
                         **{f"eval.{t}.version": str(v) for t, v in doc["task_versions"].items()},
                         **{f"eval.{t}.status": s for t, s in doc["missing"].items()}})
        for name in REPORT_FILES:
            mlflow.log_artifact(str(out_dir / name), artifact_path="eval")
        mlflow.log_artifacts(str(out_dir / "samples"), artifact_path="eval/samples")
