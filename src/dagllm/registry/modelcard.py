"""Lineage of a model version (code, data, params, pipeline run) and its Markdown model card."""

from __future__ import annotations

import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from dagllm.io import sha256_file

UNKNOWN = "unknown"


@dataclass(frozen=True)
class Lineage:
    """What leads a model version back to its inputs; every field becomes a version tag."""

    git_commit: str
    git_dirty: str  # "true" | "false" | "unknown"
    params_digest: str
    data_digest: str  # sha256 of the balanced training split, as logged by train
    dvc_lock_digest: str
    pipeline_run: str
    mlflow_run_id: str
    base_model: str

    def tags(self) -> dict[str, str]:
        return {f"dagllm.{k}": v for k, v in asdict(self).items()}


def git_state(repo: Path) -> tuple[str, str]:
    """(commit, dirty) of the git checkout at ``repo``; ("unknown", "unknown") outside git."""
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN, UNKNOWN
    return commit, "true" if status.strip() else "false"


def collect_lineage(params_digest: str, run_tags: dict[str, str], run_params: dict[str, str], run_id: str,
                    repo: Path | None = None, pipeline_run: str | None = None) -> Lineage:
    """Gather the lineage of the model trained in MLflow run ``run_id``.

    Args:
        params_digest: ``Params.digest()`` of the params the pipeline ran with.
        run_tags / run_params: the training run's tags and params (train logs the data hash,
            the base model and which pipeline ran it).
        run_id: the training run.
        repo: the git checkout holding ``dvc.lock`` (None: not known, e.g. inside a KFP task).
        pipeline_run: the orchestrator's run id when known (KFP run id); else the training
            run's ``dagllm.pipeline_run`` tag (``cli``, ``dvc`` or ``kfp``).
    """
    commit, dirty = git_state(repo) if repo is not None else (UNKNOWN, UNKNOWN)
    lock = repo / "dvc.lock" if repo is not None else None
    return Lineage(
        git_commit=commit, git_dirty=dirty, params_digest=params_digest,
        data_digest=run_params.get("data.sha256", UNKNOWN),
        dvc_lock_digest=sha256_file(lock) if lock is not None and lock.is_file() else UNKNOWN,
        pipeline_run=pipeline_run or run_tags.get("dagllm.pipeline_run", UNKNOWN),
        mlflow_run_id=run_id, base_model=run_tags.get("dagllm.base_model", UNKNOWN),
    )


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return out + ["| " + " | ".join(r) + " |" for r in rows]


def model_card(name: str, lineage: Lineage, eval_metrics: dict, balance: dict | None, policy_summary: str) -> str:
    """The Markdown model card: data mix and licences, evaluation table, intended use, limits.

    Args:
        name: the registered model name.
        lineage: from :func:`collect_lineage`.
        eval_metrics: the content of reports/eval/metrics.json.
        balance: the content of reports/balance.json (None when not available, e.g. in a KFP task).
        policy_summary: one line describing the promotion policy.
    """
    lines = [f"# {name}", "",
             f"Korean instruction-tuned causal language model (base: `{lineage.base_model}`), built by the dagllm "
             "pipeline the way DaG LLM 1.0 and KIT-19 were built.", "", "## Lineage", ""]
    lines += _table(["what", "value"], [[k.replace("_", " "), f"`{v}`"] for k, v in asdict(lineage).items()])
    lines += ["", "## Training data", ""]
    if balance:
        train = balance.get("train", {})
        lines += _table(["task", "training records", "validation records"],
                        [[t, str(n), str(balance.get("validation", {}).get(t, 0))] for t, n in sorted(train.items())])
        total = sum(balance.get("licenses", {}).values()) or 1
        lines += ["", "Licences of the balanced records (each record carries its source's licence):", ""]
        lines += _table(["licence", "records", "share"],
                        [[lic, str(n), f"{n / total:.1%}"] for lic, n in sorted(balance.get("licenses", {}).items())])
    else:
        lines += ["The data mix was not available where this version was registered (reports/balance.json)."]
    proto = eval_metrics.get("protocol", {})
    name = {"kit19": "KIT-19 protocol"}.get(proto.get("name"), f"protocol {proto.get('name', '?')}")
    shots = proto.get("num_fewshot", "?")
    lines += ["", "## Evaluation", "",
              f"Log-likelihood scoring with lm-evaluation-harness {eval_metrics.get('lm_eval_version', '?')} "
              f"({name}), {shots}-shot.", ""]
    lines += _table(["task", "metric", "value", "items"],
                    [[t, m, f"{v:.4f}", str(eval_metrics.get("samples", {}).get(t, "?"))]
                     for t, ms in sorted(eval_metrics.get("metrics", {}).items()) for m, v in sorted(ms.items())])
    not_comparable = {t: c.get("why", []) for t, c in sorted(eval_metrics.get("comparable", {}).items())
                      if not c.get("comparable")}
    if not_comparable:
        lines += ["", "Not comparable with the published KIT-19 table:", ""]
        lines += [f"- {t}: {'; '.join(why)}" for t, why in not_comparable.items()]
    lines += ["", "## Promotion policy", "", policy_summary, "",
              "## Intended use", "",
              "Research on Korean instruction following: classification-style and short generative tasks phrased "
              "as Korean instructions (hate speech, sentiment, causal reasoning and the other KIT-19 task "
              "categories), and the lab's chat demo. Outputs are to be read by people who know they come from a "
              "model.", "",
              "## Limits", "",
              "- Not for legal, medical or other decisions about people; it can state wrong facts fluently.",
              "- Trained only on the tasks listed above; other tasks and languages are out of scope.",
              "- Hate speech data teaches the model offensive language as well as how to flag it.",
              "- Licences of the training data apply: non-commercial (NC) and academic-only sources restrict use "
              "of this model accordingly.",
              "- Benchmark numbers are zero-shot on the splits named above; they are not a safety evaluation."]
    return "\n".join(lines) + "\n"
