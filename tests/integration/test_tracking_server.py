"""The whole register / promote / load cycle through a real ``mlflow server`` on loopback.

The server is started by the team's script (mlflow/server.sh) with a private PostgreSQL as its
store and moto_server as its S3 artifact store. Also: a server that does not answer, a server
that comes up late, and two processes racing for champion through the server.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dagllm.cli import app
from dagllm.params import MlflowParams, load_params
from dagllm.registry.aliases import CHAMPION, PREVIOUS
from dagllm.registry.tracking import TrackingUnavailable, configure, server_errors
from dagllm.serving.model import load_for_generation

from ..conftest import REPO, small_params
from .race import assert_champion_chain, race, tiny_model
from .services import S3_CREDENTIALS, MlflowServer, Moto, Postgres, free_port

pytestmark = pytest.mark.slow
runner = CliRunner()
BALANCE = {"train": {"nsmc_sentiment": 40, "apeach_hate": 30}, "validation": {"nsmc_sentiment": 2, "apeach_hate": 2},
           "licenses": {"CC0 1.0": 42, "CC BY-SA 4.0": 32}}


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    """PostgreSQL + moto S3 + mlflow server (mlflow/server.sh), all on 127.0.0.1."""
    logs = tmp_path_factory.mktemp("services")
    started: list = []
    try:
        pg = Postgres().start()
        started.append(pg)
        moto = Moto().start(logs / "moto.log")
        started.append(moto)
        env = {"MLFLOW_S3_ENDPOINT_URL": moto.endpoint, "AWS_ACCESS_KEY_ID": S3_CREDENTIALS["aws_access_key_id"],
               "AWS_SECRET_ACCESS_KEY": S3_CREDENTIALS["aws_secret_access_key"], "AWS_DEFAULT_REGION": "us-east-1"}
        server = MlflowServer(pg.url, f"s3://{moto.bucket}/artifacts", env)
        started.append(server)
        server.start(logs / "mlflow.log")
        yield {"pg": pg, "moto": moto, "server": server, "env": env, "logs": logs,
               "model": tiny_model(logs / "model")}
    finally:
        for service in reversed(started):
            service.stop()


def client_for(url: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=url, registry_uri=url)


def workdir_for(wd: Path, url: str, model: Path, acc: float, f1: float = 0.5, **mlflow) -> Path:
    """A working directory as train + evaluate leave it, with a training run on the server."""
    wd.mkdir(parents=True, exist_ok=True)
    data = small_params()
    data["mlflow"].update(tracking_uri=url, http_max_retries=2, http_backoff_factor=0, **mlflow)
    (wd / "params.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    experiment_id = configure(MlflowParams(**data["mlflow"]))
    client = client_for(url)
    run = client.create_run(experiment_id, tags={"dagllm.pipeline_run": "kfp-run-42", "dagllm.base_model": "tiny"})
    client.log_param(run.info.run_id, "data.sha256", "d" * 64)
    client.set_terminated(run.info.run_id)
    (wd / "models").mkdir(exist_ok=True)
    if not (wd / "models/final").exists():
        (wd / "models/final").symlink_to(model)
    (wd / "models/train_run.json").write_text(json.dumps({"run_id": run.info.run_id}))
    (wd / "reports/eval").mkdir(parents=True, exist_ok=True)
    (wd / "reports/eval/metrics.json").write_text(json.dumps(
        {"lm_eval_version": "0.4.13", "num_fewshot": 0, "samples": {"kobest_copa": 12},
         "metrics": {"kobest_copa": {"acc": acc, "macro_f1": f1}}}))
    (wd / "reports/balance.json").write_text(json.dumps(BALANCE))
    return wd


def dagllm(wd: Path, *args: str, code: int = 0):
    old = os.getcwd()
    os.chdir(wd)
    try:
        result = runner.invoke(app, list(args))
    finally:
        os.chdir(old)
    assert result.exit_code == code, result.output
    return result


def report(wd: Path, name: str) -> dict:
    return json.loads((wd / "reports" / name).read_text())


def test_register_promote_rollback_and_load_through_the_server(services, tmp_path: Path):
    url, client = services["server"].url, client_for(services["server"].url)
    wd = workdir_for(tmp_path / "wd", url, services["model"], acc=0.55)
    dagllm(wd, "register")
    first = report(wd, "register.json")
    assert first["aliases"] == ["challenger", "champion"] and first["created"]
    assert first["lineage"]["dagllm.pipeline_run"] == "kfp-run-42"
    # the artifacts are in S3 (moto), the registry rows in PostgreSQL
    import boto3
    import psycopg2

    s3 = boto3.client("s3", endpoint_url=services["moto"].endpoint, **S3_CREDENTIALS)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=services["moto"].bucket)["Contents"]]
    assert any(k.endswith("model/model.safetensors") for k in keys), keys
    with psycopg2.connect(host="127.0.0.1", port=services["pg"].port, user="postgres", dbname="mlflow") as db:
        cur = db.cursor()
        cur.execute("select version from model_versions where name = 'dagllm-ko'")
        assert cur.fetchall() == [(1,)]

    workdir_for(wd, url, services["model"], acc=0.65, f1=0.49)  # better, f1 within tolerance
    dagllm(wd, "register")
    assert report(wd, "register.json")["promoted"]
    assert client.get_model_version_by_alias("dagllm-ko", PREVIOUS).version == "1"

    out = dagllm(wd, "promote", "--rollback").output
    assert "version 1 is champion (rollback)" in out
    rolled = report(wd, "promotion.json")
    assert (rolled["action"], rolled["champion_before"], rolled["champion_after"]) == ("rollback", "2", "1")
    dagllm(wd, "promote", "--version", "2")
    again = report(wd, "promotion.json")
    assert again["promoted"] and again["comparisons"][0]["champion"] == pytest.approx(0.55)
    dagllm(wd, "promote", "--version", "1")  # worse than champion 2: the gate says no
    refused = report(wd, "promotion.json")
    assert not refused["promoted"] and "kobest_copa.acc primary check failed" in refused["reason"]
    assert client.get_model_version_by_alias("dagllm-ko", CHAMPION).version == "2"
    dagllm(wd, "promote", "--version", "9", code=2)

    p = load_params(wd / "params.yaml")
    model, tok = load_for_generation("dagllm-ko", "champion", p.mlflow)
    ids = tok("### 지시:\n안녕하세요?\n\n### 응답:\n", return_tensors="pt")
    generated = model.generate(**ids, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    assert generated.shape[1] == ids["input_ids"].shape[1] + 4


def test_racing_promotions_through_the_server_keep_the_best_champion(services, tmp_path: Path):
    url, client = services["server"].url, client_for(services["server"].url)
    client.create_registered_model("race-srv")
    accs = [0.50, 0.62, 0.55, 0.71, 0.58, 0.66, 0.69, 0.53]
    run_id = client.create_run(configure(MlflowParams(tracking_uri=url))).info.run_id  # versions need a source
    versions = [client.create_model_version("race-srv", source=f"runs:/{run_id}/model", run_id=run_id, tags={
        "metric.kobest_copa.acc": str(a), "metric.kobest_copa.macro_f1": "0.5"}).version for a in accs]
    job = {"mlflow": {"tracking_uri": url}, "register": {"model_name": "race-srv",
                                                         "policy": str(REPO / "mlflow/promotion_policy.yaml")}}
    race([{**job, "steps": [{"kind": "gate", "version": v} for v in versions[0::2]]},
          {**job, "steps": [{"kind": "gate", "version": v} for v in versions[1::2]]}], tmp_path)
    champion = client.get_model_version_by_alias("race-srv", CHAMPION)
    assert champion.version == versions[accs.index(max(accs))]
    assert_champion_chain(client, "race-srv")


def test_server_not_answering_is_one_clear_error_and_the_model_stays(services, tmp_path: Path):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    wd = workdir_for(tmp_path / "wd", services["server"].url, services["model"], acc=0.5)
    data = yaml.safe_load((wd / "params.yaml").read_text())
    data["mlflow"]["tracking_uri"] = dead
    (wd / "params.yaml").write_text(yaml.safe_dump(data))
    out = dagllm(wd, "register", code=2).output
    assert f"the tracking server {dead} did not answer after 2 retries" in out
    assert "run `dagllm register` again" in out and "Traceback" not in out
    assert (wd / "models/final/model.safetensors").is_file()


def test_server_that_starts_late_is_waited_for(services, tmp_path: Path):
    late = MlflowServer(services["pg"].url, f"s3://{services['moto'].bucket}/artifacts", services["env"])
    wd = workdir_for(tmp_path / "wd", services["server"].url, services["model"], acc=0.4)
    p = load_params(wd / "params.yaml", [f"mlflow.tracking_uri={late.url}", "mlflow.http_max_retries=6",
                                         "mlflow.http_backoff_factor=1"])
    timer = threading.Timer(2.0, late.start, kwargs={"log": services["logs"] / "late.log", "wait": False})
    timer.start()
    try:
        from dagllm.stages.register import run_register

        summary = run_register(p.register_, p.mlflow, wd / "models/final", wd / "models/train_run.json",
                               wd / "reports/eval/metrics.json", wd / "reports/register.json", params_digest=p.digest())
    finally:
        timer.join()
        late.stop()
    assert summary.created and summary.version == "3"  # after the two of the cycle test
    gone = p.mlflow.model_copy(update={"http_max_retries": 0})
    with pytest.raises(TrackingUnavailable, match="did not answer after 0 retries"), server_errors(gone, "retry"):
        configure(gone)  # once it is gone again: the bounded error
