"""GPU benchmark: Polyglot-Ko-1.3b architecture (random init), bf16, seq 2048, packed, one GPU.

Measures real (non-pad) tokens/s and MFU of the packed dagllm set-up against an HF Trainer padded
baseline, both in the same run on the same records:

    python bench/gpu_mfu.py --data data/balanced/train.parquet --steps 30 --warmup 5

- packed: rows of 2048 tokens built by ``dagllm.training.packing``; ``flash_attention_2`` when the
  flash-attn package is installed (the batch is flattened to one row, varlen kernel), else ``sdpa``
  with the block-diagonal mask found from position_ids.
- padded: one example per row, right-padded to the batch's longest, sdpa + attention_mask
  (the usual HF Trainer recipe).

MFU = model FLOPs per token x real tokens/s / peak dense bf16 FLOP/s of the GPU, with FLOPs per
token = 6 N (N = non-embedding parameters) + 12 L H T (attention, T = mean attended length
per token: the example length, not the row length, under packing). Peak: --peak-tflops, default
from the device name (H100 SXM 989, H200 989, A100 312). The tokenizer is trained on the data
(the 1.3b vocabulary size 30,080 is kept by padding the vocab), nothing is downloaded.
Prints one JSON line. Not run yet: no GPU was available when it was written (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def model_13b(vocab: int, attn: str):
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    cfg = GPTNeoXConfig(vocab_size=max(vocab, 30080), hidden_size=2048, num_hidden_layers=24, num_attention_heads=16,
                        intermediate_size=8192, max_position_embeddings=2048, rotary_pct=0.5,
                        use_parallel_residual=True, tie_word_embeddings=False, use_cache=False)
    model = GPTNeoXForCausalLM(cfg).to(torch.bfloat16).cuda()
    model.set_attn_implementation(attn)
    return model


def flops_per_token(model, mean_len: float) -> float:
    c = model.config
    n = sum(p.numel() for n_, p in model.named_parameters() if "embed_in" not in n_)
    return 6 * n + 12 * c.num_hidden_layers * c.hidden_size * mean_len


def run(variant: str, df: pd.DataFrame, steps: int, warmup: int, batch: int, seq: int, peak: float) -> dict:
    import importlib.util

    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

    from dagllm.stages.train import encode_frame, texts_of
    from dagllm.training.packing import PackedCollator, PaddedCollator, pack_examples
    from dagllm.training.presets import train_tokenizer

    set_seed(0)
    tok = train_tokenizer(texts_of(df), 30000)
    examples = encode_frame(df, tok, seq)
    fa2 = importlib.util.find_spec("flash_attn") is not None
    if variant == "packed":
        attn = "flash_attention_2" if fa2 else "sdpa"
        data, stats = pack_examples(examples, seq, 0)
        collator = PackedCollator(tok.pad_token_id, flatten=attn == "flash_attention_2")
    else:
        attn, data, collator = "sdpa", examples, PaddedCollator(tok.pad_token_id)
    model = model_13b(len(tok), attn)
    mean_len = sum(len(e["input_ids"]) for e in examples) / len(examples)

    class Clock(TrainerCallback):
        """Times steps after the warm-up ones, synchronising the GPU."""

        def __init__(self):
            self.t0, self.tokens0 = None, 0

        def on_step_end(self, args, state, control, **kw):
            if state.global_step == warmup:
                torch.cuda.synchronize()
                self.t0, self.tokens0 = time.perf_counter(), state.num_input_tokens_seen

    clock = Clock()
    args = TrainingArguments(output_dir=f"/tmp/bench-gpu-{variant}", max_steps=warmup + steps, bf16=True,
                             per_device_train_batch_size=batch, learning_rate=1e-5, report_to=[],
                             save_strategy="no", logging_steps=10**6, disable_tqdm=True, remove_unused_columns=False,
                             include_num_input_tokens_seen="non_padding", dataloader_num_workers=2,
                             optim="adamw_torch_fused", seed=0)
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collator, processing_class=tok,
                      callbacks=[clock])
    trainer.train()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - clock.t0
    real = trainer.state.num_input_tokens_seen - clock.tokens0
    tps = real / seconds
    mfu = flops_per_token(model, mean_len) * tps / (peak * 1e12)
    out = {"variant": variant, "attn": attn, "batch_rows": batch, "real_tokens_per_s": round(tps, 1),
           "mfu": round(mfu, 4), "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1)}
    del trainer, model
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data/balanced/train.parquet"))
    ap.add_argument("--steps", type=int, default=30, help="timed steps (after --warmup)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--packed-batch", type=int, default=4, help="packed rows of --seq tokens per step")
    ap.add_argument("--padded-batch", type=int, default=16, help="examples per step for the padded baseline")
    ap.add_argument("--peak-tflops", type=float, default=None)
    a = ap.parse_args()
    import torch

    from dagllm.runtime import offline

    offline()
    if not torch.cuda.is_available():
        raise SystemExit("bench/gpu_mfu.py needs a CUDA GPU")
    name = torch.cuda.get_device_name()
    peak = a.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    if peak is None:
        raise SystemExit(f"unknown peak bf16 TFLOP/s for {name}; pass --peak-tflops")
    df = pd.read_parquet(a.data)
    padded = run("padded", df, a.steps, a.warmup, a.padded_batch, a.seq, peak)
    packed = run("packed", df, a.steps, a.warmup, a.packed_batch, a.seq, peak)
    print(json.dumps({"device": name, "peak_tflops": peak, "seq": a.seq, "padded": padded, "packed": packed,
                      "speedup_real_tokens": round(packed["real_tokens_per_s"] / padded["real_tokens_per_s"], 2)}))


if __name__ == "__main__":
    main()
