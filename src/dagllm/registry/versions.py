"""Model versions in the MLflow registry: the model logged by path, and a version with its lineage.

Logging reuses a finished logged model of the run, and a run never gets a second version, so each
step is safe to repeat. :mod:`dagllm.stages.register` runs them under the registry lock.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dagllm.registry.aliases import CHALLENGER, METRIC_TAG
from dagllm.registry.modelcard import Lineage
from dagllm.registry.policy import flat_metrics

PIP_REQUIREMENTS = ["torch==2.13.0", "transformers>=5,<6", "tokenizers>=0.22", "safetensors"]
INPUT_EXAMPLE = "### 지시:\n다음 문장의 감정을 분류하세요.\n\n### 입력:\n정말 재미있는 영화였어요.\n\n### 응답:\n"
LOGGED_MODEL_NAME = "model"


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
    from mlflow.entities import LoggedModelStatus
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

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


def ensure_registered_model(client, name: str) -> None:
    """Create the registered model ``name`` unless it exists."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description="Korean instruction-tuned GPT-NeoX (dagllm)")
    except MlflowException as exc:
        if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
            raise


def version_of_run(client, name: str, run_id: str):
    """The oldest version registered from ``run_id``, or None."""
    found = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    return min(found, key=lambda v: int(v.version)) if found else None


def create_version(client, name: str, model_uri: str, run_id: str, lineage: Lineage, eval_metrics: dict,
                    card: str):
    """A new version with lineage and metric tags, the model card as description, alias challenger."""
    model_id = model_uri.removeprefix("models:/")
    tags = {"run_id": run_id, **lineage.tags(), **{METRIC_TAG + k: repr(v) for k, v in flat_metrics(eval_metrics).items()}}
    mv = client.create_model_version(name, source=model_uri, run_id=run_id, tags=tags, description=card,
                                     model_id=model_id)
    client.set_registered_model_alias(name, CHALLENGER, str(mv.version))
    return mv


