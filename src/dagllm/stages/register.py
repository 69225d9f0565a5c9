"""Register: log the trained model by path, register a version with lineage, run the promotion gate.

The steps, each safe to repeat (``dagllm register`` after a failure finishes the job):

1. the model directory is logged to the training run with the MLflow transformers flavour
   (by path: no copy of the weights in memory), unless a finished logged model of that run
   exists already (:mod:`dagllm.registry.versions`);
2. inside the registry lock: a version is created unless one exists for the run (so the same
   run never gets a second version), tagged with its lineage and metrics, described by the model
   card, given ``challenger``; then the gate of the promotion policy decides ``champion``.

A tracking server that does not answer gets MLflow's bounded retries (params.mlflow) and then
one error; the model stays on disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dagllm.io import read_json, write_json
from dagllm.params import MlflowParams, RegisterParams
from dagllm.registry.modelcard import collect_lineage, model_card
from dagllm.registry.versions import create_version, ensure_registered_model, log_model_by_path, version_of_run


@dataclass
class RegisterSummary:
    model_name: str
    version: str
    created: bool
    aliases: list[str]
    promoted: bool
    decision: str
    comparisons: list[dict]
    lineage: dict
    tracking_uri: str
    model_uri: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return self.__dict__

    def lines(self) -> list[str]:
        state = "new version" if self.created else "already registered"
        return [f"{self.model_name} version {self.version} ({state}) -> aliases {', '.join(self.aliases)}",
                f"{'promoted' if self.promoted else 'kept champion'}: {self.decision}"]


def run_register(params: RegisterParams, mlflow_params: MlflowParams, model_dir: Path, run_file: Path,
                 eval_metrics: Path, report_path: Path, *, params_digest: str, balance_report: Path | None = None,
                 model_card_path: Path | None = None, promotion_path: Path | None = None, repo: Path | None = None,
                 pipeline_run: str | None = None) -> RegisterSummary:
    """Register the model in ``model_dir`` (trained in the run named by ``run_file``).

    Args:
        params / mlflow_params: ``register`` and ``mlflow`` sections of params.yaml.
        model_dir: the trained model (Hugging Face folder).
        run_file: ``models/train_run.json`` written by train.
        eval_metrics: ``reports/eval/metrics.json``.
        report_path: where the registration summary goes (JSON).
        params_digest: ``Params.digest()``, tagged for lineage.
        balance_report: ``reports/balance.json`` for the model card's data mix (optional).
        model_card_path / promotion_path: where the card and the gate's decision are written (optional).
        repo: the git checkout (commit, ``dvc.lock``); None when not known.
        pipeline_run: the orchestrator's run id, when known.

    Raises:
        ValueError: the training run is not in the store, the policy is invalid, the server does
            not answer (:class:`dagllm.registry.tracking.TrackingUnavailable`) or the lock stays taken.
    """
    from mlflow import MlflowClient

    from dagllm.registry.aliases import decide_and_apply, write_record
    from dagllm.registry.lock import registry_lock
    from dagllm.registry.policy import load_policy
    from dagllm.registry.tracking import configure, server_errors

    policy = load_policy(params.policy)  # a bad policy fails before any network call
    metrics = read_json(eval_metrics)
    run_id = read_json(run_file)["run_id"]
    balance = read_json(balance_report) if balance_report is not None and Path(balance_report).is_file() else None
    with server_errors(mlflow_params, f"the trained model stays in {model_dir}; run `dagllm register` again "
                                      "when the server is up"):
        configure(mlflow_params)
        client = MlflowClient()
        run = _training_run(client, run_id, run_file)
        lineage = collect_lineage(params_digest, run.data.tags, run.data.params, run_id, repo, pipeline_run)
        card = model_card(params.model_name, lineage, metrics, balance, policy.summary())
        ensure_registered_model(client, params.model_name)
        existing = version_of_run(client, params.model_name, run_id)
        model_uri = existing.source if existing is not None else log_model_by_path(model_dir, run_id)
        with registry_lock(client, params.model_name, params.lock_timeout_s, params.lock_lease_s):
            mv = version_of_run(client, params.model_name, run_id)  # another process may have won the race
            created = mv is None
            if created:
                mv = create_version(client, params.model_name, model_uri, run_id, lineage, metrics, card)
            record = decide_and_apply(client, params.model_name, str(mv.version), policy, params.policy)
        aliases = sorted(client.get_model_version(params.model_name, str(mv.version)).aliases)
    summary = RegisterSummary(params.model_name, str(mv.version), created, aliases, record.promoted, record.reason,
                              record.comparisons, lineage.tags(), mlflow_params.tracking_uri, model_uri)
    write_json(report_path, summary.to_dict())
    if model_card_path is not None:
        model_card_path.parent.mkdir(parents=True, exist_ok=True)
        model_card_path.write_text(card, encoding="utf-8")
    if promotion_path is not None:
        write_record(promotion_path, record)
    return summary


def _training_run(client, run_id: str, run_file: Path):
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise ValueError(
            f"training run {run_id} (from {run_file}) is not in the tracking store {mlflow.get_tracking_uri()}; "
            "the store was reset or params.mlflow changed: train again (`dagllm train` or `dvc repro -f train`)"
        ) from None
