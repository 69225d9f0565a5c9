"""Periodic checkpoints and resume after a crash.

The Trainer writes ``checkpoint-N/`` folders (model, optimizer or DeepSpeed state, scheduler, one
RNG state per rank, and ``trainer_state.json``). Rank 0 writes ``trainer_state.json`` without
waiting for the other ranks, so with several processes a folder whose ``trainer_state.json`` parses
may still lack another rank's ``rng_state_R.pth`` (seen: a run killed there left it empty and the
resume died with ``EOFError``). So a checkpoint counts as complete only once it is sealed: every rank
has passed the Trainer's save (a barrier in :class:`dagllm.training.callbacks.CheckpointSeal`) and
rank 0 has written ``dagllm-complete.json`` with the world size. A run killed before that leaves an
unsealed folder, which is skipped. The checkpoints folder also holds ``run.json``: the digest of
the training parameters and data, and the MLflow run id. A checkpoint is resumed only when that
digest matches (same params, same data), so a changed ``params.yaml`` never continues a stale run;
the resumed run logs to the same MLflow run.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

from dagllm.io import read_json, write_json
from dagllm.params import TrainParams

RUN_FILE = "run.json"
SEAL_FILE = "dagllm-complete.json"
_CKPT = re.compile(r"^checkpoint-(\d+)$")

# settings that do not change what is trained: a resumed run may differ in these
_NOT_IN_KEY = {"save_every", "keep_checkpoints", "resume", "upload_checkpoints", "system_metrics_interval_s",
               "log_every"}


def run_key(params: TrainParams, data_sha256: str) -> str:
    """Digest of what determines the training trajectory: the params that matter and the data."""
    relevant = {k: v for k, v in params.model_dump(mode="json").items() if k not in _NOT_IN_KEY}
    blob = json.dumps({"params": relevant, "data": data_sha256}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def seal(checkpoint: Path, world_size: int) -> None:
    """Mark ``checkpoint`` complete; call once every rank has finished saving it."""
    write_json(checkpoint / SEAL_FILE, {"world_size": world_size})


def complete_checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every complete (sealed, with a readable trainer state) checkpoint, oldest first."""
    found = []
    for p in ckpt_dir.glob("checkpoint-*") if ckpt_dir.is_dir() else []:
        m = _CKPT.match(p.name)
        if not m:
            continue
        try:
            read_json(p / SEAL_FILE)
            read_json(p / "trainer_state.json")
        except (OSError, ValueError):
            continue  # killed while saving (some rank had not finished): not resumable
        found.append((int(m.group(1)), p))
    return sorted(found)


def prepare(ckpt_dir: Path, key: str, resume: bool) -> tuple[Path | None, str | None]:
    """Decide where training starts: the latest complete checkpoint of the same run, or from scratch.

    A checkpoint folder of another run (different key) or with resume off is cleared.

    Returns:
        ``(checkpoint to resume from or None, MLflow run id to continue or None)``.
    """
    meta_path = ckpt_dir / RUN_FILE
    meta = read_json(meta_path) if meta_path.is_file() else {}
    done = complete_checkpoints(ckpt_dir)
    if resume and meta.get("key") == key and done:
        return done[-1][1], meta.get("mlflow_run_id")
    if ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)
    ckpt_dir.mkdir(parents=True)
    return None, None


def record_run(ckpt_dir: Path, key: str, mlflow_run_id: str) -> None:
    """Remember which run the checkpoints belong to (read by :func:`prepare` on restart)."""
    write_json(ckpt_dir / RUN_FILE, {"key": key, "mlflow_run_id": mlflow_run_id})
