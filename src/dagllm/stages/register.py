"""Register: log the trained model by path, register a version with lineage, run the promotion gate.

The steps, each safe to repeat (``dagllm register`` after a failure finishes the job):

1. the model directory is logged to the training run with the MLflow transformers flavour
   (by path: no copy of the weights in memory), unless a finished logged model of that run
   exists already;
2. inside the registry lock: a version is created unless one exists for the run (so the same
   run never gets a second version), tagged with its lineage and metrics, described by the model
   card, given ``challenger``; then the gate of the promotion policy decides ``champion``.

A tracking server that does not answer gets MLflow's bounded retries (params.mlflow) and then
one error; the model stays on disk.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dagllm.io import read_json, write_json
from dagllm.modelcard import Lineage, collect_lineage, model_card
from dagllm.params import MlflowParams, RegisterParams

PIP_REQUIREMENTS = ["torch==2.13.0", "transformers>=5,<6", "tokenizers>=0.22", "safetensors"]
INPUT_EXAMPLE = "### 지시:\n다음 문장의 감정을 분류하세요.\n\n### 입력:\n정말 재미있는 영화였어요.\n\n### 응답:\n"
LOGGED_MODEL_NAME = "model"


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


@contextmanager
def _pipeline_class_by_name() -> Iterator[None]:
    """Let MLflow 3.17 log a transformers-5 checkpoint by path.

    ``mlflow.transformers`` reads ``check_task(task)[1]["impl"].__name__``; transformers 5 names
    the pipeline class there as a dotted string instead of the class (lazy import), so logging by
    path fails with AttributeError. For the duration of the call, ``check_task`` answers with the
    class imported. A no-op once either side changes (the value is only replaced when a string).
    """
    from transformers import pipelines

    original = pipelines.check_task

    def check_task(task: str):
        name, meta, options = original(task)
        impl = meta.get("impl")
        if isinstance(impl, str):
            module, _, cls = impl.rpartition(".")
            meta = {**meta, "impl": getattr(importlib.import_module(module), cls)}
        return name, meta, options

    pipelines.check_task = check_task
    try:
        yield
    finally:
        pipelines.check_task = original


def log_model_by_path(model_dir: Path, run_id: str) -> str:
    """Log ``model_dir`` to run ``run_id`` (text generation) and return the logged model's URI.

    A finished logged model of the run is reused, so a second call logs nothing. The signature
    and input example are given explicitly, so MLflow runs no inference to infer them.
    """
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from mlflow.entities import LoggedModelStatus

    found = mlflow.search_logged_models(
        experiment_ids=[mlflow.get_run(run_id).info.experiment_id], output_format="list",
        filter_string=f"source_run_id = '{run_id}' AND name = '{LOGGED_MODEL_NAME}'")
    # status is filtered here: MLflow 3.17 compares it as text, which PostgreSQL refuses (integer column)
    done = [m for m in found if m.status == LoggedModelStatus.READY]
    if done:
        return f"models:/{done[0].model_id}"
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: no trained model (config.json missing); run `dagllm train` first")
    signature = ModelSignature(inputs=Schema([ColSpec("string")]), outputs=Schema([ColSpec("string")]))
    with _pipeline_class_by_name(), mlflow.start_run(run_id=run_id):
        info = mlflow.transformers.log_model(
            transformers_model=str(model_dir.resolve()), name=LOGGED_MODEL_NAME, task="text-generation",
            signature=signature, input_example=INPUT_EXAMPLE, pip_requirements=PIP_REQUIREMENTS,
        )
    return info.model_uri


def _ensure_registered_model(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description="Korean instruction-tuned GPT-NeoX (dagllm)")
    except MlflowException as exc:
        if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
            raise


def _version_of_run(client, name: str, run_id: str):
    found = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    return min(found, key=lambda v: int(v.version)) if found else None


def _create_version(client, name: str, model_uri: str, run_id: str, lineage: Lineage, eval_metrics: dict,
                    card: str):
    """A new version with lineage and metric tags, the model card as description, alias challenger."""
    from dagllm.registry import CHALLENGER, METRIC_TAG, flat_metrics

    model_id = model_uri.removeprefix("models:/")
    tags = {"run_id": run_id, **lineage.tags(), **{METRIC_TAG + k: repr(v) for k, v in flat_metrics(eval_metrics).items()}}
    mv = client.create_model_version(name, source=model_uri, run_id=run_id, tags=tags, description=card,
                                     model_id=model_id)
    client.set_registered_model_alias(name, CHALLENGER, str(mv.version))
    return mv


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
            not answer (:class:`dagllm.tracking.TrackingUnavailable`) or the lock stays taken.
    """
    from mlflow import MlflowClient

    from dagllm.registry import decide_and_apply, load_policy, registry_lock, write_record
    from dagllm.tracking import configure, server_errors

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
        _ensure_registered_model(client, params.model_name)
        existing = _version_of_run(client, params.model_name, run_id)
        model_uri = existing.source if existing is not None else log_model_by_path(model_dir, run_id)
        with registry_lock(client, params.model_name, params.lock_timeout_s, params.lock_lease_s):
            mv = _version_of_run(client, params.model_name, run_id)  # another process may have won the race
            created = mv is None
            if created:
                mv = _create_version(client, params.model_name, model_uri, run_id, lineage, metrics, card)
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
