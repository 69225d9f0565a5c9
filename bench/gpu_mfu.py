"""MFU benchmark: packed (flex_attention, document block mask) against the HF padded baseline.

Both variants train the same random-initialised model shape through the train stage's own
``TrainingArguments`` (:func:`dagllm.training.finetune.training_arguments`), i.e. the same DeepSpeed
config (``--deepspeed``, default ZeRO-2 as the train stage) and bf16, on the same examples, with
the same real tokens per optimizer step on average:

- packed: ``--rows`` rows of ``--seq`` tokens per step (``dagllm.training.packing``), no attention
  mask, flex_attention's block mask from the restarting positions (sdpa on CPU);
- padded: one example per row, right-padded to the batch's longest, sdpa + attention_mask, with as
  many examples per step as a packed step holds (the usual HF Trainer recipe).

MFU = model FLOPs of the real tokens per second / peak dense bf16 FLOP/s, with FLOPs per token
= 6 N (N = non-embedding parameters) + 12 L H T_att (T_att = mean attended length per token: half
the example length; attention is causal and never crosses an example). Peak: ``--peak-tflops``,
default by device name (H100/H200 SXM 989). Examples are synthetic (lengths drawn from a seeded
log-normal like our instruction records, median ~40 tokens): nothing is read or downloaded.

    python bench/gpu_mfu.py --shape polyglot-ko-1.3b --json out.json          # on a GPU
    python bench/gpu_mfu.py --shape tiny --steps 3 --warmup 1 --seq 128 --json out.json   # CPU dry run

Prints one JSON object (also written to ``--json``).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}
SYLLABLES = [chr(c) for c in range(0xAC00, 0xAC00 + 400)]


def synthetic_records(n: int, seed: int = 0):
    """Instruction records with log-normal lengths (in syllables), like the rendered training set."""
    import pandas as pd

    rng = random.Random(seed)

    def text(k: int) -> str:
        return " ".join("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(k))

    rows = [{"instruction": text(rng.randint(3, 8)), "input": text(min(400, int(rng.lognormvariate(2.6, 0.9)))),
             "output": text(rng.randint(1, 12))} for _ in range(n)]
    return pd.DataFrame(rows)


def build_model(shape: str, vocab: int, attn: str, cuda: bool, tiny_seq: int):
    """A random-initialised GPT-NeoX of a preset's shape (``tiny`` = the tests' tiny model)."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from dagllm.training.presets import presets

    if shape == "tiny":
        return None  # built by the caller from the tokenizer
    p = presets()[shape]
    cfg = GPTNeoXConfig(vocab_size=max(vocab, p.vocab_size), hidden_size=p.hidden_size,
                        num_hidden_layers=p.num_hidden_layers, num_attention_heads=p.num_attention_heads,
                        intermediate_size=p.intermediate_size, max_position_embeddings=p.max_seq_len,
                        rotary_pct=p.rotary_pct, use_parallel_residual=True, tie_word_embeddings=False, use_cache=False)
    with torch.device("cuda" if cuda else "cpu"):  # built where it trains: 5.8b in fp32 is 23 GB
        model = GPTNeoXForCausalLM(cfg)
    if cuda:
        model = model.to(torch.bfloat16)
    model.set_attn_implementation(attn)
    return model


def flops_per_token(model, mean_len: float) -> float:
    c = model.config
    n = sum(p.numel() for name, p in model.named_parameters() if "embed_in" not in name)
    return 6 * n + 12 * c.num_hidden_layers * c.hidden_size * (mean_len / 2)


def run(variant: str, shape: str, df, steps: int, warmup: int, rows: int, seq: int, deepspeed: str | None,
        checkpointing: bool, peak: float | None) -> dict:
    import torch
    from transformers import Trainer, TrainerCallback, set_seed

    from dagllm.params import TrainParams
    from dagllm.training import distributed
    from dagllm.training.encoding import encode_frame, texts_of
    from dagllm.training.finetune import training_arguments
    from dagllm.training.packing import PackedCollator, PaddedCollator, pack_examples
    from dagllm.training.presets import build_tiny_model, train_tokenizer

    cuda = torch.cuda.is_available()
    set_seed(0)
    tok = train_tokenizer(texts_of(df), 30000 if shape != "tiny" else 500)
    examples, _ = encode_frame(df, tok, seq)
    packed_rows, stats = pack_examples(examples, seq, 0)
    per_step = max(1, round(rows * len(examples) / len(packed_rows)))  # examples in `rows` packed rows
    if variant == "packed":
        attn, data, batch, collator = ("flex_attention" if cuda else "sdpa"), packed_rows, rows, \
            PackedCollator(tok.pad_token_id)
    else:
        attn, data, batch, collator = "sdpa", examples, per_step, PaddedCollator(tok.pad_token_id)
    params = TrainParams(max_steps=warmup + steps, batch_size=batch, learning_rate=1e-5, max_seq_len=seq,
                         deepspeed=deepspeed, gradient_checkpointing=checkpointing, save_every=0, log_every=10**6,
                         attn_implementation=attn, warmup_ratio=0.0,
                         tiny={"hidden_size": 32, "num_heads": 2, "intermediate_size": 64, "vocab_size": 500})
    model = build_model(shape, len(tok), attn, cuda, seq) or build_tiny_model(params, tok)
    model.config.use_cache = False
    mean_len = stats.real_tokens / len(examples)

    class Clock(TrainerCallback):
        """Starts the clock after the warm-up steps (synchronising the GPU)."""

        t0 = None
        tokens0 = 0

        def on_step_end(self, args, state, control, **kw):
            if state.global_step == warmup:
                if cuda:
                    torch.cuda.synchronize()
                Clock.t0, Clock.tokens0 = time.perf_counter(), state.num_input_tokens_seen

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with distributed.deepspeed_session() if deepspeed else _null():
        args = training_arguments(params, Path(f"/tmp/dagllm-bench-{variant}"))
        trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collator, processing_class=tok,
                          callbacks=[Clock()])
        trainer.train()
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - Clock.t0
        real = trainer.state.num_input_tokens_seen - Clock.tokens0
    tps = real / seconds
    out = {"variant": variant, "shape": shape, "attn": attn, "rows_per_step": batch, "seq": seq,
           "real_tokens_per_step": round(real / steps, 1), "real_tokens_per_s": round(tps, 1),
           "mean_example_tokens": round(mean_len, 1), "packing_efficiency": round(stats.efficiency, 4),
           "parameters": sum(p.numel() for p in model.parameters()), "deepspeed": deepspeed,
           "gradient_checkpointing": checkpointing}
    if peak:
        out["mfu"] = round(flops_per_token(model, mean_len) * tps / (peak * 1e12), 4)
    if cuda:
        out["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    del trainer, model
    if cuda:
        torch.cuda.empty_cache()
    return out


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def fit_estimate_gib(shape: str) -> float:
    """bf16 weights + bf16 grads + fp32 master weights and Adam moments: 16 bytes per parameter."""
    from dagllm.training.presets import presets

    p = presets()[shape]
    h, L, v = p.hidden_size, p.num_hidden_layers, p.vocab_size
    n = L * (4 * h * h + 2 * h * p.intermediate_size) + 2 * v * h
    return round(16 * n / 2**30, 1)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="polyglot-ko-1.3b", help="tiny | polyglot-ko-1.3b | polyglot-ko-5.8b")
    ap.add_argument("--variants", default="padded,packed", help="comma-separated: padded, packed")
    ap.add_argument("--steps", type=int, default=10, help="timed steps (after --warmup)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--rows", type=int, default=4, help="packed rows of --seq tokens per step")
    ap.add_argument("--records", type=int, default=4000, help="synthetic examples")
    ap.add_argument("--deepspeed", default="zero2", help="DeepSpeed config of the train stage; 'none' = without")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    import torch

    from dagllm.runtime import offline

    offline()
    cuda = torch.cuda.is_available()
    name = torch.cuda.get_device_name() if cuda else "cpu"
    peak = a.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    df = synthetic_records(a.records)
    ds = None if a.deepspeed == "none" else a.deepspeed
    result: dict = {"device": name, "peak_tflops": peak, "shape": a.shape}
    if a.shape != "tiny":
        result["estimated_train_state_gib"] = fit_estimate_gib(a.shape)
        if cuda:
            result["gpu_total_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    for variant in a.variants.split(","):
        try:
            result[variant] = run(variant, a.shape, df, a.steps, a.warmup, a.rows, a.seq, ds,
                                  a.gradient_checkpointing, peak)
        except torch.OutOfMemoryError as exc:
            result[variant] = {"variant": variant, "fits": False, "error": str(exc).splitlines()[0][:300],
                               "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None}
            torch.cuda.empty_cache()
    if "packed" in result and "padded" in result and "real_tokens_per_s" in result["padded"] \
            and "real_tokens_per_s" in result["packed"]:
        result["speedup_real_tokens"] = round(result["packed"]["real_tokens_per_s"]
                                              / result["padded"]["real_tokens_per_s"], 2)
    text = json.dumps(result, default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o))
    print(text)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(text + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
