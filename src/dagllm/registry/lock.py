"""The registry lock: a compare-and-set on the MLflow registry itself.

MLflow has no transactions across calls, so every read-compare-write of the aliases runs inside
:func:`registry_lock`. Creating a registered model is atomic in every MLflow store (the name is the
primary key of a table in SQLite and PostgreSQL, and a tracking server answers
``RESOURCE_ALREADY_EXISTS`` to the second creator), so the lock is a registered model named
``<name>.lock``; whoever creates it holds the lock, and deleting it releases it. A lease tag lets a
waiter remove a lock left by a crashed process. See docs/registry.md.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

LOCK_OWNER, LOCK_EXPIRES = "dagllm.lock.owner", "dagllm.lock.expires"


class RegistryLockTimeout(ValueError):
    """Another process held the registry lock for longer than the configured wait."""


def _is_contended(exc: Exception) -> bool:
    """Whether a failed create of the lock means another holder had it.

    ``RESOURCE_ALREADY_EXISTS`` is the plain answer. MLflow's SQL store answers a duplicate name by
    reading the existing model back to word its error; when the holder deletes the lock between the
    failed INSERT and that read, the create fails with ``RESOURCE_DOES_NOT_EXIST`` instead. Nothing was
    created either way, so both mean "taken a moment ago: try again".
    """
    return getattr(exc, "error_code", "") in ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST")


@contextmanager
def registry_lock(client: Any, model_name: str, timeout_s: float, lease_s: float) -> Iterator[str]:
    """Hold the registry-wide lock of ``model_name`` (see the module docstring); yields the token.

    Raises:
        RegistryLockTimeout: the lock stayed taken for ``timeout_s`` seconds.
    """
    from mlflow.exceptions import MlflowException

    lock_name, token = f"{model_name}.lock", uuid.uuid4().hex
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.create_registered_model(
                lock_name, tags={LOCK_OWNER: token, LOCK_EXPIRES: f"{time.time() + lease_s:.3f}"},
                description=f"dagllm registry lock for {model_name}: exists only while aliases are being changed")
            break
        except MlflowException as exc:
            if not _is_contended(exc):
                raise
        _break_if_stale(client, lock_name)
        if time.monotonic() > deadline:
            raise RegistryLockTimeout(
                f"the registry lock {lock_name!r} stayed taken for {timeout_s:g} s (another registration or "
                f"promotion is running); try again, or raise register.lock_timeout_s") from None
        time.sleep(0.05 + random.random() * 0.1)
    try:
        yield token
    finally:
        _release(client, lock_name, token)


def _break_if_stale(client: Any, lock_name: str) -> None:
    """Delete a lock whose lease ran out (its holder crashed); absent locks are fine."""
    from mlflow.exceptions import MlflowException

    try:
        held = client.get_registered_model(lock_name)
        if float(held.tags.get(LOCK_EXPIRES, "inf")) < time.time():
            client.delete_registered_model(lock_name)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
            raise


def _release(client: Any, lock_name: str, token: str) -> None:
    """Delete the lock if this holder still owns it (a lease-breaker may have replaced it)."""
    from mlflow.exceptions import MlflowException

    try:
        if client.get_registered_model(lock_name).tags.get(LOCK_OWNER) == token:
            client.delete_registered_model(lock_name)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
            raise
