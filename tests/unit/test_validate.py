import json
from pathlib import Path

import pandas as pd
import pytest

from dagllm.params import ValidateParams
from dagllm.stages.render import RECORD_COLUMNS
from dagllm.stages.validate import ValidationFailed, run_validate, validate_frame


def _records(n=40) -> pd.DataFrame:
    rows = []
    for i in range(n):
        task = "t1" if i % 2 else "t2"
        rows.append({"id": f"id{i}", "record_id": f"r{i}", "task": task, "category": "c", "template_id": "x",
                     "template_kind": "question" if i % 3 else "instruction",
                     "instruction": f"다음 문장을 분류하세요 {i}", "input": f"입력 문장 {i}", "output": "긍정",
                     "source": "s", "split": "train", "license": "CC0 1.0"})
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


def test_clean_records_pass_and_docs_are_built(tmp_path: Path):
    s = validate_frame(_records(), ValidateParams(min_records_per_task=5), ["t1", "t2"], tmp_path / "v")
    assert s.success and len(s.expectations) >= 5
    assert (tmp_path / "v/docs/index.html").is_file()
    assert list((tmp_path / "v/docs/validations").rglob("*.html"))
    summary = json.loads((tmp_path / "v/summary.json").read_text())
    assert summary["success"] is True and summary["rows"] == 40


def test_bad_batch_fails_with_counts(tmp_path: Path):
    df = _records()
    df.loc[0:2, "output"] = None
    df.loc[3, "task"] = "unknown_task"
    df.loc[4:5, "instruction"] = "아"
    f = tmp_path / "rendered.parquet"
    df.to_parquet(f, index=False)
    with pytest.raises(ValidationFailed) as err:
        run_validate(ValidateParams(min_records_per_task=5), ["t1", "t2"], f, tmp_path / "v")
    failed = {(e["expectation"], e["column"]): e["unexpected_count"]
              for e in err.value.summary.expectations if not e["success"]}
    assert failed[("expect_column_values_to_not_be_null", "output")] == 3
    assert failed[("expect_column_values_to_be_in_set", "task")] == 1
    assert failed[("expect_column_value_lengths_to_be_between", "instruction")] == 2
    assert "failed on 3 of 40 rows" in str(err.value)
    assert json.loads((tmp_path / "v/summary.json").read_text())["success"] is False


def test_duplicates_beyond_threshold_fail(tmp_path: Path):
    df = _records()
    df.loc[0:9, ["instruction", "input", "output"]] = ["같은 지시문입니다", "같은 입력", "같은 출력"]
    s = validate_frame(df, ValidateParams(min_records_per_task=5, max_duplicate_fraction=0.05), ["t1", "t2"],
                       tmp_path / "v")
    assert not s.success
    assert [e["expectation"] for e in s.expectations if not e["success"]] == ["expect_compound_columns_to_be_unique"]


def test_cli_validate_exits_nonzero_and_names_failures(workdir: Path):
    from typer.testing import CliRunner

    from dagllm.cli import app

    df = _records()
    df.loc[0:2, "output"] = None
    (workdir / "data/rendered").mkdir(parents=True)
    df.to_parquet(workdir / "data/rendered/records.parquet", index=False)
    result = CliRunner().invoke(app, ["validate", "render.tasks=[t1,t2]"])
    assert result.exit_code == 1
    assert "expect_column_values_to_not_be_null(output) failed on 3 of 40 rows" in result.output
    assert (workdir / "reports/validation/docs/index.html").is_file()
