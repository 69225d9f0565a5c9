"""Load the model to serve: an MLflow registry URI or a local Hugging Face directory.

Kept small on purpose: it is the one place that knows where served models come from, so a
registry-wide loader can replace :func:`load_model` without touching the app.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dagllm.params import MlflowParams
from dagllm.runtime import offline

_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+))$")


class ModelLoadError(ValueError):
    """The model URI is malformed or names a model, alias or directory that does not exist."""


@dataclass(frozen=True)
class ModelRef:
    """A parsed model URI: a registry name with an alias or a version, or a local directory."""

    uri: str
    name: str
    alias: str | None = None
    version: str | None = None
    local_dir: Path | None = None


@dataclass
class ModelInfo:
    """What the page shows about the served model."""

    uri: str
    name: str
    version: str
    alias: str | None
    aliases: list[str] = field(default_factory=list)
    source: str = "registry"  # registry | local
    run_id: str | None = None
    metrics: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LoadedModel:
    """A model and tokenizer ready for generation, with its registry metadata."""

    model: Any
    tokenizer: Any
    info: ModelInfo
    context_length: int


def parse_model_uri(uri: str) -> ModelRef:
    """``models:/NAME@ALIAS`` / ``models:/NAME/VERSION`` / a directory path -> :class:`ModelRef`.

    Raises:
        ModelLoadError: a ``models:/`` URI of another shape, or a path that is not a directory.
    """
    if uri.startswith("models:/"):
        m = _REGISTRY_URI.match(uri)
        if not m:
            raise ModelLoadError(f"model URI {uri!r}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
        return ModelRef(uri, m["name"], alias=m["alias"], version=m["version"])
    path = Path(uri)
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"model URI {uri!r}: not a registry URI and not a model directory "
                             "(no config.json there); set serve.model_uri")
    return ModelRef(uri, path.resolve().name, local_dir=path)


def _registry_info(ref: ModelRef, mlflow_params: MlflowParams) -> ModelInfo:
    """Resolve an alias to a version (so the version shown is the one loaded) and read its tags."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from dagllm.registry.tracking import absolute_uri

    store = absolute_uri(mlflow_params.tracking_uri)
    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    try:
        if ref.alias:
            mv = client.get_model_version_by_alias(ref.name, ref.alias)
        else:
            mv = client.get_model_version(ref.name, ref.version)
    except MlflowException as exc:
        what = f"alias {ref.alias!r}" if ref.alias else f"version {ref.version}"
        raise ModelLoadError(f"model {ref.name!r} has no {what} in the registry at {store} "
                             f"({exc.error_code}); register a model first (`dagllm register`)") from None
    metrics = {k.removeprefix("metric."): v for k, v in (mv.tags or {}).items() if k.startswith("metric.")}
    return ModelInfo(uri=ref.uri, name=ref.name, version=str(mv.version), alias=ref.alias,
                     aliases=sorted(mv.aliases or []), run_id=mv.run_id, metrics=metrics)


def load_model(uri: str, mlflow_params: MlflowParams, device: str = "cpu") -> LoadedModel:
    """Load the model named by ``uri`` for generation, in eval mode on ``device``.

    Args:
        uri: ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or a local HF model directory.
        mlflow_params: where the registry is (used for ``models:/`` URIs only).
        device: torch device.

    Raises:
        ModelLoadError: the URI is malformed or what it names does not exist.
    """
    offline()
    ref = parse_model_uri(uri)
    if ref.local_dir is not None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(ref.local_dir)
        tokenizer = AutoTokenizer.from_pretrained(ref.local_dir)
        info = ModelInfo(uri=uri, name=ref.name, version="local", alias=None, source="local")
    else:
        import mlflow

        info = _registry_info(ref, mlflow_params)
        components = mlflow.transformers.load_model(f"models:/{ref.name}/{info.version}", return_type="components")
        model, tokenizer = components["model"], components["tokenizer"]
    model = model.to(device).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    context = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
    return LoadedModel(model=model, tokenizer=tokenizer, info=info, context_length=context)


def load_for_generation(name: str, alias: str = "champion", mlflow_params: Any | None = None) -> tuple[Any, Any]:
    """Load ``models:/<name>@<alias>`` and return ``(model, tokenizer)`` ready for ``generate``.

    The alias is resolved to its version first (:func:`load_model`), so what loads is the
    version the alias names at that moment, the same loader the chat server uses.

    Args:
        name: the registered model name (``register.model_name``).
        alias: ``champion`` (default), ``challenger`` or ``previous-champion``.
        mlflow_params: where the registry is (``params.mlflow``); None keeps MLflow's current URI.
    """
    import mlflow

    params = mlflow_params if mlflow_params is not None else MlflowParams(tracking_uri=mlflow.get_tracking_uri())
    loaded = load_model(f"models:/{name}@{alias}", params)
    return loaded.model, loaded.tokenizer
