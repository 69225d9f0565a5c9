"""Model presets (data in ``presets.yaml``) and loading a model + tokenizer for training."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from dagllm.params import TrainParams

PRESETS_FILE = Path(__file__).with_name("presets.yaml")
EOS, PAD, UNK = "<|endoftext|>", "<|pad|>", "<|unk|>"


class Preset(BaseModel):
    """One entry of presets.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    source: Literal["config", "pretrained"]
    description: str
    architecture: Literal["GPTNeoXForCausalLM"]
    hub_name: str | None = None
    num_hidden_layers: int | None = None
    hidden_size: int | None = None
    num_attention_heads: int | None = None
    intermediate_size: int | None = None
    rotary_pct: float | None = None
    vocab_size: int | None = None
    recommended_deepspeed: Literal["zero2", "zero3", "zero3_offload"] | None = None
    max_seq_len: int = Field(ge=16, description="train.max_seq_len when that is null")
    gradient_checkpointing: bool = Field(description="train.gradient_checkpointing when that is null")


@cache
def presets() -> dict[str, Preset]:
    """Every preset, validated; raises ValueError naming the bad entry."""
    data = yaml.safe_load(PRESETS_FILE.read_text(encoding="utf-8"))
    out = {}
    for name, entry in data.items():
        try:
            out[name] = Preset.model_validate(entry)
        except ValueError as exc:
            raise ValueError(f"{PRESETS_FILE}: preset {name!r} is invalid: {exc}") from None
        if out[name].source == "pretrained" and not out[name].hub_name:
            raise ValueError(f"{PRESETS_FILE}: preset {name!r} loads pretrained weights but has no hub_name")
    return out


EMBEDDING_MULTIPLE = 64  # embedding rows padded to a multiple of this (tensor-core friendly shapes)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve(params: TrainParams, cuda: bool | None = None) -> TrainParams:
    """``params`` with the preset-dependent settings made concrete.

    ``max_seq_len`` and ``gradient_checkpointing`` default to the preset's; ``attn_implementation:
    auto`` becomes ``flex_attention`` on GPUs when packing (a document block mask: attention work
    proportional to the sum of the squared example lengths, not the squared row length) and
    ``sdpa`` otherwise.

    Raises:
        ValueError: an attention implementation this machine cannot train with; the message says
            which one to use instead.
    """
    preset = presets()[params.model]
    cuda = cuda_available() if cuda is None else cuda
    attn = params.attn_implementation
    if attn == "auto":
        attn = "flex_attention" if cuda and params.packing else "sdpa"
    if attn == "flash_attention_2":
        import importlib.util

        if importlib.util.find_spec("flash_attn") is None:
            raise ValueError("train.attn_implementation=flash_attention_2 needs the flash-attn package, which is "
                             "not installed (it has no wheel on PyPI: it builds against your CUDA toolkit). Use "
                             "train.attn_implementation=auto (flex_attention, built into torch) or sdpa")
    if attn == "flex_attention" and not cuda:
        raise ValueError("train.attn_implementation=flex_attention trains on GPUs only (torch has no CPU backward "
                         "for flex_attention); on CPU use auto or sdpa")
    return params.model_copy(update={
        "max_seq_len": params.max_seq_len or preset.max_seq_len,
        "gradient_checkpointing": (preset.gradient_checkpointing if params.gradient_checkpointing is None
                                   else params.gradient_checkpointing),
        "attn_implementation": attn,
    })


def use_bf16(params: TrainParams, cuda: bool | None = None) -> bool:
    """Whether training runs in bf16: ``true``, or ``auto`` on a GPU that supports it."""
    import torch

    cuda = cuda_available() if cuda is None else cuda
    return params.bf16 == "true" or (params.bf16 == "auto" and cuda and torch.cuda.is_bf16_supported())


def load_dtype(params: TrainParams):
    """The dtype pretrained weights load in: bf16 under DeepSpeed with bf16 (it keeps fp32 master
    weights in the optimizer), fp32 otherwise; never the checkpoint's own (fp16 for Polyglot-Ko)."""
    import torch

    return torch.bfloat16 if params.deepspeed and use_bf16(params) else torch.float32


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on ``texts``, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOS, PAD, UNK], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=PAD, unk_token=UNK)


def build_tiny_model(params: TrainParams, tokenizer):
    """The ``tiny`` preset: GPT-NeoX shaped like Polyglot-Ko, only smaller."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    t = params.tiny
    params = resolve(params) if params.max_seq_len is None or params.attn_implementation == "auto" else params
    config = GPTNeoXConfig(
        vocab_size=-(-len(tokenizer) // EMBEDDING_MULTIPLE) * EMBEDDING_MULTIPLE, hidden_size=t.hidden_size, num_hidden_layers=t.num_layers,
        num_attention_heads=t.num_heads, intermediate_size=t.intermediate_size,
        max_position_embeddings=params.max_seq_len, rotary_pct=0.25, use_parallel_residual=True,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    model = GPTNeoXForCausalLM(config)
    model.set_attn_implementation(params.attn_implementation)
    return model


def load_pretrained(name: str, params: TrainParams):
    """Model and tokenizer of a pretrained preset from ``train.model_path`` or the preset's hub name.

    Raises:
        ValueError: the directory is missing, or the hub name is not in the local cache (the hub is
            offline at run time); the message says how to fix it.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    preset = presets()[name]
    params = resolve(params) if params.attn_implementation == "auto" else params
    where = params.model_path or preset.hub_name
    if params.model_path and not Path(params.model_path).is_dir():
        raise ValueError(f"train.model_path={params.model_path!r}: no such directory (expected a saved "
                         f"Hugging Face model for preset {name!r})")
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
        model = AutoModelForCausalLM.from_pretrained(where, attn_implementation=params.attn_implementation,
                                                     dtype=load_dtype(params))
    except OSError as exc:
        raise ValueError(
            f"train.model={name}: cannot load {where!r} ({str(exc).splitlines()[0]}). Models are never "
            f"downloaded at run time: put the model in a local directory (e.g. `hf download "
            f"{preset.hub_name} --local-dir DIR` on a machine with network) and set train.model_path=DIR"
        ) from None
    if type(model).__name__ != preset.architecture:
        raise ValueError(f"{where}: is a {type(model).__name__}, preset {name!r} expects {preset.architecture}")
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        # a distinct pad token, so padding is never confused with end-of-text when counting real tokens
        tokenizer.add_special_tokens({"pad_token": PAD})
        model.config.pad_token_id = tokenizer.pad_token_id
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows or rows % EMBEDDING_MULTIPLE:
        # grow to cover the tokenizer, rounded up to a multiple of 64; never shrink (Polyglot-Ko has
        # 30,080 rows for 30,003 tokens: the added pad token fits in the spare rows)
        model.resize_token_embeddings(max(len(tokenizer), rows), pad_to_multiple_of=EMBEDDING_MULTIPLE)
    return model, tokenizer


def load_model_and_tokenizer(params: TrainParams, texts: list[str]):
    """The model and tokenizer of ``params.model``; ``tiny`` trains its tokenizer on ``texts``."""
    if params.model == "tiny":
        tokenizer = train_tokenizer(texts, params.tiny.vocab_size)
        return build_tiny_model(params, tokenizer), tokenizer
    return load_pretrained(params.model, params)
