"""One `dvc repro` on the smallest settings, shared by the DVC tests of this package (it is the slow part)."""

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from ..conftest import REPO, small_params


@dataclass
class DvcRepo:
    """A git + DVC copy of the project after one `dvc repro`."""

    root: Path
    env: dict[str, str]
    first_repro: subprocess.CompletedProcess

    def dvc(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd or self.root, env=self.env,
                              capture_output=True, text=True)

    def git(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@localhost", *args],
                              cwd=cwd or self.root, env=self.env, capture_output=True, text=True, check=True)


def tracked_copy(dest: Path) -> None:
    """The git-tracked files of the project, without DVC outputs and the lock."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        src = REPO / rel
        if src.is_file() and not rel.startswith(("data/", "models/", "reports/")) and rel != "dvc.lock":
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


@pytest.fixture(scope="session")
def dvc_repo(tmp_path_factory: pytest.TempPathFactory) -> DvcRepo:
    base = tmp_path_factory.mktemp("dvc")
    repo = base / "repo"
    repo.mkdir()
    tracked_copy(repo)
    (repo / "params.yaml").write_text(yaml.safe_dump(small_params(evaluate={"limit": 6}), allow_unicode=True))
    (base / "tmp").mkdir()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "TMPDIR": str(base / "tmp")}
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    handle = DvcRepo(repo, env, subprocess.CompletedProcess([], 0))
    handle.first_repro = handle.dvc("repro")
    return handle


DvcRun = Callable[..., subprocess.CompletedProcess]
