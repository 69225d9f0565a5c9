"""Cluster settings in the compiled spec: the Kubernetes platform section and the task resources."""

import json
from pathlib import Path

import pytest
import yaml

from components.stages import BASE_IMAGE
from dagllm.params import ParamsError, load_params, params_from_dict
from dagllm.pipeline.artifacts import confusion_matrix, model_files
from dagllm.pipeline.artifacts import model_files_for as _model_files_for

from ..conftest import REPO, small_params

COMPILED = REPO / "pipelines/compiled/dagllm.yaml"
PARAMS = load_params(REPO / "params.yaml")


@pytest.fixture(scope="module")
def docs():
    pipeline, platform = yaml.safe_load_all(COMPILED.read_text())
    return pipeline, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_every_task_has_requests_and_limits(docs):
    pipeline, _ = docs
    executors = pipeline["deploymentSpec"]["executors"]
    assert len(executors) == 9  # 8 stages + fingerprint
    for name, ex in executors.items():
        res = ex["container"]["resources"]
        for key in ("resourceCpuRequest", "resourceCpuLimit", "resourceMemoryRequest", "resourceMemoryLimit"):
            assert res.get(key), f"{name}: {key} missing"
    train = executors["exec-train-op"]["container"]["resources"]
    assert train["resourceMemoryLimit"] == PARAMS.kubeflow.resources["train"].memory_limit


def test_gpu_node_selector_tolerations_only_on_train_and_evaluate(docs):
    pipeline, k8s = docs
    executors = pipeline["deploymentSpec"]["executors"]
    for name in ("train", "evaluate"):
        acc = executors[f"exec-{name}-op"]["container"]["resources"]["accelerator"]
        assert acc["resourceType"] == "nvidia.com/gpu" and acc["resourceCount"] == "1"
        assert k8s[f"exec-{name}-op"]["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
        assert k8s[f"exec-{name}-op"]["tolerations"] == [{"effect": "NoSchedule", "key": "nvidia.com/gpu",
                                                          "operator": "Exists"}]
    for name in ("ingest", "render", "validate", "balance", "register"):
        assert "accelerator" not in executors[f"exec-{name}-op"]["container"]["resources"]
        assert "nodeSelector" not in k8s.get(f"exec-{name}-op", {})


def test_pvc_secrets_and_shm(docs):
    _, k8s = docs
    for name in ("train", "evaluate", "register"):
        ex = k8s[f"exec-{name}-op"]
        assert [(m["constant"], m["mountPath"]) for m in ex["pvcMount"]] == [("dagllm-models", "/mnt/models")]
        envs = {e["envVar"]: (s["secretName"], e["secretKey"]) for s in ex["secretAsEnv"] for e in s["keyToEnv"]}
        assert envs["MLFLOW_TRACKING_PASSWORD"] == ("dagllm-mlflow", "password")
        assert envs["MLFLOW_TRACKING_URI"] == ("dagllm-mlflow", "uri")
        assert not any(e.startswith("AWS_") for e in envs)  # artifacts go through the MLflow proxy
    assert k8s["exec-train-op"]["emptyDirMounts"] == [{"medium": "Memory", "mountPath": "/dev/shm",
                                                        "sizeLimit": "16Gi", "volumeName": "dshm"}]
    for name in ("fingerprint", "ingest", "render", "validate", "decontaminate", "balance"):  # no secret, no PVC
        # and the CPU image by tag: pulled each time (a tag can be pushed again)
        assert set(k8s[f"exec-{name}-op"]) == {"securityContext", "imagePullPolicy"}
        assert k8s[f"exec-{name}-op"]["imagePullPolicy"] == "Always"


def test_every_pod_runs_as_the_images_non_root_user(docs):
    pipeline, k8s = docs
    assert len(k8s) == len(pipeline["root"]["dag"]["tasks"]) == 9
    for name, ex in k8s.items():
        assert ex["securityContext"] == {"runAsUser": "1000", "runAsGroup": "1000", "runAsNonRoot": True}, name


def test_retries_caching_display_names(docs):
    pipeline, _ = docs
    tasks = pipeline["root"]["dag"]["tasks"]
    for name in ("train-op", "evaluate-op", "register-op"):
        assert tasks[name]["retryPolicy"]["maxRetryCount"] == 3
    assert "retryPolicy" not in tasks["render-op"]
    cached = {n for n, t in tasks.items() if t["cachingOptions"].get("enableCache")}
    # not fingerprint-op (digests the sources each run) nor register-op; not the CUDA image's tasks while that
    # image is a tag (params.yaml): fingerprint, in the CPU image, cannot digest their code
    assert cached == {"ingest-op", "render-op", "validate-op", "decontaminate-op", "balance-op"}
    assert all(t["taskInfo"]["name"] != n for n, t in tasks.items())  # every task has a display name


def test_typed_outputs(docs):
    pipeline, _ = docs
    outs = pipeline["components"]["comp-evaluate-op"]["outputDefinitions"]["artifacts"]
    assert outs["eval_table"]["artifactType"]["schemaTitle"] == "system.Markdown"
    assert outs["confusion"]["artifactType"]["schemaTitle"] == "system.ClassificationMetrics"
    assert outs["eval_chart"]["artifactType"]["schemaTitle"] == "system.HTML"
    docs_out = pipeline["components"]["comp-validate-op"]["outputDefinitions"]["artifacts"]["data_docs"]
    assert docs_out["artifactType"]["schemaTitle"] == "system.HTML"


def test_images_come_from_params(docs):
    pipeline, _ = docs
    images = {n: e["container"]["image"] for n, e in pipeline["deploymentSpec"]["executors"].items()}
    assert images.pop("exec-train-op") == PARAMS.kubeflow.images.train
    # evaluate asks for a GPU in params.yaml: it runs in the CUDA (training) image
    assert PARAMS.kubeflow.gpu["evaluate"].count > 0 and images.pop("exec-evaluate-op") == PARAMS.kubeflow.images.train
    assert set(images.values()) == {PARAMS.kubeflow.images.cpu} == {BASE_IMAGE}


def test_cluster_params_are_checked():
    bad = small_params()
    bad["kubeflow"] = {"images": {"cpu": "ghcr.io/dagllm/dagllm:latest"}}
    with pytest.raises(ParamsError, match="latest"):
        params_from_dict(bad)
    bad["kubeflow"] = {"resources": {"train": {"memory_limit": "lots"}}}
    with pytest.raises(ParamsError, match="kubeflow.resources.train.memory_limit"):
        params_from_dict(bad)
    bad["kubeflow"] = {"resources": {"trian": {}}}
    with pytest.raises(ParamsError, match="trian"):
        params_from_dict(bad)


def test_confusion_matrix_from_samples(tmp_path: Path):
    samples = tmp_path / "s.jsonl"
    rows = [(0, [-1.0, -2.0]), (0, [-3.0, -2.0]), (1, [-5.0, -1.0]), (1, [-0.5, -1.0])]
    samples.write_text("\n".join(json.dumps({"target": t, "loglikelihoods": ll}) for t, ll in rows))
    assert confusion_matrix(samples) == (["0", "1"], [[1, 1], [1, 1]])
    samples.write_text(json.dumps({"target": "text", "loglikelihoods": []}))
    assert confusion_matrix(samples) is None and confusion_matrix(tmp_path / "absent.jsonl") is None


def test_model_files_on_the_pvc(tmp_path: Path):
    data = small_params()
    data["kubeflow"] = {"model_pvc": "dagllm-models", "model_mount": str(tmp_path / "pvc")}
    p = params_from_dict(data)
    with pytest.raises(FileNotFoundError, match="not mounted"):
        _model_files_for(p, tmp_path / "artifact")
    (tmp_path / "pvc").mkdir()
    target = _model_files_for(p, tmp_path / "artifact")
    assert target.is_relative_to(tmp_path / "pvc") and model_files(tmp_path / "artifact") == target
    assert _model_files_for(p, tmp_path / "other") != target  # one folder per artifact (run, task)
    data["kubeflow"]["model_pvc"] = None
    assert _model_files_for(params_from_dict(data), tmp_path / "x") == tmp_path / "x" / "hf" == model_files(tmp_path / "x")


def test_overrides_reach_nested_cluster_settings():
    p = load_params(REPO / "params.yaml", ["kubeflow.resources.train.memory_limit=8Gi", "kubeflow.gpu.evaluate.count=0"])
    assert p.kubeflow.resources["train"].memory_limit == "8Gi" and p.kubeflow.gpu["evaluate"].count == 0
    with pytest.raises(ParamsError, match="allowed at kubeflow.resources.train: cpu_limit"):
        load_params(REPO / "params.yaml", ["kubeflow.resources.train.memory_limt=8Gi"])


def test_a_root_owned_volume_is_refused_with_the_fix(tmp_path: Path):
    """A PVC whose root belongs to root (0755), as a fresh NFS export is: uid 1000 cannot write it,
    and KFP sets no fsGroup on task pods. As a non-root user, the step refuses it up front."""
    import os

    from dagllm.pipeline.artifacts import check_writable

    pvc = tmp_path / "pvc"
    pvc.mkdir()
    pvc.chmod(0o755)

    def attempt() -> str:
        with pytest.raises(PermissionError) as err:
            check_writable(pvc, "kubeflow.model_pvc='dagllm-models'")
        return str(err.value)

    if os.geteuid() != 0:  # not root: a folder we may not write
        pvc.chmod(0o555)
        text = attempt()
    else:  # root writes anything: the check runs in a child that became uid/gid 1000, as a task pod runs
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.close(read)
            try:
                os.setgid(1000)
                os.setuid(1000)
                os.write(write, attempt().encode())
            finally:
                os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        with os.fdopen(read) as f:
            text = f.read()
    assert "not writable by uid" in text and "chown" in text and "dagllm-models" in text
