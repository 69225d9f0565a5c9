"""Real services on loopback for the registry tests: PostgreSQL, moto_server (S3), mlflow server.

Each service is a child process started here and stopped by its fixture. PostgreSQL refuses to
run as root, so when the tests run as root its commands run as the ``postgres`` user (runuser),
in a data directory created under /tmp (pytest's own tmp tree is private to root).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVER_SCRIPT = REPO / "mlflow" / "server.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers (any HTTP status) or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the server process exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def postgres_bin() -> Path:
    """The newest /usr/lib/postgresql/*/bin holding initdb (Debian's package layout)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise RuntimeError("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin: "
                           "apt-get install postgresql (.ci/run does)")
    return Path(found[-1]).parent


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class Postgres:
    """A private PostgreSQL cluster on 127.0.0.1 with trust auth for user ``postgres``."""

    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="dagllm-pg-")))

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/mlflow"

    def start(self) -> Postgres:
        bin_dir = postgres_bin()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        data = self.root / "data"
        run = lambda *cmd: subprocess.run(_as_postgres([str(c) for c in cmd]), check=True,  # noqa: E731
                                          capture_output=True, text=True)
        run(bin_dir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        run(bin_dir / "pg_ctl", "-D", data, "-l", self.root / "log", "-w", "-t", "60", "start",
            "-o", f"-h 127.0.0.1 -p {self.port} -k {self.root} -F")
        run(bin_dir / "createdb", "-h", "127.0.0.1", "-p", self.port, "-U", "postgres", "mlflow")
        return self

    def stop(self) -> None:
        subprocess.run(_as_postgres([str(postgres_bin() / "pg_ctl"), "-D", str(self.root / "data"), "-m",
                                     "immediate", "-w", "stop"]), capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Moto:
    """moto_server (in-memory S3) on 127.0.0.1 with one bucket."""

    bucket: str = "dagllm-mlflow"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log: Path) -> Moto:
        import boto3

        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=log.open("w"), stderr=subprocess.STDOUT)
        wait_http(self.endpoint, 30, self.proc)
        boto3.client("s3", endpoint_url=self.endpoint, **S3_CREDENTIALS).create_bucket(Bucket=self.bucket)
        return self

    def stop(self) -> None:
        _stop(self.proc)


S3_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


@dataclass
class MlflowServer:
    """``mlflow/server.sh`` (the team's start script) on a loopback port."""

    store_uri: str
    artifacts: str
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log: Path, wait: bool = True) -> MlflowServer:
        env = {**os.environ, **self.env, "PYTHON": sys.executable, "MLFLOW_BACKEND_STORE_URI": self.store_uri,
               "MLFLOW_ARTIFACTS_DESTINATION": self.artifacts, "MLFLOW_PORT": str(self.port), "MLFLOW_WORKERS": "1"}
        self.proc = subprocess.Popen(["bash", str(SERVER_SCRIPT)], env=env, stdout=log.open("a"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        if wait:
            self.wait()
        return self

    def wait(self, timeout: float = 120) -> None:
        wait_http(f"{self.url}/health", timeout, self.proc)

    def stop(self) -> None:
        _stop(self.proc, group=True)
        self.proc = None


def _stop(proc: subprocess.Popen | None, group: bool = False) -> None:
    """Terminate a child (and its process group: uvicorn has workers), then reap it."""
    if proc is None or proc.poll() is not None:
        return
    if group:
        os.killpg(proc.pid, 15)
    else:
        proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        if group:
            os.killpg(proc.pid, 9)
        else:
            proc.kill()
        proc.wait(timeout=10)
