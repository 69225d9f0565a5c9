"""The training encoding: prompt wrapper, token ids, labels masked on the prompt.

Shared by the train stage and the validation loss (:mod:`dagllm.evaluation.val_loss`), so the
held-out loss is the training objective on unseen records.
"""

from __future__ import annotations

import pandas as pd

from dagllm.training.packing import IGNORE, PaddedCollator
from dagllm.training.prompt import build_prompt

__all__ = ["IGNORE", "encode_example", "encode_frame", "pad_collate", "texts_of"]


def encode_example(tokenizer, instruction: str, input_text: str, output: str, max_len: int) -> dict:
    """Token ids with labels masked (-100) on the prompt; truncated to ``max_len``."""
    prompt_ids = tokenizer(build_prompt(instruction, input_text), add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(output, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = (prompt_ids + answer_ids)[:max_len]
    labels = ([IGNORE] * len(prompt_ids) + answer_ids)[:max_len]
    return {"input_ids": ids, "labels": labels}


def encode_frame(df: pd.DataFrame, tokenizer, max_len: int) -> list[dict]:
    """Every record of ``df`` encoded with :func:`encode_example`."""
    return [encode_example(tokenizer, r.instruction, r.input, r.output, max_len) for r in df.itertuples(index=False)]


def texts_of(df: pd.DataFrame) -> list[str]:
    """Full prompt + response texts (what the ``tiny`` tokenizer is trained on)."""
    return [build_prompt(r.instruction, r.input) + r.output for r in df.itertuples(index=False)]


def pad_collate(tokenizer):
    """The padded collator for ``tokenizer`` (one example per row)."""
    return PaddedCollator(tokenizer.pad_token_id)
