import json
from pathlib import Path

import pytest

from dagllm.params import MlflowParams, RegisterParams
from dagllm.stages.register import run_register

from ..conftest import REPO


def test_unknown_training_run_is_a_clear_error(tmp_path: Path):
    run_file = tmp_path / "train_run.json"
    run_file.write_text(json.dumps({"run_id": "0" * 32}))
    (tmp_path / "metrics.json").write_text("{}")
    store = MlflowParams(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path / "a"))
    with pytest.raises(ValueError, match=r"training run 0+ .* is not in the tracking store .*train again"):
        run_register(RegisterParams(policy=str(REPO / "mlflow/promotion_policy.yaml")), store, tmp_path / "model",
                     run_file, tmp_path / "metrics.json", tmp_path / "register.json", params_digest="x")


def test_bad_policy_fails_before_any_store_is_touched(tmp_path: Path):
    store = MlflowParams(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    with pytest.raises(ValueError, match=r"nope\.yaml: promotion policy not found .*register\.policy"):
        run_register(RegisterParams(policy=str(tmp_path / "nope.yaml")), store, tmp_path, tmp_path / "r.json",
                     tmp_path / "m.json", tmp_path / "out.json", params_digest="x")
    assert not (tmp_path / "mlflow.db").exists()


def test_promote_needs_exactly_one_of_version_or_rollback():
    from typer.testing import CliRunner

    from dagllm.cli import app

    for args in ([], ["--version", "2", "--rollback"]):
        result = CliRunner().invoke(app, ["promote", *args])
        assert result.exit_code == 2 and "exactly one of --version N or --rollback" in result.output
