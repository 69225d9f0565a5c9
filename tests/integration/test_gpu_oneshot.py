"""The one-shot GPU command's CPU dry run (tiny model): every step runs and reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))


def test_gpu_steps_fit_the_nine_minute_budget(tmp_path: Path):
    import gpu_oneshot

    plan = gpu_oneshot.steps(False, tmp_path / "out", tmp_path / "work")
    assert [n for n, *_ in plan] == ["mfu_1.3b", "fit_5.8b", "prepare", "train", "evaluate"]
    assert sum(t for _, _, t, _ in plan) <= gpu_oneshot.BUDGET_S == 9 * 60
    train = next(cmd for n, cmd, *_ in plan if n == "train")
    assert "train.model=polyglot-ko-1.3b" in train and "train.max_steps=30" in train
    mfu = next(cmd for n, cmd, *_ in plan if n == "mfu_1.3b")
    assert mfu[mfu.index("--seq") + 1] == "2048" and "--deepspeed" not in mfu  # default: zero2, as the train stage


def test_dry_run_runs_every_step_and_writes_the_json(tmp_path: Path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_oneshot.py"), "--dry-run", "--out", str(out)],
                          capture_output=True, text=True, timeout=900, env={**__import__("os").environ,
                                                                             "TMPDIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout[-2000:] + (out / "logs.txt").read_text()[-4000:]
    result = json.loads((out / "oneshot.json").read_text())
    assert result["dry_run"] and result["versions"]["torch"]
    steps = result["steps"]
    assert all(s["rc"] == 0 for s in steps.values()), steps
    mfu = steps["mfu_1.3b"]["result"]
    # same real tokens per step for both variants (the padded baseline takes a packed step's examples)
    packed, padded = mfu["packed"]["real_tokens_per_step"], mfu["padded"]["real_tokens_per_step"]
    assert abs(packed - padded) / packed < 0.25, (packed, padded)
    assert mfu["packed"]["deepspeed"] == mfu["padded"]["deepspeed"] == "zero2"
    assert steps["train"]["result"]["steps"] == 3
    assert set(steps["evaluate"]["result"]["protocol"]) >= {"limit", "device"}
