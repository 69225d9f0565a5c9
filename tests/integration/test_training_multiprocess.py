"""Two training processes on CPU (gloo, DeepSpeed ZeRO-2): sharding, rank 0 alone tracks, same weights, resume.

The launcher is the real one (torchrun over ``dagllm.training.launch``); the first run is observed by
``dist_probe.py`` (each rank records its batches, its MLflow set-up calls and its final weights), the
second goes through ``dagllm train train.num_processes=2``, is SIGKILLed after a checkpoint (the whole
process group: CLI, torchrun and both ranks) and restarted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from dagllm.params import load_params
from dagllm.paths import Layout
from dagllm.pipeline.steps import train_params_for_task
from dagllm.training import checkpoints, launch

from ..conftest import registry, small_params
from .test_training import LAUNCHER_ENV, TINY, records

pytestmark = pytest.mark.slow
PROBE = Path(__file__).with_name("dist_probe.py")
STEPS, BATCH, WORLD = 8, 2, 2


def workdir(wd: Path) -> Path:
    params = small_params()
    params["train"].update(max_steps=STEPS, batch_size=BATCH, save_every=2, log_every=1, max_seq_len=64, tiny=TINY,
                           num_processes=WORLD)
    (wd / "data" / "balanced").mkdir(parents=True)
    records(120).to_parquet(wd / "data" / "balanced" / "train.parquet")
    (wd / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    (wd / "tmp").mkdir()
    return wd


def env_for(wd: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}
    return {**env, "TMPDIR": str(wd / "tmp"), **extra}


def probe_run(wd: Path) -> None:
    """Train through the probe; each rank writes wd/probe/rank-R.json."""
    p = load_params(wd / "params.yaml", [])
    lay = Layout.from_params(p.paths)
    cwd = os.getcwd()
    os.chdir(wd)  # the spec makes the layout's relative paths absolute
    try:
        spec = launch.make_spec(p.train, p.mlflow, lay.train_split, lay.model_dir, lay.train_run, lay.train_metrics,
                                lay.train_curve, "test")
    finally:
        os.chdir(cwd)
    spec_path = spec.write(wd / "tmp" / "spec.json")
    (wd / "probe").mkdir()
    cmd = launch.torchrun_command(p.train, spec_path, entry=[str(PROBE)])
    proc = subprocess.run(cmd, cwd=wd, env=env_for(wd, PROBE_DIR=str(wd / "probe"), PYTHONPATH=str(Path.cwd())),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def cli(wd: Path) -> subprocess.Popen:
    """``dagllm train`` (params say num_processes=2) in its own process group; output in wd/train-N.log."""
    log = open(wd / f"train-{len(list(wd.glob('train-*.log')))}.log", "w")  # noqa: SIM115 (closed with the child)
    return subprocess.Popen([sys.executable, "-c", "from dagllm.cli import app; app()", "train"], cwd=wd,
                            env=env_for(wd), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def ok(proc: subprocess.Popen, wd: Path) -> None:
    rc = proc.wait(timeout=600)
    assert rc == 0, "".join(p.read_text()[-3000:] for p in sorted(wd.glob("train-*.log")))


def test_two_processes_shard_track_once_agree_and_resume_after_sigkill(tmp_path: Path):
    # 1. an uninterrupted two-process run, observed rank by rank
    straight = workdir(tmp_path / "straight")
    probe_run(straight)
    ranks = [json.loads((straight / "probe" / f"rank-{r}.json").read_text()) for r in range(WORLD)]
    # sharded: at every step the ranks hold different rows, and no row is seen twice in the run
    # the data loader may collate one batch ahead of the last step (accelerate looks ahead for the end)
    assert all(STEPS <= len(r["rows"]) <= STEPS + 1 for r in ranks)
    for r in ranks:
        r["rows"] = r["rows"][:STEPS]
    for step in range(STEPS):
        assert len(ranks[0]["rows"][step]) == len(ranks[1]["rows"][step]) == BATCH
        assert not set(ranks[0]["rows"][step]) & set(ranks[1]["rows"][step])
    everything = [h for r in ranks for batch in r["rows"] for h in batch]
    assert len(set(everything)) == len(everything) == STEPS * BATCH * WORLD
    # one set of weights: every rank ends with the same parameters
    assert ranks[0]["weights"] == ranks[1]["weights"] is not None
    # rank 0 alone sets up MLflow: one experiment, one run
    assert [r["configure_calls"] for r in ranks] == [1, 0]
    client = registry(straight / "mlflow.db")
    experiments = [e for e in client.search_experiments() if e.name != "Default"]
    assert [e.name for e in experiments] == ["dagllm"]
    assert len(client.search_runs([experiments[0].experiment_id])) == 1
    expected = json.loads((straight / "reports" / "train_metrics.json").read_text())
    assert expected["steps"] == STEPS

    # 2. the same run through `dagllm train`, SIGKILLed after a checkpoint, restarted
    killed = workdir(tmp_path / "killed")
    proc = cli(killed)
    deadline = time.monotonic() + 300
    while not checkpoints.complete_checkpoints(killed / "models" / "checkpoints"):
        assert proc.poll() is None and time.monotonic() < deadline, (killed / "train-0.log").read_text()[-3000:]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (killed / "models" / "final").exists()
    at, sealed = checkpoints.complete_checkpoints(killed / "models" / "checkpoints")[-1]
    assert 2 <= at < STEPS
    # a complete checkpoint holds every rank's part: each RNG state loads (rank 0 does not wait for rank 1);
    # weights_only=False: the numpy state pickles numpy objects (the Trainer loads under its own safe globals)
    assert json.loads((sealed / checkpoints.SEAL_FILE).read_text())["world_size"] == WORLD
    for r in range(WORLD):
        assert set(torch.load(sealed / f"rng_state_{r}.pth", weights_only=False)) >= {"python", "numpy", "cpu"}
    ok(cli(killed), killed)
    resumed = json.loads((killed / "reports" / "train_metrics.json").read_text())
    assert resumed["resumed_from_step"] == at and resumed["steps"] == STEPS
    assert resumed["final_loss"] == pytest.approx(expected["final_loss"], abs=1e-4)
    curves = {wd.name: pd.read_csv(wd / "reports" / "train_loss.csv").set_index("step")["loss"]
              for wd in (straight, killed)}
    assert list(curves["killed"].index) == list(range(1, STEPS + 1))
    assert (curves["killed"] - curves["straight"]).abs().max() < 1e-4
    # both attempts logged to one MLflow run, with the whole loss history
    client = registry(killed / "mlflow.db")
    experiment = client.get_experiment_by_name("dagllm")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    assert sorted({m.step for m in client.get_metric_history(runs[0].info.run_id, "loss")}) == list(range(1, STEPS + 1))
    assert (killed / "models" / "final" / "model.safetensors").is_file()


def test_several_nodes_without_a_rendezvous_is_a_clear_error(monkeypatch):
    from dagllm.params import TrainParams

    for var in launch.RENDEZVOUS_VARS:
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(launch.LaunchError, match="PET_MASTER_ADDR"):
        launch.torchrun_command(TrainParams(num_nodes=2, num_processes=8), Path("spec.json"))
    for var, value in zip(launch.RENDEZVOUS_VARS, ("10.0.0.1", "29500", "1")):
        monkeypatch.setenv(var, value)
    cmd = launch.torchrun_command(TrainParams(num_nodes=2, num_processes=8), Path("spec.json"))
    assert "--nnodes=2" in cmd and "--nproc-per-node=8" in cmd and "--standalone" not in cmd


def test_kfp_train_task_uses_every_gpu_of_its_pod():
    from dagllm.params import load_params

    repo = Path(__file__).resolve().parents[2]
    one = load_params(repo / "params.yaml", [])
    assert train_params_for_task(one).num_processes == 1
    eight = load_params(repo / "params.yaml", ["kubeflow.gpu.train.count=8"])
    assert train_params_for_task(eight).num_processes == 8
    pinned = load_params(repo / "params.yaml", ["kubeflow.gpu.train.count=8", "train.num_processes=4"])
    assert train_params_for_task(pinned).num_processes == 4
