"""MLflow set-up shared by the stages: one place that knows the tracking URI and experiment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dagllm.params import MlflowParams
from dagllm.runtime import offline


class TrackingUnavailable(ValueError):
    """The tracking server did not answer after the configured retries."""


def apply_http_retries(params: MlflowParams) -> None:
    """Set MLflow's HTTP retry settings from params (read by MLflow on every request).

    Set here, at run time, so that params.yaml stays the one place that decides them.
    """
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(params.http_max_retries)
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = str(params.http_backoff_factor)
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(params.http_timeout_s)


def _unreachable(exc: BaseException) -> bool:
    """True when ``exc`` (or what it was raised from) is a failed connection or a timeout."""
    import requests

    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@contextmanager
def server_errors(params: MlflowParams, what_next: str) -> Iterator[None]:
    """Turn "the server did not answer" (after MLflow's retries) into one clear error.

    Args:
        params: the MLflow settings (names the server and the retry count in the message).
        what_next: what the user should do, e.g. "run `dagllm register` again".
    """
    try:
        yield
    except Exception as exc:
        if not _unreachable(exc):
            raise
        raise TrackingUnavailable(
            f"the tracking server {params.tracking_uri} did not answer after {params.http_max_retries} retries "
            f"(mlflow.http_max_retries, backoff factor {params.http_backoff_factor} s): {what_next}"
        ) from None


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
    apply_http_retries(params)
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
