"""Model presets (data in ``presets.yaml``) and loading a model + tokenizer for training."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict

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
    recommended_deepspeed: Literal["zero2", "zero3", "zero3_offload"] | None = None


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
    config = GPTNeoXConfig(
        vocab_size=len(tokenizer), hidden_size=t.hidden_size, num_hidden_layers=t.num_layers,
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
    where = params.model_path or preset.hub_name
    if params.model_path and not Path(params.model_path).is_dir():
        raise ValueError(f"train.model_path={params.model_path!r}: no such directory (expected a saved "
                         f"Hugging Face model for preset {name!r})")
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
        model = AutoModelForCausalLM.from_pretrained(where, attn_implementation=params.attn_implementation,
                                                     dtype="auto")
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
        model.resize_token_embeddings(len(tokenizer))
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_model_and_tokenizer(params: TrainParams, texts: list[str]):
    """The model and tokenizer of ``params.model``; ``tiny`` trains its tokenizer on ``texts``."""
    if params.model == "tiny":
        tokenizer = train_tokenizer(texts, params.tiny.vocab_size)
        return build_tiny_model(params, tokenizer), tokenizer
    return load_pretrained(params.model, params)
