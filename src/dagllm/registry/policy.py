"""The promotion policy and its gate: may a challenger replace the champion, with every number compared.

The policy file (``mlflow/promotion_policy.yaml``) names a primary metric that must improve by more
than ``min_improvement`` and guarded metrics that may drop by at most their tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class PolicyError(ValueError):
    """The promotion policy file is missing or invalid; the message names the file and key."""


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
