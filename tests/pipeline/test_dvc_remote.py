"""DVC at team scale: push the pipeline's data and model to S3 (moto_server on loopback), pull them
into a fresh clone that finds `dvc repro` up to date, then an experiment with `-S` and the plots.

Endpoint and credentials reach DVC the way docs/deploy.md says: `--local` config and AWS_* env,
never the committed .dvc/config.
"""

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytestmark = pytest.mark.slow

BUCKET = "dagllm-dvc"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def s3(tmp_path):
    """moto_server on 127.0.0.1 with the team bucket; yields the endpoint URL."""
    port = _free_port()
    log = open(tmp_path / "moto.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        import boto3

        boto3.client("s3", endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing",
                     region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_push_clone_pull_up_to_date_then_experiment(dvc_repo, s3, tmp_path):
    assert dvc_repo.first_repro.returncode == 0, dvc_repo.first_repro.stderr
    env = dvc_repo.env
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    repo = dvc_repo.root
    assert dvc_repo.dvc("remote", "modify", "--local", "team", "endpointurl", s3).returncode == 0
    pushed = dvc_repo.dvc("push")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr

    import boto3

    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=s3, aws_access_key_id="testing",
                                           aws_secret_access_key="testing", region_name="us-east-1")
            .list_objects_v2(Bucket=BUCKET, Prefix="store/").get("Contents", [])]
    assert len(keys) >= 5  # canonical, rendered, balanced, model files, eval data ...

    dvc_repo.git("add", "-A")
    dvc_repo.git("commit", "-q", "-m", "pipeline run")
    committed = dvc_repo.git("ls-files", ".dvc").stdout.split()
    assert ".dvc/config" in committed and ".dvc/config.local" not in committed
    assert s3 not in (repo / ".dvc/config").read_text()  # the endpoint stays on this machine

    clone = tmp_path / "clone"
    dvc_repo.git("clone", "-q", str(repo), str(clone))
    assert not (clone / "models/final").exists() and not (clone / ".dvc/config.local").exists()
    assert dvc_repo.dvc("remote", "modify", "--local", "team", "endpointurl", s3, cwd=clone).returncode == 0
    pulled = dvc_repo.dvc("pull", cwd=clone)
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    assert (clone / "models/final/config.json").is_file() and (clone / "data/balanced").is_dir()
    status = dvc_repo.dvc("status", cwd=clone)
    assert "Data and pipelines are up to date." in status.stdout, status.stdout
    dry = dvc_repo.dvc("repro", "--dry", cwd=clone)
    assert dry.returncode == 0 and "Running stage" not in dry.stdout, dry.stdout

    # An experiment: only the train stage re-runs (upstream is up to date), with the new rate.
    before = json.loads((clone / "reports/train_metrics.json").read_text())
    t0 = time.monotonic()
    exp = dvc_repo.dvc("exp", "run", "-S", "train.learning_rate=0.002", "train", cwd=clone)
    assert exp.returncode == 0, exp.stdout + exp.stderr
    print(f"exp run: {time.monotonic() - t0:.1f}s", file=sys.stderr)
    assert "Running stage 'train'" in exp.stdout and "Running stage 'ingest'" not in exp.stdout
    shown = json.loads(dvc_repo.dvc("exp", "show", "--json", cwd=clone).stdout)
    rates = {json.dumps(e).count('"learning_rate": 0.002') > 0 for e in shown}
    assert True in rates
    assert json.loads((clone / "reports/train_metrics.json").read_text()) != before

    plots = dvc_repo.dvc("plots", "show", "--json", cwd=clone)
    assert plots.returncode == 0, plots.stderr
    data = json.loads(plots.stdout)
    assert not data.get("errors"), data.get("errors")
    loss = data["data"]["loss"][0]["content"]["data"]["values"]
    assert loss and {"step", "loss"} <= set(loss[0])
