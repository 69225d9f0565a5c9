"""The whole pipeline through the CLI on the bundled samples, then the registry's alias rules."""

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dagllm.cli import app
from dagllm.params import load_params

from ..conftest import registry, small_params

pytestmark = pytest.mark.slow
runner = CliRunner()


def dagllm(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> Path:
    wd = tmp_path_factory.mktemp("e2e")
    (wd / "params.yaml").write_text(yaml.safe_dump(small_params(), allow_unicode=True), encoding="utf-8")
    old = os.getcwd()
    os.chdir(wd)
    try:
        for stage in ("check", "fetch", "ingest", "render", "validate", "decontaminate", "balance", "train",
                      "evaluate", "register"):
            dagllm(stage)
        yield wd
    finally:
        os.chdir(old)


def test_every_stage_left_its_outputs(ran: Path):
    for rel in ("data/canonical/records.parquet", "data/rendered/records.parquet", "data/balanced/train.parquet",
                "data/balanced/validation.parquet", "reports/validation/docs/index.html",
                "models/final/model.safetensors", "models/final/tokenizer.json", "reports/eval/samples/kobest_copa.jsonl"):
        assert (ran / rel).exists(), rel
    ingest = json.loads((ran / "reports/ingest.json").read_text())
    assert all(f["read"] == f["kept"] + sum(f["rejected"].values()) for f in ingest["files"])
    balance = json.loads((ran / "reports/balance.json").read_text())
    tasks = yaml.safe_load((ran / "params.yaml").read_text(encoding="utf-8"))["render"]["tasks"]
    assert {"kobest_copa_causal", "apeach_hate", "nsmc_sentiment"} <= set(balance["after"]) == set(tasks)
    for export in ("alpaca.jsonl", "chat.jsonl"):
        assert (ran / "data/rendered" / export).stat().st_size > 0, export


def test_evaluation_scores_the_whole_local_test_split(ran: Path):
    m = json.loads((ran / "reports/eval/metrics.json").read_text())
    assert m["samples"]["kobest_copa"] == 12  # every item of the sample COPA test split
    acc = m["metrics"]["kobest_copa"]["acc"]
    samples = [json.loads(x) for x in (ran / "reports/eval/samples/kobest_copa.jsonl").read_text().splitlines()]
    assert acc == pytest.approx(sum(s["acc"] for s in samples) / len(samples))
    assert 0.0 <= m["metrics"]["kobest_copa"]["macro_f1"] <= 1.0


def test_loss_curve_and_mlflow_run(ran: Path):
    curve = (ran / "reports/train_loss.csv").read_text().splitlines()
    assert curve[0] == "step,loss,learning_rate" and len(curve) == 5
    run_id = json.loads((ran / "models/train_run.json").read_text())["run_id"]
    client = registry(ran / "mlflow.db")
    assert "eval.kobest_copa.acc" in client.get_run(run_id).data.metrics
    assert len(client.get_metric_history(run_id, "loss")) == 4


def test_registered_with_aliases_and_idempotent(ran: Path):
    first = json.loads((ran / "reports/register.json").read_text())
    assert first["version"] == "1" and first["aliases"] == ["challenger", "champion"]
    dagllm("register")  # the same training run again: no new version
    client = registry(ran / "mlflow.db")
    assert len(client.search_model_versions("name='dagllm-ko'")) == 1
    again = json.loads((ran / "reports/register.json").read_text())
    assert again["version"] == "1" and not again["created"] and again["decision"] == "already champion"


def test_version_carries_lineage_and_model_card(ran: Path):
    from dagllm.params import load_params as load

    client = registry(ran / "mlflow.db")
    mv = client.get_model_version("dagllm-ko", "1")
    run_id = json.loads((ran / "models/train_run.json").read_text())["run_id"]
    assert mv.run_id == run_id and mv.tags["dagllm.mlflow_run_id"] == run_id
    assert mv.tags["dagllm.params_digest"] == load(ran / "params.yaml").digest()
    assert mv.tags["dagllm.data_digest"] == client.get_run(run_id).data.params["data.sha256"]
    assert mv.tags["dagllm.base_model"] == "tiny" and mv.tags["dagllm.pipeline_run"] == "cli"
    assert mv.tags["dagllm.git_commit"] == "unknown"  # the test's working dir is not a git checkout
    acc = json.loads((ran / "reports/eval/metrics.json").read_text())["metrics"]["kobest_copa"]["acc"]
    assert float(mv.tags["metric.kobest_copa.acc"]) == pytest.approx(acc)
    card = (ran / "reports/model_card.md").read_text()
    assert mv.description == card
    assert "| kobest_copa | acc |" in card and "## Intended use" in card and "## Limits" in card
    assert "| apeach_hate |" in card and "CC BY-SA 4.0" in card  # data mix and licences from balance.json


def test_champion_moves_only_when_the_policy_allows(ran: Path):
    p = load_params(ran / "params.yaml")
    client = registry(ran / "mlflow.db")
    metrics_file = ran / "reports/eval/metrics.json"
    original = json.loads(metrics_file.read_text())
    champion_acc = original["metrics"]["kobest_copa"]["acc"]

    def new_run_with(acc: float) -> dict:
        dagllm("train", f"train.seed={int(acc * 1000) + 7}")
        m = json.loads(json.dumps(original))
        m["metrics"]["kobest_copa"]["acc"] = acc
        metrics_file.write_text(json.dumps(m))
        dagllm("register")
        return json.loads((ran / "reports/register.json").read_text())

    worse = new_run_with(champion_acc - 0.25)
    assert worse["aliases"] == ["challenger"] and not worse["promoted"]
    assert "kobest_copa.acc primary check failed" in worse["decision"]
    assert str(client.get_model_version_by_alias(p.register_.model_name, "champion").version) == "1"
    better = new_run_with(champion_acc + 0.25)
    assert better["aliases"] == ["challenger", "champion"] and better["promoted"]
    assert client.get_model_version_by_alias(p.register_.model_name, "previous-champion").version == 1
    promotion = json.loads((ran / "reports/promotion.json").read_text())
    assert promotion["version"] == better["version"] and promotion["champion_before"] == "1"
    assert promotion["comparisons"][0]["challenger"] == pytest.approx(champion_acc + 0.25)
    assert str(client.get_model_version_by_alias(p.register_.model_name, "champion").version) == better["version"]


def test_champion_loads_for_generation(ran: Path):
    from dagllm.serving.model import load_for_generation

    p = load_params(ran / "params.yaml", [f"mlflow.tracking_uri=sqlite:///{ran / 'mlflow.db'}"])
    model, tok = load_for_generation("dagllm-ko", "champion", p.mlflow)
    ids = tok("### 지시:\n안녕하세요?\n\n### 응답:\n", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] == ids["input_ids"].shape[1] + 3


def test_bad_override_exits_with_message(ran: Path):
    result = runner.invoke(app, ["train", "train.nope=1"])
    assert result.exit_code == 2
    assert "unknown key 'train.nope'" in result.output
