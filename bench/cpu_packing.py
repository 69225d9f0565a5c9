"""CPU benchmark: real (non-pad) tokens per second, packed vs padded, in the same run.

Usage (from a working directory whose data/balanced/train.parquet came from the pipeline):

    .venv/bin/python bench/cpu_packing.py --data data/balanced/train.parquet --steps 20

Both variants train the same tiny GPT-NeoX (same tokenizer, same seed, sdpa attention, plain
transformers Trainer) for the same number of optimizer steps with the same number of rows per batch;
"real tokens" counts every non-pad input token the model processed. Prints a JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd


def run(variant: str, df: pd.DataFrame, steps: int, batch: int, seq: int) -> dict:
    import torch
    from transformers import Trainer, TrainingArguments, set_seed

    from dagllm.params import TrainParams
    from dagllm.training.encoding import encode_frame, texts_of
    from dagllm.training.packing import PackedCollator, PaddedCollator, pack_examples
    from dagllm.training.presets import build_tiny_model, train_tokenizer

    set_seed(0)
    params = TrainParams(max_seq_len=seq, deepspeed=None)
    tok = train_tokenizer(texts_of(df), params.tiny.vocab_size)
    model = build_tiny_model(params, tok)
    model.config.use_cache = False
    examples, _ = encode_frame(df, tok, seq)
    if variant == "packed":
        data, _ = pack_examples(examples, seq, 0)
        collator = PackedCollator(tok.pad_token_id)
    else:
        data, collator = examples, PaddedCollator(tok.pad_token_id)
    args = TrainingArguments(output_dir="/tmp/bench-cpu-packing", max_steps=steps, per_device_train_batch_size=batch,
                             learning_rate=5e-4, report_to=[], save_strategy="no", use_cpu=True, logging_steps=steps,
                             disable_tqdm=True, remove_unused_columns=False, include_num_input_tokens_seen="non_padding",
                             dataloader_num_workers=0, seed=0)
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collator, processing_class=tok)
    t = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t
    real = trainer.state.num_input_tokens_seen
    return {"variant": variant, "seconds": round(seconds, 2), "real_tokens": int(real),
            "real_tokens_per_s": round(real / seconds, 1), "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data/balanced/train.parquet"))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8, help="rows per step (packed rows or examples)")
    ap.add_argument("--seq", type=int, default=256)
    a = ap.parse_args()
    from dagllm.runtime import offline

    offline()
    df = pd.read_parquet(a.data)
    padded = run("padded", df, a.steps, a.batch, a.seq)
    packed = run("packed", df, a.steps, a.batch, a.seq)
    print(json.dumps({"records": len(df), "steps": a.steps, "batch": a.batch, "seq": a.seq, "padded": padded,
                      "packed": packed, "ratio": round(packed["real_tokens_per_s"] / padded["real_tokens_per_s"], 2)}))


if __name__ == "__main__":
    main()
