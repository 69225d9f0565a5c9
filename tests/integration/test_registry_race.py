"""Two real processes register and promote against the same SQLite store at the same moment."""

import json
from pathlib import Path

import pytest

from dagllm.params import MlflowParams
from dagllm.registry.aliases import CHAMPION
from dagllm.registry.tracking import configure

from ..conftest import REPO, registry
from .race import assert_champion_chain, race, tiny_model, training_run

pytestmark = pytest.mark.slow
POLICY = str(REPO / "mlflow/promotion_policy.yaml")


def test_racing_registrations_leave_one_version_per_run_and_the_best_champion(tmp_path: Path):
    store = {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "artifact_root": str(tmp_path / "mlartifacts")}
    experiment_id = configure(MlflowParams(**store))
    client = registry(tmp_path / "mlflow.db")
    model = tiny_model(tmp_path / "model")
    a, b, c = (training_run(client, experiment_id, tmp_path / name, model, acc)
               for name, acc in (("a", 0.5), ("b", 0.7), ("c", 0.6)))
    register = {"model_name": "race", "policy": POLICY}
    step = lambda d: {"kind": "register", "dir": str(d), "report": str(d / f"report-{id(d)}.json")}  # noqa: E731
    # both register run a (same run: one version), then b and c race for champion
    race([{"mlflow": store, "register": register, "steps": [step(a), step(b)]},
          {"mlflow": store, "register": register, "steps": [step(a), step(c)]}], tmp_path)
    versions = client.search_model_versions("name='race'")
    run_ids = [json.loads((d / "train_run.json").read_text())["run_id"] for d in (a, b, c)]
    assert sorted(v.run_id for v in versions) == sorted(run_ids)  # run a raced: still one version
    champion = client.get_model_version_by_alias("race", CHAMPION)
    assert float(champion.tags["metric.kobest_copa.acc"]) == 0.7
    assert_champion_chain(client, "race")
    assert client.search_registered_models("name = 'race.lock'") == []
