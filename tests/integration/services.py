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
from urllib.parse import quote

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
    """A private PostgreSQL cluster on 127.0.0.1; its socket (trusted) lives in ``root``.

    ``user`` is the bootstrap superuser (initdb -U) and ``database`` is created for it (none when
    it is "postgres", which initdb makes). Without a ``password`` every login is trusted; with one
    the socket stays trusted and TCP logins need it (scram-sha-256), as for a pod reaching the
    dev StatefulSet over the network.
    """

    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="dagllm-pg-")))
    user: str = "postgres"
    password: str | None = None
    database: str = "mlflow"

    @property
    def url(self) -> str:
        login = self.user + (f":{quote(self.password, safe='')}" if self.password else "")
        return f"postgresql+psycopg2://{login}@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *cmd) -> subprocess.CompletedProcess:
        return subprocess.run(_as_postgres([str(c) for c in cmd]), check=True, capture_output=True, text=True)

    def start(self) -> Postgres:
        bin_dir = postgres_bin()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        data = self.root / "data"
        auth = ["-A", "trust"]
        if self.password is not None:
            pwfile = self.root / "pwfile"
            pwfile.write_text(self.password + "\n")
            if os.geteuid() == 0:
                shutil.chown(pwfile, "postgres")
            auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        self._run(bin_dir / "initdb", "-D", data, *auth, "-U", self.user, "-E", "UTF8", "--no-sync")
        self._run(bin_dir / "pg_ctl", "-D", data, "-l", self.root / "log", "-w", "-t", "60", "start",
                  "-o", f"-h 127.0.0.1 -p {self.port} -k {self.root} -F")
        if self.database != "postgres":
            self.psql("-U", self.user, "--dbname", "postgres", "-c", f'CREATE DATABASE "{self.database}"')
        return self

    def psql(self, *args) -> subprocess.CompletedProcess:
        """psql over the local socket (a "local" connection, as on the server's own host); raises on failure."""
        return self._run(postgres_bin() / "psql", "-h", self.root, "-p", self.port, *args)

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
