"""Fine-tuning building blocks used by :mod:`dagllm.stages.train`.

- :mod:`.packing`: several examples per sequence without cross-contamination, and the padded baseline.
- :mod:`.presets`: model presets (``tiny``, Polyglot-Ko 1.3b / 5.8b) from ``presets.yaml``.
- :mod:`.distributed`: DeepSpeed JSON configs and the single-process (CPU, gloo) set-up.
- :mod:`.checkpoints`: periodic checkpoints and resume after a crash.
- :mod:`.tracking`: the MLflow callback and off-thread checkpoint uploads.
"""
