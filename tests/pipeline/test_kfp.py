"""The KFP DAG: the kept YAML matches the code, and the DAG really runs under kfp.local."""

import json
from pathlib import Path

import pytest
import yaml

from dagllm.params import load_params, params_from_dict
from pipelines.dagllm_pipeline import compile_pipeline, localize, params_json, run_local

from ..conftest import REPO, registry, small_params

COMPILED = REPO / "pipelines/compiled/dagllm.yaml"
STAGES = ["ingest-op", "render-op", "validate-op", "decontaminate-op", "balance-op", "train-op", "evaluate-op", "register-op"]


def test_kept_yaml_matches_the_code(tmp_path: Path):
    fresh = compile_pipeline(load_params(REPO / "params.yaml"), tmp_path / "dagllm.yaml")
    assert fresh.read_text() == COMPILED.read_text(), (
        "pipelines/compiled/dagllm.yaml is stale: run `dagllm pipeline compile` and commit it")


def test_compiled_spec_wiring_and_defaults():
    spec = next(yaml.safe_load_all(COMPILED.read_text()))  # 2nd document: the Kubernetes platform spec
    tasks = spec["root"]["dag"]["tasks"]
    assert sorted(tasks) == sorted([*STAGES, "fingerprint-op"])
    default = spec["root"]["inputDefinitions"]["parameters"]["params_json"]["defaultValue"]
    assert json.loads(default) == load_params(REPO / "params.yaml").to_dict()
    assert tasks["register-op"]["cachingOptions"] == {}  # caching off: it talks to the registry
    assert tasks["fingerprint-op"]["cachingOptions"] == {}  # caching off: digests the mirror on every run
    assert tasks["ingest-op"]["cachingOptions"] == {"enableCache": True}  # keyed on the sources' digest
    for name in STAGES:  # each stage's params come from the fingerprint (its slice), not the whole params_json
        source = tasks[name]["inputs"]["parameters"]["params_json"]["taskOutputParameter"]
        assert source == {"producerTask": "fingerprint-op", "outputParameterKey": name.removesuffix("-op")}
    # the kept spec names the CUDA image by tag: fingerprint cannot digest that image's code, so its tasks are
    # not cached (a rebuild under the same tag would be served stale results)
    assert tasks["train-op"]["cachingOptions"] == tasks["evaluate-op"]["cachingOptions"] == {}
    assert sorted(tasks["balance-op"]["dependentTasks"]) == ["decontaminate-op", "fingerprint-op"]
    assert sorted(tasks["decontaminate-op"]["dependentTasks"]) == ["fingerprint-op", "ingest-op", "validate-op"]
    evaluate_inputs = tasks["evaluate-op"]["inputs"]["artifacts"]
    assert evaluate_inputs["model"]["taskOutputArtifact"]["producerTask"] == "train-op"
    # benchmark rows the gate kept (issue 14): the validate step's output, not the pre-gate table
    assert evaluate_inputs["canonical"]["taskOutputArtifact"]["producerTask"] == "validate-op"
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert len(images) == 2 and not any(i.endswith(":latest") for i in images)  # CPU image + training image


def test_localize_makes_paths_absolute(workdir: Path):
    p = localize(params_from_dict(small_params()))
    assert p.mlflow.tracking_uri == f"sqlite:///{workdir / 'mlflow.db'}"
    assert Path(p.paths.mirror).is_absolute() and Path(p.mlflow.artifact_root).is_absolute()
    assert json.loads(params_json(p))["paths"]["mirror"] == p.paths.mirror


@pytest.mark.slow
def test_whole_dag_runs_under_kfp_local(workdir: Path):
    result = run_local(params_from_dict(small_params(evaluate={"limit": 6})), workdir / "kfp", cache=True)
    assert result["registered_version"] == "1"
    client = registry(workdir / "mlflow.db")
    champion = client.get_model_version_by_alias("dagllm-ko", "champion")
    assert str(champion.version) == "1" and "metric.kobest_copa.acc" in champion.tags
    runs = [r for r in (workdir / "kfp").iterdir() if r.name != ".kfp_cache"]
    assert len(runs) == 1
    html = list((runs[0] / "validate-op").rglob("data_docs"))
    assert html and html[0].read_text().lstrip().lower().startswith("<!doctype html")
    table = list((runs[0] / "evaluate-op").rglob("eval_table"))
    assert table and "| kobest_copa | acc |" in table[0].read_text()
    model = next((runs[0] / "train-op").rglob("model"))
    assert (model / "hf" / "config.json").is_file()  # kfp.local: no PVC, the files stay in the artifact

    # Caching (KFP's keys, computed by kfp.local): an unchanged rerun executes only the uncached
    # fingerprint and register; a change to serve.* (read by no stage) changes nothing else; a
    # change to evaluate.* reruns evaluate only (train is reused).
    def executed(**sections) -> set[str]:
        before = {r.name for r in (workdir / "kfp").iterdir()}
        run_local(params_from_dict(small_params(**{"evaluate": {"limit": 6}, **sections})), workdir / "kfp", cache=True)
        (new,) = {r.name for r in (workdir / "kfp").iterdir()} - before
        return {t.name.removesuffix("-op") for t in (workdir / "kfp" / new).iterdir() if t.is_dir()}

    assert executed() == {"fingerprint", "register"}
    assert executed(serve={"port": 8123}) == {"fingerprint", "register"}
    assert executed(evaluate={"limit": 5}) == {"fingerprint", "evaluate", "register"}
    # the KFP experiment and the retries are read by no stage (train's slice holds only its own kubeflow fields)
    assert executed(kubeflow={"retries": 1, "experiment": "other"}) == {"fingerprint", "register"}

def test_tasks_in_the_cuda_image_are_cached_only_when_it_is_pinned_by_digest(tmp_path: Path):
    data = load_params(REPO / "params.yaml").to_dict()
    digest = "ghcr.io/dagllm/dagllm-train@sha256:" + "ab" * 32
    data["kubeflow"]["images"]["train"] = digest
    data["kubeflow"]["image_pull_secrets"] = ["ghcr-pull"]
    spec, platform = yaml.safe_load_all(compile_pipeline(params_from_dict(data), tmp_path / "p.yaml").read_text())
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["train-op"]["cachingOptions"] == tasks["evaluate-op"]["cachingOptions"] == {"enableCache": True}
    assert _image_of(spec, "train-op") == digest
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for task in STAGES:
        k8s = executors[spec["components"][tasks[task]["componentRef"]["name"]]["executorLabel"]]
        assert [s["secretName"] for s in k8s["imagePullSecret"]] == ["ghcr-pull"]
        # a tag can move: pods pull it every time; a digest cannot, so the node's copy is used
        assert k8s.get("imagePullPolicy") == (None if task in ("train-op", "evaluate-op") else "Always")


def _image_of(spec: dict, task: str) -> str:
    comp = spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]
    return spec["deploymentSpec"]["executors"][spec["components"][comp]["executorLabel"]]["container"]["image"]


def test_evaluate_runs_in_the_cuda_image_when_it_asks_for_a_gpu(tmp_path: Path):
    params = load_params(REPO / "params.yaml")
    images = params.kubeflow.images
    assert params.kubeflow.gpu["evaluate"].count > 0  # the default asks for a GPU
    spec = next(yaml.safe_load_all(COMPILED.read_text()))
    assert _image_of(spec, "evaluate-op") == _image_of(spec, "train-op") == images.train
    assert _image_of(spec, "ingest-op") == images.cpu
    data = params.to_dict()
    data["kubeflow"]["gpu"]["evaluate"]["count"] = 0  # no GPU: the CPU image (CPU torch)
    cpu_spec = next(yaml.safe_load_all(compile_pipeline(params_from_dict(data), tmp_path / "p.yaml").read_text()))
    assert _image_of(cpu_spec, "evaluate-op") == images.cpu
    assert "accelerator" not in json.dumps(cpu_spec["deploymentSpec"]["executors"][
        cpu_spec["components"][cpu_spec["root"]["dag"]["tasks"]["evaluate-op"]["componentRef"]["name"]]["executorLabel"]])
