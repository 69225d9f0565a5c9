"""Full-parameter fine-tuning of one rank with transformers, optionally through DeepSpeed.

The model comes from a preset (``tiny`` built from config with a tokenizer trained on the data, or
Polyglot-Ko 1.3b / 5.8b from a local directory). Examples are wrapped in the Korean prompt of
:mod:`dagllm.training.prompt` with loss on the response tokens only, then packed several per row without
attention crossing examples (:mod:`dagllm.training.packing`). Checkpoints are written every
``save_every`` steps and a restarted run resumes from the latest complete one. Everything is logged
to one MLflow run whose id is written next to the model, so evaluate and register log to the same
run; the model is saved in Hugging Face format (safetensors).

:func:`fine_tune` is one rank's work: a world of one in the train stage's own process, or each
rank that :mod:`dagllm.training.launch` starts through torchrun; rank 0 writes the files and the
MLflow run (see docs/training.md).
"""

from __future__ import annotations

import contextlib
import csv
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dagllm.io import read_parquet, sha256_file, write_json
from dagllm.params import MlflowParams, TrainParams
from dagllm.runtime import offline
from dagllm.training.encoding import EncodingReport, encode_frame, texts_of
from dagllm.training.packing import PackedCollator, PaddedCollator, pack_examples


@dataclass
class TrainSummary:
    run_id: str
    steps: int
    final_loss: float
    tokens_per_second: float
    parameters: int
    model_dir: str
    resumed_from_step: int = 0
    packing_efficiency: float = 0.0
    deepspeed: str | None = None
    checkpoints_uploaded: int = 0
    encoding: dict = field(default_factory=dict)  # EncodingReport.to_dict(): how records fitted max_seq_len

    def to_dict(self) -> dict:
        return self.__dict__

    def lines(self) -> list[str]:
        via = f"DeepSpeed {self.deepspeed}" if self.deepspeed else "transformers"
        resumed = f", resumed at step {self.resumed_from_step}" if self.resumed_from_step else ""
        lines = [f"trained {self.parameters:,} parameters for {self.steps} steps ({via}{resumed}): final loss "
                 f"{self.final_loss:.4f} ({self.tokens_per_second:,.0f} real tokens/s); model in {self.model_dir}"]
        if self.encoding:
            e = self.encoding
            lines.append(f"records at max_seq_len {e['max_seq_len']}: {e['fit']:,} whole, {e['input_truncated']:,} "
                         f"input cut, {e['instruction_truncated']:,} instruction cut, {e['dropped']:,} dropped "
                         "(answer + EOS too long); per task in the train metrics")
        return lines


def training_arguments(params: TrainParams, output_dir: Path, device: str = "auto"):
    """The ``TrainingArguments`` for ``params`` (DeepSpeed config included when chosen).

    Args:
        params: the train section.
        output_dir: where checkpoints go.
        device: ``cpu`` forces the CPU; ``auto`` uses a GPU when there is one.
    """
    import torch
    from transformers import TrainingArguments

    from dagllm.training.distributed import deepspeed_config
    from dagllm.training.presets import use_bf16

    cuda = torch.cuda.is_available() and device != "cpu"
    bf16 = use_bf16(params, cuda)
    return TrainingArguments(
        output_dir=str(output_dir), max_steps=params.max_steps or -1, num_train_epochs=params.num_epochs,
        per_device_train_batch_size=params.batch_size, gradient_accumulation_steps=params.grad_accum,
        learning_rate=params.learning_rate, weight_decay=params.weight_decay, lr_scheduler_type="cosine",
        warmup_steps=params.warmup_ratio if params.max_steps is None else int(params.warmup_ratio * params.max_steps),
        logging_steps=params.log_every, seed=params.seed, data_seed=params.seed, report_to=[],
        save_strategy="steps" if params.save_every else "no", save_steps=params.save_every or 500,
        save_total_limit=params.keep_checkpoints, bf16=bf16, gradient_checkpointing=params.gradient_checkpointing,
        deepspeed=deepspeed_config(params.deepspeed) if params.deepspeed else None,
        use_cpu=not cuda, dataloader_num_workers=0, disable_tqdm=True, remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
    )


def fine_tune(params: TrainParams, mlflow_params: MlflowParams, train_path: Path, model_dir: Path,
             run_file: Path, metrics_path: Path, curve_path: Path, pipeline_run: str = "local",
             checkpoint_dir: Path | None = None) -> TrainSummary:
    """Train the model on ``train_path`` and save it to ``model_dir``.

    Args:
        params: the train section of params.yaml.
        mlflow_params: where the run is tracked.
        train_path: balanced training records (Parquet).
        model_dir: the final Hugging Face model directory.
        run_file: JSON with the MLflow run id (read by evaluate and register).
        metrics_path: JSON with the final loss, steps and tokens/s.
        curve_path: CSV of step, loss, learning rate.
        pipeline_run: tag telling DVC/CLI runs from KFP runs.
        checkpoint_dir: periodic checkpoints; default ``model_dir``'s sibling ``checkpoints``.

    Raises:
        ValueError: no training records, or a pretrained preset that cannot be found locally.
    """
    from transformers import set_seed

    from dagllm.training import checkpoints, distributed
    from dagllm.training.presets import load_model_and_tokenizer, resolve

    offline()
    params = resolve(params)  # the preset's sequence length, checkpointing and attention where unset
    set_seed(params.seed)
    df = read_parquet(train_path, "balance")
    if df.empty:
        raise ValueError(f"{train_path}: no training records; check balance and render outputs")
    data_sha = sha256_file(train_path)
    model, tokenizer = load_model_and_tokenizer(params, texts_of(df))
    model.config.use_cache = False  # a KV cache would hide the packed boundaries from mask creation
    examples, encoding = encode_frame(df, tokenizer, params.max_seq_len)
    if not examples:
        raise ValueError(f"{train_path}: every record was dropped: answer + EOS longer than "
                         f"train.max_seq_len={params.max_seq_len} ({encoding.to_dict()['dropped_reasons']})")
    if params.packing:
        dataset, stats = pack_examples(examples, params.max_seq_len, params.seed)
        collator = PackedCollator(tokenizer.pad_token_id, flatten=params.attn_implementation == "flash_attention_2")
        efficiency = stats.efficiency
    else:
        dataset, collator, efficiency = examples, PaddedCollator(tokenizer.pad_token_id), 0.0
    ckpt_dir = checkpoint_dir or model_dir.parent / "checkpoints"
    key = checkpoints.run_key(params, data_sha)
    if distributed.world_size() > 1:
        distributed.init_process_group()  # binds the GPU before the first collective
    resume_from, run_id = checkpoints.prepare(ckpt_dir, key, params.resume) if distributed.rank() == 0 else (None, None)
    if distributed.world_size() > 1:
        resume_from = _broadcast_resume(resume_from)
    with distributed.deepspeed_session() if params.deepspeed else contextlib.nullcontext():
        args = training_arguments(params, ckpt_dir)
        return _fit(params, mlflow_params, model, tokenizer, dataset, collator, args, efficiency, df, train_path,
                    data_sha, key, ckpt_dir, resume_from, run_id, model_dir, run_file, metrics_path, curve_path,
                    pipeline_run, encoding)


def _broadcast_resume(resume_from: Path | None) -> Path | None:
    """Every rank resumes from the checkpoint rank 0 chose (rank 0 alone touches the folder)."""
    import torch.distributed as dist

    box = [str(resume_from) if resume_from else None]
    dist.broadcast_object_list(box, src=0)
    return Path(box[0]) if box[0] else None


def _fit(params, mlflow_params, model, tokenizer, dataset, collator, args, efficiency, df, train_path, data_sha,
         key, ckpt_dir, resume_from, run_id, model_dir, run_file, metrics_path, curve_path, pipeline_run,
         encoding: EncodingReport):
    import mlflow
    from transformers import Trainer

    from dagllm.registry.tracking import configure
    from dagllm.training import checkpoints, distributed
    from dagllm.training.callbacks import CheckpointSeal, CheckpointUploader, MlflowMetrics

    main = distributed.rank() == 0
    experiment_id = configure(mlflow_params) if main else ""  # one rank creates the experiment and the run
    mlflow.set_system_metrics_sampling_interval(params.system_metrics_interval_s)
    run = mlflow.start_run(run_id=run_id, experiment_id=None if run_id else experiment_id, run_name="train",
                           log_system_metrics=True) if main else None
    uploader = None
    try:
        callbacks = [CheckpointSeal()]  # every rank, before the uploader
        if main:
            _log_run_inputs(params, df, train_path, data_sha, pipeline_run, efficiency, resume_from, encoding)
            checkpoints.record_run(ckpt_dir, key, run.info.run_id)
            callbacks.append(MlflowMetrics(run.info.run_id))
            if params.upload_checkpoints:
                uploader = CheckpointUploader(run.info.run_id)
                callbacks.append(uploader)
        trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator,
                          processing_class=tokenizer, callbacks=callbacks)
        tokens_before = _tokens_at(resume_from)  # read now: the Trainer may rotate that checkpoint away
        start = time.perf_counter()
        result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        seconds = time.perf_counter() - start
        uploaded = uploader.wait() if uploader else []
        start_step = _step_of(resume_from)
        tokens = trainer.state.num_input_tokens_seen - tokens_before
        tokens_per_s = tokens / max(seconds, 1e-9)
        curve = [(e["step"], e["loss"], e.get("learning_rate", 0.0)) for e in trainer.state.log_history if "loss" in e]
        model.config.use_cache = True  # for generation after training
        trainer.save_model(str(model_dir))  # gathers ZeRO-3 partitions before writing
        if not main:
            return TrainSummary("", int(result.global_step), 0.0, tokens_per_s, 0, str(model_dir))
        tokenizer.save_pretrained(model_dir)
        final_loss = curve[-1][1] if curve else float(result.training_loss)
        mlflow.log_metrics({"final_loss": final_loss, "train_tokens_per_second": tokens_per_s,
                            "train_real_tokens": float(tokens)}, step=int(result.global_step))
        summary = TrainSummary(run.info.run_id, int(result.global_step), final_loss, tokens_per_s,
                               _count_parameters(model), str(model_dir), start_step,
                               round(efficiency, 4), params.deepspeed, len(uploaded), encoding.to_dict())
    finally:
        if run is not None:
            mlflow.end_run()
    shutil.rmtree(ckpt_dir)  # the run finished: nothing left to resume
    _write_outputs(summary, experiment_id, mlflow_params, run_file, metrics_path, curve_path, curve)
    return summary


def _log_run_inputs(params: TrainParams, df: pd.DataFrame, train_path: Path, data_sha: str, pipeline_run: str,
                    efficiency: float, resume_from: Path | None, encoding: EncodingReport) -> None:
    """Tags, params, the training data (digest = its sha256) and how its records fitted, on the active run."""
    import mlflow

    mlflow.set_tags({"dagllm.stage": "train", "dagllm.pipeline_run": pipeline_run,
                     "dagllm.base_model": params.model, "dagllm.deepspeed": str(params.deepspeed)})
    if resume_from is not None:
        mlflow.set_tag(f"dagllm.resumed_at_step_{_step_of(resume_from)}", "true")
        return  # params and input were logged by the first attempt of this run
    mlflow.log_params({f"train.{k}": v for k, v in params.model_dump().items() if k != "tiny"})
    mlflow.log_params({f"train.tiny.{k}": v for k, v in params.tiny.model_dump().items()})
    mlflow.log_params({"data.sha256": data_sha, "data.records": len(df),
                       "train.packing_efficiency": round(efficiency, 4)})
    mlflow.log_metrics(encoding.metrics(), step=0)  # encoding.<count> and encoding.<task>.<count>
    mlflow.log_dict(encoding.to_dict(), "encoding.json")
    dataset = mlflow.data.from_pandas(df, source=str(Path(train_path).resolve()), name="balanced-train",
                                      digest=data_sha[:32])
    mlflow.log_input(dataset, context="training", tags={"sha256": data_sha})


def _count_parameters(model) -> int:
    # under ZeRO-3 each parameter is a partition; ds_numel is its full size
    return sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())


def _step_of(checkpoint: Path | None) -> int:
    return int(checkpoint.name.split("-")[-1]) if checkpoint else 0


def _tokens_at(checkpoint: Path | None) -> int:
    """Real tokens seen up to ``checkpoint`` (from its trainer state), 0 for a fresh run."""
    if checkpoint is None:
        return 0
    from dagllm.io import read_json

    return int(read_json(checkpoint / "trainer_state.json").get("num_input_tokens_seen", 0))


def _write_outputs(summary: TrainSummary, experiment_id: str, mlflow_params: MlflowParams, run_file: Path,
                   metrics_path: Path, curve_path: Path, curve: list[tuple]) -> None:
    write_json(run_file, {"run_id": summary.run_id, "experiment_id": experiment_id,
                          "tracking_uri": mlflow_params.tracking_uri})
    write_json(metrics_path, {"final_loss": summary.final_loss, "steps": summary.steps,
                              "tokens_per_second": round(summary.tokens_per_second, 1),
                              "resumed_from_step": summary.resumed_from_step,
                              "packing_efficiency": summary.packing_efficiency, "encoding": summary.encoding})
    curve_path.parent.mkdir(parents=True, exist_ok=True)
    with open(curve_path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "loss", "learning_rate"])
        w.writerows(curve)
