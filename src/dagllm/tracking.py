"""MLflow set-up shared by the stages: one place that knows the tracking URI and experiment."""

from __future__ import annotations

from pathlib import Path

from dagllm.params import MlflowParams
from dagllm.runtime import offline


def absolute_uri(uri: str) -> str:
    """``sqlite:///mlflow.db`` -> ``sqlite:////abs/path/mlflow.db`` (resolved against the cwd now).

    A relative SQLite path would otherwise mean a different store after a change of directory.
    """
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


def configure(params: MlflowParams) -> str:
    """Point MLflow at the configured store and return the experiment id (created when missing).

    The embedded default is a SQLite file in the working directory with artifacts in
    ``mlartifacts/``; a server URL (``http://...``) works the same way.
    """
    offline()
    import mlflow

    uri = absolute_uri(params.tracking_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    exp = mlflow.get_experiment_by_name(params.experiment)
    if exp is not None:
        return exp.experiment_id
    artifact_location = None
    if uri.startswith(("sqlite:", "file:")):
        artifact_location = Path(params.artifact_root).resolve().as_uri()
    return mlflow.create_experiment(params.experiment, artifact_location=artifact_location)
