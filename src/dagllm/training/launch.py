"""The launcher: N processes on one machine, or one node of N, through torchrun.

:func:`dagllm.stages.train.run_train` trains in its own process when
``train.num_processes * train.num_nodes == 1`` (or when a launcher already started it); otherwise it
calls :func:`run_ranks`, which writes a *spec* (the train params, MLflow params and output paths as
JSON) and runs ``torchrun`` over ``python -m dagllm.training.launch SPEC``: every rank reads the same
spec and calls :func:`dagllm.training.finetune.fine_tune`, which shards the data (the
Trainer's distributed sampler), lets rank 0 alone talk to MLflow and write files, and resumes every
rank from the checkpoint rank 0 picked. Rank 0 writes the run summary next to the spec, which
:func:`run_ranks` returns.

- One node: ``torchrun --standalone`` (a free loopback rendezvous).
- Several nodes: every node runs the same command; the rendezvous (``PET_MASTER_ADDR``,
  ``PET_MASTER_PORT``, ``PET_NODE_RANK``) comes from the cluster job that started the pods (a
  Kubeflow TrainJob or PyTorchJob sets them; :mod:`dagllm.training.trainjob` builds one). torchrun
  reads those variables itself.

On GPUs the backend is NCCL and each rank binds ``cuda:LOCAL_RANK`` before its first collective; on
CPU it is gloo.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dagllm.params import MlflowParams, TrainParams

SPEC_NAME = "spec.json"
SUMMARY_NAME = "summary.json"
# the rendezvous of a multi-node job, as torchrun reads it from the environment
RENDEZVOUS_VARS = ("PET_MASTER_ADDR", "PET_MASTER_PORT", "PET_NODE_RANK")


class LaunchError(ValueError):
    """The distributed run could not start or a rank failed (a ValueError: the CLI prints it as one line)."""


@dataclass
class TrainSpec:
    """Everything a rank needs to train: params and where the outputs go (all paths absolute)."""

    train: dict
    mlflow: dict
    train_path: str
    model_dir: str
    run_file: str
    metrics_path: str
    curve_path: str
    pipeline_run: str = "local"
    checkpoint_dir: str | None = None
    summary_path: str | None = None

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.__dict__, indent=1), encoding="utf-8")
        return path

    @classmethod
    def read(cls, path: Path) -> TrainSpec:
        try:
            return cls(**json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as exc:
            raise LaunchError(f"{path}: not a training spec ({exc}); it is written by dagllm.training.launch") from None


def world_size(params: TrainParams) -> int:
    """Processes in the whole run."""
    return params.num_processes * params.num_nodes


def make_spec(params: TrainParams, mlflow_params: MlflowParams, train_path: Path, model_dir: Path, run_file: Path,
              metrics_path: Path, curve_path: Path, pipeline_run: str = "local",
              checkpoint_dir: Path | None = None, summary_path: Path | None = None) -> TrainSpec:
    """The spec for ``fine_tune``'s arguments (paths made absolute: ranks may start elsewhere)."""
    from dagllm.registry.tracking import absolute_uri

    mp = mlflow_params.model_dump(mode="json")
    mp["tracking_uri"] = absolute_uri(mp["tracking_uri"])  # ranks may start in another directory
    if "://" not in mp["artifact_root"]:
        mp["artifact_root"] = str(Path(mp["artifact_root"]).resolve())
    return TrainSpec(
        train=params.model_dump(mode="json"), mlflow=mp, train_path=_abs(train_path), model_dir=_abs(model_dir),
        run_file=_abs(run_file), metrics_path=_abs(metrics_path), curve_path=_abs(curve_path),
        pipeline_run=pipeline_run, checkpoint_dir=_abs(checkpoint_dir) if checkpoint_dir else None,
        summary_path=_abs(summary_path) if summary_path else None)


def _abs(p: Path) -> str:
    return str(Path(p).resolve())


def torchrun_command(params: TrainParams, spec_path: Path, entry: list[str] | None = None) -> list[str]:
    """The torchrun command line that starts this node's ranks on ``spec_path``.

    Args:
        params: the train section (``num_processes`` per node, ``num_nodes``).
        spec_path: the spec every rank reads.
        entry: what each rank runs (default ``-m dagllm.training.launch``; tests pass a probe script).

    Raises:
        LaunchError: several nodes but no rendezvous in the environment.
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={params.num_processes}",
           f"--nnodes={params.num_nodes}", "--max-restarts=0"]
    if params.num_nodes == 1:
        cmd.append("--standalone")
    else:
        missing = [v for v in RENDEZVOUS_VARS if v not in os.environ]
        if missing:
            raise LaunchError(
                f"train.num_nodes={params.num_nodes} needs the rendezvous of a cluster job, but {', '.join(missing)} "
                "is not set. On Kubeflow the train step creates a TrainJob that sets them "
                "(train.num_nodes > 1 in the DAG); by hand, run the same command on every node with PET_MASTER_ADDR, "
                "PET_MASTER_PORT and PET_NODE_RANK (0..num_nodes-1) exported.")
    return cmd + (entry or ["-m", "dagllm.training.launch"]) + [str(spec_path)]


def child_env(num_processes: int) -> dict[str, str]:
    """This process's environment without a launcher's variables (torchrun sets its own).

    On CPU the cores are split between the ranks (torchrun would give each rank one thread).
    """
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                                                             "MASTER_ADDR", "MASTER_PORT")}
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // num_processes)))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_ranks(params: TrainParams, mlflow_params: MlflowParams, train_path: Path, model_dir: Path, run_file: Path,
              metrics_path: Path, curve_path: Path, pipeline_run: str = "local", checkpoint_dir: Path | None = None):
    """This node's ranks through torchrun on a spec of these arguments; returns rank 0's
    :class:`~dagllm.training.finetune.TrainSummary` (a placeholder on the nodes without rank 0).

    Raises:
        LaunchError: a rank failed (its output is above, on this process's stdout/stderr).
    """
    from dagllm.training.finetune import TrainSummary

    with tempfile.TemporaryDirectory(prefix="dagllm-launch-") as tmp:
        spec = make_spec(params, mlflow_params, train_path, model_dir, run_file, metrics_path, curve_path,
                         pipeline_run, checkpoint_dir, Path(tmp) / SUMMARY_NAME)
        spec_path = spec.write(Path(tmp) / SPEC_NAME)
        _torchrun(torchrun_command(params, spec_path), params)
        summary_path = Path(spec.summary_path or "")
        if not summary_path.is_file():
            # another node's rank 0 wrote it (multi-node): this node only reports success
            return TrainSummary("", 0, float("nan"), 0.0, 0, str(model_dir))
        return TrainSummary(**json.loads(summary_path.read_text(encoding="utf-8")))


def _torchrun(cmd: list[str], params: TrainParams) -> None:
    """Run torchrun's agent in this process, so the ranks are this process's children.

    Each rank dies with its parent (:func:`die_with_parent`): a ``dagllm train`` killed by SIGKILL
    or the OOM killer takes its ranks along instead of leaving them training (and then deleting the
    checkpoints a restart would resume from).
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    saved = dict(os.environ)
    env = child_env(params.num_processes)  # before the clear: it is this environment, filtered
    os.environ.clear()
    os.environ.update(env)
    try:
        run(parse_args(cmd[3:]))  # cmd = [python, -m, torch.distributed.run, ...]
    except ChildFailedError as exc:
        raise LaunchError(f"distributed training failed ({params.num_processes} process(es) x {params.num_nodes} "
                          f"node(s)): {exc.format_msg().strip()[:2000]}; the rank's traceback is above") from None
    finally:
        os.environ.clear()
        os.environ.update(saved)


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent (torchrun's agent) dies; no-op elsewhere."""
    import ctypes
    import signal

    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    if libc.prctl(pr_set_pdeathsig, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def run_spec(spec: TrainSpec):
    """One rank's work: ``fine_tune`` on the spec; rank 0 writes the summary next to it."""
    from dagllm.training import distributed
    from dagllm.training.finetune import fine_tune

    s = fine_tune(TrainParams.model_validate(spec.train), MlflowParams.model_validate(spec.mlflow),
                  Path(spec.train_path), Path(spec.model_dir), Path(spec.run_file), Path(spec.metrics_path),
                  Path(spec.curve_path), spec.pipeline_run, Path(spec.checkpoint_dir) if spec.checkpoint_dir else None)
    if distributed.rank() == 0 and spec.summary_path:
        Path(spec.summary_path).write_text(json.dumps(s.to_dict()), encoding="utf-8")
    return s


def launch_node(spec_path: Path) -> None:
    """One node of a multi-node run: torchrun over this node's ranks of ``spec_path``.

    What each pod of a Kubeflow TrainJob runs (``python -m dagllm.training.launch --node SPEC``,
    :mod:`dagllm.training.trainjob`): the job set the rendezvous variables, the spec and the data lie on
    the shared model volume.

    Raises:
        LaunchError: no rendezvous in the environment, or a rank failed.
    """
    params = TrainParams.model_validate(TrainSpec.read(spec_path).train)
    _torchrun(torchrun_command(params, spec_path), params)


def main(argv: list[str] | None = None) -> int:
    """``python -m dagllm.training.launch SPEC``: the entry point of every rank; ``--node SPEC``: of a node."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "--node":
        from dagllm.runtime import offline

        offline()
        try:
            launch_node(Path(args[1]))
        except LaunchError as exc:
            print(f"dagllm.training.launch --node: {exc}", file=sys.stderr)
            return 1
        return 0
    if len(args) != 1:
        print("usage: python -m dagllm.training.launch SPEC.json (a rank, started by torchrun; see dagllm train)\n"
              "       python -m dagllm.training.launch --node SPEC.json (one node of a TrainJob)",
              file=sys.stderr)
        return 2
    from dagllm.runtime import offline

    die_with_parent()
    offline()
    run_spec(TrainSpec.read(Path(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
