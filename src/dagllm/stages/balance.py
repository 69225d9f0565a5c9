"""Balance: dedup, the seeded mixing policy and the task-stratified split (:mod:`dagllm.data.mixing`),
then the balanced point of the quality gate; writes both splits, ``balance.json`` and the mix chart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dagllm.data.mixing import BalanceSummary, balance_records, counts_of
from dagllm.io import read_parquet, write_json, write_parquet
from dagllm.params import BalanceParams


def plot_mix(summary: BalanceSummary, path: Path) -> Path:
    """A horizontal bar chart of records per task before and after balancing (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted(summary.before)
    y = np.arange(len(tasks))
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(tasks) + 1.5))
    ax.barh(y - 0.2, [summary.before[t] for t in tasks], height=0.4, label="before", color="#bbbbbb")
    ax.barh(y + 0.2, [summary.after.get(t, 0) for t in tasks], height=0.4, label="train + validation",
            color="#3b6ea8")
    ax.set_yticks(y, tasks)
    ax.set_xlabel("records")
    ax.set_title(f"training mix ({summary.policy['mixing']}, cap {summary.policy['per_task_cap']})")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})  # no version stamp: same bytes every run
    plt.close(fig)
    return path


def run_balance(params: BalanceParams, records: Path, train_out: Path, val_out: Path, report_path: Path,
                chart_path: Path, gate=None) -> BalanceSummary:
    """Balance ``records`` into train/validation; ``gate(train, val)`` (the balanced point of the
    quality gate) may drop rows and raises when the mix fails."""
    df = read_parquet(records, "decontaminate")
    train, val, summary = balance_records(df, params)
    if gate is not None:
        train, val, summary.gate = gate(train, val)
        both = pd.concat([train, val])
        summary.after, summary.train, summary.validation = counts_of(both, "task"), counts_of(train, "task"), counts_of(val, "task")
        summary.licenses = counts_of(both, "license")
        summary.categories["after"] = counts_of(both, "category")
    write_parquet(train, train_out)
    write_parquet(val, val_out)
    write_json(report_path, summary.to_dict())
    plot_mix(summary, chart_path)
    return summary
