"""Multi-node training from the train step (src/dagllm/training/trainjob.py), tested offline.

- The TrainJob it creates, against the CRD's schema (tests/k8s/trainjob_schema.yaml, written from
  Kubeflow Trainer v2.3.0's published CRD) and against what the torch runtime expects; its node
  pods' template (labels the NetworkPolicies select, no Istio sidecar, the trainer ServiceAccount)
  as the step POSTs it.
- Create / wait / success, failure with rank 0's log, timeout and retries, through the real
  ``kubernetes`` client against a loopback stand-in of the API server (kube_server.py), also
  through the KFP train step's own code (``dagllm.pipeline.steps.train``).
- The Role of k8s/base grants the calls the step makes.

What only a cluster with Kubeflow Trainer can show: that the controller accepts the job (its
webhook's extra checks), schedules the nodes and that NCCL connects across them.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from kubernetes import client

from dagllm.params import Params
from dagllm.pipeline import artifacts, steps
from dagllm.training import trainjob
from dagllm.training.trainjob import JobFiles, KubeApi, TrainJobError, build_trainjob, run_trainjob

from ..conftest import REPO, small_params
from .kube_server import FakeKube, cond, serve

SCHEMA = yaml.safe_load((Path(__file__).parent / "trainjob_schema.yaml").read_text(encoding="utf-8"))
NS = "team-ml"


def _params(tmp_path: Path, **train_job) -> Params:
    data = small_params(train={"num_nodes": 2})
    k = data["kubeflow"]
    k["gpu"]["train"] = {"count": 8, "accelerator": "nvidia.com/gpu"}
    k["model_pvc"] = "dagllm-models"
    k["model_mount"] = str(tmp_path / "mnt")
    k["train_job"] = {"namespace": NS, "poll_s": 0.01, **train_job}
    (tmp_path / "mnt").mkdir(exist_ok=True)
    return Params.model_validate(data)


def _pod_template(job: dict) -> dict:
    """The pod template patch of the job's ``node`` replicated job (metadata and spec)."""
    (patch,) = job["spec"]["runtimePatches"]
    (rjob,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    return rjob["template"]["spec"]["template"]


def _job(tmp_path: Path, **train_job) -> dict:
    p = _params(tmp_path, **train_job)
    from dagllm.pipeline.steps import train_params_for_task

    return build_trainjob(p, train_params_for_task(p), "dagllm-train-0123456789ab", Path("/mnt/models/x/spec.json"))


# --- the manifest ------------------------------------------------------------------------------------


def test_manifest_matches_crd_schema(tmp_path):
    jsonschema.validate(_job(tmp_path), SCHEMA)


def test_image_pull_secrets_reach_the_nodes(tmp_path):
    data = _params(tmp_path).to_dict()
    data["kubeflow"]["image_pull_secrets"] = ["ghcr-pull"]
    p = Params.model_validate(data)
    from dagllm.pipeline.steps import train_params_for_task

    job = build_trainjob(p, train_params_for_task(p), "dagllm-train-0123456789ab", Path("/mnt/models/x/spec.json"))
    jsonschema.validate(job, SCHEMA)
    assert _pod_template(job)["spec"]["imagePullSecrets"] == [{"name": "ghcr-pull"}]
    assert "imagePullSecrets" not in _pod_template(_job(tmp_path))["spec"]  # none asked for: none set


@pytest.mark.parametrize("break_it", [
    lambda j: j["spec"].pop("runtimeRef"),
    lambda j: j["spec"]["trainer"].update(numNodes="2"),
    lambda j: j["spec"]["trainer"].update(numNode=2),  # misspelled
    lambda j: j["metadata"].update(name="Dagllm_train"),
    lambda j: j["spec"]["runtimePatches"][0].pop("manager"),
    lambda j: j["spec"]["trainer"]["resourcesPerNode"]["limits"].update(cpu="eight"),
    lambda j: _pod_template(j)["metadata"].update(label={"a": "b"}),  # misspelled
    lambda j: _pod_template(j)["metadata"]["annotations"].update({"sidecar.istio.io/inject": False}),
    lambda j: _pod_template(j)["spec"].update(serviceAccountName="x" * 254),
])
def test_schema_check_can_fail(tmp_path, break_it):
    job = _job(tmp_path)
    break_it(job)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(job, SCHEMA)


def test_manifest_runs_the_node_launcher_with_all_gpus_on_the_volume(tmp_path):
    p = _params(tmp_path)
    job = _job(tmp_path)
    tr = job["spec"]["trainer"]
    assert job["spec"]["runtimeRef"] == {"name": "torch-distributed", "apiGroup": "trainer.kubeflow.org",
                                         "kind": "ClusterTrainingRuntime"}
    assert tr["image"] == p.kubeflow.images.train
    assert tr["command"] == ["python", "-m", "dagllm.training.launch", "--node", "/mnt/models/x/spec.json"]
    assert (tr["numNodes"], tr["numProcPerNode"]) == (2, 8)  # one rank per GPU of each node
    assert tr["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == 8
    assert tr["resourcesPerNode"]["requests"] == {"cpu": p.kubeflow.resources["train"].cpu_request,
                                                   "memory": p.kubeflow.resources["train"].memory_request}
    # the torch runtime sets the PET_ rendezvous itself and its webhook rejects a job that sets them
    assert not [e for e in tr["env"] if e["name"].startswith("PET_")]
    secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in tr["env"] if "valueFrom" in e}
    # the Secrets of kubeflow.secrets meant for the train task, as the train task gets them
    assert secret_env == {var: {"name": s.name, "key": key} for s in p.kubeflow.secrets if "train" in s.tasks
                          for key, var in s.env.items()}
    assert secret_env["MLFLOW_TRACKING_PASSWORD"] == {"name": "dagllm-mlflow", "key": "password"}
    assert not [e for e in tr["env"] if "value" in e and "SECRET" in e["name"]]
    (patch,) = job["spec"]["runtimePatches"]
    assert "/" in patch["manager"] and "." in patch["manager"].split("/")[0]  # domain-prefixed, as the webhook wants
    (rjob,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert rjob["name"] == "node"  # the torch runtime's trainer job; its container is "node" too
    pod = rjob["template"]["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in pod["volumes"]}
    (container,) = pod["containers"]
    assert container["name"] == "node" and "env" not in container  # the webhook forbids env patches of "node"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert vols[next(n for n, m in mounts.items() if m == p.kubeflow.model_mount)]["persistentVolumeClaim"] == {
        "claimName": "dagllm-models"}
    assert vols[next(n for n, m in mounts.items() if m == "/dev/shm")]["emptyDir"]["medium"] == "Memory"
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == p.kubeflow.run_as_user
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    # the master address the runtime derives, <name>-node-0-0.<name>, must be a valid DNS label + subdomain
    assert len(f"{job['metadata']['name']}-node-0-0") <= 63


def test_job_name_is_a_dns_label_and_stable():
    a = trainjob.job_name(Path("/mnt/models/runs/abc/hf"))
    assert a == trainjob.job_name(Path("/mnt/models/runs/abc/hf")) != trainjob.job_name(Path("/mnt/models/runs/abd/hf"))
    jsonschema.validate(a, SCHEMA["properties"]["metadata"]["properties"]["name"])


def test_the_trainer_service_account_exists_in_the_manifests():
    sa = Params.model_validate(small_params()).kubeflow.train_job.service_account
    docs = yaml.safe_load_all((REPO / "k8s/base/serviceaccounts.yaml").read_text(encoding="utf-8"))
    (account,) = [d for d in docs if d["kind"] == "ServiceAccount" and d["metadata"]["name"] == sa]
    assert account["automountServiceAccountToken"] is False  # the node pods never call the API
    assert account["metadata"]["labels"]["app.kubernetes.io/component"] == \
        trainjob.TRAINER_LABELS["app.kubernetes.io/component"]


# --- create / wait / fail against the stand-in API server ---------------------------------------------


@pytest.fixture
def kube():
    state = FakeKube()
    server, url = serve(state)
    yield state, url
    server.shutdown()
    server.server_close()


def _api(url: str) -> KubeApi:
    return KubeApi(client.ApiClient(client.Configuration(host=url)))


def _pod_labels(job: str, index: int) -> dict[str, str]:
    # what the JobSet and Job controllers put on the pods of a TrainJob's "node" replicated job
    return {"jobset.sigs.k8s.io/jobset-name": job, "jobset.sigs.k8s.io/replicatedjob-name": "node",
            "batch.kubernetes.io/job-completion-index": str(index)}


def _cluster(outcome: str, after: int = 2, log: str = "step 1 loss 9.1\nstep 2 loss 8.7\n"):
    """A Trainer controller: starts the pods, then after ``after`` GETs finishes the job with ``outcome``.

    On success it writes what rank 0 writes to the shared volume (summary and reports), at the
    paths the job's spec names.
    """
    gets = {"n": 0}

    def controller(state: FakeKube, job: dict) -> None:
        name = job["metadata"]["name"]
        if not state.pods:
            for i in range(job["spec"]["trainer"]["numNodes"]):
                state.add_pod(job["metadata"]["namespace"], f"{name}-node-0-{i}-x7k2p", _pod_labels(name, i),
                              log if i == 0 else "node 1: nothing interesting\n")
        gets["n"] += 1
        if gets["n"] < after or job.get("status", {}).get("conditions"):
            return
        if outcome == "Complete":
            spec = json.loads(Path(job["spec"]["trainer"]["command"][-1]).read_text(encoding="utf-8"))
            Path(spec["summary_path"]).write_text(json.dumps(
                {"run_id": "r1", "steps": 4, "final_loss": 2.5, "tokens_per_second": 100.0, "parameters": 1000,
                 "model_dir": spec["model_dir"]}), encoding="utf-8")
            Path(spec["run_file"]).write_text('{"run_id": "r1"}', encoding="utf-8")
            Path(spec["metrics_path"]).write_text('{"final_loss": 2.5}', encoding="utf-8")
            Path(spec["curve_path"]).write_text("step,loss\n1,9.1\n", encoding="utf-8")
            job["status"] = {"conditions": [cond("Complete", "JobsCompleted", "jobset completed")]}
        elif outcome == "Failed":
            job["status"] = {"conditions": [cond("Failed", "JobsFailed", "jobset failed: node-0 exited with code 1")]}

    return controller


def _records(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "records.parquet"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PAR1 stand-in records PAR1")
    return path


def test_success_creates_waits_emits_the_model_and_deletes(tmp_path, kube, capsys):
    state, url = kube
    state.controller = _cluster("Complete")
    p = _params(tmp_path)
    model_dir = tmp_path / "artifact"
    model_files = artifacts.model_files_for(p, model_dir)
    from dagllm.pipeline.steps import train_params_for_task

    s = trainjob.train_on_cluster(p, train_params_for_task(p), _records(tmp_path), model_files, model_dir, _api(url))

    assert (s.run_id, s.steps, s.final_loss) == ("r1", 4, 2.5)
    (post,) = state.calls_to("POST")
    assert post.path == f"/apis/trainer.kubeflow.org/v1alpha1/namespaces/{NS}/trainjobs"
    jsonschema.validate(post.body, SCHEMA)
    assert post.body["spec"]["trainer"]["numNodes"] == 2
    files = JobFiles(model_files.parent / "trainjob")
    assert post.body["spec"]["trainer"]["command"][-1] == str(files.spec)
    spec = json.loads(files.spec.read_text(encoding="utf-8"))
    assert (spec["train"]["num_nodes"], spec["train"]["num_processes"]) == (2, 8)
    assert spec["model_dir"] == str(model_files) and spec["train_path"] == str(files.records)
    assert files.records.read_bytes() == b"PAR1 stand-in records PAR1"  # the data went onto the volume
    # the Model artifact: reports copied in, location.json pointing at the model on the volume
    assert json.loads((model_dir / "train_run.json").read_text()) == {"run_id": "r1"}
    assert (model_dir / "train_loss.csv").read_text().startswith("step,loss")
    assert artifacts.model_files(model_dir) == model_files
    # rank 0's log was shown, then the job deleted (delete: on_success)
    (log_call,) = state.calls_to("GET", "/log")
    assert log_call.path.endswith("-node-0-0-x7k2p/log")
    assert log_call.query["container"] == "node"
    assert "step 2 loss 8.7" in capsys.readouterr().out
    (delete,) = state.calls_to("DELETE")
    assert delete.path.endswith("/trainjobs/" + post.body["metadata"]["name"])
    assert delete.query.get("propagationPolicy") == "Background"  # the JobSet and pods go with the job
    assert not state.jobs


def _policies() -> dict[str, dict]:
    docs = yaml.safe_load_all((REPO / "k8s/base/networkpolicy.yaml").read_text(encoding="utf-8"))
    return {d["metadata"]["name"]: d["spec"] for d in docs}


def test_the_pods_of_the_created_job_are_labelled_for_the_policies_without_sidecar(tmp_path, kube):
    """What the step POSTs: the node pods' template carries the labels the NetworkPolicies select
    (Trainer v2.3 copies the patch's pod metadata onto the pods, not the TrainJob's labels), no
    Istio sidecar, and the trainer ServiceAccount."""
    state, url = kube
    state.controller = _cluster("Complete")
    p = _params(tmp_path)
    model_dir = tmp_path / "artifact"
    from dagllm.pipeline.steps import train_params_for_task

    trainjob.train_on_cluster(p, train_params_for_task(p), _records(tmp_path),
                              artifacts.model_files_for(p, model_dir), model_dir, _api(url))

    (post,) = state.calls_to("POST")
    jsonschema.validate(post.body, SCHEMA)
    template = _pod_template(post.body)
    labels = template["metadata"]["labels"]
    assert labels == {"app.kubernetes.io/part-of": "dagllm", "app.kubernetes.io/component": "trainer"}
    assert template["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    assert template["spec"]["serviceAccountName"] == "dagllm-trainer" == p.kubeflow.train_job.service_account
    # the labels each policy selects the training pods by are on them
    pol = _policies()
    assert pol["default-deny-ingress"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert pol["trainer-peers"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert [peer["podSelector"]["matchLabels"] for peer in pol["trainer-peers"]["ingress"][0]["from"]
            if peer["podSelector"]["matchLabels"].items() <= labels.items()]
    assert [peer["podSelector"]["matchLabels"] for peer in pol["mlflow-ingress"]["ingress"][0]["from"]
            if peer["podSelector"]["matchLabels"].items() <= labels.items()]


def test_failure_raises_with_the_condition_and_rank0_log_tail(tmp_path, kube):
    state, url = kube
    log = "".join(f"line {i}\n" for i in range(50)) + "torch.OutOfMemoryError: CUDA out of memory\n"
    state.controller = _cluster("Failed", log=log)
    p = _params(tmp_path, log_tail_lines=3)
    body = build_trainjob(p, p.train, "dagllm-train-failing", Path("/mnt/models/spec.json"))

    with pytest.raises(TrainJobError) as err:
        run_trainjob(_api(url), NS, body, p.kubeflow.train_job)

    msg = str(err.value)
    assert "jobset failed: node-0 exited with code 1" in msg and "JobsFailed" in msg
    assert "CUDA out of memory" in msg and "line 48" in msg and "line 47" not in msg  # the last 3 lines only
    assert "node 1: nothing interesting" not in msg  # rank 0's pod, not another node's
    assert state.calls_to("GET", "/log")[0].query["tailLines"] == "3"
    assert not state.calls_to("DELETE")  # delete: on_success keeps the failed job's pods for kubectl
    assert ("team-ml", "dagllm-train-failing") in state.jobs


def test_failure_with_delete_always_deletes(tmp_path, kube):
    state, url = kube
    state.controller = _cluster("Failed")
    p = _params(tmp_path, delete="always")
    body = build_trainjob(p, p.train, "dagllm-train-failing", Path("/mnt/models/spec.json"))
    with pytest.raises(TrainJobError, match="failed: JobsFailed"):
        run_trainjob(_api(url), NS, body, p.kubeflow.train_job)
    assert len(state.calls_to("DELETE")) == 1 and not state.jobs


@pytest.mark.parametrize("delete, deleted", [("on_success", True), ("never", False)])
def test_timeout_gives_up_and_deletes_unless_never(tmp_path, kube, delete, deleted):
    state, url = kube
    state.controller = _cluster("never finishes")
    p = _params(tmp_path, timeout_s=60, poll_s=30, delete=delete)
    body = build_trainjob(p, p.train, "dagllm-train-slow", Path("/mnt/models/spec.json"))
    t = {"now": 0.0}
    slept = []

    def sleep(s: float) -> None:
        slept.append(s)
        t["now"] += s

    with pytest.raises(TrainJobError, match="did not finish within kubeflow.train_job.timeout_s=60") as err:
        run_trainjob(_api(url), NS, body, p.kubeflow.train_job, clock=lambda: t["now"], sleep=sleep)
    assert slept == [30, 30]  # polled at 0, 30, 60 s, then gave up
    assert len(state.calls_to("GET", "/trainjobs/")) == 4  # the existence check, then 3 polls
    assert bool(state.calls_to("DELETE")) is deleted
    assert ("deleted it" if deleted else "kept it") in str(err.value)
    assert body["spec"]["activeDeadlineSeconds"] == 60  # the cluster enforces the same limit


def test_a_retry_attaches_to_the_running_job(tmp_path, kube):
    state, url = kube
    p = _params(tmp_path)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({k: str(tmp_path / k) for k in (
        "summary_path", "run_file", "metrics_path", "curve_path", "model_dir")}), encoding="utf-8")
    body = build_trainjob(p, p.train, "dagllm-train-retry", spec)
    running = json.loads(json.dumps(body))
    running["metadata"]["namespace"] = NS
    state.jobs[(NS, "dagllm-train-retry")] = running  # left running by the attempt before
    state.controller = _cluster("Complete", after=3)
    prepared = []

    run_trainjob(_api(url), NS, body, p.kubeflow.train_job, prepare=lambda: prepared.append(1))
    assert not state.calls_to("POST") and not prepared  # no second job, the running job's files untouched
    assert (tmp_path / "summary_path").is_file() and len(state.calls_to("DELETE")) == 1


def test_a_retry_replaces_a_failed_job(tmp_path, kube):
    state, url = kube
    p = _params(tmp_path)
    body = build_trainjob(p, p.train, "dagllm-train-again", Path("/mnt/models/spec.json"))
    failed = json.loads(json.dumps(body))
    failed["metadata"]["namespace"] = NS
    failed["status"] = {"conditions": [cond("Failed", "JobsFailed", "old failure")]}
    state.jobs[(NS, "dagllm-train-again")] = failed
    prepared = []

    def controller(st: FakeKube, job: dict) -> None:
        if "uid" in job["metadata"]:  # the new one, created through POST
            job["status"] = {"conditions": [cond("Complete", "JobsCompleted", "done")]}

    state.controller = controller
    run_trainjob(_api(url), NS, body, p.kubeflow.train_job, prepare=lambda: prepared.append(1))
    methods = [c.method for c in state.calls if "/trainjobs" in c.path]
    assert methods[:3] == ["GET", "DELETE", "GET"] and "POST" in methods and prepared == [1]
    assert methods.index("POST") > methods.index("DELETE")


def test_namespace_from_the_service_account(tmp_path):
    sa = tmp_path / "namespace"
    sa.write_text("kubeflow-user-a\n")
    kj = _params(tmp_path, namespace=None).kubeflow.train_job
    assert trainjob.current_namespace(kj, sa) == "kubeflow-user-a"
    with pytest.raises(TrainJobError, match="kubeflow.train_job.namespace"):
        trainjob.current_namespace(kj, tmp_path / "absent")
    assert trainjob.current_namespace(_params(tmp_path).kubeflow.train_job, tmp_path / "absent") == NS


def test_no_model_volume_is_a_clear_error(tmp_path):
    p = _params(tmp_path)
    p = p.model_copy(update={"kubeflow": p.kubeflow.model_copy(update={"model_pvc": None})})
    with pytest.raises(TrainJobError, match="needs kubeflow.model_pvc"):
        trainjob.train_on_cluster(p, p.train, _records(tmp_path), tmp_path / "m", tmp_path / "a", api=object())


def test_the_kfp_train_step_runs_a_trainjob_when_num_nodes_is_2(tmp_path, kube, monkeypatch):
    """pipeline.steps.train, as the component calls it, with the client configured from a kubeconfig."""
    state, url = kube
    state.controller = _cluster("Complete")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "x", "cluster": {"server": url}}],
        "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x", "namespace": NS}}],
        "users": [{"name": "x", "user": {"token": "t"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    p = _params(tmp_path)
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    _records(tmp_path).replace(train_dir / "records.parquet")

    class Sink:
        path = str(tmp_path / "metrics.json")
        logged: dict = {}

        def log_metric(self, k, v):
            self.logged[k] = v

    sink = Sink()
    steps.train(json.dumps(p.to_dict()), train_dir, tmp_path / "model", sink)
    assert sink.logged == {"final_loss": 2.5, "steps": 4.0, "tokens_per_second": 100.0}
    assert len(state.calls_to("POST", f"/namespaces/{NS}/trainjobs")) == 1
    assert (tmp_path / "model" / "train_metrics.json").is_file()


def test_the_compiled_train_task_of_a_multi_node_run_holds_no_gpu(tmp_path):
    """Its pod only waits on the TrainJob; the job's nodes get the GPUs (from the same params)."""
    from pipelines.dagllm_pipeline import compile_pipeline

    p = _params(tmp_path)
    pipeline, _ = yaml.safe_load_all(compile_pipeline(p, tmp_path / "p.yaml").read_text())
    ex = pipeline["deploymentSpec"]["executors"]
    assert "accelerator" not in ex["exec-train-op"]["container"]["resources"]
    assert ex["exec-train-op"]["container"]["resources"]["resourceMemoryLimit"] != p.kubeflow.resources[
        "train"].memory_limit
    assert ex["exec-evaluate-op"]["container"]["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    defaults = json.loads(pipeline["root"]["inputDefinitions"]["parameters"]["params_json"]["defaultValue"])
    assert defaults["kubeflow"]["gpu"]["train"]["count"] == 8  # what build_trainjob reads at run time


# --- RBAC: the pipeline runner may make these calls -------------------------------------------------


def test_the_pipeline_runner_role_allows_the_calls():
    docs = list(yaml.safe_load_all((REPO / "k8s" / "base" / "rbac.yaml").read_text(encoding="utf-8")))
    role = next(d for d in docs if d["kind"] == "Role")
    binding = next(d for d in docs if d["kind"] == "RoleBinding")
    sa = Params.model_validate(small_params()).kubeflow.service_account
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert {"kind": "ServiceAccount", "name": sa} in binding["subjects"]

    def allowed(group: str, resource: str, verb: str) -> bool:
        return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]
                   for r in role["rules"])

    for verb in ("create", "get", "delete"):
        assert allowed("trainer.kubeflow.org", "trainjobs", verb), verb
    assert allowed("", "pods", "list") and allowed("", "pods/log", "get")


def test_the_train_steps_slice_holds_what_the_job_reads(tmp_path):
    """On KFP the step gets its params slice, not the whole params: the job built from the slice is
    the job built from the whole (a field the slice lacked would be a KeyError here)."""
    import json

    from dagllm.pipeline.slices import fingerprint
    from dagllm.pipeline.steps import _params as step_params
    from dagllm.pipeline.steps import train_params_for_task

    data = _params(tmp_path).to_dict()
    data["kubeflow"]["image_pull_secrets"] = ["ghcr-pull"]
    full = Params.model_validate(data)
    sliced = step_params(fingerprint(json.dumps(full.to_dict()))["train"])
    spec = Path("/mnt/models/x/spec.json")
    jobs = [build_trainjob(x, train_params_for_task(x), "j", spec) for x in (sliced, full)]
    for job in jobs:  # the slice's JSON has sorted keys: the Secret's env comes in another order
        job["spec"]["trainer"]["env"].sort(key=lambda e: e["name"])
    assert jobs[0] == jobs[1]
    assert artifacts.model_files_for(sliced, tmp_path / "a") == artifacts.model_files_for(full, tmp_path / "a")
