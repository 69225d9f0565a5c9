"""`dagllm serve` as a user runs it: a subprocess serving the registered champion on loopback."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from ..conftest import small_params

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dagllm_serve_serves_the_champion_page(registered, tmp_path):
    params = small_params()
    params["mlflow"]["tracking_uri"] = registered.mlflow.tracking_uri
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    port = _free_port()
    cli = Path(sys.executable).with_name("dagllm")
    proc = subprocess.Popen([str(cli), "serve", f"serve.port={port}", "serve.default_temperature=0"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
                    assert json.load(r)["ready"] is True
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "dagllm serve did not become ready in 90 s"
                time.sleep(0.5)
        with urllib.request.urlopen(url + "/api/info", timeout=10) as r:
            info = json.load(r)["model"]
        assert (info["name"], info["version"], info["alias"]) == ("dagllm-ko", registered.version, "champion")
        with urllib.request.urlopen(url + "/", timeout=10) as r:
            assert "dagllm 채팅" in r.read().decode()
    finally:
        proc.send_signal(signal.SIGTERM)  # uvicorn shuts down gracefully on SIGTERM
        out, _ = proc.communicate(timeout=30)
    # uvicorn re-raises the captured SIGTERM after its graceful shutdown
    assert proc.returncode in (0, -signal.SIGTERM) and "Application shutdown complete" in out, out
    assert f"serving dagllm-ko version {registered.version} (alias champion) on http://127.0.0.1:{port}/" in out
