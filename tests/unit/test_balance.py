"""Balance: dedup within and across tasks, the seeded mixing policy, the stratified split, reports."""

import json
import random

import pandas as pd
import pytest

from dagllm.data.mixing import balance_frame, balance_records, dedup_frame, task_targets
from dagllm.data.records import RECORD_COLUMNS
from dagllm.params import BalanceParams, DedupParams
from dagllm.stages.balance import run_balance

WORDS = "하늘 바다 구름 나무 사과 기차 학교 친구 음악 영화 도서관 커피 바람 노을 강물 시장 골목 축구 편지 우산".split()


def _records(sizes={"a": 50, "b": 7}, category={"a": "cat_x", "b": "cat_y"}) -> pd.DataFrame:
    rows = []
    for task, n in sizes.items():
        rng = random.Random(task)
        for i in range(n):
            text = " ".join(rng.choice(WORDS) + str(rng.randrange(1000)) for _ in range(8))
            rows.append({"id": f"{task}{i:03d}", "record_id": f"c{task}{i}", "task": task, "category": category[task],
                         "template_id": "t", "template_kind": "instruction", "instruction": f"{task} 과제: 다음 글을 요약하세요.",
                         "input": text, "output": f"요약 {i}", "source": "s", "split": "train",
                         "license": "CC BY 4.0" if i % 3 else "CC0"})
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


def test_cap_split_and_determinism():
    p = BalanceParams(seed=3, per_task_cap=20, val_fraction=0.1)
    train, val = balance_frame(_records(), p)
    both = pd.concat([train, val])
    assert both.groupby("task").size().to_dict() == {"a": 20, "b": 7}
    assert val.groupby("task").size().to_dict() == {"a": 2, "b": 1}
    assert not set(train["id"]) & set(val["id"])
    again_train, again_val = balance_frame(_records().sample(frac=1, random_state=9), p)
    assert again_train["id"].tolist() == train["id"].tolist()
    assert again_val["id"].tolist() == val["id"].tolist()
    other, _ = balance_frame(_records(), BalanceParams(seed=4, per_task_cap=20, val_fraction=0.1))
    assert other["id"].tolist() != train["id"].tolist()


def test_same_seed_same_mix_across_runs(tmp_path):
    p = BalanceParams(seed=11, per_task_cap=30, mixing="proportional", temperature=2.0, total=40)
    src = tmp_path / "in.parquet"
    _records().to_parquet(src, index=False)
    outs = []
    for run in ("one", "two"):
        d = tmp_path / run
        run_balance(p, src, d / "train.parquet", d / "val.parquet", d / "balance.json", d / "mix.png")
        outs.append(d)
    for name in ("train.parquet", "val.parquet", "balance.json", "mix.png"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    report = json.loads((outs[0] / "balance.json").read_text())
    assert report["before"] == {"a": 50, "b": 7} and sum(report["after"].values()) == report["total"]["train"] + report["total"]["validation"]
    assert report["categories"]["before"] == {"cat_x": 50, "cat_y": 7}
    assert sum(report["licenses"].values()) == sum(report["after"].values())
    assert (outs[0] / "mix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_proportional_mixing_temperature_and_category_weights():
    sizes, cats = {"a": 900, "b": 100}, {"a": "x", "b": "y"}
    flat = task_targets(sizes, cats, BalanceParams(mixing="proportional", per_task_cap=5000, total=1000))
    assert flat == {"a": 900, "b": 100}
    warm = task_targets(sizes, cats, BalanceParams(mixing="proportional", per_task_cap=5000, total=1000, temperature=2.0))
    assert warm == {"a": 750, "b": 250}  # 30:10 after the square root
    capped = task_targets(sizes, cats, BalanceParams(mixing="proportional", per_task_cap=100, total=1000))
    assert capped == {"a": 500, "b": 500}
    weighted = task_targets(sizes, cats, BalanceParams(mixing="proportional", per_task_cap=100, total=1000,
                                                       category_weights={"y": 3.0}))
    assert weighted == {"a": 250, "b": 750}


def test_upsampling_only_when_asked():
    p = dict(mixing="proportional", per_task_cap=50, total=100, val_fraction=0.1, seed=1)
    train, val = balance_frame(_records(), BalanceParams(**p))
    assert pd.concat([train, val]).groupby("task").size().to_dict() == {"a": 50, "b": 7}  # b clipped to what it has
    train, val = balance_frame(_records(), BalanceParams(**p, upsample=True))
    counts = pd.concat([train, val]).groupby("task").size().to_dict()
    assert counts == task_targets({"a": 50, "b": 7}, {"a": "cat_x", "b": "cat_y"}, BalanceParams(**p)) == {"a": 88, "b": 12}
    assert train[train["task"] == "b"]["id"].nunique() == 6 and not set(val["id"]) & set(train["id"])


def test_exact_and_near_duplicates_within_and_across_tasks():
    df = _records()
    a0 = df.loc[df["id"] == "a000"].iloc[0]
    df.loc[df["id"] == "a010", ["instruction", "input", "output"]] = [  # exact after NFKC/case/space normalising
        a0["instruction"].upper() + "  ", a0["input"].replace(" ", "  "), a0["output"]]
    df.loc[df["id"] == "b003", ["instruction", "input", "output"]] = [  # near copy in another task
        a0["instruction"], a0["input"] + " 그리고", a0["output"]]
    kept, report = dedup_frame(df, DedupParams(), seed=0)
    assert (report.exact, report.near) == (1, 1)
    assert (report.within_task, report.across_tasks) == (1, 1)
    assert {(e["dropped"], e["kept"], e["kind"]) for e in report.examples} == {("a010", "a000", "exact"),
                                                                               ("b003", "a000", "near")}
    assert len(kept) == len(df) - 2
    none, r = dedup_frame(df, DedupParams(exact=False, near=False), seed=0)
    assert len(none) == len(df) and r.exact == r.near == 0


@pytest.mark.parametrize("order", [0, 1])
def test_balance_records_is_independent_of_row_order(order):
    df = _records().sample(frac=1, random_state=order)
    train, val, summary = balance_records(df, BalanceParams(per_task_cap=20, seed=5))
    base_train, _, _ = balance_records(_records(), BalanceParams(per_task_cap=20, seed=5))
    assert train["id"].tolist() == base_train["id"].tolist()
    assert summary.duplicates.exact == 0
