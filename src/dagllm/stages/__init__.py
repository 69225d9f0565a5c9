"""Pipeline stages as plain functions: typed params and paths in, a summary object out.

Each module here is a coordinator: it reads the stage's inputs, calls the library packages
(:mod:`dagllm.data`, :mod:`dagllm.training`, :mod:`dagllm.evaluation`, :mod:`dagllm.registry`),
writes the stage's outputs and returns its summary. A stage never imports another stage, and
nothing here imports kfp or dvc: the CLI, the DVC stages and the KFP components all call these.
"""
