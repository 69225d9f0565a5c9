"""Shared fixtures: a params file for the smallest settings and a working directory per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from dagllm.runtime import offline

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "src" / "dagllm" / "data" / "catalog" / "samples"

offline()  # no hub, no telemetry in any test


def small_params(**sections) -> dict:
    """params.yaml of the repo, pointed at the bundled samples, with the smallest settings."""
    data = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    data["paths"]["mirror"] = "samples"
    data["train"].update(max_steps=4, batch_size=4, log_every=1, max_seq_len=128)
    data["train"]["tiny"].update(hidden_size=32, num_heads=2, intermediate_size=64, vocab_size=600)
    data["validate"]["min_records_per_task"] = 2
    data["register"]["policy"] = str(REPO / data["register"]["policy"])  # tests run in their own cwd
    for name, values in sections.items():
        data[name].update(values)
    return data


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory holding a small params.yaml; cwd is set to it."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(small_params(), allow_unicode=True), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    return tmp_path


@pytest.fixture()
def mirror_copy(tmp_path: Path) -> Path:
    """A writable copy of the sample mirror, for planting bad files."""
    dest = tmp_path / "mirror"
    shutil.copytree(SAMPLES, dest)
    return dest


def registry(db: Path):
    """An MLflow client bound to one SQLite store for tracking and registry alike.

    Both URIs are explicit: a client otherwise takes the process-wide registry URI that an
    earlier stage run in this process may have set.
    """
    from mlflow import MlflowClient

    uri = f"sqlite:///{db}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)
