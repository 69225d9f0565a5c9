"""Sequence packing for causal-LM fine-tuning, and the padded baseline it is compared with.

A packed row holds several examples back to back. ``position_ids`` restart at 0 for every example
and no ``attention_mask`` is passed: transformers 5 then finds the example boundaries from the
positions (``masking_utils.find_packed_sequence_indices``) and builds a block-diagonal causal mask
for the ``eager`` and ``sdpa`` attention implementations, so no token attends across an example
boundary. ``flash_attention_2`` (GPU only) detects the same boundaries from ``position_ids`` but
only for a batch of one row, hence ``flatten=True`` for it: the whole batch becomes one row and
FlashAttention's varlen kernel runs without any padding.

Two details keep examples independent:
- the model must not build a KV cache (``use_cache=False``), or mask creation skips the packed check;
- the first label of every example is ignored, so no loss is taken on predicting an example's first
  token from the previous example's last one (it is a prompt token anyway).

The tail of a row that is shorter than the batch's longest row is filled with pad tokens whose
positions also restart at 0: they form a segment of their own and carry no loss.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

IGNORE = -100


@dataclass(frozen=True)
class PackStats:
    """How well examples filled the rows."""

    examples: int
    rows: int
    real_tokens: int
    slots: int

    @property
    def efficiency(self) -> float:
        """Real tokens divided by row capacity (rows x max_len)."""
        return self.real_tokens / self.slots if self.slots else 0.0


def pack_examples(examples: list[dict], max_len: int, seed: int = 0) -> tuple[list[dict], PackStats]:
    """Group encoded examples into rows of at most ``max_len`` tokens (next-fit, seeded order).

    Args:
        examples: dicts with ``input_ids`` and ``labels`` (each at most ``max_len`` long).
        max_len: row capacity in tokens.
        seed: shuffles the example order before packing, so rows mix tasks.

    Returns:
        Rows as dicts with ``input_ids``, ``labels`` and ``position_ids`` (restarting per example),
        and the packing statistics.
    """
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    rows: list[dict] = []
    cur: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": []}
    for i in order:
        ex = examples[i]
        n = len(ex["input_ids"])
        if n > max_len:
            raise ValueError(f"example {i} has {n} tokens, more than max_len={max_len}; truncate it first")
        if cur["input_ids"] and len(cur["input_ids"]) + n > max_len:
            rows.append(cur)
            cur = {"input_ids": [], "labels": [], "position_ids": []}
        cur["input_ids"] += ex["input_ids"]
        # the first label of an example would be predicted from the previous example's last token
        cur["labels"] += [IGNORE] + list(ex["labels"][1:])
        cur["position_ids"] += list(range(n))
    if cur["input_ids"]:
        rows.append(cur)
    real = sum(len(e["input_ids"]) for e in examples)
    return rows, PackStats(len(examples), len(rows), real, len(rows) * max_len)


class PackedCollator:
    """Batches packed rows: pads to the longest row, positions restart in the pad tail, no attention_mask.

    Args:
        pad_id: the tokenizer's pad token id.
        flatten: concatenate the batch into a single row (needed by ``flash_attention_2``).
    """

    def __init__(self, pad_id: int, flatten: bool = False) -> None:
        self.pad_id = pad_id
        self.flatten = flatten

    def __call__(self, rows: list[dict]) -> dict[str, Any]:
        import torch

        if self.flatten:
            rows = [{k: [v for r in rows for v in r[k]] for k in ("input_ids", "labels", "position_ids")}]
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        pos = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"])
            labels[i, :n] = torch.tensor(r["labels"])
            pos[i, :n] = torch.tensor(r["position_ids"])
            pos[i, n:] = torch.arange(width - n)  # the pad tail is a segment of its own
        return {"input_ids": ids, "labels": labels, "position_ids": pos}


class PaddedCollator:
    """The baseline: one example per row, right-padded to the batch's longest example."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: list[dict]) -> dict[str, Any]:
        import torch

        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n] = torch.tensor(b["input_ids"])
            labels[i, :n] = torch.tensor(b["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def segment_losses(logits, labels, position_ids) -> list[tuple[float, int]]:
    """Per-example summed cross-entropy and token count inside one packed row (for tests and checks).

    Args:
        logits: ``[seq, vocab]`` logits of one row.
        labels: ``[seq]`` labels of that row (``IGNORE`` where no loss).
        position_ids: ``[seq]`` positions restarting at 0 per example.

    Returns:
        ``(sum of token losses, number of loss tokens)`` for each example, in order.
    """
    import torch

    starts = (position_ids == 0).nonzero().flatten().tolist() + [len(position_ids)]
    out = []
    for a, b in zip(starts[:-1], starts[1:]):
        lg, lb = logits[a:b - 1], labels[a + 1:b]
        keep = lb != IGNORE
        if keep.any():
            out.append((float(torch.nn.functional.cross_entropy(lg[keep].double(), lb[keep], reduction="sum")),
                        int(keep.sum())))
    return out
