"""The KIT-19 protocol through lm-evaluation-harness: task configs on local files, scoring, comparability.

Protocol ``kit19`` (the default) builds each benchmark split from its raw file the way the Hugging
Face loader does (:mod:`dagllm.evaluation.documents`) and prompts it with KIT-19's contexts
(``evaluation/tasks/kit19``); protocol ``dagllm`` takes the split from the canonical table and uses
our readable prompts (``evaluation/tasks/dagllm``). The docs are written as JSONL and handed to
lm-eval through the task YAML's ``data_files``; no hub is contacted. lm-eval computes the
per-choice log-likelihoods; :mod:`dagllm.evaluation.metrics` turns them into the protocol's
metrics, and scores the reference predictors (majority, one constant per choice, seeded random)
with the same code.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dagllm.evaluation import metrics as M
from dagllm.evaluation import protocol as P
from dagllm.evaluation.documents import load_documents
from dagllm.params import EvaluateParams


def _task_config(task: str, spec: P.TaskSpec, files: dict[str, Path], num_fewshot: int,
                 prompts: P.Protocol = P.DEFAULT_PROTOCOL) -> tuple[dict, str | None]:
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
    from dagllm.data.catalog import load_catalog

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
                 prompts: P.Protocol = P.DEFAULT_PROTOCOL, raw_dir: Path | None = None) -> dict:
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
               prompts: P.Protocol = P.DEFAULT_PROTOCOL) -> dict:
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

    lm = _quiet_hflm()(pretrained=str(model_dir), device=device, batch_size=params.batch_size,
              max_batch_size=params.max_batch_size)
    return lm_eval.simple_evaluate(
        model=lm, tasks=configs, num_fewshot=params.num_fewshot, limit=limit, log_samples=True,
        random_seed=params.seed, numpy_random_seed=params.seed, torch_random_seed=params.seed,
        fewshot_random_seed=params.seed,
    )


def _quiet_hflm():
    """lm-eval's HFLM without its per-request progress bars (the stage prints its own lines)."""
    from lm_eval.models.huggingface import HFLM

    class QuietHFLM(HFLM):
        def loglikelihood(self, requests, disable_tqdm: bool = True):
            return super().loglikelihood(requests, disable_tqdm=True)

    return QuietHFLM


def lm_eval_metrics(raw: dict) -> dict[str, float]:
    """lm-eval's own metric values of one task (``acc,none`` -> ``acc``; stderr left out)."""
    return {k.split(",")[0]: float(v) for k, v in raw.items()
            if isinstance(v, (int, float)) and "," in k and not k.split(",")[0].endswith("_stderr")}


