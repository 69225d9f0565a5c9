"""Typed model of ``params.yaml``: the one source of truth for every stage.

``load_params`` reads the file, applies ``key=value`` overrides (dotted keys, YAML values) and
validates the result; an unknown key or a bad value raises :class:`ParamsError` naming the key
and what is allowed, before any stage does work.

Beyond each key's own range, every section refuses non-finite floats (``.inf``, ``.nan``) and
integers outside int64 (numpy, pandas and torch hold no more); seeds must lie in
``0 <= seed < 2**32``, the range numpy, torch and ``random`` all accept. The YAML itself is read
by :func:`load_yaml`: a key given twice at any level is refused with both line numbers (PyYAML
would keep the last one silently), and anchors, aliases and merge keys are refused outright, so
an alias bomb ("billion laughs") stops at its first ``&``; the text is at most
:data:`MAX_YAML_BYTES`, :data:`MAX_YAML_NODES` values and :data:`MAX_YAML_DEPTH` levels, so
reading is bounded in time and memory.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

DEFAULT_PARAMS_FILE = Path("params.yaml")
SEED_LIMIT = 2**32  # numpy's legacy seeding, torch.manual_seed via transformers.set_seed, lm-eval: 0 <= seed < 2**32
INT64_LIMIT = 2**63  # numpy / pandas / torch integers
MAX_MIX_RECORDS = 10_000_000  # balance holds the whole mix in memory (~1-3 KB a record: 10-30 GB at the bound)
# Bounds on a params YAML text (PyYAML composes ~20,000 nodes a second in pure Python):
MAX_YAML_BYTES = 256 * 1024  # params.yaml is ~11 KB
MAX_YAML_NODES = 10_000  # scalars and collections; params.yaml has ~480
MAX_YAML_DEPTH = 32  # nesting levels of collections; params.yaml uses 4
MAX_ERROR_LINES = 20  # problems listed in one ParamsError (a list of 10,000 bad items says so in one line)


class ParamsError(ValueError):
    """params.yaml (or an override) is invalid; the message names the key and the fix."""


def _check_int64(value: Any) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int) and not -INT64_LIMIT <= value < INT64_LIMIT:
        raise ValueError("integer outside the int64 range (-2**63 .. 2**63-1) that numpy, pandas and torch hold")
    if isinstance(value, list | tuple):
        for v in value:
            _check_int64(v)
    elif isinstance(value, dict):
        for v in value.values():
            _check_int64(v)


def _seed_range(value: int) -> int:
    if not 0 <= value < SEED_LIMIT:
        raise ValueError(f"a seed must be 0 <= seed < 2**32 = {SEED_LIMIT} (the range numpy, torch and "
                         f"random all accept)")
    return value


Seed = Annotated[int, AfterValidator(_seed_range)]


class _Section(BaseModel):
    # strict: YAML `true` is not an integer, `1` is not a string; only int -> float is converted.
    # allow_inf_nan=False: `.inf` / `.nan` pass every `gt`/`le` bound or crash later; no key takes them.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _int64_only(cls, value: Any, info: ValidationInfo) -> Any:
        _check_int64(value)
        return value


class PathsParams(_Section):
    """Where inputs come from and where stages write (relative to the working directory)."""

    mirror: str = Field(
        "auto",
        description="where `dagllm fetch` takes the source files from: a directory or an http(s) URL "
        "in the mirror layout; 'auto' = ../shared/data when it exists, else the sample files "
        "bundled with dagllm; 'samples' = those samples; 'upstream' = each file's catalog URL",
    )
    data_dir: str = "data"
    models_dir: str = "models"
    reports_dir: str = "reports"


class LocalSource(_Section):
    """A team's own file: read by a catalog reader, no download, no checksum."""

    id: str = Field(pattern=r"^[a-z0-9_]+$", description="source id (must not clash with the catalog)")
    path: str = Field(min_length=1, description="the file, relative to the working directory or absolute")
    reader: str = Field(min_length=1, description="a reader name from docs/data.md, e.g. nsmc_ratings")
    license: str = Field(min_length=1, description="carried by every record of this source")
    split: Literal["train", "validation", "test"] = "train"
    benchmark: bool = Field(False, description="an evaluation file: never rendered for training")
    tasks: list[str] = Field(default_factory=list, description="the tasks this file feeds: catalog task ids "
                             "(`dagllm catalog ls`) or ids defined in `task_files`; rendered like catalog tasks")
    task_files: list[str] = Field(default_factory=list, description="task YAMLs in the catalog's shape "
                                  "(src/dagllm/data/catalog/tasks/*.yaml) defining new tasks fed by this file")

    @model_validator(mode="after")
    def _feeds_a_task(self) -> LocalSource:
        if not self.benchmark and not self.tasks:
            raise ValueError(f"local source {self.id!r} feeds no task: name its task(s) in `tasks` (a catalog "
                             "task id, or one defined in `task_files`), or set benchmark: true")
        return self


class IngestParams(_Section):
    sources: list[str] = Field(min_length=1, description="source ids from the catalog")
    optional_sources: list[str] = Field(
        default_factory=list,
        description="benchmark-only sources whose files are read when present in the mirror; absent files "
        "are skipped and listed in the ingest report (KLUE YNAT is not in ../shared/data)",
    )
    max_rows_per_file: int | None = Field(None, ge=1, description="read at most this many rows")
    local: list[LocalSource] = Field(default_factory=list, description="a team's own files, read "
                                     "in place (not fetched) through the same readers and quarantine")


class FetchParams(_Section):
    """How `dagllm fetch` downloads the files of ``ingest.sources`` into data/raw."""

    retries: int = Field(4, ge=0, le=20, description="extra attempts after a network error")
    backoff_s: float = Field(1.0, ge=0, le=60, description="first wait between attempts; doubles each time")
    timeout_s: float = Field(60.0, gt=0, le=3600, description="socket timeout per request")


class RenderParams(_Section):
    seed: Seed = Field(42, description="seeds template choice and group pairing (with each record id); "
                       "0 <= seed < 2**32")
    tasks: list[str] = Field(min_length=1, description="task ids from the catalog")
    templates_per_record: int = Field(1, ge=1, le=10, description="distinct templates rendered per record "
                                      "(capped at the task's template count)")
    question_fraction: float | None = Field(
        None, ge=0, le=1, description="share of question-based templates among picks; null = uniform over "
        "all of a task's templates")


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
    max_particle_errors: int = Field(0, ge=0, description="rendered gate: most particles, over all records, "
                                     "that disagree with the value before them (이/가 after 자전)")

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


class LabelBalanceParams(_Section):
    """Label balance inside each task that carries a label (the records' ``label`` column)."""

    max_share: float | None = Field(
        None, gt=0, le=1, allow_inf_nan=False, description="cap every label of a task at this share of the "
        "task's records by seeded down-sampling of the over-represented labels, before the per-task cap "
        "(null = no cap; below 1/labels the labels are made equal)")
    skew_warn: float = Field(0.8, gt=0, le=1, allow_inf_nan=False, description="warn about (and list in the "
                             "balance report) a task whose most common label exceeds this share of the mix")


class BalanceParams(_Section):
    seed: Seed = Field(42, description="seeds the shuffle, label capping and MinHash; 0 <= seed < 2**32")
    per_task_cap: int = Field(5000, ge=1, description="at most this many records per task")
    val_fraction: float = Field(0.05, gt=0, lt=0.5)
    mixing: Literal["cap", "proportional"] = Field(
        "cap", description="cap: min(n, cap) per task; proportional: examples-proportional mixing of the "
        "capped sizes (FLAN), scaled by temperature and category weights, to `total` records")
    temperature: float = Field(1.0, ge=0.01, description="proportional mixing: rate ~ min(n, cap)^(1/T); "
                               "0.01 already gives (nearly) all of the mix to the largest task")
    total: int | None = Field(None, ge=1, le=MAX_MIX_RECORDS, description="proportional mixing: records in "
                              "the mix (null = the sum of the capped sizes); at most 10,000,000, since balance "
                              "holds the whole mix in memory")
    category_weights: dict[str, float] = Field(default_factory=dict, description="proportional mixing: "
                                               "weight per category (absent = 1.0); finite, >= 0, and not 0 "
                                               "for every category of the rendered tasks")
    upsample: bool = Field(False, description="repeat records of a task whose share exceeds its size "
                           "(otherwise the share is clipped to what the task has)")
    dedup: DedupParams = DedupParams()
    labels: LabelBalanceParams = LabelBalanceParams()

    @model_validator(mode="after")
    def _weights(self) -> BalanceParams:
        bad = {k: v for k, v in self.category_weights.items() if v < 0}
        if bad:
            raise ValueError(f"category_weights must not be negative: {bad}")
        return self

    def empty_mix_problem(self, task_categories: dict[str, str]) -> str | None:
        """Why proportional mixing of these tasks (task id -> category) would select no record, else None.

        That is when ``category_weights`` gives weight 0 to the category of every task (an absent
        category weighs 1.0). ``cap`` mixing ignores the weights. The line names the key, for a
        :class:`ParamsError` (``dagllm check`` runs it with the catalog's categories of the rendered tasks).
        """
        if self.mixing != "proportional" or not task_categories:
            return None
        cats = sorted(set(task_categories.values()))
        if any(self.category_weights.get(c, 1.0) > 0 for c in cats):
            return None
        return (f"balance.category_weights: weight 0 for every category of the rendered tasks "
                f"({', '.join(cats)}): proportional mixing would select no record; give at least one of "
                f"them a weight above 0 (an absent category weighs 1.0)")


class DecontaminateParams(_Section):
    """n-gram overlap between training records and every evaluation (benchmark) item."""

    ngram_chars: int = Field(5, ge=3, le=64, description="character n-gram length, counted on letters and "
                             "digits only (spacing and punctuation vary between copies; a syllable carries "
                             "a morpheme's worth)")
    threshold: float = Field(0.6, gt=0, le=1, description="drop a record holding at least this share of "
                             "one benchmark text's n-grams; exact copies are always dropped")
    edit_similarity: float = Field(0.8, gt=0, le=1, description="a benchmark text also counts as present when "
                                   "its best-aligned stretch of the record is this similar (rapidfuzz "
                                   "partial ratio: one word replaced in a short sentence stays above 0.8)")
    min_piece_chars: int = Field(5, ge=1, description="benchmark fields shorter than this (labels such as "
                                 "원인/결과, scores, single words) are not part of an item's text")
    min_unit_chars: int = Field(20, ge=1, description="a benchmark field this long (letters and digits) is "
                                "also matched on its own; shorter fields only as part of their whole item")
    unit_fields: dict[str, list[str]] = Field(
        default_factory=lambda: {"kobest_sentineg": ["text", "text_origin"]},
        description="benchmark source -> fields matched on their own whatever their length (the scored "
        "sentence of single-sentence benchmarks, most of them shorter than min_unit_chars)")
    generic_near_records: int = Field(3, ge=0, le=1_000_000, description="a short benchmark text (each text "
                                      "under min_unit_chars letters) that this many different training texts come "
                                      "near, not verbatim, is a generic phrase (배송 빠르고 X 좋아요): records near "
                                      "it only that way are kept and listed under generic in "
                                      "reports/decontamination.json; 0 = no text is generic (they are dropped)")
    keep_partial_items: bool = Field(True, description="keep, and list under generic, a record that holds part of "
                                     "a benchmark item of short sentences but lacks one of its texts (a different "
                                     "COPA item with the same alternatives); false drops it")


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
    model: Literal["tiny", "polyglot-ko-1.3b", "polyglot-ko-5.8b"] = Field(
        "tiny", description="model preset (dagllm/training/presets.yaml)")
    model_path: str | None = Field(None, description="local directory of a pretrained preset; null = the "
                                   "preset's hub name from the local HF cache (nothing downloads at run time)")
    seed: Seed = Field(42, description="transformers.set_seed and the data order; 0 <= seed < 2**32")
    max_steps: int | None = Field(30, ge=1, description="optimizer steps; null = train for num_epochs")
    num_epochs: float = Field(1.0, gt=0, description="used when max_steps is null")
    learning_rate: float = Field(5e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(8, ge=1, description="rows per device and micro-step (packed rows when packing)")
    grad_accum: int = Field(1, ge=1)
    max_seq_len: int | None = Field(None, ge=16, description="tokens per row; null = the preset's (tiny 256, "
                                    "Polyglot-Ko 2048)")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="linear warmup, then cosine decay")
    log_every: int = Field(5, ge=1)
    packing: bool = Field(True, description="several examples per row, attention kept within each example")
    attn_implementation: Literal["auto", "flex_attention", "sdpa", "eager", "flash_attention_2"] = Field(
        "auto", description="auto = flex_attention (document block mask) on GPUs when packing, else sdpa; "
        "flash_attention_2 needs the flash-attn package (no wheel on PyPI)")
    deepspeed: Literal["zero2", "zero3", "zero3_offload"] | None = Field(
        "zero2", description="DeepSpeed config (dagllm/training/deepspeed/NAME.json); null = plain transformers")
    bf16: Literal["auto", "true", "false"] = Field("auto", description="auto = when the GPU supports it")
    gradient_checkpointing: bool | None = Field(None, description="null = the preset's (on for 5.8b)")
    save_every: int = Field(10, ge=0, description="checkpoint every N steps; 0 = no periodic checkpoints")
    keep_checkpoints: int = Field(2, ge=1, description="newest checkpoints kept on disk")
    resume: bool = Field(True, description="continue from the latest complete checkpoint of the same run")
    upload_checkpoints: bool = Field(False, description="also upload checkpoints to MLflow (background thread)")
    system_metrics_interval_s: float = Field(5.0, gt=0, description="MLflow system metrics sampling interval")
    num_processes: int = Field(1, ge=1, le=64, description="training processes per node (one per GPU; gloo "
                               "processes on CPU); > 1 launches torchrun (dagllm/training/launch.py)")
    num_nodes: int = Field(1, ge=1, le=256, description="nodes; > 1 needs a cluster job's rendezvous "
                           "(PET_MASTER_ADDR, PET_NODE_RANK: a Kubeflow TrainJob sets them)")
    tiny: TinyModelParams = TinyModelParams()


EvalTask = Literal["kobest_copa", "kobest_boolq", "kobest_hellaswag", "kobest_sentineg", "kobest_wic",
                   "klue_sts", "klue_ynat"]


class EvaluateParams(_Section):
    tasks: list[EvalTask] = Field(min_length=1, description="benchmark tasks of the KIT-19 protocol "
                                  "(src/dagllm/evaluation/tasks/protocol.yaml)")
    protocol: Literal["kit19", "dagllm"] = Field("kit19", description="prompts and documents: kit19 = KIT-19's "
                                                  "(comparable with the published table), dagllm = our readable "
                                                  "prompts on the canonical rows (docs/evaluation.md)")
    num_fewshot: int = Field(0, ge=0, le=32, description="0 = zero-shot, the KIT-19 protocol; examples come "
                             "from the benchmark source's train split when it was ingested")
    limit: int | Literal["auto"] | None = Field("auto", description="score at most this many items per task "
                                                 "(the first ones); null = the whole split, as the published "
                                                 "numbers; auto = the preset decides: demo_limit for the tiny "
                                                 "demo model, the whole split for pretrained presets")
    demo_limit: int = Field(200, ge=1, description="items per task for limit auto with the tiny preset")
    batch_size: int | Literal["auto"] = Field(8, description="lm-eval batch size (requests per forward pass); "
                                              "auto = lm-eval finds the largest that fits (for GPUs; the validation "
                                              "loss then uses 8)")
    max_batch_size: int = Field(64, ge=1, le=4096, description="upper bound of batch_size auto (lm-eval "
                                "halves it on out-of-memory until a batch fits)")
    device: str = Field("auto", description="torch device for lm-eval and the validation loss: auto = cuda "
                        "when torch sees a GPU, else cpu; or cpu, cuda, cuda:0")
    seed: Seed = Field(1234, description="lm-eval seeds and the random reference predictor; 0 <= seed < 2**32")
    validation_loss: bool = Field(True, description="also compute the loss per category on the held-out "
                                  "instruction split from balancing")

    @field_validator("limit")
    @classmethod
    def _positive_limit(cls, v: int | str | None) -> int | str | None:
        if isinstance(v, int) and v < 1:
            raise ValueError("limit must be >= 1, null (whole split) or auto")
        return v

    @field_validator("batch_size")
    @classmethod
    def _batch_range(cls, v: int | str) -> int | str:
        if isinstance(v, int) and not 1 <= v <= 1024:
            raise ValueError("batch_size must be 1..1024 or auto")
        return v

    def resolved_limit(self, preset: str | None) -> int | None:
        """The item limit for ``preset`` (``train.model``): auto = demo_limit for tiny, else the whole split."""
        if self.limit != "auto":
            return self.limit  # type: ignore[return-value]
        return self.demo_limit if preset == "tiny" else None

    def resolved_device(self) -> str:
        """``auto`` -> cuda when torch sees a GPU, else cpu; anything else as given."""
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


class RegisterParams(_Section):
    model_name: str = Field("dagllm-ko", min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$",
                            description="registered model name (letters, digits, - and _)")
    policy: str = Field("mlflow/promotion_policy.yaml", description="promotion policy YAML: primary metric "
                        "and guarded metrics with tolerances (relative to the working directory)")
    lock_timeout_s: float = Field(120.0, gt=0, le=3600, description="wait at most this long for the "
                                  "registry lock held by another registration or promotion")
    lock_lease_s: float = Field(300.0, ge=10, le=86400, description="a lock older than this is taken "
                                "as left by a crashed process and removed")


class MlflowParams(_Section):
    tracking_uri: str = Field("sqlite:///mlflow.db", description="relative sqlite paths are "
                              "taken from the working directory")
    artifact_root: str = "mlartifacts"
    experiment: str = "dagllm"
    http_max_retries: int = Field(5, ge=0, le=10, description="retries of a request to a tracking "
                                  "server that does not answer (MLFLOW_HTTP_REQUEST_MAX_RETRIES)")
    http_backoff_factor: int = Field(1, ge=0, le=60, description="exponential backoff between "
                                     "retries: factor * 2**(retry-1) seconds")
    http_timeout_s: int = Field(60, ge=1, le=3600, description="timeout of one HTTP request to the server")


# --- kubeflow: cluster settings the KFP compiler bakes into the pipeline spec -------------------
# Only the compiler reads these (pipelines/); stage code never does. kfp.local ignores them.

_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti)?$"


class TaskResources(_Section):
    """CPU/memory requests and limits of one pipeline task (Kubernetes quantities)."""

    cpu_request: str = Field("1", pattern=_QUANTITY)
    cpu_limit: str = Field("2", pattern=_QUANTITY)
    memory_request: str = Field("2Gi", pattern=_QUANTITY)
    memory_limit: str = Field("4Gi", pattern=_QUANTITY)


class GpuParams(_Section):
    """Accelerators of one task: count and the KFP accelerator type (resource name)."""

    count: int = Field(1, ge=0, le=16, description="GPUs per task; 0 = CPU only")
    accelerator: str = Field("nvidia.com/gpu", min_length=1, description="Kubernetes resource name of the GPU")


class TolerationParams(_Section):
    key: str
    operator: Literal["Equal", "Exists"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"


_STAGE = Literal["ingest", "render", "validate", "decontaminate", "balance", "train", "evaluate", "register"]


class SecretEnvParams(_Section):
    """A Kubernetes Secret whose keys become environment variables (values never in git)."""

    name: str = Field(min_length=1, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    env: dict[str, str] = Field(min_length=1, description="secret key -> environment variable")
    tasks: list[_STAGE] = Field(["train", "evaluate", "register"], min_length=1,
                                description="the tasks that get it (only those that use it)")


# an image by tag, by digest, or both (name:tag@sha256:...); a digest makes the CUDA image's tasks cacheable
_IMAGE = r"^[^:@\s]+((:[\w][\w.-]*)(@sha256:[0-9a-f]{64})?|@sha256:[0-9a-f]{64})$"


class ImagesParams(_Section):
    """The component images (components/Dockerfile and components/Dockerfile.train): a version tag,
    or a digest (``name@sha256:...``), which KFP can cache the CUDA image's tasks on."""

    cpu: str = Field("ghcr.io/dagllm/dagllm:0.1.0", pattern=_IMAGE)
    train: str = Field("ghcr.io/dagllm/dagllm-train:0.1.0-cu128", pattern=_IMAGE)

    @model_validator(mode="after")
    def _no_latest(self) -> ImagesParams:
        for img in (self.cpu, self.train):
            if img.split("@")[0].endswith(":latest"):
                raise ValueError(f"image {img!r}: pin a version tag, not :latest")
        return self


class TrainJobParams(_Section):
    """The Kubeflow Trainer TrainJob the train step creates when ``train.num_nodes > 1``."""

    runtime: str = Field("torch-distributed", min_length=1, description="the torch runtime the job references "
                         "(installed with Kubeflow Trainer)")
    runtime_kind: Literal["ClusterTrainingRuntime", "TrainingRuntime"] = Field(
        "ClusterTrainingRuntime", description="TrainingRuntime = a runtime in the job's own namespace")
    namespace: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", description="null = the "
                                  "train step's own namespace (from its service account)")
    timeout_s: int = Field(259200, ge=60, description="the step gives up (and deletes the job) after this "
                           "long; also the job's activeDeadlineSeconds")
    poll_s: float = Field(30.0, gt=0, le=600, description="seconds between status checks")
    delete: Literal["always", "on_success", "never"] = Field(
        "on_success", description="delete the job when done; on_success keeps a failed job's pods for kubectl")
    log_tail_lines: int = Field(200, ge=1, le=10000, description="lines of the rank-0 pod's log shown at the end")
    service_account: str = Field("dagllm-trainer", min_length=1, max_length=253,
                                 description="ServiceAccount of the job's node pods (k8s/base/serviceaccounts.yaml: "
                                 "no API token mounted; the pods never call the Kubernetes API)")


class KubeflowParams(_Section):
    """How the DAG runs on a cluster: images, resources, GPUs, volumes, secrets, retries."""

    images: ImagesParams = ImagesParams()
    resources: dict[Literal["ingest", "render", "validate", "decontaminate", "balance", "train", "evaluate",
                            "register"],
                    TaskResources] = Field(default_factory=dict, description="per task; unset tasks use the defaults")
    gpu: dict[Literal["train", "evaluate"], GpuParams] = Field(default_factory=dict)
    node_selector: dict[str, str] = Field(default_factory=dict, description="for the GPU tasks (train, evaluate)")
    tolerations: list[TolerationParams] = Field(default_factory=list, description="for the GPU tasks")
    model_pvc: str | None = Field("dagllm-models", description="existing PVC for checkpoints and model "
                                  "files (train, evaluate, register); null = keep them inside the artifact")
    model_mount: str = Field("/mnt/models", pattern=r"^/")
    shm_size: str = Field("16Gi", pattern=_QUANTITY, description="memory-backed /dev/shm for training")
    secrets: list[SecretEnvParams] = Field(default_factory=list, description="mounted as env on train, "
                                           "evaluate and register (object store, MLflow)")
    retries: int = Field(3, ge=0, le=10, description="retries of the tasks that talk to MLflow")
    retry_backoff: str = Field("60s", pattern=r"^[0-9]+s$")
    experiment: str = Field("dagllm", min_length=1, description="KFP experiment for submit and schedule")
    namespace: str | None = Field(None, description="KFP profile namespace (multi-user KFP) of the experiment "
                                  "and runs; the token comes from KFP_TOKEN")
    service_account: str = Field("dagllm-pipeline-runner", min_length=1)
    image_pull_secrets: list[str] = Field(default_factory=list, description="Secrets (kubernetes.io/dockerconfigjson) "
                                          "for a private registry: on every task's pod and the TrainJob's")
    # --- cluster profile (pipelines/cluster.yaml): what a run on KFP reads besides its image ---
    mirror_pvc: str | None = Field(None, description="existing PVC holding the source mirror, mounted on "
                                   "fingerprint, ingest and evaluate at mirror_mount (set paths.mirror to that path)")
    mirror_mount: str = Field("/mnt/mirror", pattern=r"^/")
    run_as_user: int = Field(1000, ge=1, description="uid (and gid) of every pipeline container; the images' user")
    allow_laptop_defaults: list[Literal["sqlite", "samples", "tiny"]] = Field(
        default_factory=list, description="compile/submit for a cluster even with a SQLite store, the sample "
        "mirror or the tiny model (a smoke test); empty = refuse them")
    train_job: TrainJobParams = Field(TrainJobParams(), description="multi-node training (train.num_nodes > 1): "
                                      "the Kubeflow Trainer TrainJob the train step creates")

    def task_resources(self, task: str) -> TaskResources:
        """Resources of ``task``, the defaults when params.yaml does not name it."""
        return self.resources.get(task, TaskResources())  # type: ignore[call-overload]


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
    fetch: FetchParams = FetchParams()
    ingest: IngestParams
    render: RenderParams
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    decontaminate: DecontaminateParams = DecontaminateParams()
    balance: BalanceParams = BalanceParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams
    register_: RegisterParams = Field(RegisterParams(), alias="register")
    mlflow: MlflowParams = MlflowParams()
    kubeflow: KubeflowParams = KubeflowParams()
    serve: ServeParams = ServeParams()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with the YAML key names (``validate``, not ``validate_``)."""
        return self.model_dump(mode="json", by_alias=True)

    def digest(self) -> str:
        """sha256 of the canonical JSON form: equal params, equal digest."""
        blob = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into its key path and a YAML-parsed value (read by :func:`load_yaml`)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ParamsError(f"override {text!r} is not of the form key=value (e.g. train.max_steps=10)")
    value = load_yaml(raw, f"override {text!r}", key.strip()) if raw.strip() else ""
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
            if known is not None and key not in known:
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


def _known_keys(prefix: list[str]) -> set[str] | None:
    """Keys allowed under ``prefix``; None where any key may come (the keys of a mapping field
    such as ``kubeflow.resources``, which the model validation checks afterwards)."""
    model: Any = Params
    for key in prefix:
        if get_origin(model) is dict:  # a mapping: every key leads to its value type
            model = get_args(model)[1]
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = next(f for n, f in model.model_fields.items() if (f.alias or n) == key)
        model = field.annotation
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    return {(f.alias or n) for n, f in model.model_fields.items()}


def _format_error(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid parameters"]
    errors = exc.errors()
    for err in errors[:MAX_ERROR_LINES]:
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            parent = [str(p) for p in err["loc"][:-1]]
            try:
                allowed = ", ".join(sorted(_known_keys(parent) or [])) or "see params.yaml"
            except (StopIteration, AttributeError):
                allowed = "see params.yaml"
            lines.append(f"  {key}: unknown key (allowed here: {allowed})")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"  {key}: {msg} (got {_short(err.get('input'))})")
    if len(errors) > MAX_ERROR_LINES:
        lines.append(f"  ... and {len(errors) - MAX_ERROR_LINES:,} more problems not listed")
    return "\n".join(lines)


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (a 4,000-digit number or a long list stays one line)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


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
    data = load_yaml_file(path) or {}
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: top level must be a mapping of sections")
    data = apply_overrides(data, overrides or [])
    return params_from_dict(data, str(path))


# --- reading YAML: no duplicate keys, no anchors or aliases, bounded size and depth ------------

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors, aliases and over-deep nesting while composing the node tree.

    Refusing every anchor and alias (rather than counting expansions) removes the alias bomb with
    no threshold to tune, and no params file needs one: an alias makes one value stand under several
    keys, so an override of one key leaves the others as they were, which the file did not say.
    """

    def __init__(self, stream: str, source: str) -> None:
        super().__init__(stream)
        self.source = source
        self.depth = 0
        self.nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            raise ParamsError(f"{self.source}: line {line}: alias *{event.anchor}: anchors and aliases are not "
                              "allowed in params (write each value out where it is used)")
        if getattr(event, "anchor", None):
            raise ParamsError(f"{self.source}: line {line}: anchor &{event.anchor}: anchors and aliases are not "
                              "allowed in params (write each value out where it is used)")
        self.nodes += 1
        if self.nodes > MAX_YAML_NODES:
            raise ParamsError(f"{self.source}: line {line}: more than {MAX_YAML_NODES:,} values; a params file "
                              "is not a data file (put data in a file that ingest.local names)")
        if isinstance(event, yaml.CollectionStartEvent):
            self.depth += 1
            if self.depth > MAX_YAML_DEPTH:
                raise ParamsError(f"{self.source}: line {line}: nested deeper than {MAX_YAML_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            if isinstance(event, yaml.CollectionStartEvent):
                self.depth -= 1

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)
        except ValueError as exc:  # e.g. more digits than int() converts (sys.get_int_max_str_digits)
            raise ParamsError(f"{self.source}: line {node.start_mark.line + 1}: {_short(node.value, 40)} is not "
                              f"a usable integer ({exc})") from None


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)


def _duplicate_keys(loader: _StrictLoader, node: yaml.Node, path: str, out: list[str]) -> None:
    """One line per key given twice in a mapping of ``node`` (any level), with both line numbers."""
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _duplicate_keys(loader, item, f"{path}[{i}]", out)
        return
    if not isinstance(node, yaml.MappingNode):
        return
    seen: dict[Any, int] = {}
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        if key_node.tag == _MERGE_TAG:
            raise ParamsError(f"{loader.source}: line {line}: merge key '<<' under {path or 'the top level'}: "
                              "merge keys are not allowed in params (write the keys out)")
        name = f"{path}.{key_node.value}" if path else str(key_node.value)
        if isinstance(key_node, yaml.ScalarNode):  # a collection as a key: the constructor refuses it
            key = loader.construct_object(key_node, deep=True)  # `yes` and `true` are one key
            if key in seen:
                first = seen[key]
                where = f"both on line {line}" if first == line else f"lines {first} and {line}"
                out.append(f"  {name}: given twice ({where}); keep one (the later would silently replace the "
                           "earlier)")
            else:
                seen[key] = line
        _duplicate_keys(loader, value_node, name, out)


def load_yaml(text: str, source: str, key: str = "") -> Any:
    """Parse YAML ``text`` as params are read: refuse duplicate keys (naming the key and both lines),
    anchors/aliases/merge keys, more than :data:`MAX_YAML_BYTES`, :data:`MAX_YAML_NODES` values or
    :data:`MAX_YAML_DEPTH` levels: at most about a second of parsing, whatever the text. ``key`` is
    the dotted key the text is the value of (an override's), for the names in messages.

    Raises:
        ParamsError: naming ``source``, the line and the key.
    """
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_YAML_BYTES:
        raise ParamsError(f"{source}: {size:,} bytes; a params file is at most {MAX_YAML_BYTES:,} bytes")
    loader = _StrictLoader(text, source)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        problems: list[str] = []
        _duplicate_keys(loader, node, key, problems)
        if problems:
            raise ParamsError(f"{source}: keys given twice\n" + "\n".join(problems))
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ParamsError(f"{source}: not valid YAML ({exc})") from None
    except RecursionError:
        raise ParamsError(f"{source}: nested too deeply to read") from None
    finally:
        loader.dispose()


def load_yaml_file(path: Path | str) -> Any:
    """:func:`load_yaml` of a file (UTF-8), with the same refusals; also for files merged over params
    (a cluster profile, a recipe)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise ParamsError(f"{path}: {size:,} bytes; a params file is at most {MAX_YAML_BYTES:,} bytes")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ParamsError(f"{path}: not UTF-8 text ({exc})") from None
    return load_yaml(text, str(path))
