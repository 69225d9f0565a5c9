"""k8s/: every overlay renders with `kubectl kustomize`, validates against the Kubernetes schemas
(kubernetes-validate), and follows the project's policy (pinned images, limits, non-root, no
plain-text secrets). No API server runs here: this is what can be checked offline.
"""

import copy
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from dagllm.params import load_params

from ..conftest import REPO

K8S = REPO / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").is_file())
K8S_VERSION = "1.32.0"
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|_URI$|CREDENTIAL", re.I)

def _render(overlay: str, root: Path = K8S) -> list[dict]:
    """The objects of ``root/overlays/overlay`` as ``kubectl kustomize`` renders them."""
    assert shutil.which("kubectl"), "kubectl is needed to render the overlays (.ci/run installs it)"
    out = subprocess.run(["kubectl", "kustomize", str(root / "overlays" / overlay)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, _render(request.param)


def _pod_templates(doc: dict) -> list[tuple[str, dict]]:
    """(where, pod template) of a workload, including each replica of a PyTorchJob."""
    if doc["kind"] in WORKLOADS:
        return [(f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"])]
    if doc["kind"] == "PyTorchJob":
        return [(f"PyTorchJob/{doc['metadata']['name']}/{role}", spec["template"])
                for role, spec in doc["spec"]["pytorchReplicaSpecs"].items()]
    return []


def test_overlays_exist():
    assert {"dev", "prod"} <= set(OVERLAYS)


def test_schemas(rendered):
    """Built-in kinds against the Kubernetes schemas; the PyTorchJob's pod templates as PodTemplates."""
    name, docs = rendered
    for doc in docs:
        if doc["apiVersion"].startswith("kubeflow.org/"):
            for where, tmpl in _pod_templates(doc):
                wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "x"}, "template": tmpl}
                kubernetes_validate.validate(wrapped, K8S_VERSION, strict=True)
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "PersistentVolumeClaim", "ServiceAccount", "Role", "RoleBinding",
            "NetworkPolicy", "ConfigMap"} <= kinds, name


def test_schema_check_can_fail():
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
           "spec": {"replicas": "two", "selector": {}, "template": {}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def _violations(docs: list[dict]) -> list[str]:
    found = []
    for doc in docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind == "Secret" and (doc.get("data") or doc.get("stringData")):
            found.append(f"Secret/{name}: secret values in the manifests")
        for where, tmpl in _pod_templates(doc):
            pod = tmpl["spec"]
            psc = pod.get("securityContext", {})
            for c in pod.get("initContainers", []) + pod["containers"]:
                at = f"{where}/{c['name']}"
                image = c["image"]
                tag = image.split("@")[0].rpartition(":")[2] if ":" in image.split("/")[-1] else ""
                if not tag or tag == "latest":
                    found.append(f"{at}: image {image} has no pinned tag")
                res = c.get("resources", {})
                for part in ("requests", "limits"):
                    if not {"cpu", "memory"} <= set(res.get(part, {})):
                        found.append(f"{at}: resources.{part} lacks cpu or memory")
                sc = c.get("securityContext", {})
                if not (sc.get("runAsNonRoot", psc.get("runAsNonRoot")) and sc.get("runAsUser", psc.get("runAsUser"))):
                    found.append(f"{at}: not runAsNonRoot with a runAsUser")
                if sc.get("allowPrivilegeEscalation") is not False or sc.get("privileged"):
                    found.append(f"{at}: allowPrivilegeEscalation must be false, no privileged")
                if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                    found.append(f"{at}: capabilities must drop ALL")
                for env in c.get("env", []):
                    if SECRETISH.search(env["name"]) and "value" in env:
                        found.append(f"{at}: env {env['name']} is a plain value; use a secretKeyRef")
    return found


def test_policy(rendered):
    name, docs = rendered
    assert _violations(docs) == [], name


def test_policy_catches_violations(rendered):
    _, docs = rendered
    deploy = copy.deepcopy(next(d for d in docs if d["kind"] == "Deployment"))
    c = deploy["spec"]["template"]["spec"]["containers"][0]
    c["image"] = "ghcr.io/mlflow/mlflow:latest"
    del c["resources"]["limits"]
    c["securityContext"]["allowPrivilegeEscalation"] = True
    c["env"].append({"name": "AWS_SECRET_ACCESS_KEY", "value": "hunter2"})
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}}
    found = "\n".join(_violations([deploy, secret]))
    for expected in ("no pinned tag", "resources.limits", "allowPrivilegeEscalation", "plain value", "secret values"):
        assert expected in found


def test_workloads_use_the_pinned_project_images(rendered):
    _, docs = rendered
    images = load_params(REPO / "params.yaml").kubeflow.images
    by_where = {where: [c["image"] for c in t["spec"]["containers"]] for d in docs for where, t in _pod_templates(d)}
    assert by_where["Deployment/mlflow"] == [images.cpu]


def test_applying_an_overlay_starts_no_gpu_pods(rendered):
    """Training is started by the pipeline's train step only; nothing rendered asks for a GPU."""
    name, docs = rendered
    jobs = [d for d in docs if d["apiVersion"].startswith(("kubeflow.org/", "trainer.kubeflow.org/")) and d["kind"] != "Profile"]
    assert not jobs, name  # the Profile (kubeflow.org/v1) is the overlay's namespace, not a job
    for d in docs:
        for where, tmpl in _pod_templates(d):
            for c in tmpl["spec"]["containers"]:
                for kind in ("requests", "limits"):
                    assert not any("gpu" in k for k in c.get("resources", {}).get(kind, {})), (name, where)


def test_secret_references_are_documented(rendered):
    """Every Secret the manifests and the pipeline reference is listed in docs/deploy.md."""
    _, docs = rendered
    refs = set(re.findall(r"secretKeyRef: \{name: ([\w-]+)", "\n".join(
        p.read_text() for p in K8S.rglob("*.yaml"))))
    refs |= {s.name for s in load_params(REPO / "params.yaml").kubeflow.secrets}
    deploy = (REPO / "docs/deploy.md").read_text()
    missing = sorted(r for r in refs if f"create secret generic {r} " not in deploy)
    assert not missing, f"docs/deploy.md does not show how to create: {missing}"


def test_serve_has_a_documented_place():
    base = (K8S / "base/kustomization.yaml").read_text()
    assert "# - ../serve" in base or "- ../serve" in base
    assert "k8s/serve/" in (K8S / "README.md").read_text()


def test_no_secret_material_in_the_tree():
    for path in list(K8S.rglob("*")) + [REPO / "params.yaml", REPO / ".dvc/config"]:
        if path.is_file():
            text = path.read_text()
            assert not re.search(r"(?i)(secret_access_key|password)\s*[:=]\s*['\"]?[A-Za-z0-9/+]{12,}", text), path
            assert "kind: Secret" not in text, path


def test_mlflow_reachable_with_auth_and_one_migration(rendered):
    """In-cluster clients send Host: mlflow:5000, so every allowed host carries the port; the server
    runs MLflow's basic-auth app; one Job migrates, each replica waits for it; uploads have room."""
    _, docs = rendered
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("dagllm-mlflow-config"))
    hosts = cm["data"]["allowed_hosts"].split(",")
    service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "mlflow")
    port = service["spec"]["ports"][0]["port"]
    assert hosts and all(h.rsplit(":", 1)[-1] == str(port) for h in hosts), hosts
    assert f"mlflow:{port}" in hosts
    deploy = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "mlflow")
    pod = deploy["spec"]["template"]["spec"]
    server = pod["containers"][0]
    assert "--app-name=basic-auth" in server["args"]
    env = {e["name"]: e for e in server["env"]}
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "dagllm-mlflow-auth"
    assert [c["name"] for c in pod.get("initContainers", [])] == ["wait-for-schema"]
    jobs = [d for d in docs if d["kind"] == "Job" and "upgrade" in d["spec"]["template"]["spec"]["containers"][0]["command"]]
    assert len(jobs) == 1 and jobs[0]["spec"]["template"]["spec"]["containers"][0]["command"][:3] == ["mlflow", "db", "upgrade"]
    # the auth store too, first, from the same basic_auth.ini as the server's (the Secret's key)
    job = jobs[0]["spec"]["template"]["spec"]
    assert [c["name"] for c in job["initContainers"]] == ["upgrade-auth"]
    for spec, c in ((job, job["initContainers"][0]), (pod, pod["initContainers"][0]), (pod, server)):
        ini = next(e["value"] for e in c["env"] if e["name"] == "MLFLOW_AUTH_CONFIG_PATH")
        mount = next(m for m in c["volumeMounts"] if ini.startswith(m["mountPath"] + "/"))
        volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
        assert volume["secret"]["secretName"] == "dagllm-mlflow-auth" and mount["readOnly"], c["name"]
        assert {"key": "basic_auth.ini", "path": ini.rsplit("/", 1)[1]} in volume["secret"]["items"], c["name"]
    tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
    assert int(tmp["emptyDir"]["sizeLimit"].removesuffix("Gi")) >= 24  # a 5.8b model (11.6 GB) spools here


UNITS = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def _bytes(quantity: str) -> float:
    """A Kubernetes quantity (24Gi, 500M, 1.5Ti) in bytes."""
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", quantity).groups()
    return float(number) * UNITS[unit]


def test_mlflow_keeps_the_bases_ephemeral_storage(rendered):
    """Proxied uploads spool on the node's ephemeral storage: no overlay may drop or shrink the
    base's request and limit for it (a patch that replaces the whole resources block would)."""
    name, docs = rendered
    base = yaml.safe_load((K8S / "base/mlflow/deployment.yaml").read_text())
    want = next(c for c in base["spec"]["template"]["spec"]["containers"] if c["name"] == "mlflow")["resources"]
    deploy = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "mlflow")
    got = next(c for c in deploy["spec"]["template"]["spec"]["containers"] if c["name"] == "mlflow")["resources"]
    for part in ("requests", "limits"):
        assert "ephemeral-storage" in got.get(part, {}), (name, part, got)
        assert _bytes(got[part]["ephemeral-storage"]) >= _bytes(want[part]["ephemeral-storage"]), (name, part, got)


def test_quantities():
    assert [_bytes(q) for q in ("24Gi", "500M", "1.5Ti", "7")] == [24 * 2**30, 5e8, 1.5 * 2**40, 7]


def test_pvcs_name_a_storage_class_and_the_profile_volumes_exist(rendered):
    _, docs = rendered
    pvcs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PersistentVolumeClaim"}
    assert all(p["spec"].get("storageClassName") for p in pvcs.values()), sorted(pvcs)
    profile = yaml.safe_load((REPO / "pipelines/cluster.yaml").read_text())
    params = load_params(REPO / "params.yaml")
    assert {profile["kubeflow"]["mirror_pvc"], params.kubeflow.model_pvc} <= set(pvcs)


def test_network_policies_admit_only_what_must_talk(rendered):
    _, docs = rendered
    for pol in (d for d in docs if d["kind"] == "NetworkPolicy"):
        for rule in pol["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                assert "namespaceSelector" not in peer, pol["metadata"]["name"]  # no whole namespaces
                assert peer["podSelector"].get("matchLabels"), pol["metadata"]["name"]  # no "any pod"
    role = next(d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "dagllm-pipeline-runner")
    for rule in role["rules"]:
        if "secrets" in rule["resources"]:
            assert rule["resourceNames"] == ["mlpipeline-minio-artifact"] and rule["verbs"] == ["get"]


def test_serve_renders_validates_and_names_its_env():
    out = subprocess.run(["kubectl", "kustomize", str(K8S / "serve")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    c = deploy["spec"]["template"]["spec"]["containers"][0]
    assert "envFrom" not in c  # envFrom of a Secret yields its lowercase key names as variables
    names = {e["name"] for e in c["env"]}
    assert {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} <= names
    pol = next(d for d in docs if d["kind"] == "NetworkPolicy")
    assert pol["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8000}]


def test_the_pipeline_pods_mlflow_admits_are_labelled_so():
    """The mlflow-ingress policy's pipeline label is what the compiler puts on train/evaluate/register."""
    from pipelines.dagllm_pipeline import MLFLOW_CLIENT_LABEL, SERVICE_TASKS

    pol = next(d for d in yaml.safe_load_all((K8S / "base/networkpolicy.yaml").read_text())
               if d["metadata"]["name"] == "mlflow-ingress")
    assert {MLFLOW_CLIENT_LABEL: "true"} in [p["podSelector"]["matchLabels"] for p in pol["spec"]["ingress"][0]["from"]]
    _, platform = yaml.safe_load_all((REPO / "pipelines/compiled/dagllm.yaml").read_text())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    labelled = {n.removeprefix("exec-").removesuffix("-op") for n, e in executors.items()
                if e.get("podMetadata", {}).get("labels", {}).get(MLFLOW_CLIENT_LABEL) == "true"}
    assert labelled == set(SERVICE_TASKS)
