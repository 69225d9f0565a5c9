import json
from pathlib import Path

import pytest

from dagllm.params import MlflowParams, RegisterParams
from dagllm.stages.register import decide, metric_value, run_register


@pytest.mark.parametrize("new,champ,has,higher,expected", [
    (0.5, None, False, True, True),
    (0.6, 0.5, True, True, True),
    (0.5, 0.5, True, True, True),
    (0.4, 0.5, True, True, False),
    (0.4, 0.5, True, False, True),
    (None, 0.5, True, True, False),
    (0.4, None, True, True, True),
])
def test_champion_rule(new, champ, has, higher, expected):
    assert decide(new, champ, has, higher)[0] is expected


def test_metric_lookup():
    m = {"metrics": {"kobest_copa": {"acc": 0.7}}}
    assert metric_value(m, "kobest_copa.acc") == 0.7
    assert metric_value(m, "kobest_copa.f1") is None


def test_unknown_training_run_is_a_clear_error(tmp_path: Path):
    run_file = tmp_path / "train_run.json"
    run_file.write_text(json.dumps({"run_id": "0" * 32}))
    (tmp_path / "metrics.json").write_text("{}")
    store = MlflowParams(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path / "a"))
    with pytest.raises(ValueError, match=r"training run 0+ .* is not in the tracking store .*train again"):
        run_register(RegisterParams(), store, tmp_path / "model", run_file, tmp_path / "metrics.json",
                     tmp_path / "register.json")
