"""A loopback stand-in for the Kubeflow Pipelines API server (v2beta1 REST), for tests only.

It is not KFP: it keeps pipelines, versions, experiments, runs and recurring runs in dicts,
answers with the JSON shapes of the v2beta1 API that ``kfp.Client`` reads, and records every
request (method, path, query, JSON body or uploaded file) so a test can assert which calls a
command made. Unknown paths answer 404 and are recorded too.

``multi_user=True`` does what KFP's API server does in multi-user mode
(backend/src/apiserver/auth, resource_manager): every request but healthz needs a bearer token that
TokenReview accepts for the audience ``pipelines.kubeflow.org`` (DefaultTokenReviewAudience in
backend/src/apiserver/common/const.go; here the token's ``aud`` claim is read, its signature is not
checked), else 401; an experiment needs a namespace (400). Pipelines uploaded with a namespace are
listed only with that namespace, shared ones only without, as KFP's ListPipelines filters them.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API = "/apis/v2beta1"
AUDIENCE = "pipelines.kubeflow.org"


def jwt(aud: list[str] | str, sub: str = "system:serviceaccount:dagllm:default-editor") -> str:
    """An unsigned JWT with these claims, shaped like a Kubernetes service account token."""
    import base64

    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")  # noqa: E731
    return f"{enc({'alg': 'RS256', 'kid': 'stand-in'})}.{enc({'aud': aud, 'sub': sub, 'iss': 'https://kubernetes.default.svc'})}.c2ln"


def _audiences(header: str) -> list[str]:
    import base64

    token = header.removeprefix("Bearer ").strip()
    try:
        payload = token.split(".")[1]
        aud = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))).get("aud", [])
    except (IndexError, ValueError, AttributeError):
        return []
    return [aud] if isinstance(aud, str) else list(aud)


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any = None
    upload: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeKfp:
    """State of the stand-in server."""

    calls: list[Call] = field(default_factory=list)
    pipelines: dict[str, dict] = field(default_factory=dict)
    versions: dict[str, dict] = field(default_factory=dict)
    experiments: dict[str, dict] = field(default_factory=dict)
    runs: dict[str, dict] = field(default_factory=dict)
    recurring: dict[str, dict] = field(default_factory=dict)
    multi_user: bool = False
    fail: dict[str, int] = field(default_factory=dict)  # "METHOD /path" -> status to answer once

    def _version(self, pipeline_id: str, name: str, now: str) -> dict:
        vid = str(uuid.uuid4())
        self.versions[vid] = {"pipeline_id": pipeline_id, "pipeline_version_id": vid, "display_name": name,
                              "created_at": now, "seq": len(self.versions)}
        return self.versions[vid]

    def routes(self, call: Call) -> tuple[int, dict]:
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        m, p, q = call.method, call.path, call.query
        if m == "GET" and p == f"{API}/healthz":
            return 200, {"commit_sha": "stand-in", "tag_name": "2.5.0", "multi_user": self.multi_user}
        if self.multi_user and AUDIENCE not in _audiences(call.headers.get("authorization", "")):
            return 401, {"error": "Failed to authenticate token review", "code": 16,
                         "message": f"Failed to authenticate token review: audience {AUDIENCE} not in token"}
        if f"{m} {p}" in self.fail:
            return self.fail.pop(f"{m} {p}"), {"error": "stand-in: planted failure"}
        if m == "GET" and p == f"{API}/pipelines":
            ns = q.get("namespace", "")
            return 200, _listing("pipelines", [x for x in self.pipelines.values() if x["namespace"] == ns], q)
        if m == "POST" and p == f"{API}/pipelines/upload":
            ns = q.get("namespace", "")
            if any(x["display_name"] == q["name"] and x["namespace"] == ns for x in self.pipelines.values()):
                return 409, {"error": f"pipeline {q['name']} already exists"}
            pid = str(uuid.uuid4())
            self.pipelines[pid] = {"pipeline_id": pid, "display_name": q["name"], "created_at": now,
                                   "description": q.get("description", ""), "namespace": ns}
            self._version(pid, q["name"], now)  # as KFP does: the first upload is also the first version
            return 200, self.pipelines[pid]
        if m == "POST" and p == f"{API}/pipelines/upload_version":
            if q.get("pipelineid") not in self.pipelines:
                return 404, {"error": "pipeline not found"}
            if any(v["display_name"] == q["name"] and v["pipeline_id"] == q["pipelineid"]
                   for v in self.versions.values()):
                return 409, {"error": f"version {q['name']} already exists"}
            return 200, self._version(q["pipelineid"], q["name"], now)
        if m == "GET" and (hit := re.fullmatch(rf"{API}/pipelines/([-\w]+)/versions", p)):
            rows = sorted((v for v in self.versions.values() if v["pipeline_id"] == hit[1]),
                          key=lambda v: v["seq"], reverse="desc" in q.get("sort_by", ""))
            return 200, {"pipeline_versions": rows[: int(q.get("page_size", 100))], "total_size": len(rows)}
        if m == "GET" and p == f"{API}/experiments":
            return 200, _listing("experiments", self.experiments.values(), q)
        if m == "POST" and p == f"{API}/experiments":
            if self.multi_user and not (call.body or {}).get("namespace"):
                return 400, {"error": "Invalid input: in multi-user mode, an experiment needs a namespace"}
            eid = str(uuid.uuid4())
            self.experiments[eid] = {**call.body, "experiment_id": eid, "created_at": now, "storage_state": "AVAILABLE"}
            return 200, self.experiments[eid]
        if m == "POST" and p == f"{API}/runs":
            rid = str(uuid.uuid4())
            self.runs[rid] = {**call.body, "run_id": rid, "state": "PENDING", "created_at": now}
            return 200, self.runs[rid]
        if m == "POST" and p == f"{API}/recurringruns":
            rid = str(uuid.uuid4())
            self.recurring[rid] = {**call.body, "recurring_run_id": rid, "status": "ENABLED", "created_at": now}
            return 200, self.recurring[rid]
        if m == "GET" and p == f"{API}/recurringruns":
            rows = [r for r in self.recurring.values() if r["experiment_id"] == q.get("experiment_id", r["experiment_id"])]
            return 200, _listing("recurringRuns", rows, q)  # the JSON name kfp_server_api reads
        if m == "DELETE" and (hit := re.fullmatch(rf"{API}/recurringruns/([-\w]+)", p)):
            return (200, self.recurring.pop(hit[1]) and {}) if hit[1] in self.recurring else (404, {"error": "not found"})
        if m == "GET" and (hit := re.fullmatch(rf"{API}/(runs|recurringruns|experiments)/([-\w]+)", p)):
            store = {"runs": self.runs, "recurringruns": self.recurring, "experiments": self.experiments}[hit[1]]
            return (200, store[hit[2]]) if hit[2] in store else (404, {"error": "not found"})
        return 404, {"error": f"stand-in server: no route {m} {p}"}


def _listing(kind: str, items: Any, query: dict[str, str]) -> dict:
    """List ``items``, honouring a display_name EQUALS filter as kfp.Client sends it."""
    rows = list(items)
    if "filter" in query:
        for pred in json.loads(query["filter"]).get("predicates", []):
            if pred.get("key") in ("display_name", "name"):
                rows = [r for r in rows if r["display_name"] == pred.get("string_value", pred.get("stringValue"))]
    return {kind: rows, "total_size": len(rows)} if rows else {"total_size": 0}


class _Handler(BaseHTTPRequestHandler):
    state: FakeKfp

    def _serve(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        call = Call(self.command, url.path, query, headers={k.lower(): v for k, v in self.headers.items()})
        if raw and self.headers.get("Content-Type", "").startswith("application/json"):
            call.body = json.loads(raw)
        elif raw:
            call.upload = raw
        self.state.calls.append(call)
        status, payload = self.state.routes(call)
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _serve

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        return


class KfpStandIn:
    """Context manager: the stand-in server on 127.0.0.1 (a free port) in a thread."""

    def __init__(self, multi_user: bool = False) -> None:
        self.state = FakeKfp(multi_user=multi_user)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> KfpStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
