"""A bounded burst against the server: 50 streaming requests at once, all must complete.

Timings are reported (printed) but not asserted: speed figures live in docs/benchmarks.md,
measured with bench/serve_load.py.
"""

from __future__ import annotations

import pytest

from dagllm.serving.loadtest import run_load

from .conftest import QA

pytestmark = pytest.mark.slow


def test_fifty_concurrent_requests_all_complete(server):
    bodies = [{"message": QA[i % len(QA)][0], "max_new_tokens": 8, "temperature": 0.7} for i in range(50)]
    summary = run_load(server.url, bodies, concurrency=50, timeout=120)
    for line in summary.lines():
        print(line)
    d = summary.to_dict()
    assert d["ok"] == 50 and d["errors"] == 0, d["error_kinds"]
    assert len(summary.results) == 50 and all(r.tokens >= 1 for r in summary.results)
    assert server.app.state.worker.waiting == 0


def test_load_runs_only_against_loopback():
    with pytest.raises(ValueError, match="loopback"):
        run_load("http://10.0.0.1:8000", [{"message": "안녕"}], concurrency=1)
