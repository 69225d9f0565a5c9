"""The cluster profile: laptop defaults refused with one error; with pipelines/cluster.yaml the
compiled spec reads nothing from the laptop (no SQLite, no samples, the mirror on a volume)."""

import json
from pathlib import Path

import pytest
import yaml

from dagllm.params import load_params, params_from_dict
from dagllm.pipeline import steps
from pipelines.dagllm_pipeline import ClusterProfileError, check_cluster, compile_pipeline, with_profile

from ..conftest import REPO

PROFILE = REPO / "pipelines/cluster.yaml"


def _cluster(**over) -> dict:
    data = with_profile(load_params(REPO / "params.yaml"), PROFILE).to_dict()
    for dotted, value in over.items():
        section, key = dotted.split("__")
        data[section][key] = value
    return data


def _compiled(params, tmp_path: Path):
    path = compile_pipeline(params, tmp_path / "p.yaml", cluster=True)
    pipeline, platform = yaml.safe_load_all(path.read_text())
    return pipeline, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_kept_cluster_spec_matches_the_code_and_has_no_laptop_default(tmp_path: Path):
    """README's kfp CLI line submits pipelines/compiled/dagllm-cluster.yaml: params.yaml under the
    cluster profile, compiled as `make pipeline-compile` does."""
    from pipelines.dagllm_pipeline import CLUSTER_OUTPUT

    kept = REPO / CLUSTER_OUTPUT
    fresh = compile_pipeline(with_profile(load_params(REPO / "params.yaml"), PROFILE), tmp_path / "c.yaml", cluster=True)
    assert fresh.read_text() == kept.read_text(), f"{CLUSTER_OUTPUT} is stale: run `make pipeline-compile` and commit it"
    spec = next(yaml.safe_load_all(kept.read_text()))
    default = json.loads(spec["root"]["inputDefinitions"]["parameters"]["params_json"]["defaultValue"])
    check_cluster(params_from_dict(default))  # what a bare `kfp run create` runs: no laptop default
    assert default["mlflow"]["tracking_uri"] == "env" and default["train"]["model"] != "tiny"
    assert "sqlite" not in json.dumps(default) and default["paths"]["mirror"] == "/mnt/mirror"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"--package-file {CLUSTER_OUTPUT}" in readme and "--package-file pipelines/compiled/dagllm.yaml" not in readme


def test_laptop_defaults_fail_with_one_error_naming_each(tmp_path: Path):
    with pytest.raises(ClusterProfileError) as err:
        compile_pipeline(load_params(REPO / "params.yaml"), tmp_path / "p.yaml", cluster=True)
    text = str(err.value)
    assert "mlflow.tracking_uri='sqlite:///mlflow.db'" in text
    assert "paths.mirror='auto'" in text and "train.model='tiny'" in text
    assert "pipelines/cluster.yaml" in text  # the fix
    assert not (tmp_path / "p.yaml").exists()


def test_laptop_compile_is_unchanged_without_cluster(tmp_path: Path):
    compile_pipeline(load_params(REPO / "params.yaml"), tmp_path / "p.yaml")  # the kfp.local / test path
    assert (tmp_path / "p.yaml").is_file()


def test_explicit_allowance_lets_a_smoke_test_through():
    data = load_params(REPO / "params.yaml").to_dict()
    data["kubeflow"]["allow_laptop_defaults"] = ["sqlite", "samples", "tiny"]
    check_cluster(params_from_dict(data))
    data["kubeflow"]["allow_laptop_defaults"] = ["sqlite", "samples"]
    with pytest.raises(ClusterProfileError, match="tiny") as err:
        check_cluster(params_from_dict(data))
    assert "sqlite" not in str(err.value)


@pytest.mark.parametrize(("over", "needle"), [
    ({"paths__mirror": "/data/mirror"}, "not on a mounted volume"),
    ({"kubeflow__mirror_pvc": None}, "not on a mounted volume"),
    ({"train__model_path": None}, "base weights"),
    ({"train__model_path": "/home/me/polyglot"}, "base weights"),
    ({"mlflow__tracking_uri": "/srv/mlruns"}, "its own store"),
])
def test_each_cluster_requirement(over: dict, needle: str):
    with pytest.raises(ClusterProfileError, match=needle):
        check_cluster(params_from_dict(_cluster(**over)))


def test_profile_spec_has_no_laptop_state(tmp_path: Path):
    pipeline, k8s = _compiled(params_from_dict(_cluster()), tmp_path)
    text = json.dumps(pipeline)
    assert "sqlite" not in text and "/catalog/samples" not in text
    default = json.loads(pipeline["root"]["inputDefinitions"]["parameters"]["params_json"]["defaultValue"])
    assert default["mlflow"]["tracking_uri"] == "env"
    assert default["paths"]["mirror"].startswith(default["kubeflow"]["mirror_mount"])
    assert default["train"]["model_path"].startswith(default["kubeflow"]["model_mount"])
    ingest = k8s["exec-ingest-op"]
    assert [(m["constant"], m["mountPath"]) for m in ingest["pvcMount"]] == [("dagllm-mirror", "/mnt/mirror")]
    assert "secretAsEnv" not in ingest
    assert [m["constant"] for m in k8s["exec-train-op"]["pvcMount"]] == ["dagllm-models"]  # base weights
    envs = {e["envVar"] for s in k8s["exec-register-op"]["secretAsEnv"] for e in s["keyToEnv"]}
    assert "MLFLOW_TRACKING_URI" in envs


def test_tracking_uri_comes_from_the_pod_environment(monkeypatch: pytest.MonkeyPatch):
    data = json.dumps(_cluster())
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://dagllm-mlflow.kubeflow-user.svc:5000")
    assert steps._params(data).mlflow.tracking_uri == "http://dagllm-mlflow.kubeflow-user.svc:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with pytest.raises(RuntimeError, match="dagllm-mlflow Secret"):
        steps._params(data)


def test_relative_runtime_files_resolve_through_dagllm_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from dagllm.paths import runtime_file
    from dagllm.registry.policy import load_policy

    home = tmp_path / "home"
    (home / "mlflow").mkdir(parents=True)
    (home / "mlflow/promotion_policy.yaml").write_text((REPO / "mlflow/promotion_policy.yaml").read_text())
    monkeypatch.chdir(tmp_path)  # no mlflow/ here, as in a task container's working directory
    monkeypatch.delenv("DAGLLM_HOME", raising=False)
    assert runtime_file("mlflow/promotion_policy.yaml") == Path("mlflow/promotion_policy.yaml")
    monkeypatch.setenv("DAGLLM_HOME", str(home))
    assert load_policy("mlflow/promotion_policy.yaml").primary.metric
    assert runtime_file("/abs/policy.yaml") == Path("/abs/policy.yaml")
