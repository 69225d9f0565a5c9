"""The container tests: the project's image, built and run by a real engine (`make test-containers`).

They need an image (``DAGLLM_TEST_IMAGE``) in the engine that serves the Docker API at
``DOCKER_HOST``; `make test-containers` (components/containers/test.sh) starts podman's API
service, builds the image and runs this folder. The plain suite (`make test`) has no engine, so
this folder is collected only when ``DAGLLM_TEST_IMAGE`` is set: it is a separate CI step, not a
skip.
"""

import os
from pathlib import Path

import pytest


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if "DAGLLM_TEST_IMAGE" not in os.environ and collection_path.name.startswith("test_"):
        return True
    return None


@pytest.fixture(scope="session")
def image() -> str:
    return os.environ["DAGLLM_TEST_IMAGE"]


@pytest.fixture(scope="session")
def engine():
    """A Docker SDK client for the engine at DOCKER_HOST (podman's API service in CI)."""
    import docker

    client = docker.from_env()
    client.ping()
    yield client
    client.close()
