"""The web app of ``dagllm serve``: the Korean chat page, a JSON API and health endpoints.

Routes:
    GET  /                the chat page (static files kept as package data, nothing from a CDN)
    GET  /api/info        model name, version, alias; defaults and limits for the page
    POST /api/chat        the answer as Server-Sent Events (queued, start, delta..., done | error)
    POST /api/generate    the same request, one JSON answer when generation has finished
    GET  /healthz         liveness: the process answers
    GET  /readyz          readiness: the model is loaded and its worker runs (503 otherwise)

Every error is JSON ``{"error": {"code", "message", "details"}}``; tracebacks stay in the log.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from dagllm.params import ServeParams
from dagllm.serving.engine import (
    GenerationJob,
    ModelWorker,
    PromptTooLong,
    QueueFull,
    Settings,
    Turn,
    fit_prompt,
)
from dagllm.serving.model import LoadedModel

STATIC_DIR = Path(__file__).parent / "static"
log = logging.getLogger("dagllm.serve")


class ApiError(Exception):
    """An error the client gets as JSON with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or []


def error_body(code: str, message: str, details: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or []}}


class TurnIn(BaseModel):
    """An earlier turn sent back by the page (the conversation lives in the browser)."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "assistant"]
    content: str


class ChatIn(BaseModel):
    """Body of /api/chat and /api/generate; unset settings take the server's defaults."""

    model_config = ConfigDict(extra="forbid")
    message: str = Field(description="the new user message")
    history: list[TurnIn] = Field(default_factory=list, description="earlier turns, oldest first")
    temperature: float | None = Field(None, ge=0, le=2, description="0 = greedy")
    top_p: float | None = Field(None, gt=0, le=1)
    max_new_tokens: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _within_limits(self, info: ValidationInfo) -> ChatIn:
        limits: ServeParams = (info.context or {}).get("limits") or ServeParams()
        if not self.message.strip():
            raise ValueError("message is empty: type a question")
        if len(self.message) > limits.max_message_chars:
            raise ValueError(f"message has {len(self.message)} characters; at most {limits.max_message_chars}")
        if len(self.history) > limits.max_history_turns:
            raise ValueError(f"history has {len(self.history)} turns; at most {limits.max_history_turns} "
                             "(start a new conversation)")
        if any(len(t.content) > limits.max_message_chars for t in self.history):
            raise ValueError(f"a history turn is longer than {limits.max_message_chars} characters")
        if self.max_new_tokens is not None and self.max_new_tokens > limits.max_new_tokens_limit:
            raise ValueError(f"max_new_tokens is {self.max_new_tokens}; at most {limits.max_new_tokens_limit}")
        return self

    def settings(self, limits: ServeParams) -> Settings:
        return Settings(
            temperature=limits.default_temperature if self.temperature is None else self.temperature,
            top_p=limits.default_top_p if self.top_p is None else self.top_p,
            max_new_tokens=limits.default_max_new_tokens if self.max_new_tokens is None else self.max_new_tokens,
        )


def _details(exc: ValidationError | RequestValidationError) -> list[dict[str, str]]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "(body)"
        out.append({"field": loc, "message": str(err.get("msg", "invalid")).removeprefix("Value error, ")})
    return out


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "too_large", f"request body is {declared} bytes; at most {limit}")
    size, chunks = 0, []
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "too_large", f"request body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_chat(body: bytes, limits: ServeParams) -> ChatIn:
    """Validate a request body; 422 with one detail per bad field."""
    try:
        data = json.loads(body or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(422, "invalid_json", f"request body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_request", 'request body must be a JSON object such as {"message": "안녕하세요"}')
    try:
        return ChatIn.model_validate(data, context={"limits": limits})
    except ValidationError as exc:
        raise ApiError(422, "invalid_request", "the request has invalid fields", _details(exc)) from None


class _Channel:
    """Events from the worker thread into this request's event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

    def emit(self, kind: str, payload: dict[str, Any]) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (kind, payload))

    async def events(self, timeout: float) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Yield events until ``done``/``error``; a silent worker for ``timeout`` s ends with an error."""
        while True:
            try:
                kind, payload = await asyncio.wait_for(self.queue.get(), timeout)
            except TimeoutError:
                yield "error", {"code": "timeout", "status": 504, "message": f"no answer from the model in {timeout:g} s"}
                return
            yield kind, payload
            if kind in ("done", "error"):
                return


def _sse(kind: str, payload: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


class SecurityHeaders:
    """Pure ASGI middleware (streams pass straight through): the page may load nothing from elsewhere."""

    HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
               (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")]

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + self.HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(loaded: LoadedModel, params: ServeParams) -> FastAPI:
    """The FastAPI app serving ``loaded``; the model worker runs while the app does."""
    if params.torch_threads is not None:  # process-wide: the worker is the only torch user here
        import torch

        torch.set_num_threads(params.torch_threads)
    worker = ModelWorker(loaded, params.queue_size)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        worker.start()
        yield
        worker.stop()

    app = FastAPI(title="dagllm chat", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.worker = worker
    app.state.params = params
    app.state.loaded = loaded
    wait_limit = params.queue_timeout_s + params.generation_timeout_s + 30

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"Retry-After": "5"} if exc.status == 503 else None
        return JSONResponse(error_body(exc.code, exc.message, exc.details), exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body("invalid_request", "the request has invalid fields", _details(exc)), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal", "internal error; the server log has the details"), 500)

    app.add_middleware(SecurityHeaders)

    async def _submit(request: Request) -> tuple[GenerationJob, _Channel, int]:
        req = parse_chat(await read_body(request, params.max_request_bytes), params)
        settings = req.settings(params)
        try:
            prompt = fit_prompt(loaded.tokenizer, req.message, [Turn(t.role, t.content) for t in req.history],
                                settings.max_new_tokens, loaded.context_length)
        except PromptTooLong as exc:
            raise ApiError(422, "prompt_too_long", str(exc), [{"field": "message", "message": str(exc)}]) from None
        channel = _Channel()
        job = GenerationJob(prompt, settings, channel.emit, params.generation_timeout_s, params.queue_timeout_s)
        if not worker.alive:
            raise ApiError(503, "not_ready", "the model worker is not running")
        try:
            ahead = worker.submit(job)
        except QueueFull as exc:
            raise ApiError(503, "busy", f"the server is busy ({exc}); try again in a few seconds") from None
        return job, channel, ahead

    @app.post("/api/chat")
    async def chat(request: Request) -> StreamingResponse:
        job, channel, ahead = await _submit(request)

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield _sse("queued", {"ahead": ahead})
                async for kind, payload in channel.events(wait_limit):
                    yield _sse(kind, payload)
            finally:  # the client left or the answer ended: a queued or running job stops
                job.cancelled.set()

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.post("/api/generate")
    async def generate(request: Request) -> JSONResponse:
        job, channel, _ = await _submit(request)
        try:
            async for kind, payload in channel.events(wait_limit):
                if kind == "done":
                    return JSONResponse(payload)
                if kind == "error":
                    raise ApiError(payload.get("status", 500), payload["code"], payload["message"])
        finally:
            job.cancelled.set()
        raise ApiError(500, "internal", "generation ended without an answer")

    @app.get("/api/info")
    async def info() -> dict[str, Any]:
        return {
            "model": loaded.info.to_dict(), "context_length": loaded.context_length,
            "defaults": {"temperature": params.default_temperature, "top_p": params.default_top_p,
                         "max_new_tokens": params.default_max_new_tokens},
            "limits": {"max_new_tokens": params.max_new_tokens_limit, "max_message_chars": params.max_message_chars,
                       "max_history_turns": params.max_history_turns, "max_request_bytes": params.max_request_bytes},
        }

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        body = {"ready": worker.alive, "model": f"{loaded.info.name}/{loaded.info.version}", "busy": worker.busy,
                "waiting": worker.waiting, "queue_size": worker.capacity, "jobs": dict(worker.outcomes)}
        return JSONResponse(body, 200 if worker.alive else 503)

    @app.get("/")
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def make_server(app: FastAPI, params: ServeParams, port: int | None = None, log_level: str = "info"):
    """A uvicorn server for ``app`` with the production limits (used by the CLI and the tests).

    ``limit_concurrency`` answers 503 before the app when far more connections arrive than the
    queue could hold; health checks keep some headroom.
    """
    import uvicorn

    config = uvicorn.Config(
        app, host=params.host, port=params.port if port is None else port, log_level=log_level,
        limit_concurrency=params.queue_size + 1 + 32, timeout_keep_alive=5, timeout_graceful_shutdown=10,
        proxy_headers=False, server_header=False,
    )
    return uvicorn.Server(config)


class BackgroundServer:
    """``app`` under uvicorn in a thread, on a loopback socket bound before start (no port race).

    For tests and benchmarks: ``with BackgroundServer(app, params) as s: ... s.url``.
    """

    def __init__(self, app: FastAPI, params: ServeParams, log_level: str = "warning") -> None:
        import socket
        import threading

        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = make_server(app, params, port=self.port, log_level=log_level)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> BackgroundServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                self.__exit__()
                raise RuntimeError("uvicorn did not start; its log says why")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()
        if self.thread.is_alive():
            raise RuntimeError("uvicorn did not stop within 30 s")


def serve(params: ServeParams, loaded: LoadedModel) -> None:
    """Run the server in the foreground until interrupted."""
    make_server(create_app(loaded, params), params).run()
