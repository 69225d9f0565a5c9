"""Balance: a seeded per-task cap, then a train/validation split stratified by task."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dagllm.io import read_parquet, write_json, write_parquet
from dagllm.params import BalanceParams


@dataclass
class BalanceSummary:
    before: dict[str, int]
    after: dict[str, int]
    train: dict[str, int]
    validation: dict[str, int]
    licenses: dict[str, int]

    def to_dict(self) -> dict:
        return {**self.__dict__, "total": {"before": sum(self.before.values()), "train": sum(self.train.values()),
                                           "validation": sum(self.validation.values())}}

    def lines(self) -> list[str]:
        return [f"balanced {sum(self.before.values())} -> train {sum(self.train.values())}, "
                f"validation {sum(self.validation.values())} records over {len(self.after)} tasks"]


def balance_frame(df: pd.DataFrame, params: BalanceParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cap each task at ``per_task_cap`` and split each task into train/validation, seeded.

    The result depends only on the records' ids and the seed, not on the input row order.
    """
    rng = np.random.default_rng(params.seed)
    train_parts, val_parts = [], []
    for _, group in sorted(df.groupby("task"), key=lambda kv: kv[0]):
        group = group.sort_values("id", kind="stable")
        group = group.iloc[rng.permutation(len(group))].head(params.per_task_cap)
        n_val = int(round(len(group) * params.val_fraction)) if len(group) > 1 else 0
        n_val = max(n_val, 1) if len(group) >= 2 else 0
        val_parts.append(group.head(n_val))
        train_parts.append(group.iloc[n_val:])
    train = pd.concat(train_parts, ignore_index=True) if train_parts else df.head(0)
    val = pd.concat(val_parts, ignore_index=True) if val_parts else df.head(0)
    return train, val


def _counts(df: pd.DataFrame, column: str) -> dict[str, int]:
    return dict(sorted(Counter(df[column]).items()))


def run_balance(params: BalanceParams, rendered: Path, train_out: Path, val_out: Path,
                report_path: Path) -> BalanceSummary:
    df = read_parquet(rendered, "render")
    train, val = balance_frame(df, params)
    write_parquet(train, train_out)
    write_parquet(val, val_out)
    both = pd.concat([train, val])
    summary = BalanceSummary(_counts(df, "task"), _counts(both, "task"), _counts(train, "task"),
                             _counts(val, "task"), _counts(both, "license"))
    write_json(report_path, summary.to_dict())
    return summary
