"""Fine-tuning: one rank's training, the launcher that starts the ranks, and their building blocks.

:mod:`dagllm.stages.train` chooses between :mod:`.finetune` (one process) and :mod:`.launch`.

- :mod:`.finetune`: full-parameter fine-tuning of one rank with transformers (and DeepSpeed).
- :mod:`.launch`: N ranks on one machine, or one node of N, through torchrun.
- :mod:`.trainjob`: several nodes from the DAG's train step: a Kubeflow Trainer TrainJob.
- :mod:`.prompt`, :mod:`.encoding`: the Korean prompt wrapper, token ids and prompt-masked labels.
- :mod:`.packing`: several examples per sequence without cross-contamination, and the padded baseline.
- :mod:`.presets`: model presets (``tiny``, Polyglot-Ko 1.3b / 5.8b) from ``presets.yaml``.
- :mod:`.distributed`: DeepSpeed JSON configs and the single-process (CPU, gloo) set-up.
- :mod:`.checkpoints`: periodic checkpoints and resume after a crash.
- :mod:`.callbacks`: the MLflow callback and off-thread checkpoint uploads.
"""
