"""k8s/connectivity.yaml, the flows that must work and those that must be refused, checked offline.

Each flow is evaluated (tests/k8s/netpol.py: NetworkPolicy semantics) against
(a) the NetworkPolicies of every rendered overlay, with k8s/serve included the way k8s/README.md
    enables it (``- ../serve`` in base/kustomization.yaml, in a copy of k8s/), and
(b) the labels the real producers give the pods: the compiled pipeline (cluster profile) for the
    KFP task pods, the TrainJob body of ``build_trainjob`` for the node pods, the rendered pod
    templates for MLflow, its migration Job, PostgreSQL and the chat server.
And the other way round: no pod those producers make reaches a dagllm server unless the table
lists it as that server's client. The evaluator itself is tested on the examples of the
Kubernetes NetworkPolicy documentation at the end.

What only a cluster shows: that its network plugin enforces the policies as documented.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from dagllm.params import Params, load_params
from dagllm.training.trainjob import NODE, build_trainjob, job_name
from pipelines.dagllm_pipeline import compile_pipeline, with_profile

from ..conftest import REPO
from .netpol import Pod, allowed, selecting
from .test_manifests import K8S, OVERLAYS, WORKLOADS, _render

TABLE = yaml.safe_load((K8S / "connectivity.yaml").read_text(encoding="utf-8"))
PODS: dict[str, dict[str, Any]] = TABLE["pods"]
FLOWS = [(kind, flow) for kind in ("must_work", "must_refuse") for flow in TABLE[kind]]
# the label KFP's compiler puts on every task pod of a v2 pipeline (its Argo workflow's podMetadata)
KFP_POD_LABELS = {"pipelines.kubeflow.org/v2_component": "true"}
# the port the Trainer torch plugin declares on the node container (pkg/constants ContainerTrainerPort)
TRAINER_PORT = 29500


@dataclass
class World:
    """One overlay as the policies see it: its namespace, its NetworkPolicies, every pod dagllm makes."""

    namespace: str
    policies: list[dict]
    pods: dict[str, Pod]  # by source: pipeline-task/NAME, trainjob/node, KIND/NAME

    def pod(self, key: str) -> Pod:
        """The pod of the table's ``pods`` entry ``key``."""
        entry = PODS[key]
        if entry["source"] == "example":
            return Pod(f"example/{key}", entry.get("namespace", self.namespace), entry["labels"],
                       tuple(entry.get("ports", ())))
        assert entry["source"] in self.pods, f"{key}: no pod {entry['source']} in this overlay"
        return self.pods[entry["source"]]

    def everyone(self) -> dict[str, Pod]:
        """Every pod made here and every example pod of the table, by source."""
        examples = {f"example/{k}": self.pod(k) for k, e in PODS.items() if e["source"] == "example"}
        return {**self.pods, **examples}


def _pipeline_pods(executors: dict[str, dict], namespace: str) -> dict[str, Pod]:
    """The KFP task pods of the compiled pipeline's executors, labelled as KFP labels them."""
    pods = {}
    for name, ex in executors.items():
        where = f"pipeline-task/{name.removeprefix('exec-').removesuffix('-op')}"
        pods[where] = Pod(where, namespace, {**KFP_POD_LABELS, **(ex.get("podMetadata", {}).get("labels") or {})})
    return pods


def _trainer_pod(params: Params, namespace: str) -> Pod:
    """A node pod of the train step's TrainJob: the patch's pod metadata plus what the controllers add."""
    train = params.train.model_copy(update={"num_nodes": 2})
    name = job_name(Path("/mnt/models/runs/x/hf"))
    body = build_trainjob(params, train, name, Path("/mnt/models/runs/x/trainjob/spec.json"))
    (patch,) = body["spec"]["runtimePatches"]
    (rjob,) = [j for j in patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"] if j["name"] == NODE]
    # no metadata in the patch: the pods get none of ours (Trainer v2.3 ignores the TrainJob's labels)
    labels = {**rjob["template"]["spec"]["template"].get("metadata", {}).get("labels", {}),
              # the JobSet and Job controllers' labels (the step finds rank 0's pod by them)
              "jobset.sigs.k8s.io/jobset-name": name, "jobset.sigs.k8s.io/replicatedjob-name": NODE,
              "batch.kubernetes.io/job-completion-index": "0"}
    return Pod("trainjob/node", namespace, labels, ({"containerPort": TRAINER_PORT, "protocol": "TCP"},))


def _workload_pods(docs: list[dict]) -> dict[str, Pod]:
    """The pods of the rendered workloads: their templates' labels, every container's ports."""
    pods = {}
    for d in docs:
        if d["kind"] in WORKLOADS:
            tmpl = d["spec"]["template"]
            ports = tuple(p for c in tmpl["spec"].get("initContainers", []) + tmpl["spec"]["containers"]
                          for p in c.get("ports", []))
            where = f"{d['kind']}/{d['metadata']['name']}"
            pods[where] = Pod(where, d["metadata"]["namespace"], tmpl["metadata"].get("labels", {}), ports)
    return pods


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> dict[str, World]:
    """Every overlay rendered with k8s/serve enabled as k8s/README.md says (in a copy of k8s/), with
    the pipeline compiled for the cluster (pipelines/cluster.yaml) and the train step's TrainJob."""
    params = with_profile(load_params(REPO / "params.yaml"), REPO / "pipelines/cluster.yaml")
    compiled = compile_pipeline(params, tmp_path_factory.mktemp("compiled") / "pipeline.yaml", cluster=True)
    _, platform = yaml.safe_load_all(compiled.read_text(encoding="utf-8"))
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    root = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, root)
    base = root / "base/kustomization.yaml"
    text = base.read_text(encoding="utf-8")
    assert "  # - ../serve\n" in text
    base.write_text(text.replace("  # - ../serve\n", "  - ../serve\n"), encoding="utf-8")
    out = {}
    for overlay in OVERLAYS:
        docs = _render(overlay, root)
        namespace = next(d["metadata"]["namespace"] for d in docs
                         if d["kind"] == "Deployment" and d["metadata"]["name"] == "mlflow")
        pods = {**_workload_pods(docs), **_pipeline_pods(executors, namespace),
                "trainjob/node": _trainer_pod(params, namespace)}
        out[overlay] = World(namespace, [d for d in docs if d["kind"] == "NetworkPolicy"], pods)
    return out


def _explain(world: World, client: Pod, server: Pod) -> str:
    """The two pods' labels and the policies that isolate them, for a failure message."""
    ingress = [p["metadata"]["name"] for p in selecting(server, world.policies, "Ingress")]
    egress = [p["metadata"]["name"] for p in selecting(client, world.policies, "Egress")]
    return (f"{client.name} {dict(client.labels)} -> {server.name} {dict(server.labels)}; policies isolating "
            f"the server: {ingress}, the client (egress): {egress}")


# --- the table ---------------------------------------------------------------------------------------


def test_the_table_is_well_formed():
    names = [f["name"] for _, f in FLOWS]
    assert len(names) == len(set(names)), "flow names must be unique"
    for kind, flow in FLOWS:
        assert {"name", "from", "to", "port", "why"} <= set(flow), flow
        assert flow["from"] in PODS and flow["to"] in PODS, flow["name"]
        assert isinstance(flow["port"], int) and 1 <= flow["port"] <= 65535, flow["name"]
        assert set(flow.get("overlays", OVERLAYS)) <= set(OVERLAYS), flow["name"]
    for key, entry in PODS.items():
        source = entry["source"]
        assert source == "example" or source.split("/")[0] in {"pipeline-task", "trainjob", *WORKLOADS}, key
        assert source != "example" or ("labels" in entry and entry.get("note")), key
    assert {k for _, f in FLOWS for k in (f["from"], f["to"])} == set(PODS), "every pod is in some flow"


CASES = [pytest.param(overlay, kind, flow, id=f"{overlay}-{flow['name']}")
         for kind, flow in FLOWS for overlay in flow.get("overlays", OVERLAYS)]


@pytest.mark.parametrize(("overlay", "kind", "flow"), CASES)
def test_flow(worlds, overlay, kind, flow):
    world = worlds[overlay]
    client, server = world.pod(flow["from"]), world.pod(flow["to"])
    if kind == "must_work" and PODS[flow["to"]]["source"].split("/")[0] in WORKLOADS:
        # the server listens there (a typo in the table would otherwise pass as "refused")
        assert flow["port"] in [p["containerPort"] for p in server.ports], (flow["name"], server.ports)
    assert allowed(client, server, flow["port"], world.policies) is (kind == "must_work"), \
        f"{flow['name']}: {_explain(world, client, server)}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_other_pod_reaches_a_dagllm_server(worlds, overlay):
    """For each server and port of a must_work flow: exactly its listed clients get through, out of
    every pod made here (every pipeline task, the training job, every workload) and the examples."""
    world = worlds[overlay]
    work = [f for f in TABLE["must_work"] if overlay in f.get("overlays", OVERLAYS)]
    for to, port in {(f["to"], f["port"]) for f in work if PODS[f["to"]]["source"] != "example"}:
        server = world.pod(to)
        clients = {world.pod(f["from"]).name for f in work if (f["to"], f["port"]) == (to, port)}
        admitted = {p.name for p in world.everyone().values() if allowed(p, server, port, world.policies)}
        assert admitted == clients, f"{to}:{port} admits {sorted(admitted)}; the table lists {sorted(clients)}"


def test_no_policy_isolates_the_pipeline_task_pods(worlds):
    """KFP's task pods carry no part-of label (KFP's labels are its own): no dagllm policy selects
    them; as clients they are told apart only by the label the compiler adds (dagllm.io/mlflow-client)."""
    for world in worlds.values():
        tasks = [p for k, p in world.pods.items() if k.startswith("pipeline-task/")]
        assert len(tasks) >= 8
        for pod in tasks:
            assert "app.kubernetes.io/part-of" not in pod.labels, pod.name
            assert not selecting(pod, world.policies, "Ingress") and not selecting(pod, world.policies, "Egress")


# --- the evaluator, on the examples of the Kubernetes docs -------------------------------------------
# https://kubernetes.io/docs/concepts/services-networking/network-policies/


def _policy(name: str, namespace: str, spec: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


# "An example NetworkPolicy" of the docs, with its stated meaning: isolates role=db pods in default
# for ingress and egress; admits on TCP 6379 role=frontend pods of default and any pod of a
# namespace labelled project=myproject; lets role=db pods out to 10.0.0.0/24 on TCP 5978 only.
DOCS_EXAMPLE = _policy("test-network-policy", "default", {
    "podSelector": {"matchLabels": {"role": "db"}},
    "policyTypes": ["Ingress", "Egress"],
    "ingress": [{"from": [{"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}},
                          {"namespaceSelector": {"matchLabels": {"project": "myproject"}}},
                          {"podSelector": {"matchLabels": {"role": "frontend"}}}],
                 "ports": [{"protocol": "TCP", "port": 6379}]}],
    "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}], "ports": [{"protocol": "TCP", "port": 5978}]}],
})
DB = Pod("db", "default", {"role": "db"})
FRONTEND = Pod("frontend", "default", {"role": "frontend"})
NS = {"team": {"project": "myproject"}, "other": {}}


def test_docs_example_policy():
    assert allowed(FRONTEND, DB, 6379, [DOCS_EXAMPLE])
    assert not allowed(FRONTEND, DB, 6380, [DOCS_EXAMPLE])  # other ports
    assert not allowed(FRONTEND, DB, 6379, [DOCS_EXAMPLE], protocol="UDP")
    assert allowed(Pod("any", "team", {}), DB, 6379, [DOCS_EXAMPLE], namespace_labels=NS)
    assert not allowed(Pod("frontend", "other", {"role": "frontend"}), DB, 6379, [DOCS_EXAMPLE], namespace_labels=NS)
    assert not allowed(Pod("plain", "default", {}), DB, 6379, [DOCS_EXAMPLE])
    # egress from db: to 10.0.0.0/24 only, so to no pod
    assert not allowed(DB, FRONTEND, 5978, [DOCS_EXAMPLE])
    # "Other pods in the namespace that are not selected by any NetworkPolicy will continue to accept all traffic."
    assert allowed(Pod("plain", "other", {}), FRONTEND, 1234, [DOCS_EXAMPLE], namespace_labels=NS)


def test_one_peer_with_both_selectors_versus_two_peers():
    """The docs' alice/client example: one ``from`` element = pods AND namespaces; two = OR."""
    client_in_alice = Pod("c", "alice-ns", {"role": "client"})
    other_in_alice = Pod("o", "alice-ns", {})
    client_here = Pod("c", "default", {"role": "client"})
    pods, ns = (client_in_alice, other_in_alice, client_here), {"alice-ns": {"user": "alice"}}
    alice = {"namespaceSelector": {"matchLabels": {"user": "alice"}}}
    client = {"podSelector": {"matchLabels": {"role": "client"}}}
    both = _policy("and", "default", {"podSelector": {}, "ingress": [{"from": [{**alice, **client}]}]})
    either = _policy("or", "default", {"podSelector": {}, "ingress": [{"from": [alice, client]}]})
    server = Pod("s", "default", {})
    assert [allowed(p, server, 80, [both], namespace_labels=ns) for p in pods] == [True, False, False]
    assert [allowed(p, server, 80, [either], namespace_labels=ns) for p in pods] == [True, True, True]
    # the namespace name label every namespace carries
    by_name = _policy("n", "default", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "alice-ns"}}}]}]})
    assert allowed(other_in_alice, server, 80, [by_name]) and not allowed(client_here, server, 80, [by_name])


def test_default_deny_and_allow_all_and_policy_types():
    """The docs' default policies; policyTypes default to Ingress, plus Egress when egress rules exist."""
    a, b = Pod("a", "default", {"app": "a"}), Pod("b", "default", {"app": "b"})
    deny_in = _policy("default-deny-ingress", "default", {"podSelector": {}, "policyTypes": ["Ingress"]})
    allow_in = _policy("allow-all-ingress", "default", {"podSelector": {}, "ingress": [{}],
                                                        "policyTypes": ["Ingress"]})
    deny_out = _policy("default-deny-egress", "default", {"podSelector": {}, "policyTypes": ["Egress"]})
    assert not allowed(a, b, 80, [deny_in]) and allowed(a, b, 80, [deny_in, allow_in])  # additive
    assert not allowed(a, b, 80, [deny_out]) and not allowed(a, b, 80, [deny_out, allow_in])  # both ends decide
    # no policyTypes: ingress only, unless there are egress rules
    ingress_only = _policy("i", "default", {"podSelector": {"matchLabels": {"app": "a"}}, "ingress": []})
    with_egress = _policy("e", "default", {"podSelector": {"matchLabels": {"app": "a"}},
                                           "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "c"}}}]}]})
    assert allowed(a, b, 80, [ingress_only]) and not allowed(b, a, 80, [ingress_only])
    assert not allowed(a, b, 80, [with_egress]) and allowed(a, Pod("c", "default", {"app": "c"}), 80, [with_egress])
    # a policy in another namespace selects nothing here
    assert allowed(a, b, 80, [_policy("elsewhere", "kube-system", {"podSelector": {}, "policyTypes": ["Ingress"]})])


def test_port_ranges_named_ports_and_match_expressions():
    client = Pod("c", "default", {"tier": "web", "env": "prod"})
    server = Pod("s", "default", {"app": "s"}, ({"name": "http", "containerPort": 5000, "protocol": "TCP"},))
    # the docs' multi-port example: port 32000 to endPort 32768, inclusive
    ranged = _policy("r", "default", {"podSelector": {}, "ingress": [{"ports": [
        {"protocol": "TCP", "port": 32000, "endPort": 32768}]}]})
    assert [allowed(client, server, p, [ranged]) for p in (31999, 32000, 32768, 32769)] == [False, True, True, False]
    named = _policy("n", "default", {"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]})
    assert allowed(client, server, 5000, [named]) and not allowed(client, server, 5001, [named])
    assert not allowed(client, Pod("t", "default", {}), 5000, [named])  # no port of that name there

    def only(*exprs: dict) -> list[dict]:
        return [_policy("x", "default", {"podSelector": {}, "ingress": [{"from": [
            {"podSelector": {"matchExpressions": list(exprs)}}]}]})]

    assert allowed(client, server, 80, only({"key": "tier", "operator": "In", "values": ["web", "api"]}))
    assert not allowed(client, server, 80, only({"key": "tier", "operator": "NotIn", "values": ["web"]}))
    assert allowed(Pod("n", "default", {}), server, 80, only({"key": "tier", "operator": "NotIn", "values": ["web"]}))
    assert allowed(client, server, 80, only({"key": "env", "operator": "Exists"}))
    assert not allowed(client, server, 80, only({"key": "env", "operator": "DoesNotExist"}))
    assert not allowed(client, server, 80, only({"key": "env", "operator": "Exists"},
                                                {"key": "tier", "operator": "In", "values": ["api"]}))  # AND
