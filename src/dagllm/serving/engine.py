"""Generation for the server: prompt fitting, one worker thread per model, a bounded queue.

One thread owns the model and runs one generation at a time; requests wait in a bounded
queue (a full queue is refused at once, so a burst of requests cannot exhaust memory). Each
generation reports events (``start``, ``delta``, ``done`` or ``error``) through a callback,
which the web app turns into Server-Sent Events. Generation stops at the end-of-text token,
at ``max_new_tokens``, at the time limit, or when the client has gone away.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from transformers import StoppingCriteria, TextStreamer

from dagllm.serving.model import LoadedModel
from dagllm.training.prompt import build_prompt

log = logging.getLogger("dagllm.serve")

Emit = Callable[[str, dict[str, Any]], None]
ROLE_LABELS = {"user": "사용자", "assistant": "모델"}


class QueueFull(RuntimeError):
    """Every queue slot is taken; the caller should answer 503 and ask the client to retry."""


class PromptTooLong(ValueError):
    """The message alone does not fit the model's context."""


@dataclass(frozen=True)
class Turn:
    """One earlier message of the conversation, as the page keeps it."""

    role: str  # user | assistant
    content: str


@dataclass(frozen=True)
class Settings:
    """Sampling settings of one request (temperature 0 = greedy)."""

    temperature: float
    top_p: float
    max_new_tokens: int


def chat_prompt(message: str, history: Sequence[Turn] = ()) -> str:
    """The training prompt wrapper around the new message; earlier turns go in the input section.

    The model was tuned on single (instruction, input) records, so the conversation so far is
    given as the input (a transcript, one ``사용자:``/``모델:`` line per turn) and the new
    message as the instruction.
    """
    return build_prompt(message, history_transcript(history))


def history_transcript(history: Sequence[Turn]) -> str:
    """Earlier turns as one ``사용자: …`` / ``모델: …`` line each (empty turns left out)."""
    return "\n".join(f"{ROLE_LABELS[t.role]}: {t.content.strip()}" for t in history if t.content.strip())


@dataclass(frozen=True)
class FittedPrompt:
    """Token ids to generate from, after history was trimmed to fit the context."""

    input_ids: list[int]
    max_new_tokens: int
    dropped_turns: int


def fit_prompt(tokenizer: Any, message: str, history: Sequence[Turn], max_new_tokens: int,
               context_length: int) -> FittedPrompt:
    """Drop the oldest turns until prompt + answer fit the context; shorten the answer if needed.

    Raises:
        PromptTooLong: the message alone leaves no room for a single new token.
    """
    history = list(history)
    dropped = 0
    while True:
        ids = tokenizer(chat_prompt(message, history), add_special_tokens=False)["input_ids"]
        if len(ids) + max_new_tokens <= context_length or not history:
            break
        history.pop(0)
        dropped += 1
    room = context_length - len(ids)
    if room < 1:
        raise PromptTooLong(f"the message is {len(ids)} tokens with the prompt wrapper; the model's context is "
                            f"{context_length} tokens: shorten the message")
    return FittedPrompt(ids, min(max_new_tokens, room), dropped)


class Job(Protocol):
    """Anything the worker can run with the model."""

    def run(self, loaded: LoadedModel) -> str | None:
        """Do the work; return a one-word outcome for the worker's counters."""


@dataclass
class GenerationJob:
    """One generation request waiting for (or running on) the worker."""

    prompt: FittedPrompt
    settings: Settings
    emit: Emit
    generation_timeout_s: float
    queue_timeout_s: float
    cancelled: threading.Event = field(default_factory=threading.Event)
    enqueued: float = field(default_factory=time.monotonic)

    def run(self, loaded: LoadedModel) -> str:
        """Generate and report events; failures become an ``error`` event, logged with the traceback.

        Returns the outcome: ``skipped`` (the client left while waiting), ``queue_timeout``,
        ``done`` or ``failed``.
        """
        if self.cancelled.is_set():
            return "skipped"
        waited = time.monotonic() - self.enqueued
        if waited > self.queue_timeout_s:
            self.emit("error", {"code": "queue_timeout", "status": 503,
                                "message": f"waited {waited:.0f} s for the model (limit {self.queue_timeout_s:g} s); "
                                           "the server is busy, try again later"})
            return "queue_timeout"
        self.emit("start", {"queued_s": round(waited, 3), "prompt_tokens": len(self.prompt.input_ids),
                            "dropped_turns": self.prompt.dropped_turns})
        try:
            self.emit("done", self._generate(loaded))
            return "done"
        except Exception:  # noqa: BLE001 - any failure is reported to the client without internals
            log.exception("generation failed")
            self.emit("error", {"code": "generation_failed", "status": 500,
                                "message": "generation failed; the server log has the details"})
            return "failed"

    def _generate(self, loaded: LoadedModel) -> dict[str, Any]:
        import torch
        from transformers import StoppingCriteriaList

        tok, model = loaded.tokenizer, loaded.model
        guard = _Guard(time.monotonic() + self.generation_timeout_s, self.cancelled)
        streamer = _DeltaStreamer(tok, self.emit)
        ids = torch.tensor([self.prompt.input_ids], device=model.device)
        s = self.settings
        sampling = {"do_sample": True, "temperature": s.temperature, "top_p": s.top_p} if s.temperature > 0 else \
            {"do_sample": False}
        started = time.monotonic()
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=s.max_new_tokens,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, streamer=streamer,
                                 stopping_criteria=StoppingCriteriaList([guard]), **sampling)
        seconds = time.monotonic() - started
        new = out[0, ids.shape[1]:].tolist()
        if guard.reason:
            reason = guard.reason
        elif new and new[-1] == tok.eos_token_id:
            reason = "stop"
        else:
            reason = "length"
        return {"text": "".join(streamer.parts), "tokens": len(new), "seconds": round(seconds, 3),
                "finish_reason": reason, "prompt_tokens": len(self.prompt.input_ids),
                "dropped_turns": self.prompt.dropped_turns, "max_new_tokens": s.max_new_tokens}


class _DeltaStreamer(TextStreamer):
    """TextStreamer that hands each finished piece of text to ``emit`` instead of printing it."""

    def __init__(self, tokenizer: Any, emit: Emit) -> None:
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.emit = emit
        self.parts: list[str] = []

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if text:
            self.parts.append(text)
            self.emit("delta", {"text": text})


class _Guard(StoppingCriteria):
    """Stopping criterion: the time limit has passed or the client has gone."""

    def __init__(self, deadline: float, cancelled: threading.Event) -> None:
        self.deadline, self.cancelled = deadline, cancelled
        self.reason: str | None = None

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        if self.reason is None:
            if self.cancelled.is_set():
                self.reason = "cancelled"
            elif time.monotonic() > self.deadline:
                self.reason = "timeout"
        return torch.full((input_ids.shape[0],), self.reason is not None, dtype=torch.bool, device=input_ids.device)


class ModelWorker:
    """One thread that owns the model; jobs wait in a bounded FIFO queue."""

    def __init__(self, loaded: LoadedModel, queue_size: int) -> None:
        self.loaded = loaded
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self.busy = False
        self.outcomes: Counter[str] = Counter()

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="dagllm-model-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Let the running job finish, drop waiting ones, and end the thread."""
        if self._thread is None:
            return
        while True:  # waiting jobs are abandoned: their clients are being disconnected anyway
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    @property
    def capacity(self) -> int:
        return self._queue.maxsize

    def submit(self, job: Job) -> int:
        """Queue ``job``; returns how many jobs are ahead of it.

        Raises:
            QueueFull: every slot is taken.
        """
        ahead = self._queue.qsize() + (1 if self.busy else 0)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFull(f"{self._queue.maxsize} requests are already waiting for the model") from None
        return ahead

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            self.busy = True
            outcome = "failed"
            try:
                outcome = job.run(self.loaded) or "other"
            except Exception:  # noqa: BLE001 - a broken job must not kill the worker
                log.exception("job failed")
            finally:
                self.busy = False
                self.outcomes[outcome] += 1
