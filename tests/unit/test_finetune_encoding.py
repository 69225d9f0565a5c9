"""The train report: how the training records fitted ``max_seq_len``, per task (train_metrics.json,
the summary lines), and a clear error when no record fits."""

import json

import pandas as pd
import pytest

from dagllm.io import write_parquet
from dagllm.params import MlflowParams, TrainParams
from dagllm.training.encoding import EncodingReport
from dagllm.training.finetune import TrainSummary, _write_outputs, fine_tune

REPORT = EncodingReport.of(["a", "a", "b", "b"], ["fit", "input_truncated", "answer_too_long", "fit"], 256)


def test_train_metrics_carry_the_encoding_counts_per_task(tmp_path):
    summary = TrainSummary("run", 3, 1.5, 10.0, 100, str(tmp_path / "model"), encoding=REPORT.to_dict())
    metrics = tmp_path / "train_metrics.json"
    _write_outputs(summary, "0", MlflowParams(), tmp_path / "run.json", metrics, tmp_path / "curve.csv",
                   [(1, 2.0, 0.1)])
    enc = json.loads(metrics.read_text())["encoding"]
    assert (enc["max_seq_len"], enc["records"], enc["fit"], enc["input_truncated"], enc["dropped"]) == (256, 4, 2, 1, 1)
    assert enc["tasks"]["b"]["dropped_reasons"] == {"answer_too_long": 1}
    assert enc["tasks"]["a"]["input_truncated"] == 1
    again = TrainSummary(**json.loads(json.dumps(summary.to_dict())))  # how launch/trainjob read it back
    assert again.encoding == summary.encoding
    assert any("2 whole, 1 input cut, 0 instruction cut, 1 dropped" in line for line in again.lines())


def test_summary_without_counts_prints_one_line():
    assert len(TrainSummary("", 0, float("nan"), 0.0, 0, "m").lines()) == 1  # placeholder of other nodes


def test_fine_tune_refuses_when_every_answer_is_longer_than_the_window(tmp_path):
    rows = [{"task": "t", "category": "c", "instruction": "요약하세요.", "input": "",
             "output": "아주 긴 답이 계속된다. " * 10} for _ in range(4)]
    path = write_parquet(pd.DataFrame(rows), tmp_path / "train.parquet")
    params = TrainParams(max_seq_len=16, deepspeed=None, attn_implementation="sdpa",
                         tiny={"hidden_size": 32, "num_heads": 2, "intermediate_size": 64, "vocab_size": 300})
    with pytest.raises(ValueError, match="every record was dropped.*answer_too_long"):
        fine_tune(params, MlflowParams(), path, tmp_path / "model", tmp_path / "run.json",
                  tmp_path / "m.json", tmp_path / "c.csv")
