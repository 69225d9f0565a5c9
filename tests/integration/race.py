"""Shared by the race tests (SQLite store and tracking server): set-up and the invariants."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from dagllm.registry.aliases import CHAMPION, HISTORY_TAG, PREVIOUS, version_metrics

WORKER = Path(__file__).with_name("registry_worker.py")
REPO = Path(__file__).resolve().parents[2]


def tiny_model(dest: Path) -> Path:
    """A GPT-NeoX of a few thousand parameters with a BPE tokenizer, saved like train saves it."""
    from dagllm.params import TinyModelParams, TrainParams
    from dagllm.training.presets import build_tiny_model as build_model
    from dagllm.training.presets import train_tokenizer

    texts = ["### 지시:\n다음 문장의 감정을 분류하세요.\n\n### 응답:\n긍정", "오늘은 비가 와서 그래서 우산을 챙겼다"] * 20
    tok = train_tokenizer(texts, 300)
    params = TrainParams(max_seq_len=64, tiny=TinyModelParams(hidden_size=16, num_heads=2, intermediate_size=32,
                                                              vocab_size=300))
    build_model(params, tok).save_pretrained(dest)
    tok.save_pretrained(dest)
    return dest


def training_run(client, experiment_id: str, workdir: Path, model: Path, acc: float, f1: float = 0.5) -> Path:
    """A finished training run as train + evaluate leave it: run file, eval metrics, the model dir."""
    run = client.create_run(experiment_id, tags={"dagllm.stage": "train", "dagllm.pipeline_run": "race",
                                                 "dagllm.base_model": "tiny"})
    client.log_param(run.info.run_id, "data.sha256", "d" * 64)
    client.set_terminated(run.info.run_id)
    workdir.mkdir(parents=True)
    (workdir / "model").symlink_to(model)
    (workdir / "train_run.json").write_text(json.dumps({"run_id": run.info.run_id}))
    (workdir / "metrics.json").write_text(json.dumps({"metrics": {"kobest_copa": {"acc": acc, "macro_f1": f1}}}))
    return workdir


def race(jobs: list[dict], tmp: Path, timeout: float = 240) -> None:
    """Start one worker process per job, release them together, and wait for all to succeed."""
    start = tmp / "go"
    procs = []
    for i, job in enumerate(jobs):
        path = tmp / f"job{i}.json"
        path.write_text(json.dumps({**job, "start_file": str(start), "ready_file": str(tmp / f"ready{i}")}))
        procs.append(subprocess.Popen([sys.executable, str(WORKER), str(path)], cwd=REPO, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    deadline = time.monotonic() + timeout
    while not all((tmp / f"ready{i}").exists() for i in range(len(jobs))):  # all imported: release together
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a worker did not start"
        time.sleep(0.05)
    start.touch()
    outputs = []
    for p in procs:
        out, _ = p.communicate(timeout=timeout)
        outputs.append((p.returncode, out))
    assert all(rc == 0 for rc, _ in outputs), "\n\n".join(out[-3000:] for _, out in outputs)


def assert_champion_chain(client, name: str, primary: str = "kobest_copa.acc") -> list[str]:
    """Champion history only ever improved on the primary metric, and aliases agree with it."""
    history = client.get_registered_model(name).tags[HISTORY_TAG].split(",")
    values = [version_metrics(client.get_model_version(name, v))[primary] for v in history]
    assert all(b > a for a, b in zip(values, values[1:])), f"champion history {history} has values {values}"
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == history[-1]
    if len(history) > 1:
        assert str(client.get_model_version_by_alias(name, PREVIOUS).version) == history[-2]
    return history
