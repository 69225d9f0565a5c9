"""The aliases of a registered model, and the decisions that move them.

- ``challenger``: the newest registered version;
- ``champion``: the version that serves; it moves only through :func:`decide_and_apply` (the gate
  of :mod:`dagllm.registry.policy`, or a person forcing it) and :func:`rollback`;
- ``previous-champion``: the champion before the current one, the target of a rollback.

Callers hold :func:`dagllm.registry.lock.registry_lock` around every read-compare-write of them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dagllm.registry.policy import Decision, PromotionPolicy, gate

CHALLENGER, CHAMPION, PREVIOUS = "challenger", "champion", "previous-champion"
HISTORY_TAG = "dagllm.champion_history"  # comma-separated versions that held champion, oldest first
METRIC_TAG = "metric."  # model-version tags metric.<task>.<name> hold the evaluation numbers


class PromotionError(ValueError):
    """A promotion or rollback a person asked for cannot be done (names what is missing)."""


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


def write_record(path: Path, record: PromotionRecord) -> None:
    """Write one promotion decision as JSON (the latest decision; MLflow keeps the history)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
