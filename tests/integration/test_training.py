"""Fine-tuning end to end on CPU: DeepSpeed ZeRO-3 (+ offload), presets, MLflow tracking, kill and resume."""

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
import yaml

from dagllm.params import MlflowParams, TrainParams
from dagllm.stages.train import run_train
from dagllm.training import checkpoints
from dagllm.training.presets import build_tiny_model, load_pretrained, presets, train_tokenizer

from ..conftest import registry, small_params

pytestmark = pytest.mark.slow

TINY = {"hidden_size": 32, "num_heads": 2, "intermediate_size": 64, "vocab_size": 500}
LAUNCHER_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def records(n: int = 48) -> pd.DataFrame:
    """Made-up Korean instruction records in the balanced-split layout."""
    rows = []
    for i in range(n):
        rows.append({"task": ["감성", "질문", "요약"][i % 3],
                     "instruction": ["다음 리뷰의 감성을 분류하세요.", "질문에 답하세요.", "문장을 요약하세요."][i % 3],
                     "input": f"{i}번째 문장입니다. 오늘은 날씨가 {'맑고' if i % 2 else '흐리고'} 바람이 붑니다.",
                     "output": ["긍정", "부정", "서울입니다", "바람이 분다"][i % 4]})
    return pd.DataFrame(rows)


@pytest.fixture()
def train_file(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "balanced" / "train.parquet"
    path.parent.mkdir(parents=True)
    records().to_parquet(path)
    return path


def train(tmp: Path, train_file: Path, **overrides):
    params = TrainParams(**{"max_steps": 4, "batch_size": 2, "log_every": 1, "max_seq_len": 128, "save_every": 2,
                            "system_metrics_interval_s": 0.5, "tiny": TINY, **overrides})
    mp = MlflowParams(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}", artifact_root=str(tmp / "mlartifacts"))
    out = tmp / "models"
    return run_train(params, mp, train_file, out / "final", out / "train_run.json", tmp / "reports" / "m.json",
                     tmp / "reports" / "curve.csv")


def test_presets_registry_matches_params():
    names = set(presets())
    assert names == set(TrainParams.model_fields["model"].annotation.__args__)
    for name, p in presets().items():
        assert (p.source == "pretrained") == (p.hub_name is not None), name


def test_pretrained_preset_from_local_directory(tmp_path: Path):
    tok = train_tokenizer(["### 지시:\n안녕하세요\n\n### 응답:\n네"] * 5, 300)
    model = build_tiny_model(TrainParams(tiny=TINY), tok)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    loaded, ltok = load_pretrained("polyglot-ko-1.3b", TrainParams(model="polyglot-ko-1.3b",
                                                                  model_path=str(tmp_path / "m")))
    assert type(loaded).__name__ == "GPTNeoXForCausalLM" and ltok.pad_token_id != ltok.eos_token_id
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in model.parameters())


def test_unreachable_hub_name_gives_clear_error(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    with pytest.raises(ValueError, match=r"EleutherAI/polyglot-ko-5.8b.*train.model_path=DIR"):
        load_pretrained("polyglot-ko-5.8b", TrainParams(model="polyglot-ko-5.8b"))
    with pytest.raises(ValueError, match="no such directory"):
        load_pretrained("polyglot-ko-1.3b", TrainParams(model="polyglot-ko-1.3b", model_path=str(tmp_path / "nope")))


@pytest.mark.parametrize("stage", ["zero3", "zero3_offload"])
def test_deepspeed_zero3_trains_and_tracks(tmp_path: Path, train_file: Path, stage: str):
    s = train(tmp_path, train_file, deepspeed=stage, upload_checkpoints=stage == "zero3")
    assert s.deepspeed == stage and s.steps == 4
    assert "RANK" not in os.environ  # the world-of-one variables do not leak to later children
    # ZeRO-3 partitions were gathered before saving: the saved model has every parameter
    from transformers import AutoModelForCausalLM
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "models" / "final")
    assert sum(p.numel() for p in saved.parameters()) == s.parameters
    assert not (tmp_path / "models" / "checkpoints").exists()  # finished: nothing left to resume
    client = registry(tmp_path / "mlflow.db")
    run = client.get_run(s.run_id)
    for name in ("loss", "lr", "grad_norm", "tokens_per_second"):
        assert len(client.get_metric_history(s.run_id, name)) == 4, name
    assert any(k.startswith("system/cpu_utilization") for k in run.data.metrics)
    assert run.data.params["train.deepspeed"] == stage
    ds = run.inputs.dataset_inputs[0]
    assert ds.dataset.name == "balanced-train" and ds.dataset.digest == run.data.params["data.sha256"][:32]
    uploaded = [a.path for a in client.list_artifacts(s.run_id, "checkpoints")]
    assert uploaded == (["checkpoints/checkpoint-2", "checkpoints/checkpoint-4"] if stage == "zero3" else [])


def test_changed_params_do_not_resume_a_stale_checkpoint(tmp_path: Path):
    ck = tmp_path / "ck"
    key = checkpoints.run_key(TrainParams(), "abc")
    (ck / "checkpoint-2").mkdir(parents=True)
    (ck / "checkpoint-2" / "trainer_state.json").write_text("{}")
    checkpoints.seal(ck / "checkpoint-2", 2)
    (ck / "checkpoint-4").mkdir()
    (ck / "checkpoint-4" / "trainer_state.json").write_text("{\"glob")  # killed while writing
    checkpoints.seal(ck / "checkpoint-4", 2)
    # rank 0 done (trainer state written), rank 1 killed while writing its RNG state: not sealed
    (ck / "checkpoint-6").mkdir()
    (ck / "checkpoint-6" / "trainer_state.json").write_text("{}")
    (ck / "checkpoint-6" / "rng_state_1.pth").write_bytes(b"")
    checkpoints.record_run(ck, key, "run1")
    assert [step for step, _ in checkpoints.complete_checkpoints(ck)] == [2]
    assert checkpoints.prepare(ck, key, resume=True) == (ck / "checkpoint-2", "run1")
    assert checkpoints.run_key(TrainParams(save_every=3), "abc") == key  # checkpoint cadence is not the run
    other = checkpoints.run_key(TrainParams(learning_rate=1e-3), "abc")
    assert checkpoints.prepare(ck, other, resume=True) == (None, None)
    assert list(ck.iterdir()) == []


def _cli(wd: Path, *overrides: str) -> subprocess.Popen:
    """``dagllm train`` in a child process (no launcher variables inherited); output in wd/train-N.log."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}
    code = "from dagllm.cli import app; app()"
    log = open(wd / f"train-{len(list(wd.glob('train-*.log')))}.log", "w")  # noqa: SIM115 (closed with the child)
    return subprocess.Popen([sys.executable, "-c", code, "train", *overrides], cwd=wd, env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def _ok(proc: subprocess.Popen, wd: Path) -> bool:
    rc = proc.wait()
    assert rc == 0, "".join(p.read_text()[-3000:] for p in sorted(wd.glob("train-*.log")))
    return True


def test_sigkill_then_restart_resumes_and_matches(tmp_path: Path):
    params = small_params()
    params["train"].update(max_steps=8, batch_size=2, save_every=2, log_every=1, tiny=TINY)
    curves = {}
    for name in ("killed", "straight"):
        wd = tmp_path / name
        (wd / "data" / "balanced").mkdir(parents=True)
        records().to_parquet(wd / "data" / "balanced" / "train.parquet")
        (wd / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    # 1. start, SIGKILL as soon as a complete checkpoint exists, restart
    wd = tmp_path / "killed"
    proc = _cli(wd)
    deadline = time.monotonic() + 120
    while not checkpoints.complete_checkpoints(wd / "models" / "checkpoints"):
        assert proc.poll() is None and time.monotonic() < deadline, "training ended before a checkpoint"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (wd / "models" / "final").exists()
    at = checkpoints.complete_checkpoints(wd / "models" / "checkpoints")[-1][0]
    assert 2 <= at < 8
    assert _ok(_cli(wd), wd)
    resumed = json.loads((wd / "reports" / "train_metrics.json").read_text())
    assert resumed["resumed_from_step"] == at and resumed["steps"] == 8
    # 2. the same run without interruption
    assert _ok(_cli(tmp_path / "straight"), tmp_path / "straight")
    straight = json.loads((tmp_path / "straight" / "reports" / "train_metrics.json").read_text())
    assert resumed["final_loss"] == pytest.approx(straight["final_loss"], abs=1e-4)
    for name in ("killed", "straight"):
        curves[name] = pd.read_csv(tmp_path / name / "reports" / "train_loss.csv").set_index("step")["loss"]
    # the same data position: every step after the restart saw the same batch (same loss)
    assert list(curves["killed"].index) == list(range(1, 9))
    assert (curves["killed"] - curves["straight"]).abs().max() < 1e-4
    # one MLflow run for both attempts, with the full loss history
    run_id = json.loads((wd / "models" / "train_run.json").read_text())["run_id"]
    history = registry(wd / "mlflow.db").get_metric_history(run_id, "loss")
    assert sorted({m.step for m in history}) == list(range(1, 9))
