"""The JSON API of ``dagllm serve`` against the real app under uvicorn with the tiny chat model."""

from __future__ import annotations

import http.client
import json
import threading
from urllib.parse import urlsplit

import pytest

from dagllm.serving.loadtest import read_events

from .conftest import QA

pytestmark = pytest.mark.slow


def call(url: str, method: str, path: str, body: bytes | str | dict | None = None,
         headers: dict | None = None) -> tuple[int, dict, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    if isinstance(body, dict):
        body = json.dumps(body, ensure_ascii=False)
    if isinstance(body, str):
        body = body.encode()
    try:
        conn.request(method, path, body, {"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def stream(url: str, body: dict) -> tuple[int, list[tuple[str, dict]]]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request("POST", "/api/chat", json.dumps(body).encode(), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.getheader("content-type", "").startswith("text/event-stream")
        return resp.status, read_events(resp)
    finally:
        conn.close()


def error_of(raw: bytes) -> dict:
    body = json.loads(raw)
    assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"])
    assert "Traceback" not in raw.decode()
    return body["error"]


def test_health_readiness_and_info(server, registered):
    assert call(server.url, "GET", "/healthz")[:1] == (200,)
    status, _, raw = call(server.url, "GET", "/readyz")
    assert status == 200 and json.loads(raw)["ready"] is True
    status, _, raw = call(server.url, "GET", "/api/info")
    info = json.loads(raw)
    assert info["model"]["name"] == "dagllm-ko" and info["model"]["version"] == registered.version
    assert info["model"]["alias"] == "champion" and "champion" in info["model"]["aliases"]
    assert info["model"]["metrics"] == {"kobest_copa.acc": "0.6"}
    assert info["defaults"] == {"temperature": 0.0, "top_p": 0.9, "max_new_tokens": 32}


def test_page_and_static_files_are_served_locally(server):
    status, headers, raw = call(server.url, "GET", "/")
    page = raw.decode()
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "dagllm 채팅" in page and 'lang="ko"' in page
    assert "http://" not in page and "https://" not in page  # nothing from a CDN
    assert "default-src 'self'" in headers["content-security-policy"]
    for path, kind in (("/static/app.js", "javascript"), ("/static/style.css", "text/css")):
        status, headers, raw = call(server.url, "GET", path)
        assert status == 200 and kind in headers["content-type"] and b"https://" not in raw


def test_chat_streams_the_memorised_answer(server):
    question, answer = QA[0]
    status, events = stream(server.url, {"message": question, "temperature": 0, "max_new_tokens": 30})
    kinds = [k for k, _ in events]
    assert status == 200 and kinds[:2] == ["queued", "start"] and kinds[-1] == "done"
    deltas = [p["text"] for k, p in events if k == "delta"]
    done = events[-1][1]
    assert len(deltas) >= 2  # streamed in pieces, not in one block
    assert "".join(deltas) == done["text"] == answer
    assert done["finish_reason"] == "stop" and 0 < done["tokens"] <= 30


def test_generate_returns_json_and_honours_settings(server):
    question, answer = QA[2]
    status, _, raw = call(server.url, "POST", "/api/generate", {"message": question, "temperature": 0})
    assert status == 200 and json.loads(raw)["text"] == answer
    status, _, raw = call(server.url, "POST", "/api/generate",
                          {"message": question, "temperature": 1.5, "top_p": 0.5, "max_new_tokens": 3})
    out = json.loads(raw)
    assert status == 200 and out["tokens"] <= 3 and out["max_new_tokens"] == 3


def test_history_goes_into_the_prompt_and_is_trimmed_to_the_context(server, loaded):
    question, answer = QA[1]
    history = [{"role": "user", "content": "이전 질문 " * 3}, {"role": "assistant", "content": "이전 답 " * 3}]
    status, _, raw = call(server.url, "POST", "/api/generate",
                          {"message": question, "history": history, "max_new_tokens": 4})
    with_history = json.loads(raw)
    status0, _, raw0 = call(server.url, "POST", "/api/generate", {"message": question, "max_new_tokens": 4})
    assert status == status0 == 200
    assert with_history["prompt_tokens"] > json.loads(raw0)["prompt_tokens"] and with_history["dropped_turns"] == 0
    long = [{"role": "user", "content": "아주 긴 이전 대화 " * 40}] * 4
    status, _, raw = call(server.url, "POST", "/api/generate", {"message": question, "history": long})
    out = json.loads(raw)
    assert status == 200 and out["dropped_turns"] >= 1
    assert out["prompt_tokens"] + out["max_new_tokens"] <= loaded.context_length


@pytest.mark.parametrize("body, field", [
    ({"message": "안녕", "temperature": 2.5}, "temperature"),
    ({"message": "안녕", "top_p": 0}, "top_p"),
    ({"message": "안녕", "max_new_tokens": 0}, "max_new_tokens"),
    ({"message": "안녕", "max_new_tokens": 10_000}, "(body)"),
    ({"message": "   "}, "(body)"),
    ({"message": "안녕", "history": [{"role": "system", "content": "x"}]}, "history.0.role"),
    ({"message": "안녕", "stream": True}, "stream"),
    ({"text": "안녕"}, "message"),
])
def test_invalid_requests_get_422_naming_the_field(server, body, field):
    status, _, raw = call(server.url, "POST", "/api/chat", body)
    err = error_of(raw)
    assert status == 422 and err["code"] == "invalid_request"
    assert field in [d["field"] for d in err["details"]], err


def test_malformed_bodies_get_clear_json_errors(server):
    status, _, raw = call(server.url, "POST", "/api/chat", b"{not json")
    assert status == 422 and error_of(raw)["code"] == "invalid_json"
    status, _, raw = call(server.url, "POST", "/api/chat", b"[1, 2]")
    assert status == 422 and "JSON object" in error_of(raw)["message"]
    status, _, raw = call(server.url, "POST", "/api/chat", "안녕".encode("euc-kr"))
    assert status == 422 and error_of(raw)["code"] == "invalid_json"
    status, _, raw = call(server.url, "GET", "/api/nope")
    assert status == 404 and error_of(raw)["code"] == "not_found"
    status, _, raw = call(server.url, "GET", "/api/chat")
    assert status == 405 and error_of(raw)["code"] == "method_not_allowed"


def test_limits_of_the_tight_server(tight_server):
    status, _, raw = call(tight_server.url, "POST", "/api/chat", {"message": "가" * 2000})
    assert status == 413 and "1024" in error_of(raw)["message"]
    status, _, raw = call(tight_server.url, "POST", "/api/chat", {"message": "가" * 201})
    assert status == 422 and "at most 200" in error_of(raw)["details"][0]["message"]
    turns = [{"role": "user", "content": "가"}] * 3
    status, _, raw = call(tight_server.url, "POST", "/api/chat", {"message": "안녕", "history": turns})
    assert status == 422 and "at most 2" in error_of(raw)["details"][0]["message"]


def test_chunked_body_over_the_limit_gets_413(tight_server):
    parts = urlsplit(tight_server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        chunks = iter([b'{"message": "', b"x" * 900, b"y" * 900, b'"}'])
        conn.request("POST", "/api/chat", chunks, {"Content-Type": "application/json"}, encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 413 and error_of(resp.read())["code"] == "too_large"
    finally:
        conn.close()


def test_generation_stops_at_the_time_limit(tight_server):
    status, _, raw = call(tight_server.url, "POST", "/api/generate", {"message": QA[0][0], "max_new_tokens": 60})
    out = json.loads(raw)
    assert status == 200 and out["finish_reason"] == "timeout" and out["tokens"] == 1


class Blocker:
    """A job that holds the model worker until released (to fill the queue on purpose)."""

    def __init__(self) -> None:
        self.running, self.release = threading.Event(), threading.Event()

    def run(self, loaded) -> str:
        self.running.set()
        self.release.wait(30)
        return "blocker"


def test_full_queue_answers_503_and_the_waiting_request_completes(tight_server):
    worker = tight_server.app.state.worker
    blocker = Blocker()
    worker.submit(blocker)
    assert blocker.running.wait(10)
    waiting: dict = {}
    t = threading.Thread(target=lambda: waiting.update(r=stream(tight_server.url, {"message": QA[3][0]})))
    t.start()
    try:
        for _ in range(500):  # the waiting request takes the only queue slot
            if worker.waiting == 1:
                break
            threading.Event().wait(0.01)
        assert worker.waiting == 1
        status, headers, raw = call(tight_server.url, "POST", "/api/chat", {"message": "안녕"})
        assert status == 503 and error_of(raw)["code"] == "busy" and headers["retry-after"] == "5"
        status, _, raw = call(tight_server.url, "GET", "/readyz")
        assert status == 200 and json.loads(raw)["waiting"] == 1 and json.loads(raw)["busy"] is True
    finally:
        blocker.release.set()
        t.join(30)
    status, events = waiting["r"]
    assert status == 200 and events[0] == ("queued", {"ahead": 1}) and events[-1][0] == "done"


def test_failing_generation_is_an_error_event_without_internals(server, loaded):
    # a token id outside the vocabulary makes the embedding lookup fail inside generate()
    from dagllm.serving.engine import FittedPrompt, GenerationJob, Settings

    events: list = []
    done = threading.Event()

    def emit(kind, payload):
        events.append((kind, payload))
        if kind in ("done", "error"):
            done.set()

    job = GenerationJob(FittedPrompt([10**9], 4, 0), Settings(0.0, 1.0, 4), emit, 30, 30)
    server.app.state.worker.submit(job)
    assert done.wait(30)
    kind, payload = events[-1]
    assert kind == "error" and payload["code"] == "generation_failed" and "Traceback" not in payload["message"]
    status, _, raw = call(server.url, "GET", "/readyz")
    assert status == 200 and json.loads(raw)["ready"] is True  # the worker survived


def test_a_client_leaving_the_queue_frees_the_model(tight_server):
    worker = tight_server.app.state.worker
    blocker = Blocker()
    worker.submit(blocker)
    assert blocker.running.wait(10)
    skipped = worker.outcomes["skipped"]
    parts = urlsplit(tight_server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("POST", "/api/chat", json.dumps({"message": "안녕"}).encode(), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.readline() == b"event: queued\n"
        assert worker.waiting == 1
    finally:
        conn.close()  # the client goes away while its request waits
    threading.Event().wait(0.5)  # the server notices the disconnect and cancels the job
    blocker.release.set()
    for _ in range(500):
        if worker.outcomes["skipped"] == skipped + 1:
            break
        threading.Event().wait(0.01)
    assert worker.outcomes["skipped"] == skipped + 1 and worker.waiting == 0
