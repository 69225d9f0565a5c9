"""Balance: dedup, the label cap, the seeded mixing policy and the task-stratified split
(:mod:`dagllm.data.mixing`), then the balanced point of the quality gate; writes both splits,
``balance.json`` (with the label counts per task and the skewed tasks) and the mix chart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dagllm.data.mixing import BalanceSummary, balance_records, counts_of, label_summary
from dagllm.io import read_parquet, write_json, write_parquet
from dagllm.params import BalanceParams


def plot_mix(summary: BalanceSummary, path: Path) -> Path:
    """Records per task before and after balancing, and (when tasks carry labels) the share of each
    such task's most common label before and after, against ``balance.labels.skew_warn`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted(summary.before)
    labelled = sorted(summary.labels)
    heights = [0.45 * len(tasks) + 1.5] + ([0.45 * len(labelled) + 1.2] if labelled else [])
    fig, axes = plt.subplots(len(heights), 1, figsize=(8, sum(heights)), height_ratios=heights, squeeze=False)
    ax = axes[0][0]
    y = np.arange(len(tasks))
    ax.barh(y - 0.2, [summary.before[t] for t in tasks], height=0.4, label="before", color="#bbbbbb")
    ax.barh(y + 0.2, [summary.after.get(t, 0) for t in tasks], height=0.4, label="train + validation",
            color="#3b6ea8")
    ax.set_yticks(y, tasks)
    ax.set_xlabel("records")
    ax.set_title(f"training mix ({summary.policy['mixing']}, cap {summary.policy['per_task_cap']})")
    ax.legend()
    if labelled:
        _plot_label_shares(axes[1][0], summary, labelled)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})  # no version stamp: same bytes every run
    plt.close(fig)
    return path


def _plot_label_shares(ax, summary: BalanceSummary, tasks: list[str]) -> None:
    y = np.arange(len(tasks))
    share = {p: [summary.labels[t].get(f"top_{p}", {}).get("share", 0.0) for t in tasks] for p in ("before", "after")}
    ax.barh(y - 0.2, share["before"], height=0.4, label="before", color="#bbbbbb")
    ax.barh(y + 0.2, share["after"], height=0.4, label="train + validation", color="#3b6ea8")
    labels = summary.policy.get("labels", {})
    ax.axvline(labels.get("skew_warn", 1.0), color="#c0392b", linestyle="--", label="skew_warn")
    ax.set_yticks(y, tasks)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the most common label")
    cap = labels.get("max_share")
    ax.set_title(f"label balance (max_share {cap if cap is not None else 'none'})")
    ax.legend(loc="best")


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
        summary.labels, summary.label_skew = label_summary(df, both, params.labels.skew_warn)
    write_parquet(train, train_out)
    write_parquet(val, val_out)
    write_json(report_path, summary.to_dict())
    plot_mix(summary, chart_path)
    return summary
