"""Promote: a person moves the champion alias (gate for version N, or rollback)."""

from __future__ import annotations

from pathlib import Path

from dagllm.params import MlflowParams, RegisterParams
from dagllm.registry.aliases import PromotionRecord


def run_promote(params: RegisterParams, mlflow_params: MlflowParams, version: int | None, report_path: Path,
                force: bool = False) -> PromotionRecord:
    """Run the promotion gate for ``version`` (or roll back when it is None) under the registry lock.

    Args:
        params / mlflow_params: ``register`` and ``mlflow`` sections of params.yaml.
        version: the model version to promote; None rolls back to ``previous-champion``.
        report_path: where the decision goes (``reports/promotion.json``).
        force: promote even when the gate says no (the record says so).

    Raises:
        ValueError: unknown version, nothing to roll back, bad policy, server not answering.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from dagllm.registry.aliases import decide_and_apply, rollback, write_record
    from dagllm.registry.lock import registry_lock
    from dagllm.registry.policy import load_policy
    from dagllm.registry.tracking import configure, server_errors

    policy = load_policy(params.policy)
    with server_errors(mlflow_params, "nothing was changed; run `dagllm promote` again when the server is up"):
        configure(mlflow_params)
        client = MlflowClient()
        if version is not None:
            try:
                client.get_model_version(params.model_name, str(version))
            except MlflowException as exc:
                if getattr(exc, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
                    raise
                raise ValueError(f"{params.model_name} has no version {version} in {mlflow_params.tracking_uri}; "
                                 "`dagllm where` shows the registry") from None
        with registry_lock(client, params.model_name, params.lock_timeout_s, params.lock_lease_s):
            if version is None:
                record = rollback(client, params.model_name, params.policy)
            else:
                record = decide_and_apply(client, params.model_name, str(version), policy, params.policy,
                                          action="promote", force=force)
    write_record(report_path, record)
    return record
