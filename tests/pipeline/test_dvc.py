"""`dvc repro` runs the stages, and a second `dvc repro` is a no-op."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ..conftest import REPO, small_params

pytestmark = pytest.mark.slow


def _tracked_copy(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        src = REPO / rel
        if src.is_file() and not rel.startswith(("data/", "models/", "reports/")) and rel != "dvc.lock":
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def test_repro_then_up_to_date(tmp_path: Path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _tracked_copy(repo)
    (repo / "params.yaml").write_text(yaml.safe_dump(small_params(evaluate={"limit": 6}), allow_unicode=True))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "TMPDIR": str(tmp_path)}
    dvc = [sys.executable, "-m", "dvc"]
    run = lambda *a: subprocess.run([*dvc, *a], cwd=repo, env=env, capture_output=True, text=True)  # noqa: E731
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    first = run("repro")
    assert first.returncode == 0, first.stdout + first.stderr
    assert (repo / "dvc.lock").is_file() and (repo / "reports/register.json").is_file()
    second = run("repro")
    assert second.returncode == 0, second.stderr
    assert "Data and pipelines are up to date." in second.stdout
    status = run("status")
    assert "up to date" in status.stdout, status.stdout
    changed = run("repro", "--dry")  # still nothing to do
    assert "Running stage" not in changed.stdout
