"""A loopback stand-in for the few Kubernetes API endpoints the train step uses, for tests only.

It is not Kubernetes: TrainJobs (``trainer.kubeflow.org/v1alpha1``, namespaced custom objects),
pods and pod logs live in dicts. It answers with the JSON shapes of the API server (objects,
``PodList``, ``Status`` errors, plain-text logs with ``tailLines``) that the real ``kubernetes``
client reads, and records every request (method, path, query, JSON body) so a test can assert
which calls were made. A test plays the Trainer controller with ``controller``: it is called on
every GET of a job and may change the job's status, add pods and write files.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

JOBS = re.compile(r"^/apis/trainer\.kubeflow\.org/v1alpha1/namespaces/([^/]+)/trainjobs(?:/([^/]+))?$")
PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods$")
LOG = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$")


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def cond(kind: str, reason: str, message: str) -> dict:
    """A status condition as the Trainer controller writes it (metav1.Condition)."""
    return {"type": kind, "status": "True", "reason": reason, "message": message, "lastTransitionTime": now()}


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any = None


@dataclass
class FakeKube:
    """State of the stand-in server."""

    calls: list[Call] = field(default_factory=list)
    jobs: dict[tuple[str, str], dict] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    controller: Callable[[FakeKube, dict], None] | None = None

    def add_pod(self, namespace: str, name: str, labels: dict[str, str], log: str) -> None:
        self.pods[(namespace, name)] = {"metadata": {"name": name, "namespace": namespace, "labels": labels,
                                                     "creationTimestamp": now()}}
        self.logs[name] = log

    def calls_to(self, method: str, pattern: str = "") -> list[Call]:
        return [c for c in self.calls if c.method == method and pattern in c.path]

    def routes(self, call: Call) -> tuple[int, Any]:
        m, p, q = call.method, call.path, call.query
        if mt := JOBS.match(p):
            ns, name = mt.groups()
            if m == "POST" and name is None:
                body = call.body
                key = (ns, body["metadata"]["name"])
                if key in self.jobs:
                    return _status(409, "AlreadyExists", f'trainjobs.trainer.kubeflow.org "{key[1]}" already exists')
                job = json.loads(json.dumps(body))
                job["metadata"].update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=now())
                self.jobs[key] = job
                return 201, job
            job = self.jobs.get((ns, name or ""))
            if job is None:
                return _status(404, "NotFound", f'trainjobs.trainer.kubeflow.org "{name}" not found')
            if m == "GET":
                if self.controller is not None:
                    self.controller(self, job)
                return 200, job
            if m == "DELETE":
                del self.jobs[(ns, name)]
                return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
        if m == "GET" and (mt := PODS.match(p)):
            want = dict(kv.split("=", 1) for kv in q.get("labelSelector", "").split(",") if kv)
            items = [pod for (ns, _), pod in self.pods.items() if ns == mt.group(1)
                     and all(pod["metadata"]["labels"].get(k) == v for k, v in want.items())]
            return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
        if m == "GET" and (mt := LOG.match(p)):
            ns, name = mt.groups()
            if (ns, name) not in self.pods:
                return _status(404, "NotFound", f'pods "{name}" not found')
            lines = self.logs[name].splitlines(keepends=True)
            if "tailLines" in q:
                lines = lines[-int(q["tailLines"]):]
            return 200, "".join(lines)
        return _status(404, "NotFound", f"the server could not find the requested resource ({m} {p})")


def _status(code: int, reason: str, message: str) -> tuple[int, dict]:
    return code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
                  "reason": reason, "code": code}


def serve(state: FakeKube) -> tuple[ThreadingHTTPServer, str]:
    """Start the stand-in on a free loopback port; returns the server and its base URL."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.loads(raw) if raw and "json" in (self.headers.get("Content-Type") or "") else None
            call = Call(self.command, url.path, query, body)
            with lock:
                state.calls.append(call)
                code, payload = state.routes(call)
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain" if isinstance(payload, str) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _handle

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
