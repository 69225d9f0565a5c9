"""Loading the model to serve: registry alias and version, a local directory, clear errors."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dagllm.cli import app
from dagllm.serving.model import ModelLoadError, load_model

pytestmark = pytest.mark.slow


def test_alias_resolves_to_the_version_it_loads(loaded, registered):
    assert loaded.info.version == registered.version and loaded.info.alias == "champion"
    assert loaded.info.source == "registry" and loaded.info.run_id
    assert loaded.context_length == 128 and not loaded.model.training


def test_version_uri_and_local_directory(registered):
    by_version = load_model(f"models:/dagllm-ko/{registered.version}", registered.mlflow)
    assert by_version.info.alias is None and "champion" in by_version.info.aliases
    local = load_model(str(registered.model_dir), registered.mlflow)
    assert (local.info.source, local.info.version, local.info.name) == ("local", "local", "final")


def test_unknown_alias_or_version_names_what_is_missing(registered):
    with pytest.raises(ModelLoadError, match="no alias 'staging'.*dagllm register"):
        load_model("models:/dagllm-ko@staging", registered.mlflow)
    with pytest.raises(ModelLoadError, match="no version 99"):
        load_model("models:/dagllm-ko/99", registered.mlflow)


def test_cli_serve_reports_a_bad_model_without_traceback(workdir):
    result = CliRunner().invoke(app, ["serve", "serve.model_uri=models:/dagllm-ko@nobody"])
    assert result.exit_code == 2 and "no alias 'nobody'" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["serve", "serve.model_uri=no/such/dir"])
    assert result.exit_code == 2 and "not a model directory" in result.output
