"""The KFP v2 DAG: ingest -> render -> validate -> decontaminate -> balance -> train -> evaluate -> register.

The pipeline has one parameter, ``params_json``: the whole of params.yaml as JSON, with its
default taken from params.yaml at compile time (nothing is read from the environment). Every
component parses it into the same typed model the CLI and DVC stages use.

Cluster settings come from the ``kubeflow`` section of params.yaml, also at compile time
(:func:`apply_cluster_settings`): images, CPU/memory requests and limits on every task, GPUs,
node selector and tolerations for train and evaluate, the model PVC, Secrets as env, a
memory-backed /dev/shm for training, retries and caching. kfp.local ignores the Kubernetes part.

Caching: on, except ``fingerprint`` (it digests the source files and the code, and hands each
stage its params slice: cached stages key on those, so an unchanged scheduled run is all cache
hits and a change reruns only the stages that read it, and what follows them) and ``register``
(it changes the MLflow registry and must happen on every run). Tasks in the CUDA image are cached
only when that image is pinned by digest (:func:`cached`).
"""


# No `from __future__ import annotations` here or in components/: kfp reads the annotations.
import json
from pathlib import Path
from typing import Any

from kfp import compiler, dsl
from kfp import kubernetes as k8s

from components.stages import (
    balance_op,
    decontaminate_op,
    evaluate_op,
    fingerprint_op,
    ingest_op,
    register_op,
    render_op,
    train_op,
    validate_op,
)
from dagllm.params import KubeflowParams, Params
from dagllm.paths import is_url, resolve_mirror
from dagllm.registry.tracking import absolute_uri

PIPELINE_NAME = "dagllm"
DEFAULT_OUTPUT = Path("pipelines/compiled/dagllm.yaml")  # params.yaml as is: kfp.local, the laptop
# params.yaml + the cluster profile (pipelines/cluster.yaml): the spec to submit with the stock kfp
# CLI (kept in git as well; `make pipeline-compile` writes both)
CLUSTER_OUTPUT = Path("pipelines/compiled/dagllm-cluster.yaml")
# Tasks that talk to MLflow (runs, registry): retried, get the credentials, read the model PVC.
SERVICE_TASKS = ("train", "evaluate", "register")
GPU_TASKS = ("train", "evaluate")
NOT_CACHED = ("fingerprint", "register")
MLFLOW_CLIENT_LABEL = "dagllm.io/mlflow-client"
# Tasks that read the source files: fingerprint digests them, ingest reads them, evaluate fetches the
# benchmark sources' files (protocol kit19).
MIRROR_TASKS = ("fingerprint", "ingest", "evaluate")


def params_json(params: Params) -> str:
    return json.dumps(params.to_dict(), ensure_ascii=False, sort_keys=True)


def build_pipeline(params: Params, one_image: bool = False):
    """The ``@dsl.pipeline`` function with ``params`` as the default of ``params_json``.

    ``one_image``: every task runs the same code as ``fingerprint`` (kfp.local's SubprocessRunner,
    this venv), so every task but fingerprint and register may be cached whatever the images.
    """
    default = params_json(params)

    @dsl.pipeline(name=PIPELINE_NAME, description="Korean instruction tuning, DaG LLM / KIT-19 style: "
                  "ingest, render, validate, decontaminate, balance, train, evaluate, register.")
    def dagllm(params_json: str = default) -> str:
        # Each stage gets its own params slice (with the code / source digests) from the
        # uncached fingerprint step, so a cached stage reruns only when what it reads changed.
        fp = fingerprint_op(params_json=params_json).set_display_name("fingerprint sources + params")
        s = fp.outputs
        ingest = ingest_op(params_json=s["ingest"]).set_display_name("ingest sources")
        render = render_op(params_json=s["render"], canonical=ingest.outputs["canonical"])
        render.set_display_name("render Korean templates")
        validate = validate_op(params_json=s["validate"], canonical=ingest.outputs["canonical"],
                               rendered=render.outputs["rendered"])
        validate.set_display_name("validate (great-expectations)")
        decontaminate = decontaminate_op(params_json=s["decontaminate"], validated=validate.outputs["validated"],
                                         canonical=ingest.outputs["canonical"])
        decontaminate.set_display_name("decontaminate (benchmark overlap)")
        balance = balance_op(params_json=s["balance"], records=decontaminate.outputs["decontaminated"])
        balance.set_display_name("dedup + balance tasks")
        train = train_op(params_json=s["train"], train=balance.outputs["train"]).set_display_name("fine-tune")
        # benchmark rows the gate kept (validated/canonical.parquet), never the pre-gate table
        evaluate = evaluate_op(params_json=s["evaluate"], canonical=validate.outputs["validated"],
                               model=train.outputs["model"], validation=balance.outputs["validation"])
        evaluate.set_display_name("evaluate (KIT-19 protocol)")
        register = register_op(params_json=s["register"], model=train.outputs["model"],
                               eval_report=evaluate.outputs["report"]).set_display_name("register in MLflow")
        # Caching, retries and resources per stage: apply_cluster_settings (register is never cached).
        tasks = {"fingerprint": fp, "ingest": ingest, "render": render, "validate": validate,
                 "decontaminate": decontaminate, "balance": balance, "train": train, "evaluate": evaluate,
                 "register": register}
        for name, task in tasks.items():
            multi_node = name == "train" and params.train.num_nodes > 1
            apply_cluster_settings(task, name, watcher_settings(params.kubeflow) if multi_node else params.kubeflow,
                                   one_image)
        return register.outputs["Output"]

    return dagllm


def watcher_settings(k: KubeflowParams) -> KubeflowParams:
    """The train task of a multi-node run only creates and watches the TrainJob (training/trainjob.py):
    no GPU and default CPU/memory for its pod; the job's nodes get ``gpu.train`` and ``resources.train``."""
    return k.model_copy(update={"gpu": {t: g for t, g in k.gpu.items() if t != "train"},
                                 "resources": {t: r for t, r in k.resources.items() if t != "train"}})


def is_pinned(image: str) -> bool:
    """An image named by its digest (``name@sha256:...``), which no push can change."""
    return "@sha256:" in image


def cached(name: str, image: str, k: KubeflowParams, one_image: bool = False) -> bool:
    """Whether the task may be served from KFP's cache.

    The code digest in each slice is computed by ``fingerprint`` in the CPU image, and KFP's cache
    key holds the image *reference*: a task in another image (the CUDA image of train, and of
    evaluate on a GPU) is cached only when that image is pinned by digest, or a rebuild under the
    same tag would be served the old image's results. ``one_image``: :func:`build_pipeline`'s.
    """
    return name not in NOT_CACHED and (one_image or image == k.images.cpu or is_pinned(image))


def apply_cluster_settings(task: dsl.PipelineTask, name: str, k: KubeflowParams, one_image: bool = False) -> None:
    """Bake the ``kubeflow`` settings of params.yaml into one task of the DAG.

    Args:
        task: the pipeline task.
        name: its stage name (``train``, ``evaluate``, ...).
        k: the ``kubeflow`` section of the params.
        one_image: all tasks run fingerprint's code (:func:`build_pipeline`).
    """
    gpu = k.gpu.get(name)  # type: ignore[call-overload]
    wants_gpu = name in GPU_TASKS and gpu is not None and gpu.count > 0
    # the train image has CUDA torch: train always, evaluate when it asks for a GPU (else CPU torch)
    image = k.images.train if name == "train" or wants_gpu else k.images.cpu
    task.set_container_image(image)
    if not is_pinned(image):
        # a tag can be pushed again: every pod pulls what the tag names now, never a node's old copy
        k8s.set_image_pull_policy(task, "Always")
    if k.image_pull_secrets:
        k8s.set_image_pull_secrets(task, list(k.image_pull_secrets))
    res = k.task_resources(name)
    task.set_cpu_request(res.cpu_request).set_cpu_limit(res.cpu_limit)
    task.set_memory_request(res.memory_request).set_memory_limit(res.memory_limit)
    task.set_caching_options(cached(name, image, k, one_image))
    if wants_gpu:
        task.set_accelerator_type(gpu.accelerator).set_accelerator_limit(gpu.count)
        for key, value in k.node_selector.items():
            k8s.add_node_selector(task, label_key=key, label_value=value)
        for tol in k.tolerations:
            k8s.add_toleration(task, key=tol.key, operator=tol.operator, value=tol.value, effect=tol.effect)
    # Every pod: the images' non-root user (the compiler adds no privilege escalation, all
    # capabilities dropped and the RuntimeDefault seccomp profile).
    k8s.set_security_context(task, run_as_user=k.run_as_user, run_as_group=k.run_as_user, run_as_non_root=True)
    for secret in k.secrets:  # only the tasks that use a Secret get it
        if name in secret.tasks:
            k8s.use_secret_as_env(task, secret_name=secret.name, secret_key_to_env=dict(secret.env))
    if name in MIRROR_TASKS and k.mirror_pvc is not None:
        k8s.mount_pvc(task, pvc_name=k.mirror_pvc, mount_path=k.mirror_mount)
    if name in SERVICE_TASKS:
        # The label the mlflow-ingress NetworkPolicy admits (k8s/base/networkpolicy.yaml).
        k8s.add_pod_label(task, label_key=MLFLOW_CLIENT_LABEL, label_value="true")
        task.set_retry(k.retries, backoff_duration=k.retry_backoff, backoff_factor=2)
        if k.model_pvc is not None:
            k8s.mount_pvc(task, pvc_name=k.model_pvc, mount_path=k.model_mount)
    if name == "train":
        # NCCL and the DataLoader workers share memory through /dev/shm; the container default is 64 MiB.
        k8s.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=k.shm_size)


class ClusterProfileError(ValueError):
    """The params would run laptop defaults on a cluster (one message lists every problem)."""


def cluster_problems(params: Params) -> list[str]:
    """What would go wrong on a cluster with these params (empty: ready).

    ``kubeflow.allow_laptop_defaults`` lets a smoke test through on purpose (``sqlite``,
    ``samples``, ``tiny``).
    """
    k, allowed, problems = params.kubeflow, set(params.kubeflow.allow_laptop_defaults), []
    uri = params.mlflow.tracking_uri
    if "sqlite" not in allowed and not (uri == "env" or is_url(uri)):
        problems.append(f"mlflow.tracking_uri={uri!r}: every pod would write its own store; use "
                        "mlflow.tracking_uri: env (MLFLOW_TRACKING_URI from the dagllm-mlflow Secret at run time)")
    mirror = params.paths.mirror
    if "samples" not in allowed and mirror in ("auto", "samples"):
        problems.append(f"paths.mirror={mirror!r}: a pod has no ../shared/data, so ingest would read the bundled "
                        f"samples; set kubeflow.mirror_pvc and paths.mirror: {k.mirror_mount}")
    elif mirror not in ("auto", "samples", "upstream") and not is_url(mirror):
        if k.mirror_pvc is None or not Path(mirror).is_relative_to(k.mirror_mount):
            problems.append(f"paths.mirror={mirror!r}: not on a mounted volume; set kubeflow.mirror_pvc and a "
                            f"paths.mirror under kubeflow.mirror_mount ({k.mirror_mount})")
    if params.train.model == "tiny":
        if "tiny" not in allowed:
            problems.append("train.model='tiny': the toy model would be registered (and could become champion); "
                            "choose a polyglot-ko preset")
    elif k.model_pvc is None or params.train.model_path is None \
            or not Path(params.train.model_path).is_relative_to(k.model_mount):
        problems.append(f"train.model_path={params.train.model_path!r}: the base weights of {params.train.model} "
                        f"must be on the model PVC (kubeflow.model_pvc, under {k.model_mount}); nothing downloads "
                        "in a pod")
    return problems


def check_cluster(params: Params) -> None:
    """Raise :class:`ClusterProfileError` naming every laptop default left in ``params``."""
    problems = cluster_problems(params)
    if problems:
        raise ClusterProfileError("these params are not for a cluster (apply pipelines/cluster.yaml with "
                                  "--profile, or list the exception in kubeflow.allow_laptop_defaults):\n  "
                                  + "\n  ".join(problems))


def with_profile(params: Params, profile: Path) -> Params:
    """``params`` with the partial params mapping of the YAML file ``profile`` merged over it."""
    from dagllm.params import load_yaml_file, params_from_dict

    def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
        return {**base, **{k: merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
                           for k, v in over.items()}}

    over = load_yaml_file(profile) or {}  # duplicate keys, aliases: refused as in params.yaml
    if not isinstance(over, dict):
        raise ClusterProfileError(f"{profile}: a profile is a mapping of params.yaml sections")
    return params_from_dict(merge(params.to_dict(), over), source=str(profile))


def compile_pipeline(params: Params, output: Path = DEFAULT_OUTPUT, cluster: bool = False) -> Path:
    """Compile the DAG to ``output`` (YAML); ``cluster`` first refuses laptop defaults (:func:`check_cluster`)."""
    if cluster:
        check_cluster(params)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(params), package_path=str(output))
    return output


def localize(params: Params) -> Params:
    """Make working-directory-relative settings absolute: kfp.local runs tasks elsewhere."""
    data: dict[str, Any] = params.to_dict()
    if not (is_url(params.paths.mirror) or params.paths.mirror == "upstream"):
        data["paths"]["mirror"] = str(resolve_mirror(params.paths.mirror).resolve())
    for local in data["ingest"]["local"]:
        local["path"] = str(Path(local["path"]).resolve())
    data["mlflow"]["tracking_uri"] = absolute_uri(params.mlflow.tracking_uri)
    data["mlflow"]["artifact_root"] = str(Path(params.mlflow.artifact_root).resolve())
    # No PVC here: the model files stay inside the Model artifact.
    data["kubeflow"]["model_pvc"] = None
    data["register"]["policy"] = str(Path(params.register_.policy).resolve())
    return Params.model_validate(data)


def run_local(params: Params, workdir: Path = Path("kfp_local"), cache: bool = False) -> dict[str, Any]:
    """Run the whole DAG here with ``kfp.local.SubprocessRunner`` (no container, no cluster).

    ``cache``: kfp.local's task cache (in ``workdir/.kfp_cache``), keyed like KFP's on each task's
    inputs; the cache decisions of the compiled DAG can be seen here.
    Returns the registered version and where kfp.local left the task outputs.
    """
    from kfp import local

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(workdir), raise_on_error=True,
               enable_caching=cache)
    task = build_pipeline(localize(params), one_image=True)()
    return {"registered_version": task.output, "pipeline_root": str(workdir)}
