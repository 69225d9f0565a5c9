"""DeepSpeed configs kept in the repo, and the process set-up for one process or a launcher.

Under ``deepspeed`` or ``torchrun`` the launcher sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``. Run directly (``dagllm train``, tests, DVC), the stage is a
world of one: :func:`single_process_env` sets those variables itself, with a free loopback port so
that several runs on one machine do not collide. These are read at run time only.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).with_name("deepspeed")
LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def deepspeed_config(name: str) -> dict[str, Any]:
    """The JSON config ``deepspeed/<name>.json`` (``zero2``, ``zero3``, ``zero3_offload``) as a dict.

    ``"auto"`` values are filled in by transformers from the training arguments (batch size,
    accumulation, lr, clipping, bf16), so params.yaml stays the one source of truth.
    """
    path = CONFIG_DIR / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
        raise ValueError(f"train.deepspeed={name!r}: no config {path.name}; known: {', '.join(known)}")
    return json.loads(path.read_text(encoding="utf-8"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def under_launcher() -> bool:
    """True when a launcher (deepspeed, torchrun) started this process."""
    return all(v in os.environ for v in LAUNCHER_VARS)


def rank() -> int:
    """This process's global rank (0 outside a launcher)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Number of processes in the run (1 outside a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    """This process's rank on its node (0 outside a launcher)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def init_process_group() -> None:
    """Join the launcher's process group: NCCL on GPUs (after binding ``cuda:LOCAL_RANK``), else gloo.

    The device is bound before the first collective: otherwise NCCL puts every rank of a node on
    cuda:0 ("Duplicate GPU detected"). transformers, accelerate and DeepSpeed reuse this group.
    """
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
        dist.init_process_group(backend="nccl", device_id=torch.device("cuda", local_rank()))
    else:
        dist.init_process_group(backend="gloo")


@contextmanager
def single_process_env() -> Iterator[None]:
    """Within the block, a world of one for DeepSpeed when no launcher set one up (loopback, free port).

    The variables are removed again afterwards: a child process started later (a kfp.local task, a
    test's subprocess) must not mistake them for a launcher's and reuse a port this process holds.
    """
    if under_launcher():
        yield
        return
    added = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
             "MASTER_PORT": str(_free_port())}
    added = {k: v for k, v in added.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


@contextmanager
def deepspeed_session() -> Iterator[None]:
    """Run DeepSpeed training inside; afterwards the process is back to plain transformers.

    transformers keeps a process-wide reference to the last DeepSpeed config; left in place, a later
    ``from_pretrained`` in the same process (evaluate after train, tests) would build the model
    under ZeRO-3 partitioning.
    """
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    skip_cpu_shm_comm()
    try:
        with single_process_env():
            yield
    finally:
        unset_hf_deepspeed_config()


def skip_cpu_shm_comm() -> None:
    """Do not JIT-build DeepSpeed's CPU shared-memory all-reduce on CPU.

    DeepSpeed compiles that op (25-100 s on 2 cores) whenever its torch backend starts on CPU; it
    only speeds up all-reduce between processes of one node, and CPU training here is the twin of
    the GPU path (tests, a laptop): gloo's all-reduce does. GPU runs are left untouched.
    """
    import torch

    if torch.cuda.is_available():
        return
    import deepspeed.ops

    # the probe result is a plain dict that DeepSpeed consults before building the op
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
