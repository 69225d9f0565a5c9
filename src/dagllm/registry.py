"""The model registry rules: promotion policy, the gate, a registry lock, aliases, loading.

Aliases of a registered model:

- ``challenger``: the newest registered version;
- ``champion``: the version that serves; it moves only through :func:`promote` (the gate, or a
  person forcing it) and :func:`rollback`;
- ``previous-champion``: the champion before the current one, the target of a rollback.

MLflow has no transactions across calls, so every read-compare-write of the aliases runs inside
:func:`registry_lock`: a compare-and-set on the registry itself. Creating a registered model is
atomic in every MLflow store (the name is the primary key of a table in SQLite and PostgreSQL, and
a tracking server answers ``RESOURCE_ALREADY_EXISTS`` to the second creator), so the lock is a
registered model named ``<name>.lock``; whoever creates it holds the lock, and deleting it releases
it. A lease tag lets a waiter remove a lock left by a crashed process. See docs/registry.md.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

CHALLENGER, CHAMPION, PREVIOUS = "challenger", "champion", "previous-champion"
HISTORY_TAG = "dagllm.champion_history"  # comma-separated versions that held champion, oldest first
METRIC_TAG = "metric."  # model-version tags metric.<task>.<name> hold the evaluation numbers
LOCK_OWNER, LOCK_EXPIRES = "dagllm.lock.owner", "dagllm.lock.expires"


class PolicyError(ValueError):
    """The promotion policy file is missing or invalid; the message names the file and key."""


class PromotionError(ValueError):
    """A promotion or rollback a person asked for cannot be done (names what is missing)."""


class RegistryLockTimeout(ValueError):
    """Another process held the registry lock for longer than the configured wait."""


# ----------------------------------------------------------------------------- policy

class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = Field(pattern=r"^[A-Za-z0-9_]+\.[A-Za-z0-9_]+$", description="TASK.METRIC")
    higher_is_better: bool = True


class PrimaryRule(_Rule):
    min_improvement: float = Field(0.0, ge=0, description="the challenger must beat the champion by more")


class GuardedRule(_Rule):
    tolerance: float = Field(ge=0, description="largest allowed drop (absolute) against the champion")


class PromotionPolicy(BaseModel):
    """What ``mlflow/promotion_policy.yaml`` holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    primary: PrimaryRule
    guarded: list[GuardedRule] = []

    def summary(self) -> str:
        parts = [f"primary {self.primary.metric} ({'higher' if self.primary.higher_is_better else 'lower'} "
                 f"is better, must improve by more than {self.primary.min_improvement:g})"]
        parts += [f"{g.metric} may drop by at most {g.tolerance:g}" for g in self.guarded]
        return "; ".join(parts)


def load_policy(path: Path | str) -> PromotionPolicy:
    """Read and check a promotion policy YAML.

    Raises:
        PolicyError: the file is missing, not YAML, or a key is unknown or out of range.
    """
    from dagllm.paths import runtime_file

    path = runtime_file(path)
    if not path.is_file():
        raise PolicyError(f"{path}: promotion policy not found (set register.policy in params.yaml; "
                          "the repository's default is mlflow/promotion_policy.yaml)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: not valid YAML ({exc})") from None
    try:
        return PromotionPolicy.model_validate(data)
    except ValidationError as exc:
        errs = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors())
        raise PolicyError(f"{path}: invalid promotion policy ({errs})") from None


# ----------------------------------------------------------------------------- the gate

@dataclass
class Comparison:
    """One metric of the challenger against the champion."""

    metric: str
    role: str  # primary | guarded
    challenger: float | None
    champion: float | None
    allowed: str
    passed: bool
    note: str = ""


@dataclass
class Decision:
    promote: bool
    reason: str
    comparisons: list[Comparison] = field(default_factory=list)


def flat_metrics(eval_metrics: dict) -> dict[str, float]:
    """``{"metrics": {"kobest_copa": {"acc": 0.5}}}`` -> ``{"kobest_copa.acc": 0.5}``."""
    return {f"{task}.{name}": float(v) for task, ms in eval_metrics.get("metrics", {}).items() for name, v in ms.items()}


def _gain(new: float, old: float, higher_is_better: bool) -> float:
    return new - old if higher_is_better else old - new


def gate(policy: PromotionPolicy, challenger: dict[str, float], champion: dict[str, float] | None) -> Decision:
    """Whether the challenger may replace the champion, with every number compared.

    Promote when there is no champion, or when the primary metric improves by more than
    ``min_improvement`` and no guarded metric drops by more than its tolerance.
    """
    p = policy.primary
    new = challenger.get(p.metric)
    if champion is None:
        return Decision(True, "no champion yet", [Comparison(p.metric, "primary", new, None, "any", True)])
    old = champion.get(p.metric)
    if new is None:
        c = Comparison(p.metric, "primary", None, old, "a value", False, "the challenger has no value")
        return Decision(False, f"the challenger has no value for {p.metric}", [c])
    if old is None:
        c = Comparison(p.metric, "primary", new, None, "any", True, "the champion has no value")
        return Decision(True, f"the champion has no value for {p.metric}", [c])
    op = ">" if p.higher_is_better else "<"
    improved = _gain(new, old, p.higher_is_better) > p.min_improvement
    comps = [Comparison(p.metric, "primary", new, old, f"{op} champion by more than {p.min_improvement:g}", improved)]
    for g in policy.guarded:
        gn, go = challenger.get(g.metric), champion.get(g.metric)
        if gn is None or go is None:
            # Only a value the champion has and the challenger lacks blocks: nothing shows it did not drop.
            missing = "neither version" if gn is None and go is None else "the challenger" if gn is None else "the champion"
            comps.append(Comparison(g.metric, "guarded", gn, go, f"drop <= {g.tolerance:g}", gn is not None or go is None,
                                    f"{missing} has no value"))
            continue
        drop = -_gain(gn, go, g.higher_is_better)
        comps.append(Comparison(g.metric, "guarded", gn, go, f"drop <= {g.tolerance:g}", drop <= g.tolerance + 1e-12,
                                f"drop {drop:+.4f}"))
    failed = [c for c in comps if not c.passed]
    if not failed:
        return Decision(True, f"{p.metric} {new:.4f} {op} champion {old:.4f}; guarded metrics within tolerance", comps)
    why = "; ".join(f"{c.metric} {c.role} check failed ({c.challenger} vs champion {c.champion}, allowed "
                    f"{c.allowed}{', ' + c.note if c.note else ''})" for c in failed)
    return Decision(False, why, comps)


# ----------------------------------------------------------------------------- lock

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


# ----------------------------------------------------------------------------- aliases

def version_by_alias(client: Any, name: str, alias: str) -> Any | None:
    """The model version holding ``alias``, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def version_metrics(mv: Any) -> dict[str, float]:
    """The ``metric.<task>.<name>`` tags of a model version as floats."""
    return {k[len(METRIC_TAG):]: float(v) for k, v in mv.tags.items() if k.startswith(METRIC_TAG)}


def _history(client: Any, name: str) -> list[str]:
    raw = client.get_registered_model(name).tags.get(HISTORY_TAG, "")
    return [v for v in raw.split(",") if v]


def _set_history(client: Any, name: str, history: list[str]) -> None:
    client.set_registered_model_tag(name, HISTORY_TAG, ",".join(history[-100:]))


def _crown(client: Any, name: str, version: str, old: str | None) -> None:
    """champion -> version; the old champion keeps previous-champion; history records it."""
    history = _history(client, name)
    if old is not None and (not history or history[-1] != old):
        history.append(old)  # aliases moved by hand outside dagllm: resynchronise
    if old is not None:
        client.set_registered_model_alias(name, PREVIOUS, old)
    client.set_registered_model_alias(name, CHAMPION, version)
    _set_history(client, name, [*history, version])


@dataclass
class PromotionRecord:
    """One decision about the champion, as written to reports/promotion.json."""

    model_name: str
    action: str  # gate | promote | rollback
    version: str
    promoted: bool
    reason: str
    champion_before: str | None
    champion_after: str | None
    previous_champion_after: str | None
    policy: str
    comparisons: list[dict] = field(default_factory=list)
    forced: bool = False
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        verb = "is champion" if self.promoted else "not promoted"
        return [f"{self.model_name} version {self.version} {verb} ({self.action}): {self.reason}"] + [
            f"  {c['role']:>8} {c['metric']}: challenger {c['challenger']} vs champion {c['champion']} "
            f"(allowed {c['allowed']}) {'ok' if c['passed'] else 'FAILED'}" for c in self.comparisons]


def _alias_version(client: Any, name: str, alias: str) -> str | None:
    mv = version_by_alias(client, name, alias)
    return None if mv is None else str(mv.version)


def decide_and_apply(client: Any, name: str, version: str, policy: PromotionPolicy, policy_path: str,
                     action: str = "gate", force: bool = False) -> PromotionRecord:
    """Run the gate for ``version`` against the current champion and move aliases if it passes.

    Call inside :func:`registry_lock`. ``force`` promotes even when the gate says no (a person's
    decision; the record keeps the gate's verdict and ``forced: true``).
    """
    mv = client.get_model_version(name, version)
    champ = version_by_alias(client, name, CHAMPION)
    before = None if champ is None else str(champ.version)
    if before == str(version):
        decision = Decision(True, "already champion")
    else:
        decision = gate(policy, version_metrics(mv), None if champ is None else version_metrics(champ))
    promoted = decision.promote or force
    if promoted and before != str(version):
        _crown(client, name, str(version), before)
    reason = decision.reason if decision.promote or not force else f"forced by a person; the gate said: {decision.reason}"
    return PromotionRecord(name, action, str(version), promoted, reason, before, _alias_version(client, name, CHAMPION),
                           _alias_version(client, name, PREVIOUS), policy_path,
                           [asdict(c) for c in decision.comparisons], force and not decision.promote)


def rollback(client: Any, name: str, policy_path: str) -> PromotionRecord:
    """Give ``champion`` back to ``previous-champion``; call inside :func:`registry_lock`.

    Raises:
        PromotionError: there is no previous champion to return to.
    """
    before = _alias_version(client, name, CHAMPION)
    target = _alias_version(client, name, PREVIOUS)
    if target is None or before is None:
        raise PromotionError(f"{name}: no {'champion' if before is None else 'previous-champion'} alias, so there "
                             "is nothing to roll back; promote a version with `dagllm promote --version N`")
    history = _history(client, name)
    if history and history[-1] == before:
        history.pop()
    if history and history[-1] == target:
        history.pop()
    client.set_registered_model_alias(name, CHAMPION, target)
    if history:
        client.set_registered_model_alias(name, PREVIOUS, history[-1])
    else:
        client.delete_registered_model_alias(name, PREVIOUS)
    _set_history(client, name, [*history, target])
    return PromotionRecord(name, "rollback", target, True, f"rolled back from version {before}", before, target,
                           _alias_version(client, name, PREVIOUS), policy_path)


# ----------------------------------------------------------------------------- loading

def load_for_generation(name: str, alias: str = "champion", mlflow_params: Any | None = None) -> tuple[Any, Any]:
    """Load ``models:/<name>@<alias>`` and return ``(model, tokenizer)`` ready for ``generate``.

    The alias is resolved to its version first (``dagllm.serving.model``), so what loads is the
    version the alias names at that moment, the same loader the chat server uses.

    Args:
        name: the registered model name (``register.model_name``).
        alias: ``champion`` (default), ``challenger`` or ``previous-champion``.
        mlflow_params: where the registry is (``params.mlflow``); None keeps MLflow's current URI.
    """
    import mlflow

    from dagllm.params import MlflowParams
    from dagllm.serving.model import load_model

    params = mlflow_params if mlflow_params is not None else MlflowParams(tracking_uri=mlflow.get_tracking_uri())
    loaded = load_model(f"models:/{name}@{alias}", params)
    return loaded.model, loaded.tokenizer


def write_record(path: Path, record: PromotionRecord) -> None:
    """Write one promotion decision as JSON (the latest decision; MLflow keeps the history)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
