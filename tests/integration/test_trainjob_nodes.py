"""What every pod of the train step's TrainJob runs, on two "nodes" of this machine (CPU, gloo).

Each node is its own ``python -m dagllm.training.launch --node SPEC`` process (the TrainJob's
command, src/dagllm/training/trainjob.py) with the rendezvous variables the Kubeflow Trainer torch
runtime sets in each pod (``PET_NNODES``, ``PET_NPROC_PER_NODE``, ``PET_NODE_RANK``,
``PET_MASTER_ADDR``, ``PET_MASTER_PORT``): the two torchrun agents meet, one rank per node trains,
and rank 0 (node 0) alone writes the summary, model and reports at the spec's paths, as the step
then reads them from the shared volume.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dagllm.params import Params
from dagllm.training import launch as train_launch

from ..conftest import small_params
from .test_training import LAUNCHER_ENV, TINY, records

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spec(tmp_path: Path) -> Path:
    data = small_params()
    data["train"].update(max_steps=3, batch_size=2, save_every=0, log_every=1, max_seq_len=64, tiny=TINY,
                         num_nodes=2, num_processes=1, deepspeed=None)
    data["mlflow"].update(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path / "mlart"))
    p = Params.model_validate(data)
    vol = tmp_path / "volume"
    vol.mkdir()
    records(40).to_parquet(vol / "records.parquet")
    spec = train_launch.make_spec(p.train, p.mlflow, vol / "records.parquet", vol / "hf", vol / "train_run.json",
                            vol / "train_metrics.json", vol / "train_loss.csv", "kfp",
                            summary_path=vol / "summary.json")
    return spec.write(vol / "spec.json")


def _node_env(tmp_path: Path, rank: int | None, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV and not k.startswith("PET_")}
    env.update(TMPDIR=str(tmp_path), OMP_NUM_THREADS="1")
    if rank is not None:
        env.update(PET_NNODES="2", PET_NPROC_PER_NODE="1", PET_NODE_RANK=str(rank), PET_MASTER_ADDR="127.0.0.1",
                   PET_MASTER_PORT=str(port))
    return env


def test_two_nodes_train_and_rank0_writes_the_outputs(tmp_path):
    spec = _spec(tmp_path)
    port = _free_port()
    cmd = [sys.executable, "-m", "dagllm.training.launch", "--node", str(spec)]
    logs = [tmp_path / f"node-{r}.log" for r in (0, 1)]
    # output to files, not pipes: a node blocked on a full pipe would stall the other in a collective
    nodes = [subprocess.Popen(cmd, cwd=tmp_path, env=_node_env(tmp_path, r, port), stdout=log.open("w"),
                              stderr=subprocess.STDOUT) for r, log in zip((0, 1), logs)]
    try:
        rcs = [n.wait(timeout=300) for n in nodes]
    finally:
        for n in nodes:
            if n.poll() is None:
                n.kill()
    assert rcs == [0, 0], "\n".join(log.read_text()[-3000:] for log in logs)
    vol = spec.parent
    summary = json.loads((vol / "summary.json").read_text(encoding="utf-8"))
    assert summary["steps"] == 3 and summary["model_dir"] == str(vol / "hf")
    assert (vol / "hf" / "config.json").is_file()
    assert json.loads((vol / "train_run.json").read_text(encoding="utf-8"))["run_id"] == summary["run_id"]
    assert len((vol / "train_loss.csv").read_text(encoding="utf-8").strip().splitlines()) == 1 + 3


def test_a_node_without_the_rendezvous_says_so(tmp_path):
    spec = _spec(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "dagllm.training.launch", "--node", str(spec)], cwd=tmp_path,
                          env=_node_env(tmp_path, None, 0), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "PET_MASTER_ADDR" in proc.stderr and "TrainJob" in proc.stderr
