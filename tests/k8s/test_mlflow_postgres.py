"""The dev overlay's PostgreSQL, the migration Job and the MLflow server, run for real on loopback.

A private PostgreSQL is initialised the way the dev StatefulSet's image initialises an empty volume
(k8s/overlays/dev/namespace/postgres.yaml); then, in the cluster's order, the mlflow-db-upgrade Job's
containers, the Deployment's wait-for-schema init container and its `mlflow server` command line,
each from the rendered manifests, with the Secrets filled in as docs/deploy.md has a user do it. The
server needs both of its databases: mlflow (tracking) and mlflow_auth (the basic-auth app's users).

What the official image does with an empty PGDATA (postgres:16.4-bookworm: docker-library/postgres,
16/bookworm/docker-entrypoint.sh at 3a94d965ec, the "Update 16 to 16.4" commit; unchanged since in
these parts; multi-line code joined). It runs as the container's user (runAsUser 999, the image's postgres: no gosu step):
  docker_setup_env:          file_env 'POSTGRES_USER' 'postgres'; file_env 'POSTGRES_DB' "$POSTGRES_USER"
  docker_init_database_dir:  initdb --username="$POSTGRES_USER" --pwfile=<(printf "%s\\n" "$POSTGRES_PASSWORD")
  pg_setup_hba_conf:         printf 'host all all all %s\\n' "$POSTGRES_HOST_AUTH_METHOD" >> "$PGDATA/pg_hba.conf"
                             (the method defaults to `postgres -C password_encryption`: scram-sha-256)
  docker_temp_server_start:  pg_ctl ... -c listen_addresses='' (the socket only), PGUSER=$POSTGRES_USER
  docker_setup_db:           POSTGRES_DB= docker_process_sql --dbname postgres ...
                               SELECT 1 FROM pg_database WHERE datname = :'db' ;
                             and when that is empty:  CREATE DATABASE :"db" ;
  docker_process_init_files /docker-entrypoint-initdb.d/*
      *.sh)  if [ -x "$f" ]; then "$f"; else . "$f"; fi
      *.sql) docker_process_sql -f "$f"
      *)     printf '%s: ignoring %s\\n' "$0" "$f"
  docker_process_sql:        local query_runner=( psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER"
                                                  --no-password --no-psqlrc )
                             if [ -n "$POSTGRES_DB" ]; then query_runner+=( --dbname "$POSTGRES_DB" ); fi
                             PGHOST= PGHOSTADDR= "${query_runner[@]}" "$@"      (the local socket)
Initialisation runs only when "$PGDATA/PG_VERSION" is missing: a volume initialised before the init
script existed never runs it (second test). Other pods reach the server over the network, through
the appended `host all all all scram-sha-256` line; here the clients stand in for them on 127.0.0.1,
so TCP logins need the password (Postgres(password=...)), the socket is trusted as in the image.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from ..integration.services import Postgres, _stop, free_port, wait_http
from .test_manifests import K8S, _render
from .test_mlflow_server import _get

pytestmark = pytest.mark.slow  # real PostgreSQL and mlflow server processes, as tests/integration
ADMIN_PASSWORD = "test-admin-pw-1"
INITDB_DIR = "/docker-entrypoint-initdb.d"


def _one(docs: list[dict], kind: str, name: str) -> dict:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def _dev_postgres(docs: list[dict], password: str, init_files: bool = True) -> Postgres:
    """A cluster initialised as the entrypoint above does, from the rendered StatefulSet."""
    pod = _one(docs, "StatefulSet", "postgres")["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "dagllm-postgres"
    user = env["POSTGRES_USER"]["value"] if "POSTGRES_USER" in env else "postgres"
    db = env["POSTGRES_DB"]["value"] if "POSTGRES_DB" in env else user
    pg = Postgres(user=user, password=password, database=db)  # initdb -U user, then CREATE DATABASE db
    try:
        pg.start()
        mount = next((m for m in c["volumeMounts"] if m["mountPath"] == INITDB_DIR), None)
        if init_files and mount:
            assert mount.get("readOnly") is True
            volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
            files = _one(docs, "ConfigMap", volume["configMap"]["name"])["data"]
            (pg.root / "initdb.d").mkdir()
            for name in sorted(files):  # the glob's order
                assert name.endswith(".sql"), f"{name}: this test runs *.sql init files only; add the *.sh case"
                path = pg.root / "initdb.d" / name
                path.write_text(files[name])
                path.chmod(0o644)  # psql reads it as the postgres user
                pg.psql("-v", "ON_ERROR_STOP=1", "--username", user, "--no-password", "--no-psqlrc",
                        "--dbname", db, "-f", path)
    except BaseException:
        pg.stop()
        raise
    return pg


class Cluster:
    """The dev overlay's MLflow pods as processes: env from the rendered containers, Secrets and
    ConfigMaps resolved, volume mounts under a local directory, $(VAR) expanded as Kubernetes does."""

    def __init__(self, docs: list[dict], pg: Postgres, root: Path):
        self.docs, self.root = docs, root
        service = _one(docs, "Service", "postgres")
        in_cluster = f"@{service['metadata']['name']}:{service['spec']['ports'][0]['port']}/"
        # as docs/deploy.md creates them: the real password into the template, the DB host is the
        # Service (here: the loopback cluster)
        ini = (K8S / "base/mlflow/basic_auth.ini.example").read_text().replace("CHANGE-ME", pg.password)
        assert ini.count(in_cluster) == 1, f"basic_auth.ini.example's database_uri does not name {in_cluster}"
        ini = ini.replace(in_cluster, f"@127.0.0.1:{pg.port}/")
        self.secrets = {
            "dagllm-mlflow-db": {"uri": pg.url},
            "dagllm-mlflow-auth": {"basic_auth.ini": ini, "admin_password": ADMIN_PASSWORD,
                                   "flask_secret_key": secrets.token_hex(32)},
            "dagllm-object-store": {"access_key_id": "testing", "secret_access_key": "testing"},
        }
        self.config = {d["metadata"]["name"]: dict(d["data"]) for d in docs if d["kind"] == "ConfigMap"}
        cm = next(n for n in self.config if n.startswith("dagllm-mlflow-config"))
        self.config[cm]["artifacts_destination"] = str(root / "artifacts")  # instead of S3

    def process(self, pod: dict, c: dict) -> tuple[list[str], dict[str, str]]:
        """(argv, env) of container ``c`` of ``pod``; `mlflow` and `python` are this interpreter's."""
        mounts = {}
        for m in c.get("volumeMounts", []):
            local = self.root / pod["metadata"]["labels"]["app.kubernetes.io/name"] / c["name"] / m["name"]
            local.mkdir(parents=True, exist_ok=True)
            volume = next(v for v in pod["spec"]["volumes"] if v["name"] == m["name"])
            if "secret" in volume:
                data = self.secrets[volume["secret"]["secretName"]]
                for item in volume["secret"].get("items") or [{"key": k, "path": k} for k in data]:
                    (local / item["path"]).write_text(data[item["key"]])
            mounts[m["mountPath"]] = str(local)
        env = {}
        for e in c.get("env", []):
            if "value" in e:
                value = re.sub(r"\$\((\w+)\)", lambda v: env.get(v[1], v[0]), e["value"])
            elif ref := e["valueFrom"].get("secretKeyRef"):
                value = self.secrets[ref["name"]][ref["key"]]
            else:
                ref = e["valueFrom"]["configMapKeyRef"]
                value = self.config[ref["name"]][ref["key"]]
            for path, local in mounts.items():
                if value == path or value.startswith(path + "/"):
                    value = local + value[len(path):]
            env[e["name"]] = value
        argv = [re.sub(r"\$\((\w+)\)", lambda v: env.get(v[1], v[0]), a) for a in c["command"] + c.get("args", [])]
        exe = {"mlflow": [sys.executable, "-m", "mlflow"], "python": [sys.executable]}[argv[0]]
        return exe + argv[1:], {**os.environ, **env}

    def run_pod(self, kind: str, name: str, parts=("initContainers", "containers")) -> dict:
        """{container name: CompletedProcess} of the pod's ``parts``, run in order until one fails."""
        pod = _one(self.docs, kind, name)["spec"]["template"]
        done = {}
        for c in [c for part in parts for c in pod["spec"].get(part, [])]:
            argv, env = self.process(pod, c)
            done[c["name"]] = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
            if done[c["name"]].returncode:
                break
        return done


def _failed(done: dict[str, subprocess.CompletedProcess]) -> str:
    return "\n".join(f"container {name} exited {p.returncode}:\n{p.stdout[-3000:]}{p.stderr[-3000:]}"
                     for name, p in done.items() if p.returncode)


def test_dev_postgres_migration_job_and_the_server_with_its_login(tmp_path: Path):
    """Fresh dev volume: the Job migrates both databases, the replicas' wait passes, the server starts
    on them and the admin of MLFLOW_AUTH_ADMIN_PASSWORD can log in (a wrong password cannot)."""
    docs = _render("dev")
    pg = _dev_postgres(docs, password=secrets.token_hex(16))
    server = None
    try:
        k8s = Cluster(docs, pg, tmp_path)
        job = k8s.run_pod("Job", "mlflow-db-upgrade")
        assert not _failed(job), _failed(job)
        wait = k8s.run_pod("Deployment", "mlflow", ("initContainers",))
        assert list(wait) == ["wait-for-schema"] and not _failed(wait), _failed(wait)

        pod = _one(docs, "Deployment", "mlflow")["spec"]["template"]
        c = pod["spec"]["containers"][0]
        argv, env = k8s.process(pod, c)
        assert argv[:3] == [sys.executable, "-m", "mlflow"] and argv[3] == "server"
        port = free_port()
        argv = [a for a in argv if not a.startswith(("--host=", "--port=", "--workers="))]
        argv += ["--host=127.0.0.1", f"--port={port}", "--workers=1"]
        with (tmp_path / "server.log").open("w") as log:
            server = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_http(f"http://127.0.0.1:{port}/health", 120, server)
        except (RuntimeError, TimeoutError) as exc:
            raise AssertionError(f"{exc}\n{(tmp_path / 'server.log').read_text()[-4000:]}") from exc
        url = f"http://127.0.0.1:{port}"
        host = next(h for h in env["MLFLOW_ALLOWED_HOSTS"].split(",") if h.startswith("mlflow."))
        api = f"{url}/api/2.0/mlflow/experiments/search?max_results=1"
        assert _get(f"{url}/health", host) == 200
        assert _get(api, host, ("admin", ADMIN_PASSWORD)) == 200
        assert _get(api, host, ("admin", "wrong-password")) == 401
        users = pg.psql("-U", pg.user, "-d", "mlflow_auth", "-tAc", "SELECT username FROM users").stdout.split()
        assert users == ["admin"]  # the login lives in mlflow_auth, not in the tracking database
        databases = pg.psql("-U", pg.user, "-d", "postgres", "-tAc", "SELECT datname FROM pg_database "
                            "WHERE NOT datistemplate ORDER BY 1").stdout.split()
        assert databases == ["mlflow", "mlflow_auth", "postgres"]  # initdb's, POSTGRES_DB, the init script's
    finally:
        _stop(server, group=True)
        pg.stop()


def test_a_volume_initialised_before_the_init_script_gets_told_to_create_the_database(tmp_path: Path):
    """The Job fails naming the missing database and what to run; after that one statement it passes."""
    docs = _render("dev")
    pg = _dev_postgres(docs, password=secrets.token_hex(16), init_files=False)
    try:
        k8s = Cluster(docs, pg, tmp_path)
        (auth,) = k8s.run_pod("Job", "mlflow-db-upgrade").values()  # the first fails, the next never runs
        assert auth.returncode != 0
        assert "auth database mlflow_auth does not exist" in auth.stderr, auth.stderr[-3000:]
        assert f"CREATE DATABASE mlflow_auth OWNER {pg.user}" in auth.stderr
        pg.psql("-U", pg.user, "-d", "postgres", "-c", f"CREATE DATABASE mlflow_auth OWNER {pg.user}")  # docs/deploy.md
        done = k8s.run_pod("Job", "mlflow-db-upgrade")
        assert len(done) == 2 and not _failed(done), _failed(done)
    finally:
        pg.stop()
