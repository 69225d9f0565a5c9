"""`dagllm pipeline submit|schedule` against a loopback stand-in for the KFP API server.

The stand-in (tests/pipeline/kfp_server.py) records the v2beta1 REST calls that kfp.Client makes;
it is not Kubeflow, so these tests check the calls and their bodies, not what a cluster does.
"""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dagllm.cli import app
from dagllm.params import load_params
from pipelines.dagllm_pipeline import with_profile
from pipelines.submit import SubmitError, kfp_cron

from ..conftest import REPO
from .kfp_server import API, AUDIENCE, KfpStandIn, jwt

PARAMS = str(REPO / "params.yaml")
PROFILE = str(REPO / "pipelines/cluster.yaml")


def _cli(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def _routes(calls) -> list[str]:
    return [f"{c.method} {c.path.removeprefix(API)}" for c in calls if not c.path.endswith("/healthz")]


def test_submit_then_schedule_make_the_right_calls():
    with KfpStandIn() as kfp:
        first = _cli("pipeline", "submit", "--host", kfp.url, "--params", PARAMS, "--profile", PROFILE, "--version-name", "v1",
                     "--run-name", "smoke", "mlflow.tracking_uri=http://mlflow.dagllm:5000")
        assert first.exit_code == 0, first.output
        assert _routes(kfp.state.calls) == [
            "GET /pipelines", "POST /pipelines/upload", "POST /pipelines/upload_version",
            "GET /experiments", "POST /experiments", "POST /runs"]
        upload = next(c for c in kfp.state.calls if c.path.endswith("/pipelines/upload"))
        assert upload.query["name"] == "dagllm"
        assert upload.query["namespace"] == "dagllm"  # the profile's, not shared (the cluster profile's namespace)
        assert b"pipelineInfo" in upload.upload and b"emptyDirMounts" in upload.upload  # the compiled spec
        (run,) = kfp.state.runs.values()
        assert run["display_name"] == "smoke"
        assert run["experiment_id"] == next(iter(kfp.state.experiments))
        version = next(v for v in kfp.state.versions.values() if v["display_name"] == "v1")
        assert run["pipeline_version_reference"] == {"pipeline_id": version["pipeline_id"],
                                                     "pipeline_version_id": version["pipeline_version_id"]}
        sent = json.loads(run["runtime_config"]["parameters"]["params_json"])
        assert sent["mlflow"]["tracking_uri"] == "http://mlflow.dagllm:5000"  # the override reached the run
        assert run["service_account"] == "dagllm-pipeline-runner"

        kfp.state.calls.clear()
        second = _cli("pipeline", "schedule", "--host", kfp.url, "--params", PARAMS, "--profile", PROFILE, "--cron", "0 3 * * 1",
                      "--version-name", "v2")
        assert second.exit_code == 0, second.output
        # The pipeline and the experiment exist now: a new version, and the same experiment.
        assert _routes(kfp.state.calls) == ["GET /pipelines", "POST /pipelines/upload_version", "GET /experiments",
                                            "GET /recurringruns", "POST /recurringruns"]
        (rec,) = kfp.state.recurring.values()
        assert rec["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"
        assert rec["max_concurrency"] == "1" or rec["max_concurrency"] == 1
        assert rec["no_catchup"] is True and rec["mode"] == "ENABLE"
        assert rec["experiment_id"] == run["experiment_id"] and len(kfp.state.experiments) == 1
        v2 = next(v for v in kfp.state.versions.values() if v["display_name"] == "v2")
        assert rec["pipeline_version_reference"]["pipeline_version_id"] == v2["pipeline_version_id"]
        assert "recurring run" in second.output


def test_server_refusal_is_one_line():
    with KfpStandIn() as kfp:
        assert _cli("pipeline", "submit", "--host", kfp.url, "--params", PARAMS, "--profile", PROFILE, "--version-name", "v1").exit_code == 0
        again = _cli("pipeline", "submit", "--host", kfp.url, "--params", PARAMS, "--profile", PROFILE, "--version-name", "v1")
    assert again.exit_code == 1
    assert "KFP server answered 409" in again.output and "Traceback" not in again.output


def test_bad_cron_and_host_fail_before_any_call():
    with KfpStandIn() as kfp:
        bad = _cli("pipeline", "schedule", "--host", kfp.url, "--params", PARAMS, "--profile", PROFILE, "--cron", "every monday")
        assert bad.exit_code == 2 and "5 fields" in bad.output
        assert kfp.state.calls == []
    nohost = _cli("pipeline", "submit", "--host", "localhost:8888", "--params", PARAMS, "--profile", PROFILE)
    assert nohost.exit_code == 2 and "http://" in nohost.output


@pytest.mark.parametrize(("given", "expected"), [("0 3 * * 1", "0 0 3 * * 1"), ("30 0 3 * * *", "30 0 3 * * *"),
                                                 ("*/15 * * * *", "0 */15 * * * *")])
def test_kfp_cron(given: str, expected: str):
    assert kfp_cron(given) == expected


def test_kfp_cron_rejects():
    with pytest.raises(SubmitError, match="5 fields"):
        kfp_cron("0 3 * *")


def test_submitted_spec_carries_the_run_params(tmp_path):
    """The uploaded package is the compiled pipeline of the same params (defaults = what is sent)."""
    with KfpStandIn() as kfp:
        assert _cli("pipeline", "submit", "--host", kfp.url, "--params", PARAMS, "--profile", PROFILE, "train.max_steps=7").exit_code == 0
        upload = next(c for c in kfp.state.calls if c.path.endswith("/pipelines/upload")).upload
    start = upload.index(b"# PIPELINE DEFINITION")
    spec = next(yaml.safe_load_all(upload[start:].split(b"\r\n--")[0].decode()))
    default = json.loads(spec["root"]["inputDefinitions"]["parameters"]["params_json"]["defaultValue"])
    assert default["train"]["max_steps"] == 7
    expected = with_profile(load_params(PARAMS), Path(PROFILE)).to_dict()
    expected["train"]["max_steps"] = 7  # the override wins over the profile
    assert default == expected


def test_laptop_defaults_are_refused_before_any_call():
    with KfpStandIn() as kfp:
        res = _cli("pipeline", "submit", "--host", kfp.url, "--params", PARAMS)
        assert res.exit_code == 2 and "Traceback" not in res.output
        # one error naming each laptop default (params.yaml: SQLite store, auto mirror, tiny model)
        for key in ("mlflow.tracking_uri='sqlite:///mlflow.db'", "paths.mirror='auto'", "train.model='tiny'"):
            assert key in res.output.replace("\n", "")
        assert kfp.state.calls == []


def test_schedule_again_replaces_its_recurring_run():
    with KfpStandIn() as kfp:
        args = ("pipeline", "schedule", "--host", kfp.url, "--params", PARAMS, "--profile", PROFILE)
        assert _cli(*args, "--cron", "0 3 * * 1", "--version-name", "v1").exit_code == 0
        assert _cli(*args, "--cron", "0 4 * * 1", "--name", "other", "--version-name", "v2").exit_code == 0
        (first,) = [r for r in kfp.state.recurring.values() if r["display_name"] == "dagllm-retrain"]
        again = _cli(*args, "--cron", "0 5 * * 2", "--version-name", "v3")
        assert again.exit_code == 0, again.output
        assert f"replaces {first['recurring_run_id']}" in again.output
        names = sorted(r["display_name"] for r in kfp.state.recurring.values())
        assert names == ["dagllm-retrain", "other"]  # one of each: replaced, the other schedule untouched
        (now,) = [r for r in kfp.state.recurring.values() if r["display_name"] == "dagllm-retrain"]
        assert now["trigger"]["cron_schedule"]["cron"] == "0 0 5 * * 2"
        assert f"DELETE {API}/recurringruns/{first['recurring_run_id']}" in [f"{c.method} {c.path}" for c in kfp.state.calls]


def test_namespace_reaches_the_experiment():
    with KfpStandIn() as kfp:
        res = _cli("pipeline", "submit", "--host", kfp.url, "--params", PARAMS, "--profile", PROFILE,
                   "kubeflow.namespace=team-ml")
        assert res.exit_code == 0, res.output
        (exp,) = kfp.state.experiments.values()
        assert exp["namespace"] == "team-ml"


# --- multi-user KFP: the token's audience, as the API server checks it ---------------------------


def test_a_token_for_the_kubernetes_api_is_refused_before_any_call(monkeypatch: pytest.MonkeyPatch):
    """`kubectl create token` without --audience gives the API server's audience: KFP answers 401."""
    monkeypatch.setenv("KFP_TOKEN", jwt(["https://kubernetes.default.svc.cluster.local", "k3s"]))
    with KfpStandIn(multi_user=True) as kfp:
        res = _cli("pipeline", "submit", "--host", kfp.url, "--params", PARAMS, "--profile", PROFILE)
        assert kfp.state.calls == []
    assert res.exit_code == 2 and "Traceback" not in res.output
    text = res.output.replace("\n", " ")
    assert "https://kubernetes.default.svc.cluster.local" in text
    assert f"create token default-editor --audience {AUDIENCE}" in text


def test_the_stand_in_refuses_what_the_server_refuses():
    """The stand-in's check is the server's: a token without the audience gets 401 from it too."""
    import kfp as kfp_sdk
    from kfp_server_api.exceptions import ApiException

    with KfpStandIn(multi_user=True) as kfp:
        for token in (jwt(["https://kubernetes.default.svc"]), "not-a-jwt"):
            with pytest.raises(ApiException) as err:
                kfp_sdk.Client(host=kfp.url, existing_token=token).list_pipelines(namespace="dagllm")
            assert err.value.status == 401
        ok = kfp_sdk.Client(host=kfp.url, existing_token=jwt([AUDIENCE])).list_pipelines(namespace="dagllm")
        assert ok.pipelines is None


def test_without_a_token_the_error_says_how_to_make_one(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("KFP_TOKEN", raising=False)
    with KfpStandIn(multi_user=True) as kfp:
        res = _cli("pipeline", "submit", "--host", kfp.url, "--params", PARAMS, "--profile", PROFILE)
    assert res.exit_code == 2 and "Traceback" not in res.output
    text = res.output.replace("\n", " ")
    assert "401" in text and f"kubectl -n dagllm create token default-editor --audience {AUDIENCE}" in text


def test_with_a_kfp_token_every_call_carries_it(monkeypatch: pytest.MonkeyPatch):
    token = jwt([AUDIENCE])
    monkeypatch.setenv("KFP_TOKEN", token)
    with KfpStandIn(multi_user=True) as kfp:
        res = _cli("pipeline", "schedule", "--host", kfp.url, "--params", PARAMS, "--profile", PROFILE,
                   "--cron", "0 3 * * 1")
        assert res.exit_code == 0, res.output
        assert all(c.headers.get("authorization") == f"Bearer {token}" for c in kfp.state.calls)
        (pipeline,) = kfp.state.pipelines.values()
        assert pipeline["namespace"] == "dagllm"
        (exp,) = kfp.state.experiments.values()
        assert exp["namespace"] == "dagllm"


def test_a_refused_schedule_leaves_the_old_one_running():
    """schedule creates the new recurring run before deleting the old: a failed create deletes nothing."""
    with KfpStandIn() as kfp:
        args = ("pipeline", "schedule", "--host", kfp.url, "--params", PARAMS, "--profile", PROFILE)
        assert _cli(*args, "--cron", "0 3 * * 1", "--version-name", "v1").exit_code == 0
        (old,) = kfp.state.recurring
        kfp.state.fail[f"POST {API}/recurringruns"] = 500
        res = _cli(*args, "--cron", "0 5 * * 2", "--version-name", "v2")
        assert res.exit_code == 1 and "500" in res.output
        assert list(kfp.state.recurring) == [old]
        assert not any(c.method == "DELETE" for c in kfp.state.calls)


def test_readme_kfp_cli_line_submits_the_cluster_spec():
    """README's stock-CLI line, run as written (host and token filled in) with the kfp CLI against a
    multi-user stand-in: the run it creates carries the cluster spec, no laptop default."""
    import os
    import re
    import shlex
    import subprocess
    import sys

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    (line,) = re.findall(r"`(kfp --endpoint [^`]+)`", readme)
    token = jwt([AUDIENCE])
    with KfpStandIn(multi_user=True) as kfp:
        args = shlex.split(line.replace("http://localhost:8888", kfp.url))
        args[1:1] = ["--existing-token", token]
        res = subprocess.run([str(Path(sys.executable).parent / "kfp"), *args[1:]], cwd=REPO, capture_output=True,
                             text=True, timeout=120, env={**os.environ, "KUBECONFIG": "/nonexistent"})
        assert res.returncode == 0, res.stdout[-1500:] + res.stderr[-1500:]
        (run,) = kfp.state.runs.values()
    default = json.loads(run["pipeline_spec"]["pipeline_spec"]["root"]["inputDefinitions"]["parameters"]["params_json"]["defaultValue"])
    assert default["mlflow"]["tracking_uri"] == "env" and default["paths"]["mirror"] == "/mnt/mirror"
    assert default["train"]["model"] != "tiny"
