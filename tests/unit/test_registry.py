"""Promotion policy, the gate, the registry lock and the alias moves, on a real SQLite store."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dagllm.params import Params
from dagllm.registry.aliases import CHALLENGER, CHAMPION, PREVIOUS, PromotionError, decide_and_apply, gate, rollback
from dagllm.registry.lock import RegistryLockTimeout, registry_lock
from dagllm.registry.policy import PolicyError, PromotionPolicy, load_policy

from ..conftest import REPO, registry

POLICY = PromotionPolicy.model_validate({
    "primary": {"metric": "copa.acc", "min_improvement": 0.0},
    "guarded": [{"metric": "copa.f1", "tolerance": 0.02}, {"metric": "copa.loss", "higher_is_better": False,
                                                          "tolerance": 0.1}],
})


def test_repository_policy_loads_and_names_evaluated_metrics():
    policy = load_policy(REPO / Params.model_fields["register_"].default.policy)
    assert policy.primary.metric == "kobest_copa.acc"
    assert all(g.tolerance >= 0 for g in policy.guarded)


@pytest.mark.parametrize("content,message", [
    ("primary: {metric: acc}", r"primary\.metric: String should match pattern"),
    ("primary: {metric: a.b}\nguarded: [{metric: a.c, tolerance: -1}]", r"guarded\.0\.tolerance"),
    ("primary: {metric: a.b, typo: 1}", r"primary\.typo: Extra inputs"),
    ("primary: [unclosed", "not valid YAML"),
])
def test_bad_policy_names_file_and_key(tmp_path: Path, content: str, message: str):
    path = tmp_path / "policy.yaml"
    path.write_text(content)
    with pytest.raises(PolicyError, match=message) as err:
        load_policy(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("challenger,champion,promote,why", [
    ({"copa.acc": 0.5}, None, True, "no champion yet"),
    ({"copa.acc": 0.6, "copa.f1": 0.5, "copa.loss": 1.0}, {"copa.acc": 0.5, "copa.f1": 0.5, "copa.loss": 1.0}, True,
     "guarded metrics within tolerance"),
    ({"copa.acc": 0.5, "copa.f1": 0.5}, {"copa.acc": 0.5, "copa.f1": 0.5}, False, "copa.acc primary check failed"),
    ({"copa.acc": 0.6, "copa.f1": 0.47}, {"copa.acc": 0.5, "copa.f1": 0.5}, False, "copa.f1 guarded check failed"),
    ({"copa.acc": 0.6, "copa.f1": 0.485}, {"copa.acc": 0.5, "copa.f1": 0.5}, True, "within tolerance"),
    ({"copa.acc": 0.6, "copa.loss": 1.2}, {"copa.acc": 0.5, "copa.loss": 1.0}, False, "copa.loss guarded"),
    ({"copa.acc": 0.6}, {"copa.acc": 0.5, "copa.f1": 0.5}, False, "challenger has no value"),
    ({"copa.f1": 0.9}, {"copa.acc": 0.5}, False, "no value for copa.acc"),
    ({"copa.acc": 0.6}, {"copa.f1": 0.5}, True, "champion has no value"),
])
def test_gate(challenger, champion, promote, why):
    decision = gate(POLICY, challenger, champion)
    assert decision.promote is promote and why in decision.reason
    if champion:
        assert decision.comparisons[0].challenger == challenger.get("copa.acc")


def test_min_improvement_and_lower_is_better():
    policy = PromotionPolicy.model_validate({"primary": {"metric": "t.loss", "higher_is_better": False,
                                                         "min_improvement": 0.05}})
    assert not gate(policy, {"t.loss": 0.97}, {"t.loss": 1.0}).promote
    assert gate(policy, {"t.loss": 0.9}, {"t.loss": 1.0}).promote


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store for the module (creating its tables takes seconds)."""
    return registry(tmp_path_factory.mktemp("registry") / "mlflow.db")


@dataclass
class Reg:
    """A registered model of its own (named after the test) in the shared store."""

    client: Any
    name: str

    def add_version(self, acc: float, f1: float = 0.5) -> str:
        mv = self.client.create_model_version(self.name, source="file:///nowhere/model",
                                              tags={"metric.copa.acc": str(acc), "metric.copa.f1": str(f1)})
        self.client.set_registered_model_alias(self.name, CHALLENGER, mv.version)
        return str(mv.version)

    def aliases(self) -> dict[str, str]:
        return {a: str(v) for a, v in self.client.get_registered_model(self.name).aliases.items()}


@pytest.fixture()
def reg(store, request) -> Reg:
    name = request.node.name.replace("_", "-")[:60]
    store.create_registered_model(name)
    return Reg(store, name)


def test_aliases_follow_the_gate_and_rollback(reg: Reg):
    c, m = reg.client, reg.name
    v1, v2, v3, v4 = (reg.add_version(acc) for acc in (0.5, 0.4, 0.6, 0.7))
    assert decide_and_apply(c, m, v1, POLICY, "p").promoted
    rejected = decide_and_apply(c, m, v2, POLICY, "p")
    assert not rejected.promoted and rejected.champion_after == v1
    assert rejected.comparisons[0] == {"metric": "copa.acc", "role": "primary", "challenger": 0.4, "champion": 0.5,
                                       "allowed": "> champion by more than 0", "passed": False, "note": ""}
    assert decide_and_apply(c, m, v3, POLICY, "p").promoted
    assert decide_and_apply(c, m, v4, POLICY, "p").promoted
    assert reg.aliases() == {CHALLENGER: v4, CHAMPION: v4, PREVIOUS: v3}
    back = rollback(c, m, "p")
    assert (back.champion_before, back.champion_after, back.previous_champion_after) == (v4, v3, v1)
    assert rollback(c, m, "p").champion_after == v1
    assert PREVIOUS not in reg.aliases()
    with pytest.raises(PromotionError, match="no previous-champion alias"):
        rollback(c, m, "p")
    forced = decide_and_apply(c, m, v2, POLICY, "p", action="promote", force=True)
    assert forced.promoted and forced.forced and forced.reason.startswith("forced by a person")
    assert reg.aliases()[CHAMPION] == v2 and reg.aliases()[PREVIOUS] == v1


def test_lock_excludes_a_second_holder_and_is_released(reg: Reg):
    with registry_lock(reg.client, reg.name, timeout_s=5, lease_s=60):
        with pytest.raises(RegistryLockTimeout, match=r"\.lock' stayed taken for 0\.3 s"):
            with registry_lock(reg.client, reg.name, timeout_s=0.3, lease_s=60):
                pass
    with registry_lock(reg.client, reg.name, timeout_s=0.3, lease_s=60):  # released: free again
        pass
    assert reg.client.search_registered_models(f"name = '{reg.name}.lock'") == []


def test_lock_left_by_a_crashed_holder_expires(reg: Reg):
    lock = f"{reg.name}.lock"
    reg.client.create_registered_model(lock, tags={"dagllm.lock.owner": "dead", "dagllm.lock.expires": "1"})
    with registry_lock(reg.client, reg.name, timeout_s=2, lease_s=60) as token:
        assert reg.client.get_registered_model(lock).tags["dagllm.lock.owner"] == token


def test_lock_released_while_a_waiter_creates_it_is_taken_on_retry(reg: Reg, monkeypatch):
    """The SQL store words a duplicate-name error by reading the existing model back; a holder that releases
    between the failed INSERT and that read makes the create fail with RESOURCE_DOES_NOT_EXIST (seen in CI
    through a tracking server). The waiter must take that as contention and get the lock, not crash."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    lock, real_get, released = f"{reg.name}.lock", SqlAlchemyStore.get_registered_model, []
    reg.client.create_registered_model(lock, tags={"dagllm.lock.owner": "other", "dagllm.lock.expires": "9e12"})

    def get_after_the_holder_released(self, name):
        if name == lock and not released:
            released.append(name)
            self.delete_registered_model(name)  # the holder's release lands in the store's window
        return real_get(self, name)

    monkeypatch.setattr(SqlAlchemyStore, "get_registered_model", get_after_the_holder_released)
    with registry_lock(reg.client, reg.name, timeout_s=2, lease_s=60) as token:
        assert released and reg.client.get_registered_model(lock).tags["dagllm.lock.owner"] == token
    assert reg.client.search_registered_models(f"name = '{lock}'") == []
