"""Template rendering: a sandboxed Jinja2 environment with StrictUndefined.

Dataset text is only ever passed as template *variables*, never compiled, so a row holding
``{{ ... }}`` or ``{% ... %}`` is rendered literally. Template choice is a pure function of the
seed, the task and the record id, so every machine and every run picks the same template.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from dagllm.catalog import Task, Template


class RenderError(ValueError):
    """A template failed to render for a record; the message names the task, template and record."""


@lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    # autoescape off: the output is training text, not HTML.
    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


@lru_cache(maxsize=4096)
def _compile(source: str):
    return environment().from_string(source)


def choose_templates(task: Task, record_id: str, seed: int, k: int = 1) -> list[Template]:
    """Pick ``k`` distinct templates for a record, deterministically from (seed, task, record id)."""
    k = min(k, len(task.templates))
    digest = hashlib.sha256(f"{seed}\x1f{task.id}\x1f{record_id}".encode()).digest()
    start = int.from_bytes(digest[:8], "big") % len(task.templates)
    return [task.templates[(start + i) % len(task.templates)] for i in range(k)]


def render_template(task: Task, template: Template, fields: dict[str, str], label: str | None,
                    record_id: str) -> dict[str, str]:
    """Render one template for one record into ``instruction``, ``input`` and ``output``."""
    variables = dict(fields)
    variables["label"] = label
    variables["answer"] = task.labels.get(label, label) if label is not None else None
    out: dict[str, str] = {}
    for part in ("instruction", "input", "output"):
        source = getattr(template, part)
        try:
            out[part] = _compile(source).render(variables).strip() if source else ""
        except TemplateError as exc:
            raise RenderError(
                f"task {task.id}, template {template.id}, record {record_id}: {part} failed: {exc}"
            ) from None
    return out
