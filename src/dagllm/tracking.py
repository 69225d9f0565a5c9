"""MLflow set-up shared by the stages: one place that knows the tracking URI and experiment."""

from __future__ import annotations

from pathlib import Path

from dagllm.params import MlflowParams
from dagllm.runtime import offline


def configure(params: MlflowParams) -> str:
    """Point MLflow at the configured store and return the experiment id (created when missing).

    The embedded default is a SQLite file in the working directory with artifacts in
    ``mlartifacts/``; a server URL (``http://...``) works the same way.
    """
    offline()
    import mlflow

    mlflow.set_tracking_uri(params.tracking_uri)
    mlflow.set_registry_uri(params.tracking_uri)
    exp = mlflow.get_experiment_by_name(params.experiment)
    if exp is not None:
        return exp.experiment_id
    artifact_location = None
    if params.tracking_uri.startswith("sqlite:") or params.tracking_uri.startswith("file:"):
        artifact_location = Path(params.artifact_root).resolve().as_uri()
    return mlflow.create_experiment(params.experiment, artifact_location=artifact_location)
