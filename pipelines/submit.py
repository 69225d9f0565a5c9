"""Submit the DAG to a Kubeflow Pipelines server: one run now, or a recurring run on a cron schedule.

Both paths compile the pipeline from the given params (the same defaults as
``dagllm pipeline compile``), upload it as a new *version* of the ``dagllm`` pipeline (creating
the pipeline on first use), find or create the experiment (``kubeflow.experiment``), and then
create a run or a recurring run whose ``params_json`` argument is the given params. They talk to
the KFP v2beta1 REST API through :class:`kfp.Client`.
"""

# No `from __future__ import annotations`: kept like the rest of pipelines/ (kfp reads annotations).
import re
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dagllm.params import Params
from pipelines.dagllm_pipeline import PIPELINE_NAME, check_cluster, compile_pipeline, params_json

_CRON_FIELD = re.compile(r"^[\d*/,\-?A-Za-z]+$")
# The audience KFP's API server asks TokenReview for (backend/src/apiserver/common/const.go,
# DefaultTokenReviewAudience; configurable there as TOKEN_REVIEW_AUDIENCE): a token made for the
# Kubernetes API (kubectl create token's default) is refused with 401.
KFP_AUDIENCE = "pipelines.kubeflow.org"


def token_command(namespace: str | None) -> str:
    """The command that makes a token KFP accepts, for the profile ``namespace``."""
    return (f"export KFP_TOKEN=$(kubectl -n {namespace or 'NAMESPACE'} create token default-editor "
            f"--audience {KFP_AUDIENCE})")


class SubmitError(ValueError):
    """The server refused a request, or an argument (cron, host) is invalid."""


@dataclass
class Submission:
    """What was created on the server."""

    host: str
    pipeline_id: str
    version_id: str
    version_name: str
    experiment_id: str
    run_id: str | None = None
    recurring_run_id: str | None = None
    cron: str | None = None
    replaced: list[str] | None = None  # recurring runs of the same name that schedule deleted

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [f"pipeline {self.pipeline_id} version {self.version_name} ({self.version_id}) on {self.host}",
               f"experiment {self.experiment_id}"]
        if self.run_id:
            out.append(f"run {self.run_id}")
        if self.recurring_run_id:
            out.append(f"recurring run {self.recurring_run_id} on cron '{self.cron}'"
                       + (f" (replaces {', '.join(self.replaced)})" if self.replaced else ""))
        return out


def kfp_cron(expr: str) -> str:
    """Normalise a cron expression to the 6-field form KFP expects (seconds first).

    A standard 5-field expression (``minute hour day month weekday``) gets ``0`` seconds.

    Raises:
        SubmitError: not 5 or 6 fields, or a field with characters cron does not use.
    """
    fields = expr.split()
    if len(fields) not in (5, 6) or not all(_CRON_FIELD.match(f) for f in fields):
        raise SubmitError(f"cron {expr!r}: expected 5 fields (minute hour day month weekday) or 6 with seconds "
                          "first, e.g. '0 3 * * 1' for Mondays at 03:00")
    return " ".join(["0", *fields] if len(fields) == 5 else fields)


def _jwt_audiences(token: str) -> list[str] | None:
    """The ``aud`` claim of a JWT (read, not verified: the server verifies), or None for another token."""
    import base64
    import json

    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    aud = claims.get("aud") if isinstance(claims, dict) else None
    return [aud] if isinstance(aud, str) else list(aud) if isinstance(aud, list) else None


def _token(namespace: str | None) -> str | None:
    """``KFP_TOKEN`` from the environment (never params.yaml or a flag that shells keep in history).

    Raises:
        SubmitError: the token is a JWT whose audience KFP does not accept.
    """
    import os

    token = os.environ.get("KFP_TOKEN", "").strip() or None
    aud = _jwt_audiences(token) if token else None
    if aud is not None and KFP_AUDIENCE not in aud:
        raise SubmitError(f"KFP_TOKEN is for audience {', '.join(aud)}, and KFP's API server accepts only "
                          f"{KFP_AUDIENCE} "
                          f"(it would answer 401): {token_command(namespace)}")
    return token


def _client(host: str, client: Any = None, namespace: str | None = None) -> Any:
    """A kfp.Client for ``host``; multi-user KFP: the profile ``namespace`` and a bearer token
    (:func:`_token`; without one, kfp.Client's own lookup: in a pod, its projected KFP token)."""
    if client is not None:
        return client
    if not host.startswith(("http://", "https://")):
        raise SubmitError(f"host {host!r}: give the KFP API URL, e.g. http://localhost:8888 "
                          "(kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8888:80)")
    token = _token(namespace)
    import kfp

    return kfp.Client(host=host, namespace=namespace or "kubeflow", existing_token=token)


def _auth_error(status: int, namespace: str | None) -> SubmitError:
    """What to do about a request refused for its token (401) or its identity (403)."""
    if status == 401:
        return SubmitError(f"the KFP API answered 401 (no token, an expired one, or one for another audience): "
                           f"{token_command(namespace)}, then run again")
    return SubmitError(f"the KFP API answered 403: the token's identity may not use namespace {namespace!r}; "
                       "make it a contributor of that profile (docs/deploy.md, 1)")


def _pipeline_id(client: Any, namespace: str | None) -> str | None:
    """The id of the ``dagllm`` pipeline in ``namespace`` (None: shared pipelines), if it exists."""
    import json

    flt = json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "string_value": PIPELINE_NAME}]})
    found = client.list_pipelines(filter=flt, page_size=10, namespace=namespace).pipelines or []
    ids = [x.pipeline_id for x in found if x.display_name == PIPELINE_NAME]
    if len(ids) > 1:
        raise SubmitError(f"{len(ids)} pipelines named {PIPELINE_NAME!r} in namespace {namespace!r}: delete all but one")
    return ids[0] if ids else None


def _upload(client: Any, params: Params, version_name: str) -> tuple[str, str]:
    """Compile, upload as a new version (creating the pipeline if needed); returns (pipeline, version) ids."""
    namespace = params.kubeflow.namespace
    with tempfile.TemporaryDirectory() as tmp:
        package = str(compile_pipeline(params, Path(tmp) / "dagllm.yaml", cluster=True))
        pipeline_id = _pipeline_id(client, namespace)
        if pipeline_id is None:
            # First use: KFP creates the pipeline with a first version named after it; the named
            # version below is the one the run uses, so every run points at a version we named.
            # In the profile namespace: some installations refuse shared (namespace-less) pipelines.
            pipeline_id = client.upload_pipeline(package, pipeline_name=PIPELINE_NAME, namespace=namespace,
                                                 description="dagllm: Korean instruction tuning").pipeline_id
        version = client.upload_pipeline_version(package, pipeline_version_name=version_name,
                                                 pipeline_id=pipeline_id)
    return pipeline_id, version.pipeline_version_id


def _prepare(params: Params, host: str, version_name: str | None, client: Any) -> tuple[Any, Submission]:
    check_cluster(params)  # before any request: laptop defaults never reach the server
    namespace = params.kubeflow.namespace
    kfp_client = _client(host, client, namespace)
    name = version_name or f"{PIPELINE_NAME}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{params.digest()[:8]}"
    pipeline_id, version_id = _upload(kfp_client, params, name)
    # returns the existing one if any; in the profile namespace on multi-user KFP
    experiment = kfp_client.create_experiment(params.kubeflow.experiment, namespace=namespace)
    return kfp_client, Submission(host, pipeline_id, version_id, name, experiment.experiment_id)


def _requests(params: Params):
    """Turn a request refused for its token (401/403) into a :class:`SubmitError` that says what to do;
    other refusals go on as they are (the CLI prints the server's answer)."""
    from contextlib import contextmanager

    from kfp_server_api.exceptions import ApiException

    @contextmanager
    def guard():
        try:
            yield
        except ApiException as exc:
            if exc.status in (401, 403):
                raise _auth_error(exc.status, params.kubeflow.namespace) from None
            raise

    return guard()


def submit(params: Params, host: str, run_name: str | None = None, version_name: str | None = None,
           client: Any = None) -> Submission:
    """Upload a pipeline version and create one run of it in the experiment.

    Args:
        params: the params the pipeline is compiled with and run with.
        host: the KFP API endpoint.
        run_name: the run's display name (default: version name).
        version_name: the pipeline version's name (default: timestamp + params digest).
        client: a ``kfp.Client`` to use instead of making one for ``host``.

    Raises:
        SubmitError: laptop defaults in ``params``, a bad host or token, or a request the server refused.
    """
    with _requests(params):
        kfp_client, sub = _prepare(params, host, version_name, client)
        run = kfp_client.run_pipeline(sub.experiment_id, run_name or sub.version_name, pipeline_id=sub.pipeline_id,
                                      version_id=sub.version_id, params={"params_json": params_json(params)},
                                      service_account=params.kubeflow.service_account)
    sub.run_id = run.run_id
    return sub


def _recurring(client: Any, experiment_id: str, name: str) -> list[str]:
    """The ids of the recurring runs named ``name`` in the experiment."""
    import json

    flt = json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "string_value": name}]})
    found = client.list_recurring_runs(experiment_id=experiment_id, filter=flt, page_size=100).recurring_runs or []
    return [r.recurring_run_id for r in found if r.display_name == name]


def schedule(params: Params, host: str, cron: str, name: str | None = None, version_name: str | None = None,
             client: Any = None) -> Submission:
    """Upload a pipeline version and create a recurring run of it (scheduled retraining).

    At most one run at a time, no catch-up of missed runs. Scheduling again replaces the schedule:
    the new recurring run is created first, then the older ones of the same name in the experiment
    are deleted, so a refused create leaves the old schedule running.

    Args:
        params: the params the pipeline is compiled with and run with.
        host: the KFP API endpoint.
        cron: 5-field cron (or KFP's 6-field form with seconds first).
        name: the recurring run's name (default: ``dagllm-retrain``).
        version_name: the pipeline version's name.
        client: a ``kfp.Client`` to use instead of making one for ``host``.

    Raises:
        SubmitError: as :func:`submit`, or a bad cron expression.
    """
    cron6 = kfp_cron(cron)
    name = name or f"{PIPELINE_NAME}-retrain"
    with _requests(params):
        kfp_client, sub = _prepare(params, host, version_name, client)
        older = _recurring(kfp_client, sub.experiment_id, name)
        rec = kfp_client.create_recurring_run(
            sub.experiment_id, name, description="scheduled retraining",
            cron_expression=cron6, max_concurrency=1, no_catchup=True, pipeline_id=sub.pipeline_id,
            version_id=sub.version_id, params={"params_json": params_json(params)},
            service_account=params.kubeflow.service_account, enabled=True)
        sub.recurring_run_id, sub.cron = rec.recurring_run_id, cron6
        # Idempotent: the recurring run of this name is replaced, not joined by another.
        for rid in older:
            kfp_client.delete_recurring_run(rid)
    sub.replaced = older
    return sub
