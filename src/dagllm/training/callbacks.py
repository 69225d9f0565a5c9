"""Trainer callbacks: checkpoint seals, MLflow per-step metrics, and checkpoint uploads off the training thread."""

from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from transformers import TrainerCallback

from dagllm.training import checkpoints

# Trainer log keys -> MLflow metric names (the rest are logged under their own names)
RENAME = {"train_tokens_per_second": "tokens_per_second", "learning_rate": "lr"}


def scalars(entry: dict) -> dict[str, float]:
    """The numeric values of one Trainer log entry, with MLflow-safe names."""
    out = {}
    for k, v in entry.items():
        if k == "step" or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        out[RENAME.get(k, k).replace("/", "_")] = float(v)
    return out


class CheckpointSeal(TrainerCallback):
    """Seals each saved checkpoint once every rank has written its part (see :mod:`dagllm.training.checkpoints`).

    On every rank, first in the callback list: the ranks meet at a barrier after the Trainer's save,
    then rank 0 writes the seal, so a resume (and the upload, which comes after) sees whole folders.
    """

    def on_save(self, args, state, control, **kwargs):
        if args.world_size > 1:
            import torch.distributed as dist

            dist.barrier()
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                checkpoints.seal(folder, args.world_size)


class MlflowMetrics(TrainerCallback):
    """Logs loss, lr, grad norm, tokens/s and tokens seen at every logging step (rank 0 only)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def on_log(self, args, state, control, logs=None, **kwargs):
        import mlflow

        if not state.is_world_process_zero or not state.log_history:
            return
        # log_history holds the raw numbers; `logs` may already be formatted for printing
        values = scalars(state.log_history[-1])
        if values:
            mlflow.MlflowClient().log_batch(self.run_id, metrics=[
                mlflow.entities.Metric(k, v, int(mlflow.utils.time.get_current_time_millis()), state.global_step)
                for k, v in values.items()])


class CheckpointUploader(TrainerCallback):
    """Uploads each saved checkpoint to the MLflow run from a background thread.

    The checkpoint's files are hard-linked into a staging folder first (no data copied, instant),
    so the Trainer may rotate the original away while the upload runs; training never waits on
    the upload. :meth:`wait` blocks until every upload finished and re-raises the first failure.
    """

    def __init__(self, run_id: str, staging_root: Path | None = None) -> None:
        self.run_id = run_id
        self.staging_root = staging_root
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ckpt-upload")
        self.futures: list[Future] = []

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        src = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not src.is_dir():
            return
        staging = Path(tempfile.mkdtemp(prefix="ckpt-", dir=self.staging_root))
        dest = staging / src.name
        shutil.copytree(src, dest, copy_function=_link_or_copy)
        self.futures.append(self.pool.submit(self._upload, dest, staging))

    def _upload(self, folder: Path, staging: Path) -> str:
        import mlflow

        try:
            mlflow.MlflowClient().log_artifacts(self.run_id, str(folder), f"checkpoints/{folder.name}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return folder.name

    def wait(self) -> list[str]:
        """Block until all uploads are done; returns the uploaded checkpoint names."""
        try:
            return [f.result() for f in self.futures]
        finally:
            self.pool.shutdown(wait=True)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem: fall back to a copy
        shutil.copy2(src, dst)
