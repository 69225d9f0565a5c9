import json

import pandas as pd
from typer.testing import CliRunner

from dagllm.cli import app
from dagllm.data.canonical import CANONICAL_COLUMNS


def test_catalog_ls_json_counts_canonical_rows(workdir):
    (workdir / "data" / "canonical").mkdir(parents=True)
    rows = [{"id": f"r{i}", "source": "nsmc", "split": "train", "native_id": None, "fields": json.dumps({"text": "좋다"}),
             "label": "1", "license": "CC0", "benchmark": False, "file": "f", "line": i} for i in range(3)]
    pd.DataFrame(rows)[CANONICAL_COLUMNS].to_parquet(workdir / "data" / "canonical" / "records.parquet")
    res = CliRunner().invoke(app, ["catalog", "ls", "--json"])
    assert res.exit_code == 0, res.output
    data = {r["task"]: r for r in json.loads(res.output)}
    assert len(data) >= 41 and data["nsmc_sentiment"]["records"] == 3 and data["apeach_hate"]["records"] == 0
    assert data["nsmc_sentiment"]["status"] == "ready" and data["unsmile_hate"]["status"] == "no rows"
    assert data["nsmc_sentiment"]["instruction_templates"] >= 3

    show = CliRunner().invoke(app, ["catalog", "show", "nsmc_sentiment"])
    assert show.exit_code == 0, show.output
    assert "nsmc_inst_polarity" in show.output and "nsmc/train/r0" in show.output and "긍정" in show.output


def test_catalog_show_unknown_task_is_a_clear_error(workdir):
    res = CliRunner().invoke(app, ["catalog", "show", "nope"])
    assert res.exit_code == 2 and "unknown task 'nope'" in res.output
