"""The Dockerfiles agree with the pins: image tags in params.yaml, Python, torch and the lock.

No Docker engine runs here, so the images are not built in CI; these checks keep the files that
build them consistent with what CI tests (docs/deploy.md explains the build).
"""

import re
import tomllib

import pytest

from dagllm.params import load_params

from ..conftest import REPO

PARAMS = load_params(REPO / "params.yaml")
LOCK = dict(line.split("==", 1) for line in (REPO / "requirements.lock").read_text().splitlines() if "==" in line)
DOCKERFILES = {"cpu": REPO / "components/Dockerfile", "train": REPO / "components/Dockerfile.train"}


def _text(kind: str) -> str:
    return DOCKERFILES[kind].read_text()


def _arg(text: str, name: str) -> str:
    return re.search(rf"^ARG {name}=(\S+)$", text, re.M)[1]


@pytest.mark.parametrize("kind", ["cpu", "train"])
def test_tag_matches_params_and_project_version(kind: str):
    text = _text(kind)
    image = getattr(PARAMS.kubeflow.images, kind)
    assert re.search(rf'dagllm\.image="{re.escape(image)}"', text), f"{DOCKERFILES[kind].name}: label != {image}"
    assert f"-t {image} ." in text  # the documented build command tags it the same way
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert image.split(":")[1].split("-")[0] == version


@pytest.mark.parametrize("kind", ["cpu", "train"])
def test_base_image_is_pinned(kind: str):
    text = _text(kind)
    # FROM ${BASE}: the pinned default of the build argument is what a plain build uses
    froms = [re.sub(r"^\$\{(\w+)\}$", lambda m: _arg(text, m[1]), ref) for ref in re.findall(r"^FROM (\S+)", text, re.M)]
    assert froms
    for ref in froms:
        name, _, tag = ref.split("@")[0].rpartition(":")
        assert name and tag and tag != "latest", f"{ref}: pin a version tag"
        assert re.fullmatch(r"[\w.-]*\d+\.\d+[\w.-]*", tag), f"{ref}: tag must carry a version"
        if "@" in ref:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", ref.split("@")[1])


def test_python_and_torch_agree_with_ci():
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    minor = re.search(r">=(3\.\d+)", requires)[1]
    assert re.search(rf"^ARG BASE=python:{re.escape(minor)}\.\d+-", _text("cpu"), re.M)
    assert re.search(r"^FROM \$\{BASE\}$", _text("cpu"), re.M)
    assert f"python{minor} -m venv" in _text("train")
    torch = LOCK["torch"].split("+")[0]
    for kind in ("cpu", "train"):
        assert _arg(_text(kind), "TORCH_VERSION") == torch
    assert _arg(_text("cpu"), "TORCH_INDEX").endswith("/cpu")
    cuda = re.search(r"^FROM nvidia/cuda:(\d+)\.(\d+)", _text("train"), re.M)
    assert _arg(_text("train"), "TORCH_INDEX").endswith(f"/cu{cuda[1]}{cuda[2]}")  # wheel CUDA = base CUDA
    assert PARAMS.kubeflow.images.train.endswith(f"-cu{cuda[1]}{cuda[2]}")


@pytest.mark.parametrize("kind", ["cpu", "train"])
def test_installs_from_the_lock_and_runs_as_non_root(kind: str):
    text = _text(kind)
    assert "COPY requirements.lock" in text and "-r /tmp/constraints.txt --no-deps" in text
    assert not re.search(r"pip install (?!--no-deps \.)(?!-r )(?!--index-url)[^\n]*==", text)  # no ad-hoc pins
    assert re.search(r"^USER 1000:1000$", text, re.M)
    assert "deepspeed" in LOCK and "kfp" in LOCK and "kfp-kubernetes" in LOCK


@pytest.mark.parametrize("kind", ["cpu", "train"])
def test_promotion_policy_is_copied_where_dagllm_home_points(kind: str):
    text = _text(kind)
    home = re.search(r"DAGLLM_HOME=(\S+)", text)[1]
    assert re.search(r"^WORKDIR " + re.escape(home) + "$", text, re.M)
    assert re.search(r"^COPY mlflow/promotion_policy.yaml \./mlflow/$", text, re.M)
    assert PARAMS.register_.policy == "mlflow/promotion_policy.yaml"


def test_dockerignore_keeps_data_out_of_the_context():
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {"data", "models", ".venv", ".git", "mlflow.db"} <= set(ignored)
