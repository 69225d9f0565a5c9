"""The whole DAG (tiny settings) in real containers of the project's image, to a registered version.

kfp.local's DockerRunner through the engine at DOCKER_HOST; a real `mlflow server` (the team's
mlflow/server.sh, SQLite store and proxied artifacts on this machine) on loopback, reached from
the containers over the host network. The promotion policy is left at its relative default, so
the run only registers if the image carries it.
"""

import os
from pathlib import Path

import pytest
from mlflow import MlflowClient

from dagllm.params import RegisterParams, params_from_dict
from pipelines.containers import describe, own_containers, run_containers

from ..conftest import small_params
from ..integration.services import MlflowServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("mlflow")
    srv = MlflowServer(f"sqlite:///{root / 'mlflow.db'}", str(root / "artifacts"), {}).start(root / "server.log")
    yield srv
    srv.stop()


def _params(server: MlflowServer, **sections):
    data = small_params(evaluate={"limit": 6}, **sections)
    data["register"]["policy"] = RegisterParams().policy  # relative: found in the image via DAGLLM_HOME
    data["mlflow"]["tracking_uri"] = server.url
    return params_from_dict(data)


def test_whole_dag_registers_a_version_from_containers(engine, image: str, server: MlflowServer, tmp_path: Path):
    result = run_containers(_params(server), image, tmp_path / "root")
    assert result["registered_version"] == "1"
    client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    name = RegisterParams().model_name
    version = client.get_model_version(name, "1")
    assert client.get_model_version_by_alias(name, "champion").version == "1"  # the first version is the champion
    run = client.get_run(version.run_id)
    assert run.data.metrics  # evaluate logged its scores to the server from its container
    # every task left its outputs in the shared pipeline root
    tasks = {p.name for p in Path(result["pipeline_root"]).glob("*/*") if p.is_dir()}
    for stage in ("ingest", "render", "validate", "decontaminate", "balance", "train", "evaluate", "register"):
        assert any(t.startswith(f"{stage}-op") for t in tasks), f"no outputs of {stage}: {sorted(tasks)}"
    assert not (left := own_containers(engine)), describe(left)


def test_a_failing_task_fails_the_run(engine, image: str, server: MlflowServer, tmp_path: Path):
    params = _params(server, paths={**small_params()["paths"], "mirror": "/nonexistent-mirror"})
    with pytest.raises(RuntimeError, match="ingest"):
        run_containers(params, image, tmp_path / "root")
    assert os.listdir(tmp_path / "root")
