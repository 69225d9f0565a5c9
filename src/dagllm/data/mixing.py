"""The training mix: dedup, a seeded mixing policy and a split stratified by task.

1. Exact duplicates (normalised instruction + input + output: NFKC, casefold, collapsed
   whitespace) and near duplicates (MinHash LSH over character shingles, estimated Jaccard >=
   ``dedup.near_threshold``) are removed within and across tasks; of each group the record with
   the smallest id stays, so the choice does not depend on row order.
2. Each task gets a target size: ``cap`` mixing takes ``min(n, per_task_cap)``; ``proportional``
   mixing (FLAN's examples-proportional mixing) gives task t the share
   ``w_category * min(n_t, cap) ** (1 / temperature)`` of ``total`` records. A target above what a
   task has is clipped unless ``upsample`` is set, in which case training records are repeated.
3. Within each task, records are shuffled with the seed (after sorting by id) and the first
   ``val_fraction`` go to validation (never repeated), the rest to train.

Labels (the records' ``label`` column, set in tasks with ``labels``) are counted per task before
and after balancing. With ``labels.max_share`` set, before step 2 every label of a task keeps at
most ``m`` records, ``m`` the largest count with ``m <= max_share * kept`` (``kept`` what the task
keeps then), chosen per (task, label) by a generator seeded from ``seed`` and the pair, among the
records sorted by id; the shuffle of step 3 then interleaves the labels so that the per-task cap
and the validation split keep those shares (within a record). A task whose most common label
exceeds ``labels.skew_warn`` of the mix is warned about and listed in the summary.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dagllm.data.hashing import char_ngram_hashes, clusters, lsh_pairs, minhash
from dagllm.data.records import label_counts, top_label
from dagllm.data.text import normalise
from dagllm.io import stable_hash
from dagllm.params import BalanceParams, DedupParams

log = logging.getLogger(__name__)
SKEW_KEY = "balance.labels.skew_warn"
CAP_KEY = "balance.labels.max_share"


@dataclass
class DedupReport:
    exact: int = 0
    near: int = 0
    within_task: int = 0
    across_tasks: int = 0
    examples: list[dict] = field(default_factory=list)


@dataclass
class BalanceSummary:
    policy: dict
    before: dict[str, int]
    after: dict[str, int]
    train: dict[str, int]
    validation: dict[str, int]
    categories: dict[str, dict[str, int]]
    licenses: dict[str, int]
    duplicates: DedupReport
    gate: dict | None = None
    labels: dict[str, dict] = field(default_factory=dict)
    label_skew: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "duplicates"}
        d["duplicates"] = self.duplicates.__dict__
        d["total"] = {"before": sum(self.before.values()), "train": sum(self.train.values()),
                      "validation": sum(self.validation.values()),
                      "duplicates_removed": self.duplicates.exact + self.duplicates.near}
        return d

    def lines(self) -> list[str]:
        return [f"balanced {sum(self.before.values())} -> train {sum(self.train.values())}, "
                f"validation {sum(self.validation.values())} records over {len(self.after)} tasks "
                f"({self.duplicates.exact} exact and {self.duplicates.near} near duplicates removed)"
                + (f"; label skew above {SKEW_KEY} in {len(self.label_skew)} task(s) (warned above)"
                   if self.label_skew else "")]


def _text(df: pd.DataFrame) -> list[str]:
    return [normalise(f"{a}\n{b}\n{c}") for a, b, c in
            zip(df["instruction"].fillna(""), df["input"].fillna(""), df["output"].fillna(""), strict=True)]


def dedup_frame(df: pd.DataFrame, params: DedupParams, seed: int) -> tuple[pd.DataFrame, DedupReport]:
    """Remove exact and near duplicates; the smallest id of each group stays."""
    df = df.sort_values("id", kind="stable").reset_index(drop=True)
    report = DedupReport()
    texts = _text(df)
    keep_of = np.arange(len(df))
    if params.exact and len(df):
        codes, uniques = pd.factorize(pd.Series(texts))
        first = np.full(len(uniques), len(df), dtype=np.int64)
        np.minimum.at(first, codes, np.arange(len(df)))  # rows are sorted by id: first = smallest id
        keep_of = first[codes]
    exact_dup = keep_of != np.arange(len(df))
    report.exact = int(exact_dup.sum())
    if params.near and len(df):
        idx = np.flatnonzero(~exact_dup)
        h, off = char_ngram_hashes([texts[i] for i in idx], params.shingle_chars, pad_short=True)
        roots = clusters(len(idx), lsh_pairs(minhash(h, off, params.num_perm, seed), params.near_threshold))
        near = roots != np.arange(len(idx))
        keep_of[idx[near]] = idx[roots[near]]
        report.near = int(near.sum())
    dup = keep_of != np.arange(len(df))
    same_task = df["task"].to_numpy()[dup] == df["task"].to_numpy()[keep_of[dup]]
    report.within_task, report.across_tasks = int(same_task.sum()), int((~same_task).sum())
    for i in np.flatnonzero(dup)[:20].tolist():
        report.examples.append({"dropped": df.at[i, "id"], "kept": df.at[int(keep_of[i]), "id"],
                                "kind": "exact" if exact_dup[i] else "near", "task": df.at[i, "task"],
                                "kept_task": df.at[int(keep_of[i]), "task"]})
    return df[~dup].reset_index(drop=True), report


def task_targets(sizes: dict[str, int], categories: dict[str, str], params: BalanceParams) -> dict[str, int]:
    """Records per task in the mix (before clipping to what each task has)."""
    capped = {t: min(n, params.per_task_cap) for t, n in sizes.items()}
    if params.mixing == "cap" or not capped:
        return capped
    weight = {t: params.category_weights.get(categories[t], 1.0) for t in capped}
    # log-space: w * c ** (1 / T) overflows a float for a small T or a large weight (5000 ** 100);
    # the shares only need each rate relative to the largest
    log_rate = {t: math.log(weight[t]) + math.log(c) / params.temperature
                for t, c in capped.items() if weight[t] > 0 and c > 0}
    if not log_rate:
        if any(capped.values()):  # params' empty_mix_problem refuses this at check; here for direct callers
            raise ValueError(BalanceParams.empty_mix_problem(params, categories) or
                             "balance.category_weights: weight 0 for every task in the mix")
        return dict.fromkeys(capped, 0)
    top = max(log_rate.values())
    rate = {t: math.exp(v - top) for t, v in log_rate.items()}
    total = params.total or sum(capped.values())
    norm = math.fsum(rate.values())
    return {t: int(round(total * rate[t] / norm)) if t in rate else 0 for t in capped}


def label_quota(counts: dict[str, int], max_share: float) -> int:
    """The most records one label may keep: the largest ``m`` with ``m <= max_share * sum(min(c, m))``.

    Where no ``m >= 1`` fits (``max_share`` below 1 / number of labels), every label keeps as many
    as the rarest has, which is as even as the task can be.
    """
    sizes = np.array(sorted(counts.values()), dtype=np.int64)
    m = int(sizes[-1])
    while m >= 1:  # the kept total only falls with m: step down to the largest m that fits
        fit = math.floor(max_share * np.minimum(sizes, m).sum() + 1e-9)
        if fit >= m:
            return m
        m = fit
    return int(sizes[0])


def _label_rng(seed: int, task: str, label: str) -> np.random.Generator:
    return np.random.default_rng([seed, int(stable_hash(task, label), 16)])


def cap_labels(df: pd.DataFrame, max_share: float, seed: int) -> pd.DataFrame:
    """Down-sample the over-represented labels of each task to ``max_share`` (see the module doc).

    The records a label keeps depend only on ``seed``, the task, the label and the record ids.
    """
    if "label" not in df or not len(df):
        return df
    drop: list[np.ndarray] = []
    for task, counts in label_counts(df).items():
        if len(counts) < 2:
            continue  # one label: nothing to balance against
        quota = label_quota(counts, max_share)
        for label, n in counts.items():
            if n > quota:
                rows = df[(df["task"] == task) & (df["label"] == label)].sort_values("id", kind="stable")
                order = _label_rng(seed, task, label).permutation(n)
                drop.append(rows["id"].to_numpy()[order[quota:]])
    if not drop:
        return df
    return df[~df["id"].isin(np.concatenate(drop))].reset_index(drop=True)


def _interleave_labels(group: pd.DataFrame) -> pd.DataFrame:
    """Reorder a shuffled task so that every prefix holds its labels in their shares (stable)."""
    label = group["label"].fillna("\0")
    rank = group.groupby(label, sort=False).cumcount().to_numpy()
    size = label.map(label.value_counts()).to_numpy()
    return group.iloc[np.argsort((rank + 0.5) / size, kind="stable")]


def label_summary(before: pd.DataFrame, after: pd.DataFrame, skew_warn: float) -> tuple[dict[str, dict], list[dict]]:
    """Per task with labels: counts before/after and the top label's share; and the skewed tasks.

    A task is skewed when its most common label in ``after`` (the mix) exceeds ``skew_warn``.
    """
    was, now = label_counts(before), label_counts(after)
    out: dict[str, dict] = {}
    skewed: list[dict] = []
    for task in sorted(set(was) | set(now)):
        entry: dict = {"before": was.get(task, {}), "after": now.get(task, {})}
        for point in ("before", "after"):
            if entry[point]:
                label, share = top_label(entry[point])
                entry[f"top_{point}"] = {"label": label, "share": round(share, 4)}
                if point == "after" and share > skew_warn:
                    skewed.append({"task": task, "label": label, "share": round(share, 4), "skew_warn": skew_warn})
        out[task] = entry
    return out, skewed


def skew_message(w: dict) -> str:
    """One console line about a skewed task, naming the keys to set."""
    return (f"warning: {w['task']}: label {w['label']!r} is {w['share']:.1%} of the task's records "
            f"(above {SKEW_KEY} {w['skew_warn']}); set {CAP_KEY} to cap it")


def balance_frame(df: pd.DataFrame, params: BalanceParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mix and split ``df`` (already deduplicated), seeded; independent of the input row order."""
    rng = np.random.default_rng(params.seed)
    interleave = params.labels.max_share is not None and "label" in df
    sizes = df.groupby("task").size().to_dict()
    categories = (df.groupby("task")["category"].first().to_dict() if "category" in df
                  else dict.fromkeys(sizes, ""))
    targets = task_targets(sizes, categories, params)
    train_parts, val_parts = [], []
    for task, group in sorted(df.groupby("task"), key=lambda kv: kv[0]):
        group = group.sort_values("id", kind="stable")
        group = group.iloc[rng.permutation(len(group))]
        if interleave and group["label"].notna().any():
            group = _interleave_labels(group)
        target = targets[task]
        chosen = group.head(target)
        n_val = max(int(round(len(chosen) * params.val_fraction)), 1) if len(chosen) >= 2 else 0
        val_parts.append(chosen.head(n_val))
        train = chosen.iloc[n_val:]
        if params.upsample and target > len(group) and len(train):
            want = target - n_val
            repeats = np.resize(np.arange(len(train)), want)  # whole copies first, then a prefix
            train = train.iloc[np.sort(repeats, kind="stable")]
        train_parts.append(train)
    train = pd.concat(train_parts, ignore_index=True) if train_parts else df.head(0)
    val = pd.concat(val_parts, ignore_index=True) if val_parts else df.head(0)
    return train, val


def counts_of(df: pd.DataFrame, column: str) -> dict[str, int]:
    """Rows per value of ``column``, sorted by value."""
    return dict(sorted(Counter(df[column]).items()))


def balance_records(df: pd.DataFrame, params: BalanceParams) -> tuple[pd.DataFrame, pd.DataFrame, BalanceSummary]:
    """Dedup, cap labels, mix and split; the summary carries before/after counts of tasks and
    labels, the skewed tasks and the licence mix."""
    deduped, dups = dedup_frame(df, params.dedup, params.seed)
    if params.labels.max_share is not None:
        deduped = cap_labels(deduped, params.labels.max_share, params.seed)
    train, val = balance_frame(deduped, params)
    both = pd.concat([train, val])
    cats = {"before": counts_of(df, "category"), "after": counts_of(both, "category")} if len(df) else {}
    policy = params.model_dump(mode="json")
    summary = BalanceSummary(policy, counts_of(df, "task"), counts_of(both, "task"), counts_of(train, "task"),
                             counts_of(val, "task"), cats, counts_of(both, "license"), dups)
    set_labels(summary, df, both, params.labels.skew_warn)
    return train, val, summary


def set_labels(summary: BalanceSummary, before: pd.DataFrame, after: pd.DataFrame, skew_warn: float) -> None:
    """Fill the summary's label counts and skewed tasks; log a warning per skewed task."""
    summary.labels, summary.label_skew = label_summary(before, after, skew_warn)
    for w in summary.label_skew:
        log.warning(skew_message(w))


