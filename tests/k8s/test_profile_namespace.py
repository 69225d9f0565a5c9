"""Each overlay is a Kubeflow profile and what lives in its namespace.

Multi-user KFP runs a pipeline's pods in the profile's namespace, as the service account the run
names; KFP's driver and launcher there read the kfp-launcher ConfigMap and the artifact store's
Secret (mlpipeline-minio-artifact) through the API. No API server runs here: the Profile is checked
against a subset of its published CRD schema, the rest against what submit sends and the params.
"""

import json
import re

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from dagllm.cli import app
from dagllm.params import load_params
from pipelines.dagllm_pipeline import with_profile

from ..conftest import REPO
from ..pipeline.kfp_server import KfpStandIn
from .test_manifests import K8S, OVERLAYS, _pod_templates, _render

PROFILE_PARAMS = REPO / "pipelines/cluster.yaml"
PLACEHOLDER = "PROFILE-OWNER@example.com"

# Written from the published CRD profiles.kubeflow.org, version v1 (kubeflow/kubeflow,
# components/profile-controller/config/crd/bases/kubeflow.org_profiles.yaml): scope Cluster;
# spec.owner is an rbac Subject (kind and name required); plugins a list of {apiVersion, kind, spec};
# resourceQuotaSpec a ResourceQuotaSpec. additionalProperties: false stands for kubectl's strict
# field validation (unknown fields are an error, not silently pruned). The name becomes the
# namespace's, so it must be a DNS label (Kubernetes' rule for namespace names).
_QUANTITY = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
PROFILE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "kubeflow.org/v1"},
        "kind": {"const": "Profile"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "not": {"required": ["namespace"]},  # cluster-scoped
            "properties": {
                "name": {"type": "string", "maxLength": 63, "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "owner": {
                    "type": "object",
                    "required": ["kind", "name"],
                    "additionalProperties": False,
                    "properties": {"apiGroup": {"type": "string"}, "kind": {"type": "string"},
                                   "name": {"type": "string"}, "namespace": {"type": "string"}},
                },
                "plugins": {"type": "array", "items": {
                    "type": "object", "additionalProperties": False,
                    "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                                   "spec": {"type": "object"}}}},
                "resourceQuotaSpec": {
                    "type": "object", "additionalProperties": False,
                    "properties": {
                        "hard": {"type": "object", "additionalProperties": {
                            "anyOf": [{"type": "integer"}, {"type": "string", "pattern": _QUANTITY}]}},
                        "scopeSelector": {"type": "object"},
                        "scopes": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
    },
}

# What the runner Role must grant, from what the pods do (Argo workflow RBAC; KFP's driver and
# launcher), and so exactly what it may grant.
RUNNER_RULES = [
    {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]},
    # pods list and pods/log: the multi-node train step reads its TrainJob's node-0 log (training/trainjob.py)
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["kfp-launcher"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["mlpipeline-minio-artifact"], "verbs": ["get"]},
    {"apiGroups": ["trainer.kubeflow.org"], "resources": ["trainjobs"],
     "verbs": ["create", "get", "list", "watch", "delete"]},
]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request) -> tuple[str, dict, list[dict]]:
    """(overlay, its Profile, every other rendered object)."""
    docs = _render(request.param)
    profiles = [d for d in docs if d["kind"] == "Profile"]
    assert len(profiles) == 1, f"k8s/overlays/{request.param} must declare exactly one Profile"
    return request.param, profiles[0], [d for d in docs if d["kind"] != "Profile"]


def test_profile_validates_against_the_crd_schema(overlay):
    name, profile, _ = overlay
    jsonschema.validate(profile, PROFILE_SCHEMA)
    assert profile["spec"]["owner"]["kind"] == "User", name


@pytest.mark.parametrize("breaks", [
    lambda p: p["spec"]["owner"].pop("name"),
    lambda p: p["metadata"].__setitem__("namespace", "dagllm"),
    lambda p: p["metadata"].__setitem__("name", "Dagllm_Dev"),
    lambda p: p["spec"].__setitem__("owners", [p["spec"]["owner"]]),
    lambda p: p["spec"].__setitem__("resourceQuotaSpec", {"hard": {"requests.cpu": "lots"}}),
])
def test_profile_schema_can_fail(overlay, breaks):
    _, profile, _ = overlay
    bad = json.loads(json.dumps(profile))
    breaks(bad)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, PROFILE_SCHEMA)


def test_owner_placeholder_is_documented(overlay):
    """The owner in git is a placeholder; docs/deploy.md has the command that sets it."""
    name, profile, _ = overlay
    assert profile["spec"]["owner"]["name"] == PLACEHOLDER
    deploy = (REPO / "docs/deploy.md").read_text()
    assert f"s/{PLACEHOLDER}/" in deploy and "k8s/overlays/$ENV/profile.yaml" in deploy
    assert f"ENV={name} NS={profile['metadata']['name']}" in deploy


def test_every_namespaced_object_is_in_the_profile_namespace(overlay):
    name, profile, docs = overlay
    ns = profile["metadata"]["name"]
    assert not [d for d in docs if d["kind"] == "Namespace"], "the profile controller creates the namespace"
    elsewhere = [f"{d['kind']}/{d['metadata']['name']}: {d['metadata'].get('namespace')}"
                 for d in docs if d["metadata"].get("namespace") != ns]
    assert not elsewhere, f"{name}: not in the profile namespace {ns}: {elsewhere}"
    for binding in (d for d in docs if d["kind"] == "RoleBinding"):
        assert {s.get("namespace") for s in binding["subjects"]} == {ns}, binding["metadata"]["name"]


def test_cluster_profile_namespace_is_the_prod_profile():
    """`submit --profile pipelines/cluster.yaml` targets the prod overlay's profile namespace; dev is
    reached with kubeflow.namespace=dagllm-dev (docs/deploy.md), which is the dev overlay's profile."""
    names = {o: yaml.safe_load((K8S / f"overlays/{o}/profile.yaml").read_text())["metadata"]["name"] for o in OVERLAYS}
    merged = with_profile(load_params(REPO / "params.yaml"), PROFILE_PARAMS)
    assert merged.kubeflow.namespace == names["prod"]
    assert load_params(REPO / "params.yaml").kubeflow.namespace is None  # the laptop targets no KFP server
    assert f"kubeflow.namespace={names['dev']}" in (REPO / "docs/deploy.md").read_text()


def test_runner_role_is_exactly_what_the_launcher_needs(overlay):
    _, _, docs = overlay
    (role,) = [d for d in docs if d["kind"] == "Role"]
    assert role["metadata"]["name"] == "dagllm-pipeline-runner"
    assert role["rules"] == RUNNER_RULES
    assert not [d for d in docs if d["kind"] in {"ClusterRole", "ClusterRoleBinding"}]


def test_rolebinding_binds_the_service_account_runs_are_submitted_with(overlay):
    """The account `dagllm pipeline submit` names on the run (seen by a loopback KFP stand-in) is the
    RoleBinding's subject, a ServiceAccount of this overlay, in the profile namespace."""
    name, profile, docs = overlay
    ns = profile["metadata"]["name"]
    with KfpStandIn() as kfp:
        out = CliRunner().invoke(app, ["pipeline", "submit", "--host", kfp.url, "--params", str(REPO / "params.yaml"),
                                       "--profile", str(PROFILE_PARAMS), "--version-name", f"ns-{name}",
                                       f"kubeflow.namespace={ns}"], catch_exceptions=False)
        assert out.exit_code == 0, out.output
        (run,) = kfp.state.runs.values()
    account = run["service_account"]
    (binding,) = [d for d in docs if d["kind"] == "RoleBinding"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "dagllm-pipeline-runner"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": ns}]
    assert account in {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"}


def test_no_object_asks_for_a_gpu(overlay):
    """Applying an overlay never schedules GPU work: no GPU resource, selector or toleration anywhere."""
    name, profile, docs = overlay
    text = json.dumps([profile] + docs).lower()
    assert not re.search(r"gpu|nvidia|accelerator", text), name


def test_default_deny_covers_every_dagllm_pod_and_only_those(overlay):
    """The profile namespace also holds KFP's own pods (ml-pipeline-ui-artifact, reached by the KFP
    UI): the default deny selects dagllm's pods by label, and every dagllm pod carries it."""
    name, _, docs = overlay
    deny = next(d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "default-deny-ingress")
    selector = deny["spec"]["podSelector"]["matchLabels"]
    assert selector == {"app.kubernetes.io/part-of": "dagllm"}
    for doc in docs:
        for where, tmpl in _pod_templates(doc):
            labels = tmpl["metadata"]["labels"]
            assert selector.items() <= labels.items(), (name, where)
            # no Istio sidecar: a Job's would never exit, a server's would admit only meshed callers
            assert tmpl["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false", (name, where)
