"""Evaluate: the KIT-19 protocol with lm-evaluation-harness, on local files only.

Protocol ``kit19`` (the default) builds each benchmark split from its raw file the way the Hugging
Face loader does (:mod:`dagllm.evaluation.documents`) and prompts it with KIT-19's contexts
(``evaltasks/kit19``); protocol ``dagllm`` takes the split from the canonical table and uses our
readable prompts (``evaltasks/dagllm``). The docs are written as JSONL next to the reports and
handed to lm-eval through the task YAML's ``data_files``; no hub is contacted. lm-eval computes the per-choice log-likelihoods; :mod:`dagllm.evaluation.metrics`
turns them into the protocol's metrics, and scores the reference predictors (majority, one
constant per choice, seeded random) with the same code. A task whose rows are absent (KLUE YNAT
in the shared mirror) is reported as "no data in this mirror" instead of failing the stage.

Outputs in ``out_dir``: ``metrics.json``, ``samples/<task>.jsonl``, ``data/<task>.jsonl``,
``table.md``, ``chart.png`` and ``report.html`` (the chart embedded); all logged to the training
run in MLflow. With ``val_split``, the validation loss per category is added.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dagllm.evaluation import metrics as M
from dagllm.evaluation import protocol as P
from dagllm.evaluation import report
from dagllm.evaluation.documents import load_documents
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


def _task_config(task: str, spec: P.TaskSpec, files: dict[str, Path], num_fewshot: int,
                 prompts: P.Protocol = "kit19") -> tuple[dict, str | None]:
    """The lm-eval config pointed at local files; returns it with a note on few-shot sourcing."""
    cfg = P.lm_eval_config(task, prompts)
    cfg["dataset_kwargs"] = {"data_files": {k: str(v.resolve()) for k, v in files.items()}}
    note = None
    if num_fewshot > 0:
        if "train" in files:
            cfg["fewshot_split"] = "train"
        else:
            # lm-eval leaves the scored item out when examples come from the scored split itself
            cfg["fewshot_split"] = "test"
            note = (f"few-shot examples drawn from the scored split ({spec.fewshot_split or 'no'} "
                    "split available); lm-eval excludes the item being scored")
    return cfg, note


def _benchmark_file(spec: P.TaskSpec, split: str | None) -> str | None:
    """The catalog path of the source's file for ``split`` (None when the catalog has none)."""
    from dagllm.catalog import load_catalog

    files = [f.path for f in load_catalog().source(spec.source).files if f.split == split]
    return files[0] if files else None


def _loader_docs(task: str, spec: P.TaskSpec, raw_dir: Path | None, split: str | None) -> list[dict] | str:
    """The loader's documents of one split from ``raw_dir``, or why there are none."""
    rel = _benchmark_file(spec, split)
    if rel is None:
        return f"the catalog has no {spec.source}/{split} file"
    if raw_dir is None or not (raw_dir / rel).is_file():
        return f"{rel} is not in the raw data directory {raw_dir} (this mirror has no such file, or fetch skipped it)"
    return load_documents(task, raw_dir / rel)


def _split_docs(task: str, spec: P.TaskSpec, table: pd.DataFrame, raw_dir: Path | None, prompts: P.Protocol,
                split: str) -> list[dict] | str:
    """Docs of one split for protocol ``prompts``: the loader's (kit19) or the canonical rows' (dagllm)."""
    if prompts == "kit19":
        return _loader_docs(task, spec, raw_dir, split)
    rows = P.rows_of(table, spec.source, split)
    if rows.empty:
        return (f"no {spec.source}/{split} rows in the canonical table: its files are not in this mirror "
                f"(or {spec.source} is not in ingest.sources / ingest.optional_sources)")
    return P.to_docs(spec, rows)


def prepare_task(task: str, spec: P.TaskSpec, table: pd.DataFrame, data_dir: Path, num_fewshot: int,
                 prompts: P.Protocol = "dagllm", raw_dir: Path | None = None) -> dict:
    """Write the task's docs (and few-shot docs) as JSONL; returns its state for scoring."""
    docs = _split_docs(task, spec, table, raw_dir, prompts, spec.split)
    if isinstance(docs, str):
        return {"status": P.NO_DATA, "split": spec.split, "size": spec.size, "items": 0, "reason": docs}
    files = {"test": P.write_jsonl(docs, data_dir / f"{task}.jsonl")}
    if num_fewshot > 0 and spec.fewshot_split:
        shots = _split_docs(task, spec, table, raw_dir, prompts, spec.fewshot_split)
        if not isinstance(shots, str):
            files["train"] = P.write_jsonl(shots, data_dir / f"{task}.fewshot.jsonl")
    cfg, note = _task_config(task, spec, files, num_fewshot, prompts)
    return {"status": "scored", "split": spec.split, "size": spec.size, "split_items": len(docs), "config": cfg,
            "split_golds": [d["label"] for d in docs], "notes": [note] if note else []}


def comparability(spec: P.TaskSpec, result: dict, protocol: str, num_fewshot: int, limit: int | None) -> dict:
    """Whether a task's number is comparable with the published one, and every reason it is not.

    Comparable = protocol kit19, zero-shot, every item of the full split scored (lm-eval's
    log-likelihood multiple choice, the metrics of :mod:`dagllm.evaluation.metrics`).
    """
    if result["status"] != "scored":
        return {"comparable": False, "why": [f"not scored: {result['status']}"]}
    why = []
    if protocol != "kit19":
        why.append(f"protocol {protocol} (our prompts on the canonical rows), not KIT-19's prompts and documents")
    if num_fewshot:
        why.append(f"{num_fewshot}-shot; the published numbers are zero-shot")
    if limit is not None and limit < result.get("split_items", spec.size):
        why.append(f"limit {limit}: {result['items']:,} of {result.get('split_items', spec.size):,} items scored")
    elif result["items"] != spec.size:
        why.append(f"{result['items']:,} items scored; the published split has {spec.size:,}")
    return {"comparable": not why, "why": why}


def sample_records(raw_samples: list[dict], delimiter: str) -> list[dict]:
    """Per-item records from lm-eval's logged samples: gold, choices, log-likelihoods, predictions."""
    out = []
    for s in sorted(raw_samples, key=lambda s: s["doc_id"]):
        choices = [cont.removeprefix(delimiter) for _ctx, cont in s["arguments"]]
        lls = [float(r[0]) for r in s["filtered_resps"]]
        pred, pred_norm = M.predict(lls), M.predict_char_norm(lls, choices)
        gold = int(s["doc"]["label"])
        out.append({"doc_id": s["doc_id"], "id": s["doc"].get("id"), "gold": gold, "context": s["arguments"][0][0],
                    "choices": choices,
                    "loglikelihoods": lls, "pred": pred, "pred_norm": pred_norm, "acc": float(pred == gold)})
    return out


def score_task(task: str, spec: P.TaskSpec, state: dict, records: list[dict], seed: int,
               prompts: P.Protocol = "dagllm") -> dict:
    """Model and reference predictors through the same metric code; flags a collapsed model."""
    golds = [r["gold"] for r in records]
    n_choices = len(spec.labels)
    model = M.score(spec.metrics, golds, [r["pred"] for r in records], [r["pred_norm"] for r in records])
    refs = M.reference_predictions(task, golds, state["split_golds"], n_choices, seed)
    names = P.choice_names(task, n_choices, prompts)
    majority = refs["majority"][0]
    predictor_names = {"majority": f"majority ({names[majority]})",
                       **{f"constant_{k}": f"constant {names[k]}" for k in range(n_choices)},
                       "random": f"random (seed {seed})"}
    flags = []
    for kind in ("pred", "pred_norm") if "acc_norm" in spec.metrics else ("pred",):
        k = M.collapsed_to([r[kind] for r in records])
        if k is not None:
            flags.append(f"model predictions ({'acc_norm' if kind == 'pred_norm' else 'argmax'}) are all one "
                         f"choice: equal to the constant {names[k]} predictor (constant_{k})")
    for r, rnd in zip(records, refs["random"], strict=True):
        r["random"] = rnd
    return {**{k: v for k, v in state.items() if k not in ("config", "split_golds")},
            "items": len(records), "metrics": list(spec.metrics), "model": model,
            "reference": {k: M.score(spec.metrics, golds, p) for k, p in refs.items()},
            "predictor_names": predictor_names, "flags": flags + state["notes"]}


def run_lm_eval(params: EvaluateParams, model_dir: Path, configs: list[dict], limit: int | None, device: str) -> dict:
    """lm-eval's simple_evaluate on the local model and task configs (samples logged)."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=str(model_dir), device=device, batch_size=params.batch_size,
              max_batch_size=params.max_batch_size)
    return lm_eval.simple_evaluate(
        model=lm, tasks=configs, num_fewshot=params.num_fewshot, limit=limit, log_samples=True,
        random_seed=params.seed, numpy_random_seed=params.seed, torch_random_seed=params.seed,
        fewshot_random_seed=params.seed,
    )


def _lm_eval_metrics(raw: dict) -> dict[str, float]:
    return {k.split(",")[0]: float(v) for k, v in raw.items()
            if isinstance(v, (int, float)) and "," in k and not k.split(",")[0].endswith("_stderr")}


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
        results[task]["lm_eval"] = _lm_eval_metrics(raw["results"][task])
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

    from dagllm.tracking import configure

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
