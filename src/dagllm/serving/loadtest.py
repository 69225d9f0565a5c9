"""A bounded load test for ``dagllm serve``: N streaming chat requests, C at a time, loopback only.

Each request is a POST /api/chat read to its ``done`` event; latency is measured to the end of
the answer and to the first streamed text. Used by ``bench/serve_load.py`` and the tests.
"""

from __future__ import annotations

import http.client
import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class RequestResult:
    """One request: HTTP status, how it ended, and its timings in seconds."""

    status: int
    finish: str  # done | error | incomplete
    latency: float
    first_text: float | None = None
    tokens: int = 0
    error: str | None = None


def read_events(response: http.client.HTTPResponse) -> list[tuple[str, dict[str, Any]]]:
    """Parse a Server-Sent Events body into (event, data) pairs, in order."""
    events: list[tuple[str, dict[str, Any]]] = []
    kind, data = "message", ""
    for raw in response:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                events.append((kind, json.loads(data)))
            kind, data = "message", ""
        elif line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data += line[6:]
    return events


def chat_once(url: str, body: dict[str, Any], timeout: float = 60.0) -> RequestResult:
    """POST one chat request to ``url`` (``http://127.0.0.1:PORT``) and read the stream to its end."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    started = time.perf_counter()
    try:
        conn.request("POST", "/api/chat", json.dumps(body, ensure_ascii=False).encode(),
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            detail = json.loads(resp.read() or b"{}").get("error", {}).get("code", "")
            return RequestResult(resp.status, "error", time.perf_counter() - started, error=detail)
        first: float | None = None
        result = RequestResult(200, "incomplete", 0.0)
        kind, data = "message", ""
        for raw in resp:
            line = raw.decode("utf-8").rstrip("\r\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data += line[6:]
            elif not line and data:
                payload = json.loads(data)
                if kind == "delta" and first is None:
                    first = time.perf_counter() - started
                elif kind == "done":
                    result.finish, result.tokens = "done", int(payload["tokens"])
                elif kind == "error":
                    result.finish, result.error = "error", payload.get("code")
                kind, data = "message", ""
        result.latency, result.first_text = time.perf_counter() - started, first
        return result
    except OSError as exc:  # refused, reset or timed out: counted, never raised
        return RequestResult(0, "error", time.perf_counter() - started, error=type(exc).__name__)
    finally:
        conn.close()


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if q < 100 else max(values)


@dataclass
class LoadSummary:
    """What a load run did: counts reconcile (ok + errors == requests)."""

    requests: int
    concurrency: int
    wall_s: float
    results: list[RequestResult] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return sum(r.status == 200 and r.finish == "done" for r in self.results)

    @property
    def errors(self) -> list[RequestResult]:
        return [r for r in self.results if not (r.status == 200 and r.finish == "done")]

    def to_dict(self) -> dict[str, Any]:
        lat = [r.latency for r in self.results if r.finish == "done"]
        ttft = [r.first_text for r in self.results if r.first_text is not None]
        tokens = sum(r.tokens for r in self.results)
        return {
            "requests": self.requests, "concurrency": self.concurrency, "ok": self.ok,
            "errors": len(self.errors), "error_kinds": sorted({f"{r.status}:{r.error}" for r in self.errors}),
            "wall_s": round(self.wall_s, 3), "requests_per_s": round(self.requests / self.wall_s, 2),
            "tokens": tokens, "tokens_per_s": round(tokens / self.wall_s, 1),
            "latency_s": {f"p{q}": round(percentile(lat, q), 3) for q in (50, 95, 99)},
            "first_text_s": {f"p{q}": round(percentile(ttft, q), 3) for q in (50, 95, 99)},
        }

    def lines(self) -> list[str]:
        d = self.to_dict()
        lat, ft = d["latency_s"], d["first_text_s"]
        return [f"{d['ok']}/{d['requests']} ok at concurrency {d['concurrency']} in {d['wall_s']} s "
                f"({d['requests_per_s']} req/s, {d['tokens_per_s']} tokens/s); errors {d['errors']} {d['error_kinds']}",
                f"latency p50 {lat['p50']} s, p95 {lat['p95']} s, p99 {lat['p99']} s; "
                f"first text p50 {ft['p50']} s, p95 {ft['p95']} s, p99 {ft['p99']} s"]


def run_load(url: str, bodies: list[dict[str, Any]], concurrency: int, timeout: float = 60.0) -> LoadSummary:
    """Send every body in ``bodies`` to ``url`` with at most ``concurrency`` in flight.

    All ``concurrency`` workers wait on a barrier and start together, so the server sees the
    burst at once. Each request is bounded by ``timeout`` seconds.
    """
    if urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"{url}: the load test runs against loopback addresses only")
    barrier = threading.Barrier(concurrency)
    lock = threading.Lock()
    todo = list(bodies)
    results: list[RequestResult] = []

    def worker() -> None:
        barrier.wait()
        while True:
            with lock:
                if not todo:
                    return
                body = todo.pop()
            r = chat_once(url, body, timeout)
            with lock:
                results.append(r)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for f in [pool.submit(worker) for _ in range(concurrency)]:
            f.result()
    return LoadSummary(len(bodies), concurrency, time.perf_counter() - started, results)
