"""The MLflow Deployment's own command line, run for real on loopback: with the overlay's allowed
hosts (host:port) an in-cluster client's Host header is accepted, and the basic-auth app refuses
requests without a login. Stores are SQLite files here (PostgreSQL and S3 on the cluster)."""

import base64
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ..integration.services import free_port, wait_http
from .test_manifests import K8S, _render


def _get(url: str, host: str, auth: tuple[str, str] | None = None) -> int:
    req = urllib.request.Request(url, headers={"Host": host})
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    docs = _render("dev")
    pod = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "mlflow")["spec"]["template"]
    c = pod["spec"]["containers"][0]
    hosts = next(d for d in docs if d["kind"] == "ConfigMap"
                 and d["metadata"]["name"].startswith("dagllm-mlflow-config"))["data"]["allowed_hosts"]
    root = tmp_path_factory.mktemp("mlflow-k8s")
    ini = (K8S / "base/mlflow/basic_auth.ini.example").read_text()
    ini = re.sub(r"^database_uri = .*$", f"database_uri = sqlite:///{root / 'auth.db'}", ini, flags=re.M)
    (root / "basic_auth.ini").write_text(ini)
    port = free_port()
    values = {"MLFLOW_BACKEND_STORE_URI": f"sqlite:///{root / 'mlflow.db'}",
              "MLFLOW_ARTIFACTS_DESTINATION": str(root / "artifacts"), "MLFLOW_ALLOWED_HOSTS": hosts}
    args = [re.sub(r"\$\((\w+)\)", lambda m: values[m[1]], a) for a in c["args"]]
    args = [a for a in args if not a.startswith(("--host=", "--port=", "--workers="))]
    args += ["--host=127.0.0.1", f"--port={port}", "--workers=1"]
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(root / "basic_auth.ini"),
           "MLFLOW_AUTH_ADMIN_PASSWORD": "test-admin-pw-1", "MLFLOW_FLASK_SERVER_SECRET_KEY": "k" * 32,
           "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    assert c["command"] == ["mlflow", "server"]
    log = (root / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", *args], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 120, proc)
        yield f"http://127.0.0.1:{port}", hosts.split(",")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def test_in_cluster_host_header_is_accepted_and_a_login_is_required(server):
    url, hosts = server
    api = f"{url}/api/2.0/mlflow/experiments/search?max_results=1"
    in_cluster = next(h for h in hosts if h.startswith("mlflow.") and h.endswith(":5000"))
    assert _get(api, in_cluster) == 401  # the Host is allowed; no login
    assert _get(api, in_cluster, ("admin", "wrong")) == 401
    assert _get(api, in_cluster, ("admin", "test-admin-pw-1")) == 200
    assert _get(api, in_cluster.rsplit(":", 1)[0], ("admin", "test-admin-pw-1")) == 403  # without the port: refused


def test_the_migration_job_then_the_replicas_wait_for_schema(tmp_path: Path):
    """The Job's containers (the auth store's migration, then `mlflow db upgrade`) bring empty stores
    to head; the init container's script then lets the server start (it would wait while either
    schema is not at head). On PostgreSQL as the dev overlay runs it: test_mlflow_postgres.py."""
    docs = _render("dev")
    job = next(d for d in docs if d["kind"] == "Job" and d["metadata"]["name"] == "mlflow-db-upgrade")
    init = next(d for d in docs if d["kind"] == "Deployment"
                and d["metadata"]["name"] == "mlflow")["spec"]["template"]["spec"]["initContainers"][0]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ini = (K8S / "base/mlflow/basic_auth.ini.example").read_text()
    ini = re.sub(r"^database_uri = .*$", f"database_uri = sqlite:///{tmp_path / 'auth.db'}", ini, flags=re.M)
    (tmp_path / "basic_auth.ini").write_text(ini)
    env = {**os.environ, "MLFLOW_BACKEND_STORE_URI": uri, "MLFLOW_AUTH_CONFIG_PATH": str(tmp_path / "basic_auth.ini")}
    spec = job["spec"]["template"]["spec"]
    (auth,) = spec["initContainers"]
    assert auth["command"] == ["python", "-c"]
    up = subprocess.run([sys.executable, "-c", *auth["args"]], env=env, capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stderr[-2000:]
    cmd = [uri if a == "$(MLFLOW_BACKEND_STORE_URI)" else a for a in spec["containers"][0]["command"]]
    assert cmd[:3] == ["mlflow", "db", "upgrade"]
    up = subprocess.run([sys.executable, "-m", "mlflow", *cmd[1:]], env=env, capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stderr[-2000:]
    wait = subprocess.run([sys.executable, *init["command"][1:], *init["args"]], env=env, capture_output=True,
                          text=True, timeout=120)
    assert wait.returncode == 0, wait.stdout[-2000:] + wait.stderr[-2000:]
