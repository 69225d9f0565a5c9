"""Serving: the chat page and JSON API of ``dagllm serve`` (model loader, generation worker, app)."""
