"""Multi-node training from the DAG's train step: a Kubeflow Trainer TrainJob on the model volume.

When ``train.num_nodes > 1`` the KFP train step (:func:`dagllm.pipeline.steps.train`) does not train
itself. It puts the training records and a launch spec (:class:`~dagllm.training.launch.TrainSpec`)
in a per-run folder on the shared model PVC, creates a ``trainer.kubeflow.org/v1alpha1`` TrainJob
that references a torch ClusterTrainingRuntime (``kubeflow.train_job.runtime``), waits for its
``Complete`` or ``Failed`` condition, and then reads rank 0's summary and reports from the same
folder. Every node of the job runs ``python -m dagllm.training.launch --node SPEC``: torchrun over
that node's ranks, with the rendezvous (``PET_MASTER_ADDR``, ``PET_MASTER_PORT``,
``PET_NODE_RANK``) the torch runtime sets in each pod.

The manifest is built by :func:`build_trainjob` (plain data, checked against the CRD's schema in
the tests); the Kubernetes calls sit behind :class:`KubeApi` (the ``kubernetes`` client), so the
create/wait/fail logic is tested against a loopback stand-in of the API server.

API reference: Kubeflow Trainer v2.3 (``TrainJob.spec.trainer``, ``spec.runtimePatches`` for the
labels, annotations, service account, volumes, security context, node selector and tolerations of
the ``node`` replicated job's pods).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagllm.params import Params, TrainJobParams, TrainParams
from dagllm.training.launch import LaunchError, make_spec

GROUP = "trainer.kubeflow.org"
VERSION = "v1alpha1"
PLURAL = "trainjobs"
# the torch runtime's replicated job and its training container are both called "node"
NODE = "node"
# owner of our runtime patch (the Trainer webhook wants a domain-prefixed path)
PATCH_MANAGER = "dagllm.io/train-step"
# pod labels the JobSet and the Job controller set (the Kubeflow SDK selects rank 0's pod the same way)
JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"
REPLICATED_JOB_LABEL = "jobset.sigs.k8s.io/replicatedjob-name"
JOB_INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
# Labels of the job and of its node pods: the default deny, mlflow-ingress and trainer-peers
# NetworkPolicies (k8s/base/networkpolicy.yaml) select the pods by them.
TRAINER_LABELS = {"app.kubernetes.io/part-of": "dagllm", "app.kubernetes.io/component": "trainer"}
# A profile namespace injects Istio sidecars into every pod KFP does not exempt; a sidecar in the
# path of the torch rendezvous and NCCL can break them, and a Job's sidecar never exits.
POD_ANNOTATIONS = {"sidecar.istio.io/inject": "false"}
SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class TrainJobError(LaunchError):
    """The TrainJob failed, timed out or could not be created (message: condition and rank 0's log tail)."""


@dataclass(frozen=True)
class JobFiles:
    """The per-run folder on the model volume that the step and the job's pods share."""

    root: Path

    @property
    def spec(self) -> Path:
        return self.root / "spec.json"

    @property
    def records(self) -> Path:
        return self.root / "records.parquet"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def reports(self) -> dict[str, Path]:
        """Files rank 0 writes that the Model artifact carries (same names as the local train step)."""
        return {n: self.root / n for n in ("train_run.json", "train_metrics.json", "train_loss.csv")}


def job_name(model_files: Path) -> str:
    """A DNS-1035 name unique per run and task, stable across retries of the step."""
    return "dagllm-train-" + hashlib.sha256(str(model_files).encode()).hexdigest()[:12]


def build_trainjob(p: Params, train: TrainParams, name: str, spec_path: Path) -> dict[str, Any]:
    """The TrainJob manifest for ``train.num_nodes`` nodes of ``train.num_processes`` ranks each.

    Args:
        p: all params (``kubeflow``: image, resources, GPUs, PVC, secrets, node selector, tolerations).
        train: the train section the job runs (one rank per GPU: :func:`dagllm.pipeline.steps.train_params_for_task`).
        name: the job's name (:func:`job_name`).
        spec_path: the launch spec on the model volume, as the pods see it.
    """
    k, kj = p.kubeflow, p.kubeflow.train_job
    res = k.task_resources("train")
    gpu = k.gpu.get("train")
    limits: dict[str, str | int] = {"cpu": res.cpu_limit, "memory": res.memory_limit}
    if gpu is not None and gpu.count > 0:
        limits[gpu.accelerator] = gpu.count
    env: list[dict[str, Any]] = [{"name": "PYTHONUNBUFFERED", "value": "1"}]
    env += [{"name": var, "valueFrom": {"secretKeyRef": {"name": s.name, "key": key}}}
            for s in k.secrets if "train" in s.tasks for key, var in s.env.items()]
    pod: dict[str, Any] = {
        "serviceAccountName": kj.service_account,
        "containers": [{
            "name": NODE,
            "volumeMounts": [{"name": "models", "mountPath": k.model_mount},
                             {"name": "dshm", "mountPath": "/dev/shm"}],
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        }],
        "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": k.model_pvc}},
                    # NCCL and the DataLoader workers share memory through /dev/shm (64 MiB by default)
                    {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": k.shm_size}}],
        "securityContext": {"runAsNonRoot": True, "runAsUser": k.run_as_user, "runAsGroup": k.run_as_user,
                            "fsGroup": k.run_as_user, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    if k.image_pull_secrets:  # PodSpecPatch imagePullSecrets (trainjob_types.go, v2.3.0)
        pod["imagePullSecrets"] = [{"name": n} for n in k.image_pull_secrets]
    if k.node_selector:
        pod["nodeSelector"] = dict(k.node_selector)
    if k.tolerations:
        pod["tolerations"] = [t.model_dump(exclude_none=True) for t in k.tolerations]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainJob",
        "metadata": {"name": name, "labels": dict(TRAINER_LABELS)},
        "spec": {
            "runtimeRef": {"name": kj.runtime, "apiGroup": GROUP, "kind": kj.runtime_kind},
            "activeDeadlineSeconds": kj.timeout_s,
            "trainer": {
                "image": k.images.train,
                "command": ["python", "-m", "dagllm.training.launch", "--node", str(spec_path)],
                "numNodes": train.num_nodes,
                "numProcPerNode": train.num_processes,
                "resourcesPerNode": {"requests": {"cpu": res.cpu_request, "memory": res.memory_request},
                                     "limits": limits},
                "env": env,
            },
            # The pods get their labels, annotations and service account from this patch only.
            # Kubeflow Trainer v2.3.0 (kubeflow/trainer tag v2.3.0) labels the JobSet with the
            # runtime's labels and the patches' JobSet metadata, never the TrainJob's own
            # (pkg/runtime/core/trainingruntime.go:141-161), and strategic-merges each patch's spec,
            # pod template metadata included, into the JobSet spec (mergeRuntimePatches, :251-290;
            # its test "...labels and annotations overrides from the TrainJob's RuntimePatches",
            # trainingruntime_test.go:841). PodTemplatePatch has `metadata` ("Only labels and
            # annotations are allowed", pkg/apis/trainer/v1alpha1/trainjob_types.go:377-387) and
            # PodSpecPatch `serviceAccountName` (:390-395); the CRD's schema of that metadata:
            # manifests/base/crds/trainer.kubeflow.org_trainjobs.yaml:599-620.
            "runtimePatches": [{"manager": PATCH_MANAGER, "trainingRuntimeSpec": {"template": {"spec": {
                "replicatedJobs": [{"name": NODE, "template": {"spec": {"template": {
                    "metadata": {"labels": dict(TRAINER_LABELS), "annotations": dict(POD_ANNOTATIONS)},
                    "spec": pod}}}}]}}}}],
        },
    }


# --- the Kubernetes API, thin ----------------------------------------------------------------------


class KubeApi:
    """The few calls the step makes, through the ``kubernetes`` client.

    Args:
        api_client: a configured ``kubernetes.client.ApiClient``; None = the pod's in-cluster
            config (its service account), else the local kubeconfig.
    """

    def __init__(self, api_client=None) -> None:
        from kubernetes import client, config

        if api_client is None:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                try:  # the client reads $KUBECONFIG only when it is imported: pass it
                    config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
                except config.ConfigException as exc:
                    raise TrainJobError(f"no Kubernetes API to create the TrainJob on: not in a pod and no "
                                        f"kubeconfig ({exc})") from None
            api_client = client.ApiClient()
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)

    def create(self, namespace: str, body: dict) -> dict:
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

    def get(self, namespace: str, name: str) -> dict | None:
        """The job, or None when it does not exist."""
        from kubernetes.client.exceptions import ApiException

        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def delete(self, namespace: str, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                                        propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise

    def rank0_log(self, namespace: str, name: str, lines: int) -> str:
        """The last ``lines`` of the newest rank-0 (node 0) pod's training container, or why there is none."""
        from kubernetes.client.exceptions import ApiException

        selector = f"{JOBSET_NAME_LABEL}={name},{REPLICATED_JOB_LABEL}={NODE},{JOB_INDEX_LABEL}=0"
        try:
            pods = self.core.list_namespaced_pod(namespace, label_selector=selector).items
            if not pods:
                return f"(no pod of node 0 found with labels {selector})"
            pod = max(pods, key=lambda x: str(x.metadata.creation_timestamp or ""))  # the newest attempt
            log = self.core.read_namespaced_pod_log(pod.metadata.name, namespace, container=NODE, tail_lines=lines)
        except ApiException as exc:
            return f"(rank 0's log could not be read: {exc.status} {exc.reason})"
        return f"--- last {lines} lines of pod {pod.metadata.name} ---\n{log}"


def current_namespace(kj: TrainJobParams, sa_file: Path = SA_NAMESPACE_FILE) -> str:
    """``kubeflow.train_job.namespace``, else the namespace of the pod's service account."""
    if kj.namespace:
        return kj.namespace
    if sa_file.is_file():
        return sa_file.read_text(encoding="utf-8").strip()
    raise TrainJobError(f"kubeflow.train_job.namespace is null and {sa_file} does not exist (not in a pod): set "
                        "kubeflow.train_job.namespace to the namespace the pipeline runs in")


# --- create, wait, report --------------------------------------------------------------------------


def condition(job: dict, kind: str) -> dict | None:
    """The job's status condition of type ``kind`` when it is True."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind and c.get("status") == "True":
            return c
    return None


def _describe(job: dict) -> str:
    conds = (job.get("status") or {}).get("conditions") or []
    return "; ".join(f"{c.get('type')}={c.get('status')} ({c.get('reason')}: {c.get('message')})"
                     for c in conds) or "no conditions yet"


def create_or_attach(api: KubeApi, namespace: str, body: dict, poll_s: float,
                     prepare: Callable[[], None] = lambda: None, sleep: Callable[[float], None] = time.sleep) -> bool:
    """Create the job; a retry of the step finds it already there and waits on it, unless it failed.

    A job of the same name left Failed (by an earlier attempt, kept by ``delete: on_success``) is
    deleted first, so that the retry trains again instead of reporting the old failure.

    Args:
        prepare: called just before the job is created (not when attaching: the running job's
            files stay as they are), e.g. to put the data and spec on the volume.

    Returns:
        True when it created the job, False when it attached to an existing one.
    """
    name = body["metadata"]["name"]
    old = api.get(namespace, name)
    if old is not None and condition(old, "Failed") is None:
        print(f"TrainJob {namespace}/{name} exists ({_describe(old)}): waiting on it (a retry of this step)",
              flush=True)
        return False
    if old is not None:
        print(f"TrainJob {namespace}/{name} failed before ({_describe(old)}): deleting it and starting again",
              flush=True)
        api.delete(namespace, name)
        while api.get(namespace, name) is not None:
            sleep(poll_s)
    prepare()
    api.create(namespace, body)
    print(f"created TrainJob {namespace}/{name}: {body['spec']['trainer']['numNodes']} node(s) x "
          f"{body['spec']['trainer']['numProcPerNode']} process(es), runtime {body['spec']['runtimeRef']['name']}",
          flush=True)
    return True


def wait(api: KubeApi, namespace: str, name: str, kj: TrainJobParams,
         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> dict:
    """Poll until the job is Complete; return it.

    Raises:
        TrainJobError: the job failed (its condition message and rank 0's log tail), vanished, or
            did not finish within ``kj.timeout_s`` (then it is deleted unless ``delete: never``).
    """
    deadline = clock() + kj.timeout_s
    seen = ""
    while True:
        job = api.get(namespace, name)
        if job is None:
            raise TrainJobError(f"TrainJob {namespace}/{name} disappeared while the train step waited on it "
                                "(deleted by someone else?)")
        state = _describe(job)
        if state != seen:
            print(f"TrainJob {namespace}/{name}: {state}", flush=True)
            seen = state
        if condition(job, "Complete") is not None:
            return job
        failed = condition(job, "Failed")
        if failed is not None:
            log = api.rank0_log(namespace, name, kj.log_tail_lines)
            if kj.delete == "always":
                api.delete(namespace, name)
            raise TrainJobError(f"TrainJob {namespace}/{name} failed: {failed.get('reason')}: "
                                f"{failed.get('message')}\n{log}")
        if clock() >= deadline:
            log = api.rank0_log(namespace, name, kj.log_tail_lines)
            if kj.delete != "never":
                api.delete(namespace, name)
            raise TrainJobError(f"TrainJob {namespace}/{name} did not finish within kubeflow.train_job.timeout_s="
                                f"{kj.timeout_s} ({state}); "
                                f"{'kept' if kj.delete == 'never' else 'deleted'} it\n{log}")
        sleep(kj.poll_s)


def run_trainjob(api: KubeApi, namespace: str, body: dict, kj: TrainJobParams,
                 prepare: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> dict:
    """Create (or attach to) the job, wait for it, print rank 0's log tail, delete it per ``kj.delete``."""
    name = body["metadata"]["name"]
    create_or_attach(api, namespace, body, kj.poll_s, prepare, sleep)
    job = wait(api, namespace, name, kj, clock, sleep)
    print(api.rank0_log(namespace, name, kj.log_tail_lines), flush=True)
    if kj.delete != "never":
        api.delete(namespace, name)
    return job


def train_on_cluster(p: Params, train: TrainParams, train_path: Path, model_files: Path, model_dir: Path,
                     api: KubeApi | None = None):
    """Train on ``train.num_nodes`` nodes through a TrainJob; returns rank 0's ``TrainSummary``.

    Args:
        p: all params (``kubeflow.model_pvc`` must be set: the job's pods share files through it).
        train: the train section to run.
        train_path: the step's training records (copied to the volume for the pods).
        model_files: where the model goes, on the model volume (``dagllm.pipeline.artifacts.model_files_for``).
        model_dir: the Model artifact folder; gets ``train_run.json``, ``train_metrics.json`` and
            ``train_loss.csv`` as the local train step writes them.
        api: the Kubernetes API (tests pass one on a loopback server).

    Raises:
        TrainJobError: no model volume, the job failed or timed out, or it wrote no summary.
    """
    from dagllm.training.finetune import TrainSummary

    if p.kubeflow.model_pvc is None:
        raise TrainJobError(f"train.num_nodes={train.num_nodes} needs kubeflow.model_pvc: the nodes of the "
                            "TrainJob read the data and write the model on that shared volume")
    files = JobFiles(model_files.parent / "trainjob")
    reports = files.reports

    def prepare() -> None:
        files.root.mkdir(parents=True, exist_ok=True)
        files.summary.unlink(missing_ok=True)  # a summary left by an earlier, failed job is not this job's
        shutil.copyfile(train_path, files.records)
        make_spec(train, p.mlflow, files.records, model_files, reports["train_run.json"],
                  reports["train_metrics.json"], reports["train_loss.csv"], pipeline_run="kfp",
                  summary_path=files.summary).write(files.spec)

    namespace = current_namespace(p.kubeflow.train_job)
    api = api or KubeApi()
    body = build_trainjob(p, train, job_name(model_files), files.spec)
    run_trainjob(api, namespace, body, p.kubeflow.train_job, prepare)
    if not files.summary.is_file():
        raise TrainJobError(f"TrainJob {body['metadata']['name']} completed but rank 0 wrote no summary at "
                            f"{files.summary}: do all nodes mount kubeflow.model_pvc at {p.kubeflow.model_mount}?")
    model_dir.mkdir(parents=True, exist_ok=True)
    for fname, src in reports.items():
        if src.is_file():
            shutil.copyfile(src, model_dir / fname)
    return TrainSummary(**json.loads(files.summary.read_text(encoding="utf-8")))
