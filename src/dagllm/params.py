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


class HangulBounds(_Section):
    """Allowed share of Hangul characters among the non-space characters of a record."""

    min: float = Field(0.0, ge=0, le=1)
    max: float = Field(1.0, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> HangulBounds:
        if self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


class ValidateParams(_Section):
    min_instruction_chars: int = Field(4, ge=1)
    max_instruction_chars: int = Field(4000, ge=1)
    max_input_chars: int = Field(8000, ge=1)
    max_output_chars: int = Field(4000, ge=1)
    min_tokens: int = Field(2, ge=1, description="fewest proxy tokens (Hangul/Latin/digit runs and "
                            "punctuation marks) in instruction + input + output")
    max_tokens: int = Field(4096, ge=1, description="most proxy tokens per record")
    max_fields_chars: int = Field(100_000, ge=2, description="longest canonical `fields` JSON (ingested gate)")
    min_records_per_task: int = Field(1, ge=1)
    max_records_per_task: int | None = Field(None, ge=1, description="rendered gate: most records per task "
                                             "(null = no bound)")
    max_duplicate_fraction: float = Field(0.05, ge=0, le=1)
    max_bad_fraction: float = Field(0.02, ge=0, lt=1, description="row-level failures are quarantined; the "
                                    "gate fails when more than this share of rows is quarantined "
                                    "(also each row-level expectation's `mostly` = 1 - this)")
    hangul: dict[str, HangulBounds] = Field(
        default_factory=lambda: {"default": HangulBounds(min=0.3, max=1.0)},
        description="Hangul ratio bounds keyed by task id or category; 'default' for the rest")

    @model_validator(mode="after")
    def _bounds(self) -> ValidateParams:
        if self.min_instruction_chars > self.max_instruction_chars:
            raise ValueError("min_instruction_chars must not exceed max_instruction_chars")
        if self.min_tokens > self.max_tokens:
            raise ValueError("min_tokens must not exceed max_tokens")
        if "default" not in self.hangul:
            raise ValueError("hangul needs a 'default' entry")
        return self

    def hangul_for(self, task: str, category: str) -> HangulBounds:
        """The bounds of ``task``: its own entry, else its category's, else ``default``."""
        return self.hangul.get(task) or self.hangul.get(category) or self.hangul["default"]


class DedupParams(_Section):
    """Duplicate removal inside balance, within and across tasks."""

    exact: bool = Field(True, description="drop exact duplicates of normalised text (NFKC, casefold, "
                        "collapsed whitespace) of instruction + input + output")
    near: bool = Field(True, description="drop near duplicates found with MinHash LSH")
    near_threshold: float = Field(0.85, gt=0, le=1, description="estimated Jaccard similarity of the "
                                  "character shingles at or above which two records are near duplicates")
    shingle_chars: int = Field(5, ge=2, le=32, description="character shingle length")
    num_perm: int = Field(64, ge=8, le=512, description="MinHash permutations (a multiple of 8)")

    @model_validator(mode="after")
    def _perm_multiple(self) -> DedupParams:
        if self.num_perm % 8:
            raise ValueError("num_perm must be a multiple of 8")
        return self


class BalanceParams(_Section):
    seed: int = 42
    per_task_cap: int = Field(5000, ge=1, description="at most this many records per task")
    val_fraction: float = Field(0.05, gt=0, lt=0.5)
    mixing: Literal["cap", "proportional"] = Field(
        "cap", description="cap: min(n, cap) per task; proportional: examples-proportional mixing of the "
        "capped sizes (FLAN), scaled by temperature and category weights, to `total` records")
    temperature: float = Field(1.0, gt=0, description="proportional mixing: rate ~ min(n, cap)^(1/T)")
    total: int | None = Field(None, ge=1, description="proportional mixing: records in the mix "
                              "(null = the sum of the capped sizes)")
    category_weights: dict[str, float] = Field(default_factory=dict, description="proportional mixing: "
                                               "weight per category (absent = 1.0)")
    upsample: bool = Field(False, description="repeat records of a task whose share exceeds its size "
                           "(otherwise the share is clipped to what the task has)")
    dedup: DedupParams = DedupParams()

    @model_validator(mode="after")
    def _weights(self) -> BalanceParams:
        bad = {k: v for k, v in self.category_weights.items() if v < 0}
        if bad:
            raise ValueError(f"category_weights must not be negative: {bad}")
        return self


class DecontaminateParams(_Section):
    """n-gram overlap between training records and every evaluation (benchmark) item."""

    ngram_chars: int = Field(8, ge=3, le=64, description="character n-gram length, counted after removing "
                             "whitespace (Korean spacing varies; a syllable carries a morpheme's worth)")
    threshold: float = Field(0.6, gt=0, le=1, description="drop a record holding at least this share of "
                             "one benchmark text's n-grams; exact copies are always dropped")
    min_piece_chars: int = Field(5, ge=1, description="benchmark fields shorter than this (labels such as "
                                 "원인/결과, scores, single words) are not part of an item's text")
    min_unit_chars: int = Field(20, ge=1, description="a benchmark field this long (without whitespace) is "
                                "also matched on its own; shorter fields only as part of their whole item")


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


class Params(_Section):
    paths: PathsParams = PathsParams()
    ingest: IngestParams
    render: RenderParams
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    decontaminate: DecontaminateParams = DecontaminateParams()
    balance: BalanceParams = BalanceParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams
    register_: RegisterParams = Field(RegisterParams(), alias="register")
    mlflow: MlflowParams = MlflowParams()

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
