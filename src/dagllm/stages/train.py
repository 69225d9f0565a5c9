"""Train: full-parameter fine-tuning of the preset's model on the balanced training split.

One process by default (:func:`dagllm.training.finetune.fine_tune` here); ``train.num_processes``
> 1 or ``train.num_nodes`` > 1 starts this node's ranks through torchrun
(:mod:`dagllm.training.launch`). The model is saved in Hugging Face format to ``model_dir``, the
MLflow run id to ``run_file`` (evaluate and register log to the same run), the final figures and
how the records fitted ``max_seq_len`` per task (``encoding``, see docs/training.md) to
``metrics_path`` and the loss curve to ``curve_path``. Several nodes on Kubeflow: the KFP train
step creates a TrainJob instead (:mod:`dagllm.training.trainjob`).
"""

from __future__ import annotations

from pathlib import Path

from dagllm.params import MlflowParams, TrainParams
from dagllm.training.finetune import TrainSummary


def run_train(params: TrainParams, mlflow_params: MlflowParams, train_path: Path, model_dir: Path, run_file: Path,
              metrics_path: Path, curve_path: Path, pipeline_run: str = "local",
              checkpoint_dir: Path | None = None) -> TrainSummary:
    """Train at the scale ``params`` asks for; returns rank 0's summary.

    Raises:
        ValueError: no training records, or a pretrained preset that cannot be found locally.
        LaunchError: a rank failed (its output is above, on this process's stdout/stderr).
    """
    from dagllm.training import distributed, launch
    from dagllm.training.finetune import fine_tune

    run = fine_tune if launch.world_size(params) == 1 or distributed.under_launcher() else launch.run_ranks
    return run(params, mlflow_params, train_path, model_dir, run_file, metrics_path, curve_path, pipeline_run,
               checkpoint_dir)
