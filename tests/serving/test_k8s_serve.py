"""k8s/serve renders with kustomize, validates against the Kubernetes schemas, and keeps the policies."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.33.0"


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is needed to render k8s/serve (kubectl kustomize)")
    out = subprocess.run([kubectl, "kustomize", str(REPO / "k8s" / "serve")], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    return {d["kind"]: d for d in yaml.safe_load_all(out) if d}


def test_every_resource_validates_strictly(rendered):
    import kubernetes_validate

    assert set(rendered) == {"ConfigMap", "Deployment", "Service", "NetworkPolicy"}
    for doc in rendered.values():
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_strict_validation_catches_a_typo(rendered):
    import kubernetes_validate

    bad = yaml.safe_load(yaml.safe_dump(rendered["Deployment"]))
    bad["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_container_policies(rendered):
    pod = rendered["Deployment"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    image = c["image"]
    assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")
    assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and {"cpu", "memory"} <= set(c["resources"]["limits"])
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" and c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]


def test_uris_come_from_the_configmap_and_reach_the_cli(rendered):
    from dagllm.params import load_params

    c = rendered["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    cm = rendered["ConfigMap"]
    refs = {e["name"]: e["valueFrom"]["configMapKeyRef"] for e in c["env"] if "configMapKeyRef" in e.get("valueFrom", {})}
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    # the MLflow login comes from the Secret, under the names MLflow's client reads
    assert {n: r["name"] for n, r in secrets.items()} == {"MLFLOW_TRACKING_USERNAME": "dagllm-mlflow",
                                                           "MLFLOW_TRACKING_PASSWORD": "dagllm-mlflow"}
    assert {r["name"] for r in refs.values()} == {cm["metadata"]["name"]}  # the generated (hashed) name
    assert set(refs) == {"DAGLLM_MODEL_URI", "MLFLOW_TRACKING_URI"} <= set(cm["data"])
    assert c["command"][:2] == ["dagllm", "serve"]
    # the overrides in args are valid for params.yaml once Kubernetes has expanded $(VAR)
    expanded = [a.replace("$(DAGLLM_MODEL_URI)", cm["data"]["DAGLLM_MODEL_URI"])
                 .replace("$(MLFLOW_TRACKING_URI)", cm["data"]["MLFLOW_TRACKING_URI"]) for a in c["args"]]
    p = load_params(REPO / "params.yaml", expanded)
    assert p.serve.host == "0.0.0.0" and p.serve.model_uri == cm["data"]["DAGLLM_MODEL_URI"]
    port = c["ports"][0]
    assert port["containerPort"] == p.serve.port and rendered["Service"]["spec"]["ports"][0]["targetPort"] == port["name"]
    selector = rendered["Service"]["spec"]["selector"]
    assert selector and selector.items() <= rendered["Deployment"]["spec"]["template"]["metadata"]["labels"].items()
