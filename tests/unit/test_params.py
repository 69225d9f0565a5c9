from pathlib import Path

import pytest
import yaml

from dagllm.params import ParamsError, apply_overrides, load_params

from ..conftest import REPO


def test_repo_params_load_and_digest_is_stable():
    a = load_params(REPO / "params.yaml")
    b = load_params(REPO / "params.yaml")
    assert a.train.model == "tiny"
    assert a.digest() == b.digest()
    assert a.to_dict()["validate"] == a.validate_.model_dump(mode="json")


def test_override_changes_value_and_digest():
    base = load_params(REPO / "params.yaml")
    p = load_params(REPO / "params.yaml", ["train.max_steps=7", "render.tasks=[apeach_hate]"])
    assert p.train.max_steps == 7
    assert p.render.tasks == ["apeach_hate"]
    assert p.digest() != base.digest()


def test_unknown_key_names_key_and_allowed_keys():
    with pytest.raises(ParamsError) as err:
        load_params(REPO / "params.yaml", ["train.max_stepz=7"])
    msg = str(err.value)
    assert "train.max_stepz" in msg and "max_steps" in msg


def test_unknown_section_in_file(tmp_path: Path):
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    data["trian"] = {"x": 1}
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump(data))
    with pytest.raises(ParamsError, match=r"trian: unknown key \(allowed here: .*train"):
        load_params(f)


def test_bad_value_names_key():
    with pytest.raises(ParamsError, match=r"train.max_steps: .*greater than or equal to 1"):
        load_params(REPO / "params.yaml", ["train.max_steps=0"])
    with pytest.raises(ParamsError, match="balance.val_fraction"):
        load_params(REPO / "params.yaml", ["balance.val_fraction=abc"])


def test_override_syntax_and_missing_file(tmp_path: Path):
    with pytest.raises(ParamsError, match="key=value"):
        apply_overrides({}, ["train.max_steps"])
    with pytest.raises(ParamsError, match="no such params file"):
        load_params(tmp_path / "nope.yaml")


def test_cross_field_rule():
    with pytest.raises(ParamsError, match="divisible"):
        load_params(REPO / "params.yaml", ["train.tiny.hidden_size=30", "train.tiny.num_heads=4"])


def test_cli_check_reports_unknown_task_and_key(workdir):
    from typer.testing import CliRunner

    from dagllm.cli import app

    ok = CliRunner().invoke(app, ["check"])
    assert ok.exit_code == 0 and "ok" in ok.output
    bad = CliRunner().invoke(app, ["check", "render.tasks=[no_such_task]"])
    assert bad.exit_code == 2 and "unknown task 'no_such_task'" in bad.output
    bad = CliRunner().invoke(app, ["ingest", "ingest.sourcez=[x]"])
    assert bad.exit_code == 2 and "unknown key 'ingest.sourcez'" in bad.output
