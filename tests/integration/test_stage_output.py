"""What a user sees from each stage: our own lines, no third-party progress bars.

Each stage runs as DVC runs it, the ``dagllm`` command in a fresh interpreter, with none of the
progress-bar switches set by the caller: ``dagllm.runtime.offline`` must turn them off by itself
before great-expectations, lm-eval, transformers, datasets or MLflow draw one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml

from ..conftest import small_params

pytestmark = pytest.mark.slow

# tqdm's bar ("Calculating Metrics:  27%|██▋ | 15/55 [00:00<00:00, 1321.71it/s]") and its rate
TQDM_BAR = re.compile(r"\d+%\|.*\||\d+/\d+ \[\d+:\d+<|it/s\]|s/it\]")
SWITCHES = ("TQDM_", "HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
STAGES = ("fetch", "ingest", "render", "validate", "decontaminate", "balance", "train", "evaluate")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, str]:
    wd = tmp_path_factory.mktemp("output")
    (wd / "params.yaml").write_text(yaml.safe_dump(small_params(), allow_unicode=True), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(SWITCHES)}
    got = {}
    for stage in STAGES:
        proc = subprocess.run([sys.executable, "-c", "from dagllm.cli import main; main()", stage], cwd=wd,
                              env=env, capture_output=True, text=True, timeout=600)
        got[stage] = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"dagllm {stage} failed:\n{got[stage][-3000:]}"
    return got


@pytest.mark.parametrize("stage", STAGES)
def test_stage_output_is_our_lines_without_third_party_bars(outputs: dict[str, str], stage: str):
    out = outputs[stage]
    assert f"✓ {stage}:" in out  # the stage's own summary lines stay
    bars = [line for line in re.split(r"[\r\n]", out) if TQDM_BAR.search(line)]
    assert not bars, f"dagllm {stage} printed progress bars:\n" + "\n".join(bars[:5])


def test_the_gate_ran_great_expectations_quietly(outputs: dict[str, str]):
    """The gate did compute its metrics (its summary says so), without GX's "Calculating Metrics"."""
    assert "Calculating Metrics" not in outputs["validate"]
    assert re.search(r"rendered gate passed: \d+/\d+ expectations", outputs["validate"])
