import subprocess

from dagllm.io import sha256_file
from dagllm.registry.modelcard import collect_lineage, model_card

from ..conftest import REPO

EVAL = {"lm_eval_version": "0.4.13", "protocol": {"name": "kit19", "num_fewshot": 0}, "samples": {"kobest_copa": 12},
        "metrics": {"kobest_copa": {"acc": 0.5833, "macro_f1": 0.55}}}


def test_lineage_of_a_git_checkout():
    lineage = collect_lineage("p" * 64, {"dagllm.pipeline_run": "cli", "dagllm.base_model": "tiny"},
                              {"data.sha256": "d" * 64}, "r1", repo=REPO)
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert lineage.git_commit == head and lineage.git_dirty in ("true", "false")
    assert lineage.dvc_lock_digest == sha256_file(REPO / "dvc.lock")
    assert lineage.tags()["dagllm.data_digest"] == "d" * 64 and lineage.tags()["dagllm.pipeline_run"] == "cli"
    # an orchestrator's run id wins over the training run's tag
    assert collect_lineage("p", {"dagllm.pipeline_run": "kfp"}, {}, "r1", None, "run-7").pipeline_run == "run-7"


def test_lineage_outside_git_says_unknown(tmp_path):
    lineage = collect_lineage("p", {}, {}, "r1", repo=tmp_path)
    assert (lineage.git_commit, lineage.dvc_lock_digest, lineage.base_model) == ("unknown",) * 3


def test_card_tables_and_missing_data_mix():
    lineage = collect_lineage("p", {"dagllm.base_model": "tiny"}, {}, "r1")
    balance = {"train": {"apeach_hate": 30, "nsmc_sentiment": 10}, "validation": {"apeach_hate": 2},
               "licenses": {"CC BY-SA 4.0": 30, "CC0 1.0": 10}}
    card = model_card("dagllm-ko", lineage, EVAL, balance, "primary kobest_copa.acc")
    assert "| kobest_copa | acc | 0.5833 | 12 |" in card
    assert "| apeach_hate | 30 | 2 |" in card and "| nsmc_sentiment | 10 | 0 |" in card
    assert "| CC BY-SA 4.0 | 30 | 75.0% |" in card
    assert "primary kobest_copa.acc" in card and "## Limits" in card
    assert "data mix was not available" in model_card("m", lineage, EVAL, None, "p")


def test_card_names_the_protocol_and_what_is_not_comparable():
    lineage = collect_lineage("p", {}, {}, "r1")
    assert "(KIT-19 protocol), 0-shot." in model_card("m", lineage, EVAL, None, "p")
    other = {**EVAL, "protocol": {"name": "dagllm", "num_fewshot": 3},
             "comparable": {"kobest_copa": {"comparable": False, "why": ["limit 200 of 1000 items"]}}}
    card = model_card("m", lineage, other, None, "p")
    assert "(protocol dagllm), 3-shot." in card and "- kobest_copa: limit 200 of 1000 items" in card
