"""Train: a tiny GPT-NeoX from config, a BPE tokenizer trained on the data, transformers on CPU.

Loss is masked to the response tokens (see :mod:`dagllm.prompt`). Per-step loss and learning
rate go to an MLflow run whose id is written next to the model, so evaluate and register log
to the same run. The model is saved in Hugging Face format (safetensors).
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dagllm.io import read_parquet, sha256_file, write_json
from dagllm.params import MlflowParams, TrainParams
from dagllm.prompt import build_prompt
from dagllm.runtime import offline

EOS, PAD, UNK = "<|endoftext|>", "<|pad|>", "<|unk|>"
IGNORE = -100


@dataclass
class TrainSummary:
    run_id: str
    steps: int
    final_loss: float
    tokens_per_second: float
    parameters: int
    model_dir: str

    def to_dict(self) -> dict:
        return self.__dict__

    def lines(self) -> list[str]:
        return [f"trained {self.parameters:,} parameters for {self.steps} steps: final loss "
                f"{self.final_loss:.4f} ({self.tokens_per_second:,.0f} tokens/s); model in {self.model_dir}"]


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


def build_model(params: TrainParams, tokenizer):
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
    return GPTNeoXForCausalLM(config)


def encode_example(tokenizer, instruction: str, input_text: str, output: str, max_len: int) -> dict:
    """Token ids with labels masked (-100) on the prompt; truncated to ``max_len``."""
    prompt_ids = tokenizer(build_prompt(instruction, input_text), add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(output, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = (prompt_ids + answer_ids)[:max_len]
    labels = ([IGNORE] * len(prompt_ids) + answer_ids)[:max_len]
    return {"input_ids": ids, "labels": labels}


def pad_collate(tokenizer):
    import torch

    def collate(batch: list[dict]) -> dict:
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n] = torch.tensor(b["input_ids"])
            labels[i, :n] = torch.tensor(b["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    return collate


def _texts(df: pd.DataFrame) -> list[str]:
    return [build_prompt(r.instruction, r.input) + r.output for r in df.itertuples(index=False)]


def run_train(params: TrainParams, mlflow_params: MlflowParams, train_path: Path, model_dir: Path,
              run_file: Path, metrics_path: Path, curve_path: Path, pipeline_run: str = "local") -> TrainSummary:
    """Train the model on ``train_path`` and save it to ``model_dir``."""
    import mlflow
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

    from dagllm.tracking import configure

    offline()
    set_seed(params.seed)
    df = read_parquet(train_path, "balance")
    if df.empty:
        raise ValueError(f"{train_path}: no training records; check balance and render outputs")
    tokenizer = train_tokenizer(_texts(df), params.tiny.vocab_size)
    model = build_model(params, tokenizer)
    examples = [encode_example(tokenizer, r.instruction, r.input, r.output, params.max_seq_len)
                for r in df.itertuples(index=False)]
    curve: list[tuple[int, float, float]] = []

    class MlflowLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            # log_history holds the numbers; `logs` may already be formatted by the printer callback
            entry = state.log_history[-1] if state.log_history else {}
            scalars = {k: float(v) for k, v in entry.items() if isinstance(v, (int, float)) and k != "step"}
            if "loss" in scalars:
                curve.append((state.global_step, scalars["loss"], scalars.get("learning_rate", 0.0)))
            mlflow.log_metrics({k.replace("/", "_"): v for k, v in scalars.items()}, step=state.global_step)

    out = model_dir.parent / "checkpoints"
    args = TrainingArguments(
        output_dir=str(out), max_steps=params.max_steps, per_device_train_batch_size=params.batch_size,
        gradient_accumulation_steps=params.grad_accum, learning_rate=params.learning_rate,
        lr_scheduler_type="cosine", warmup_steps=int(params.warmup_ratio * params.max_steps),
        logging_steps=params.log_every, seed=params.seed, report_to=[], save_strategy="no",
        use_cpu=True, dataloader_num_workers=0, disable_tqdm=True, remove_unused_columns=False,
    )
    experiment_id = configure(mlflow_params)
    with mlflow.start_run(experiment_id=experiment_id, run_name="train") as run:
        mlflow.set_tags({"dagllm.stage": "train", "dagllm.pipeline_run": pipeline_run,
                         "dagllm.base_model": params.model})
        mlflow.log_params({f"train.{k}": v for k, v in params.model_dump().items() if k != "tiny"})
        mlflow.log_params({f"train.tiny.{k}": v for k, v in params.tiny.model_dump().items()})
        mlflow.log_param("data.sha256", sha256_file(train_path))
        trainer = Trainer(model=model, args=args, train_dataset=examples, data_collator=pad_collate(tokenizer),
                          callbacks=[MlflowLog()])
        start = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - start
        # real (non-pad) tokens per second: mean example length x examples per second
        mean_len = sum(len(e["input_ids"]) for e in examples) / len(examples)
        seen = params.max_steps * params.batch_size * params.grad_accum
        tokens_per_s = mean_len * seen / max(seconds, 1e-9)
        model_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        final_loss = curve[-1][1] if curve else float(result.training_loss)
        mlflow.log_metrics({"final_loss": final_loss, "train_tokens_per_second": tokens_per_s})
        summary = TrainSummary(run.info.run_id, int(result.global_step), final_loss, tokens_per_s,
                               sum(p.numel() for p in model.parameters()), str(model_dir))
    write_json(run_file, {"run_id": summary.run_id, "experiment_id": experiment_id,
                          "tracking_uri": mlflow_params.tracking_uri})
    write_json(metrics_path, {"final_loss": summary.final_loss, "steps": summary.steps,
                              "tokens_per_second": round(summary.tokens_per_second, 1)})
    curve_path.parent.mkdir(parents=True, exist_ok=True)
    with open(curve_path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "loss", "learning_rate"])
        w.writerows(curve)
    return summary
