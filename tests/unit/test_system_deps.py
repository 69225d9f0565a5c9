"""`make test`'s own set-up (.ci/system-deps), run against stand-in dpkg/id/sudo/apt-get commands."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ..conftest import REPO

SCRIPT = REPO / ".ci" / "system-deps"


def _stubs(tmp: Path, *, installed: bool, uid: int, sudo: bool) -> Path:
    bin_ = tmp / "bin"
    bin_.mkdir()
    scripts = {"dpkg": f"exit {0 if installed else 1}", "id": f"echo {uid}", "kubectl": "exit 0",
               "apt-get": f'echo "apt-get $*" >> {tmp}/apt.log'}
    if sudo:
        scripts["sudo"] = f'[ "$1" = -n ] && exit 0; echo "sudo $*" >> {tmp}/apt.log; "$@"'
    for name, body in scripts.items():
        (bin_ / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_ / name).chmod(0o755)
    return bin_


def _run(tmp: Path, bin_: Path, pg: bool, *args: str) -> subprocess.CompletedProcess:
    (tmp / "pg").mkdir(exist_ok=True)
    if pg:
        (tmp / "pg" / "initdb").write_text("")
    env = {"PATH": str(bin_), "PG_GLOB": str(tmp / "pg" / "initdb")}
    return subprocess.run(["/bin/bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=30)


def test_nothing_to_do_when_everything_is_there(tmp_path: Path):
    r = _run(tmp_path, _stubs(tmp_path, installed=True, uid=1000, sudo=False), pg=True)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""
    assert not (tmp_path / "apt.log").exists()


def test_without_rights_one_line_says_what_to_run(tmp_path: Path):
    r = _run(tmp_path, _stubs(tmp_path, installed=False, uid=1000, sudo=False), pg=False)
    assert r.returncode == 1 and not (tmp_path / "apt.log").exists()
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert ("run first: sudo sh -c 'apt-get update && apt-get install -y --no-install-recommends "
            "chromium fonts-nanum postgresql'") in lines[0]


@pytest.mark.parametrize("uid, sudo, prefix", [(0, False, ""), (1000, True, "sudo ")])
def test_root_or_sudo_installs_only_what_is_missing(tmp_path: Path, uid: int, sudo: bool, prefix: str):
    r = _run(tmp_path, _stubs(tmp_path, installed=False, uid=uid, sudo=sudo), pg=True)
    assert r.returncode == 0, r.stderr
    log = (tmp_path / "apt.log").read_text().splitlines()
    assert log[-1].endswith("install -y -q --no-install-recommends chromium fonts-nanum")
    assert "postgresql" not in " ".join(log)
    if prefix:
        assert any(line.startswith("sudo apt-get install") for line in log)


def test_containers_group_installs_the_container_engine_only(tmp_path: Path):
    bin_ = _stubs(tmp_path, installed=False, uid=0, sudo=False)
    (bin_ / "kubectl").unlink()  # not needed by the container test
    r = _run(tmp_path, bin_, False, "containers")
    assert r.returncode == 0, r.stderr
    log = (tmp_path / "apt.log").read_text().splitlines()
    assert log[-1].endswith("--no-install-recommends podman runc uidmap slirp4netns fuse-overlayfs debootstrap")


def test_containers_group_without_rights_names_the_target(tmp_path: Path):
    r = _run(tmp_path, _stubs(tmp_path, installed=False, uid=1000, sudo=False), True, "containers")
    assert r.returncode == 1 and r.stderr.startswith("make test-containers: missing Debian packages podman")
