"""Pipeline stages as plain functions: typed params and paths in, a summary object out.

Nothing here imports kfp or dvc: the CLI, the DVC stages and the KFP components all call these.
"""
