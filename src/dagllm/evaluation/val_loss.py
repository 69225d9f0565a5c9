"""Validation loss per category on the held-out instruction split from balancing.

The records go through the training prompt wrapper and the training encoder
(:func:`dagllm.training.encoding.encode_records`: loss on response tokens only, a long input cut and
the answer kept whole, a record whose answer cannot fit dropped), so the numbers are the training
objective on unseen records, split by task category. ``records`` counts a category's records,
``dropped`` those of them left out because their answer + EOS do not fit the model's window.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path

import pandas as pd

from dagllm.progress import progress


def validation_loss(model_dir: Path, records: pd.DataFrame, batch_size: int, device: str = "cpu") -> dict[str, dict]:
    """Mean token loss (and perplexity, token count) per category and over ``all`` records.

    Args:
        model_dir: a Hugging Face causal LM folder with its tokenizer.
        records: rendered records with ``instruction``, ``input``, ``output`` and ``category``.
        batch_size: records per forward pass.
        device: torch device.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dagllm.training.encoding import encode_records, pad_collate

    if records.empty:
        return {}
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).to(device).eval()
    max_len = int(getattr(model.config, "max_position_embeddings", 2048))
    collate = pad_collate(tokenizer)
    nll: dict[str, float] = defaultdict(float)
    tokens: dict[str, int] = defaultdict(int)
    examples, _ = encode_records(records, tokenizer, max_len)
    pairs = list(zip(records["category"], examples, strict=True))
    kept = [(c, ex) for c, ex in pairs if ex is not None]
    dropped = Counter(c for c, ex in pairs if ex is None)  # the answer + EOS alone exceed max_len
    with progress() as bar, torch.no_grad():
        task = bar.add_task("validation loss", total=len(kept))
        for start in range(0, len(kept), batch_size):
            chunk = kept[start:start + batch_size]
            batch = collate([ex for _, ex in chunk])
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            # token t predicts t+1; positions labelled -100 (prompt, padding) carry no loss
            labels = batch["labels"][:, 1:]
            losses = torch.nn.functional.cross_entropy(
                logits[:, :-1].transpose(1, 2).float(), labels, ignore_index=-100, reduction="none")
            counts = (labels != -100).sum(dim=1)
            sums = losses.sum(dim=1).tolist()
            for (category, _), loss_sum, n in zip(chunk, sums, counts.tolist(), strict=True):
                for key in (category, "all"):
                    nll[key] += loss_sum
                    tokens[key] += int(n)
            bar.advance(task, len(chunk))
    return {k: {"loss": nll[k] / tokens[k], "perplexity": math.exp(min(nll[k] / tokens[k], 50.0)),
                "tokens": tokens[k], "records": int((records["category"] == k).sum()) if k != "all" else len(records),
                "dropped": dropped[k] if k != "all" else sum(dropped.values())}
            for k in sorted(nll, key=lambda c: (c == "all", c)) if tokens[k]}
