"""Typed model of ``params.yaml``: the one source of truth for every stage.

``load_params`` reads the file, applies ``key=value`` overrides (dotted keys, YAML values) and
validates the result; an unknown key or a bad value raises :class:`ParamsError` naming the key
and what is allowed, before any stage does work.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_PARAMS_FILE = Path("params.yaml")


class ParamsError(ValueError):
    """params.yaml (or an override) is invalid; the message names the key and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PathsParams(_Section):
    """Where inputs come from and where stages write (relative to the working directory)."""

    mirror: str = Field(
        "auto",
        description="directory holding the source files in the mirror layout; 'auto' = "
        "../shared/data when it exists, else the sample files bundled with dagllm",
    )
    data_dir: str = "data"
    models_dir: str = "models"
    reports_dir: str = "reports"


class IngestParams(_Section):
    sources: list[str] = Field(min_length=1, description="source ids from the catalog")
    max_rows_per_file: int | None = Field(None, ge=1, description="read at most this many rows")


class RenderParams(_Section):
    seed: int = 42
    tasks: list[str] = Field(min_length=1, description="task ids from the catalog")
    templates_per_record: int = Field(1, ge=1, le=10)


class ValidateParams(_Section):
    min_instruction_chars: int = Field(4, ge=1)
    max_instruction_chars: int = Field(4000, ge=1)
    max_input_chars: int = Field(8000, ge=1)
    max_output_chars: int = Field(4000, ge=1)
    min_records_per_task: int = Field(1, ge=1)
    max_duplicate_fraction: float = Field(0.05, ge=0, le=1)

    @model_validator(mode="after")
    def _bounds(self) -> ValidateParams:
        if self.min_instruction_chars > self.max_instruction_chars:
            raise ValueError("min_instruction_chars must not exceed max_instruction_chars")
        return self


class BalanceParams(_Section):
    seed: int = 42
    per_task_cap: int = Field(5000, ge=1, description="at most this many records per task")
    val_fraction: float = Field(0.05, gt=0, lt=0.5)


class TinyModelParams(_Section):
    hidden_size: int = Field(64, ge=8)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(4, ge=1)
    intermediate_size: int = Field(256, ge=8)
    vocab_size: int = Field(4000, ge=300)

    @model_validator(mode="after")
    def _heads_divide(self) -> TinyModelParams:
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be divisible by num_heads")
        return self


class TrainParams(_Section):
    model: Literal["tiny"] = Field("tiny", description="model preset")
    seed: int = 42
    max_steps: int = Field(30, ge=1)
    learning_rate: float = Field(5e-4, gt=0)
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_seq_len: int = Field(256, ge=16)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    log_every: int = Field(5, ge=1)
    tiny: TinyModelParams = TinyModelParams()


class EvaluateParams(_Section):
    tasks: list[Literal["kobest_copa"]] = Field(min_length=1)
    num_fewshot: int = Field(0, ge=0)
    limit: int | None = Field(None, ge=1, description="score at most this many items per task")
    batch_size: int = Field(8, ge=1)
    device: str = "cpu"
    seed: int = 1234


class RegisterParams(_Section):
    model_name: str = Field("dagllm-ko", min_length=1)
    metric: str = Field("kobest_copa.acc", description="TASK.METRIC compared for champion")
    higher_is_better: bool = True


class MlflowParams(_Section):
    tracking_uri: str = Field("sqlite:///mlflow.db", description="relative sqlite paths are "
                              "taken from the working directory")
    artifact_root: str = "mlartifacts"
    experiment: str = "dagllm"


class ServeParams(_Section):
    """``dagllm serve``: the chat page and JSON API for one model (the champion by default)."""

    host: str = Field("127.0.0.1", description="interface to bind; 0.0.0.0 only inside a container")
    port: int = Field(8000, ge=1, le=65535)
    model_uri: str = Field(
        "models:/dagllm-ko@champion", min_length=1,
        description="models:/NAME@ALIAS, models:/NAME/VERSION (MLflow registry) or a local HF model directory",
    )
    device: str = Field("cpu", description="torch device for generation (cpu, cuda, cuda:0)")
    torch_threads: int | None = Field(None, ge=1, description="CPU threads for generation; null = torch's "
                                      "default (one per core); match the container's CPU limit")
    max_request_bytes: int = Field(32768, ge=256, le=4_194_304, description="larger request bodies get 413")
    max_message_chars: int = Field(2000, ge=1, description="longest user message accepted")
    max_history_turns: int = Field(20, ge=0, description="most earlier turns a request may carry")
    max_new_tokens_limit: int = Field(512, ge=1, description="upper bound a request may ask for")
    generation_timeout_s: float = Field(60.0, gt=0, description="generation stops after this many seconds")
    queue_size: int = Field(16, ge=1, description="requests waiting for the model; more get 503")
    queue_timeout_s: float = Field(120.0, gt=0, description="a request waiting longer than this is dropped")
    default_max_new_tokens: int = Field(128, ge=1)
    default_temperature: float = Field(0.7, ge=0, le=2, description="0 = greedy decoding")
    default_top_p: float = Field(0.9, gt=0, le=1)

    @model_validator(mode="after")
    def _defaults_within_limits(self) -> ServeParams:
        if self.default_max_new_tokens > self.max_new_tokens_limit:
            raise ValueError("default_max_new_tokens must not exceed max_new_tokens_limit")
        return self


class Params(_Section):
    paths: PathsParams = PathsParams()
    ingest: IngestParams
    render: RenderParams
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    balance: BalanceParams = BalanceParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams
    register_: RegisterParams = Field(RegisterParams(), alias="register")
    mlflow: MlflowParams = MlflowParams()
    serve: ServeParams = ServeParams()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with the YAML key names (``validate``, not ``validate_``)."""
        return self.model_dump(mode="json", by_alias=True)

    def digest(self) -> str:
        """sha256 of the canonical JSON form: equal params, equal digest."""
        blob = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into its key path and a YAML-parsed value."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ParamsError(f"override {text!r} is not of the form key=value (e.g. train.max_steps=10)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ParamsError(f"override {text!r}: value is not valid YAML ({exc})") from None
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``key=value`` override applied.

    Raises:
        ParamsError: an override names a key that params.yaml does not have.
    """
    out = copy.deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        node = out
        for depth, key in enumerate(keys):
            known = _known_keys(keys[:depth])
            if key not in known:
                where = ".".join(keys[:depth]) or "top level"
                raise ParamsError(
                    f"override {text!r}: unknown key {'.'.join(keys[: depth + 1])!r}; "
                    f"allowed at {where}: {', '.join(sorted(known))}"
                )
            if depth == len(keys) - 1:
                node[key] = value
            else:
                node = node.setdefault(key, {})
                if not isinstance(node, dict):
                    raise ParamsError(f"override {text!r}: {'.'.join(keys[: depth + 1])} is not a section")
    return out


def _known_keys(prefix: list[str]) -> set[str]:
    model: type[BaseModel] = Params
    for key in prefix:
        field = next(f for n, f in model.model_fields.items() if (f.alias or n) == key)
        model = field.annotation  # type: ignore[assignment]
    return {(f.alias or n) for n, f in model.model_fields.items()}


def _format_error(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid parameters"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            parent = [str(p) for p in err["loc"][:-1]]
            try:
                allowed = ", ".join(sorted(_known_keys(parent)))
            except (StopIteration, AttributeError):
                allowed = "see params.yaml"
            lines.append(f"  {key}: unknown key (allowed here: {allowed})")
        else:
            lines.append(f"  {key}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def params_from_dict(data: dict[str, Any], source: str = "params") -> Params:
    """Validate a params mapping; raises ParamsError with one line per bad key."""
    try:
        return Params.model_validate(data)
    except ValidationError as exc:
        raise ParamsError(_format_error(exc, source)) from None


def load_params(path: Path | str = DEFAULT_PARAMS_FILE, overrides: list[str] | None = None) -> Params:
    """Load ``params.yaml`` and apply overrides.

    Args:
        path: the params file.
        overrides: ``key=value`` strings, dotted keys, YAML values (``train.max_steps=5``).

    Raises:
        ParamsError: the file is missing or invalid, or an override is.
    """
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: no such params file (run from the repository root or pass --params)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: top level must be a mapping of sections")
    data = apply_overrides(data, overrides or [])
    return params_from_dict(data, str(path))
