"""Presets: settings that depend on the model, dtypes, embedding rows, attention choices."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dagllm.params import TrainParams
from dagllm.training.distributed import deepspeed_config
from dagllm.training.presets import build_tiny_model, load_dtype, load_pretrained, resolve, train_tokenizer

TINY = {"hidden_size": 32, "num_heads": 2, "intermediate_size": 64, "vocab_size": 300}


def test_real_presets_default_to_their_context_and_checkpointing():
    tiny = resolve(TrainParams(), cuda=False)
    assert (tiny.max_seq_len, tiny.gradient_checkpointing, tiny.attn_implementation) == (256, False, "sdpa")
    big = resolve(TrainParams(model="polyglot-ko-5.8b"), cuda=True)
    assert (big.max_seq_len, big.gradient_checkpointing, big.attn_implementation) == (2048, True, "flex_attention")
    small = resolve(TrainParams(model="polyglot-ko-1.3b"), cuda=True)
    assert (small.max_seq_len, small.gradient_checkpointing) == (2048, False)
    # explicit values win over the preset
    mine = resolve(TrainParams(model="polyglot-ko-5.8b", max_seq_len=1024, gradient_checkpointing=False), cuda=True)
    assert (mine.max_seq_len, mine.gradient_checkpointing) == (1024, False)
    # without packing there is no block mask to exploit
    assert resolve(TrainParams(packing=False), cuda=True).attn_implementation == "sdpa"


def test_attention_this_machine_cannot_train_with_is_a_clear_error():
    import importlib.util

    if importlib.util.find_spec("flash_attn") is None:
        with pytest.raises(ValueError, match="flash-attn package.*no wheel on PyPI"):
            resolve(TrainParams(attn_implementation="flash_attention_2"), cuda=True)
    with pytest.raises(ValueError, match="GPUs only"):
        resolve(TrainParams(attn_implementation="flex_attention"), cuda=False)


def test_pretrained_weights_load_in_bf16_under_deepspeed_never_fp16():
    assert load_dtype(TrainParams(deepspeed="zero2", bf16="true")) == torch.bfloat16
    assert load_dtype(TrainParams(deepspeed=None, bf16="true")) == torch.float32  # plain AMP keeps fp32 weights
    assert load_dtype(TrainParams(deepspeed="zero2", bf16="false")) == torch.float32


def _saved(tmp_path: Path, rows: int, pad: bool) -> Path:
    """A GPT-NeoX folder with ``rows`` embedding rows; without ``pad`` its pad token is its eos (as Polyglot-Ko)."""
    from transformers import PreTrainedTokenizerFast

    tok = train_tokenizer(["### 지시:\n안녕하세요\n\n### 응답:\n네"] * 5, 200)
    model = build_tiny_model(TrainParams(tiny=TINY, max_seq_len=64), tok)
    model.resize_token_embeddings(rows)
    if not pad:
        tok = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, eos_token=tok.eos_token,
                                      pad_token=tok.eos_token)
    out = tmp_path / f"m{rows}{pad}"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_embedding_rows_cover_the_pad_token_in_multiples_of_64(tmp_path: Path):
    params = TrainParams(model="polyglot-ko-1.3b", deepspeed=None)
    grown, tok = load_pretrained("polyglot-ko-1.3b", params.model_copy(
        update={"model_path": str(_saved(tmp_path, 150, pad=False))}))
    rows = grown.get_input_embeddings().weight.shape[0]
    assert tok.pad_token_id != tok.eos_token_id and rows >= len(tok) and rows % 64 == 0
    assert rows == -(-len(tok) // 64) * 64  # the tokenizer's size (more than 150), rounded up
    # spare rows already: the pad token fits, nothing shrinks (Polyglot-Ko: 30,080 rows, 30,003 tokens)
    kept, tok = load_pretrained("polyglot-ko-1.3b", params.model_copy(
        update={"model_path": str(_saved(tmp_path, 512, pad=False))}))
    assert kept.get_input_embeddings().weight.shape[0] == 512 and len(tok) < 512
    assert next(kept.parameters()).dtype == torch.float32


def test_zero3_offload_steps_with_deepspeeds_cpu_adam():
    cfg = deepspeed_config("zero3_offload")
    assert cfg["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    # torch_adam would run plain torch AdamW on the CPU instead of DeepSpeed's vectorised CPU Adam
    assert "torch_adam" not in cfg["optimizer"]["params"]
    for name in ("zero2", "zero3"):  # on the GPU the optimizer state stays there: fused torch Adam is fine
        assert deepspeed_config(name)["optimizer"]["params"]["torch_adam"] is True
