"""Run the whole DAG in real containers of the project's image: ``kfp.local.DockerRunner``.

The engine is whatever serves the Docker API at ``DOCKER_HOST`` (here: podman's API service;
``make test-containers`` starts one). Each task runs in ``image`` with the pipeline root
bind-mounted; MLflow must be a server the containers reach (``params.mlflow.tracking_uri``), since a
SQLite file or a host path would not be shared with them.

Why a patched container start: kfp 2.17's DockerRunner starts every task with ``auto_remove=True``.
Against podman a short task can vanish before kfp reads it, and kfp then raises ``APIError 500
"no such container"`` or, worse, takes the ``NotFound`` for a success and reports a failed task as
SUCCESS. :func:`run_task_container` keeps the container until its exit code and logs are read,
then removes it; :func:`docker_runner_without_auto_remove` installs it for the duration of a run.
"""

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from dagllm.params import Params
from dagllm.paths import is_url, resolve_mirror
from pipelines.dagllm_pipeline import build_pipeline

#: Every task container this process starts carries ``{RUN_LABEL: RUN_ID}``, so a check for left-over
#: containers sees only its own: another run on the same engine (a second checkout's tests, CI on a
#: shared podman store) uses the same image but never this id.
RUN_LABEL = "dagllm.run"
RUN_ID = uuid.uuid4().hex


def run_task_container(client: Any, image: str, command: list[str], volumes: dict[str, Any],
                       **run_args: Any) -> int:
    """Start one task container, print its logs, return its exit code, then remove it.

    The container carries ``{RUN_LABEL: RUN_ID}`` (see :func:`own_containers`).

    Same signature as ``kfp.local.docker_task_handler.run_docker_container``. The image must be
    present (nothing is pulled: the image is built locally and no registry may be reachable).
    """
    import docker

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise RuntimeError(f"image {image!r} is not in the engine at DOCKER_HOST; build it first "
                           "(components/containers/build.sh, or `make test-containers`)") from None
    labels = {**run_args.pop("labels", {}), RUN_LABEL: RUN_ID}
    # create, then start: a start that fails still leaves a container object to remove
    container = client.containers.create(image=image, command=command, volumes=volumes, labels=labels,
                                         auto_remove=False, **run_args)
    try:
        container.start()
        code = int(container.wait()["StatusCode"])
        print(container.logs(stdout=True, stderr=True).decode(errors="replace"), end="")
        return code
    finally:
        container.remove(force=True)


def own_containers(client: Any) -> list[Any]:
    """The containers this process started that still exist (all states): none after a run."""
    return client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={RUN_ID}"})


def describe(containers: Sequence[Any]) -> list[str]:
    """One line per container (id, state, command): what an error about left-over containers shows."""
    return [f"{c.short_id} {c.status} {c.attrs.get('Config', {}).get('Cmd')}" for c in containers]


@contextlib.contextmanager
def docker_runner_without_auto_remove() -> Iterator[None]:
    """Make kfp.local's DockerRunner start task containers with :func:`run_task_container`."""
    from kfp.local import docker_task_handler

    original = docker_task_handler.run_docker_container
    docker_task_handler.run_docker_container = run_task_container
    try:
        yield
    finally:
        docker_task_handler.run_docker_container = original


def containerize(params: Params, image: str) -> Params:
    """The params as the containers need them: the given image for every task, no retries, no PVC.

    A mirror given as a host folder keeps its absolute path (:func:`mirror_mounts` mounts it at the
    same path); ``samples`` stays ``samples`` (the image bundles them). Relative run-time files
    (the promotion policy) resolve inside the image through ``DAGLLM_HOME``.
    """
    data: dict[str, Any] = params.to_dict()
    if params.paths.mirror not in ("samples", "upstream") and not is_url(params.paths.mirror):
        data["paths"]["mirror"] = str(resolve_mirror(params.paths.mirror).resolve())
    for local in data["ingest"]["local"]:
        local["path"] = str(Path(local["path"]).resolve())
    data["kubeflow"]["images"] = {"cpu": image, "train": image}
    data["kubeflow"].update(model_pvc=None, retries=0)
    if not is_url(params.mlflow.tracking_uri):
        raise ValueError(f"mlflow.tracking_uri={params.mlflow.tracking_uri!r}: containers need an MLflow server "
                         "they can reach (http://...), not a local store")
    return Params.model_validate(data)


def mirror_mounts(params: Params) -> list[Any]:
    """Read-only bind mounts for the host folders the ingest step reads (mirror, local sources)."""
    import docker

    paths = [Path(params.paths.mirror)] if Path(params.paths.mirror).is_absolute() else []
    paths += [Path(x.path).resolve() for x in params.ingest.local]
    # A path that does not exist is not mounted: the task then reports it missing, by name.
    return [docker.types.Mount(target=str(p), source=str(p), type="bind", read_only=True)
            for p in paths if p.exists()]


def run_containers(params: Params, image: str, pipeline_root: Path, network: str = "host",
                   extra_mounts: Sequence[Any] = ()) -> dict[str, Any]:
    """Run the DAG with ``kfp.local.DockerRunner`` in ``image``; returns the registered version.

    Args:
        params: the run's params; ``mlflow.tracking_uri`` must be an MLflow server URL.
        image: the project image, present in the engine at ``DOCKER_HOST``.
        pipeline_root: host folder for the task outputs (made writable by the image's uid 1000).
        network: the containers' network mode; ``host`` lets them reach a loopback MLflow server.
        extra_mounts: further ``docker.types.Mount`` objects.
    """
    from kfp import local

    p = containerize(params, image)
    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o777)  # the image runs as uid 1000, the pipeline root belongs to whoever runs this
    runner = local.DockerRunner(network_mode=network, mounts=[*mirror_mounts(p), *extra_mounts])
    local.init(runner=runner, pipeline_root=str(root), raise_on_error=True)
    with docker_runner_without_auto_remove():
        task = build_pipeline(p)()
    return {"registered_version": task.output, "pipeline_root": str(root)}
