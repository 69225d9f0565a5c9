"""Label balance inside a task: the records' label column, counts, the seeded cap, skew warnings."""

import json
import logging
import random
from pathlib import Path

import pandas as pd
import pytest

from dagllm.data.catalog import Task
from dagllm.data.mixing import balance_records, cap_labels, label_quota
from dagllm.data.records import label_counts
from dagllm.data.records import META_COLUMNS, RECORD_COLUMNS, render_task
from dagllm.params import BalanceParams, DedupParams, LabelBalanceParams, ParamsError, RenderParams, load_params
from dagllm.stages.balance import run_balance

WORDS = "하늘 바다 구름 나무 사과 기차 학교 친구 음악 영화 도서관 커피 바람 노을 강물 시장 골목 축구 편지 우산".split()
PARAMS_FILE = Path(__file__).resolve().parents[2] / "params.yaml"
NO_DEDUP = DedupParams(exact=False, near=False)


def _records(labels: dict[str, dict[str | None, int]]) -> pd.DataFrame:
    """``task -> {label: records}``; a None label is a task without labels."""
    rows = []
    for task, counts in labels.items():
        rng = random.Random(task)
        i = 0
        for label, n in counts.items():
            for _ in range(n):
                text = " ".join(rng.choice(WORDS) + str(rng.randrange(10000)) for _ in range(8))
                rows.append({"id": f"{task}{i:03d}", "record_id": f"c{task}{i}", "task": task, "category": "c",
                             "template_id": "t", "template_kind": "instruction", "instruction": "분류하세요.",
                             "input": text, "output": label or f"글 {i}", "choices": "[]", "label": label,
                             "source": "s", "split": "train", "license": "CC0"})
                i += 1
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


SKEWED = {"s": {"긍정": 97, "부정": 3}, "g": {None: 20}}


def _params(**labels) -> BalanceParams:
    return BalanceParams(seed=7, per_task_cap=5000, dedup=NO_DEDUP, labels=LabelBalanceParams(**labels))


def _mix_counts(train: pd.DataFrame, val: pd.DataFrame) -> dict:
    return label_counts(pd.concat([train, val]))


def test_label_counts_per_task_leave_unlabelled_tasks_out():
    assert label_counts(_records(SKEWED)) == {"s": {"긍정": 97, "부정": 3}}


@pytest.mark.parametrize(("counts", "share", "quota"), [
    ({"a": 258, "b": 8}, 0.8, 32),   # 32 <= 0.8 * (32 + 8); 33 > 0.8 * 41
    ({"a": 258, "b": 8}, 0.5, 8),    # equal
    ({"a": 258, "b": 8}, 1.0, 258),  # no cap
    ({"a": 97, "b": 3}, 0.75, 9),    # 9 <= 0.75 * 12
    ({"a": 5, "b": 3, "c": 1}, 0.2, 1),  # below 1/3: every label as many as the rarest
])
def test_label_quota_arithmetic(counts, share, quota):
    assert label_quota(counts, share) == quota


@pytest.mark.parametrize(("share", "kept"), [(0.5, {"긍정": 3, "부정": 3}), (0.75, {"긍정": 9, "부정": 3}),
                                             (0.9, {"긍정": 27, "부정": 3})])
def test_cap_reduces_a_97_3_task_to_the_share(share, kept):
    train, val, summary = balance_records(_records(SKEWED), _params(max_share=share))
    assert _mix_counts(train, val) == {"s": kept}
    assert summary.labels["s"]["before"] == {"긍정": 97, "부정": 3}
    assert summary.labels["s"]["after"] == kept
    assert summary.labels["s"]["top_after"] == {"label": "긍정", "share": share}
    assert summary.after["g"] == 20  # a task without labels is untouched


def test_the_seed_decides_which_rows_and_the_same_seed_the_same_rows():
    df = _records(SKEWED)
    one = cap_labels(df, 0.5, seed=1)
    again = cap_labels(df.sample(frac=1, random_state=3), 0.5, seed=1)
    other = cap_labels(df, 0.5, seed=2)
    assert sorted(one["id"]) == sorted(again["id"])
    assert sorted(one["id"]) != sorted(other["id"])
    minority = set(df.loc[df["label"] == "부정", "id"])
    assert minority <= set(one["id"]) and minority <= set(other["id"])  # the rare label is never dropped
    alone = cap_labels(_records({"s": SKEWED["s"]}), 0.5, seed=1)  # other tasks do not change the choice
    assert sorted(alone["id"]) == sorted(one.loc[one["task"] == "s", "id"])


def test_per_task_cap_keeps_the_capped_shares():
    p = BalanceParams(seed=7, per_task_cap=10, dedup=NO_DEDUP, labels=LabelBalanceParams(max_share=0.9))
    train, val, _ = balance_records(_records(SKEWED), p)
    assert _mix_counts(train, val) == {"s": {"긍정": 9, "부정": 1}}  # 10 of the 27 + 3 pool, in its shares


def test_no_cap_by_default_keeps_todays_mix():
    df = _records(SKEWED)
    train, val, summary = balance_records(df, _params())
    plain_train, plain_val, _ = balance_records(df.drop(columns="label"), _params())
    assert train["id"].tolist() == plain_train["id"].tolist() and val["id"].tolist() == plain_val["id"].tolist()
    assert _mix_counts(train, val) == {"s": {"긍정": 97, "부정": 3}}


def test_skew_warns_above_the_threshold_and_names_the_keys(caplog):
    with caplog.at_level(logging.WARNING, logger="dagllm.data.mixing"):
        _, _, summary = balance_records(_records(SKEWED), _params())
    assert summary.label_skew == [{"task": "s", "label": "긍정", "share": 0.97, "skew_warn": 0.8}]
    [message] = [r.getMessage() for r in caplog.records]
    for part in ("s:", "'긍정'", "97.0%", "balance.labels.skew_warn 0.8", "balance.labels.max_share"):
        assert part in message
    assert "label skew above balance.labels.skew_warn in 1 task(s)" in summary.lines()[0]


@pytest.mark.parametrize("counts", [{"긍정": 8, "부정": 2}, {"긍정": 7, "부정": 3}])
def test_no_warning_at_or_below_the_threshold(caplog, counts):
    with caplog.at_level(logging.WARNING, logger="dagllm.data.mixing"):
        _, _, summary = balance_records(_records({"s": counts}), _params(skew_warn=0.8))
    assert summary.label_skew == [] and not caplog.records


def test_capped_mix_below_the_threshold_is_not_warned():
    _, _, summary = balance_records(_records(SKEWED), _params(max_share=0.75, skew_warn=0.8))
    assert summary.label_skew == []
    assert summary.labels["s"]["top_before"] == {"label": "긍정", "share": 0.97}


def test_balance_report_carries_labels(tmp_path):
    src = tmp_path / "in.parquet"
    _records(SKEWED).to_parquet(src, index=False)
    run_balance(_params(max_share=0.5), src, tmp_path / "t.parquet", tmp_path / "v.parquet",
                tmp_path / "balance.json", tmp_path / "mix.png")
    report = json.loads((tmp_path / "balance.json").read_text())
    assert report["labels"] == {"s": {"before": {"긍정": 97, "부정": 3}, "after": {"긍정": 3, "부정": 3},
                                      "top_before": {"label": "긍정", "share": 0.97},
                                      "top_after": {"label": "긍정", "share": 0.5}}}
    assert report["label_skew"] == []
    assert report["policy"]["labels"] == {"max_share": 0.5, "skew_warn": 0.8}
    assert set(pd.read_parquet(tmp_path / "t.parquet").columns) == set(RECORD_COLUMNS)


@pytest.mark.parametrize(("override", "key"), [
    ("balance.labels.max_share=0", "balance.labels.max_share"),
    ("balance.labels.max_share=1.5", "balance.labels.max_share"),
    ("balance.labels.max_share=.nan", "balance.labels.max_share"),
    ("balance.labels.max_share=true", "balance.labels.max_share"),
    ("balance.labels.skew_warn=.inf", "balance.labels.skew_warn"),
    ("balance.labels.skew_warn=-0.1", "balance.labels.skew_warn"),
    ("balance.labels.share=0.5", "balance.labels.share"),
])
def test_bad_label_params_name_the_key(override, key):
    with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
        load_params(PARAMS_FILE, [override])


def test_label_params_defaults_and_a_share_of_one():
    p = load_params(PARAMS_FILE)
    assert (p.balance.labels.max_share, p.balance.labels.skew_warn) == (None, 0.8)
    assert load_params(PARAMS_FILE, ["balance.labels.max_share=1"]).balance.labels.max_share == 1.0


def _task(**kw) -> Task:
    base = dict(id="t", category="c", description="d", sources=[{"source": "apeach"}], fields=["text"],
                labels={"0": "아니요", "1": "예"}, sample={"fields": {"text": "표본"}, "label": "1"},
                templates=[{"id": "a", "kind": "instruction", "instruction": "판단하세요.", "input": "{{ text }}",
                            "output": "{{ answer }}"}])
    base.update(kw)
    return Task.model_validate(base)


def _render(task: Task) -> list[dict]:
    rows = [("r1", json.dumps({"text": "좋은 하루"}), "1", "apeach", "train", "CC0"),
            ("r2", json.dumps({"text": "나쁜 하루"}), "0", "apeach", "train", "CC0")]
    records, _ = render_task(task, rows, RenderParams(tasks=["t"]))
    return records


def test_rendered_records_carry_the_verbalised_label():
    assert [r["label"] for r in _render(_task())] == ["예", "아니요"]
    review = _task(open_ended=True, templates=[{"id": "a", "kind": "instruction", "instruction": "{{ answer }} 글을 쓰세요.",
                                                "output": "{{ text }}"}])
    assert [r["label"] for r in _render(review)] == ["예", "아니요"]  # the polarity the text was written with
    plain = _task(labels={}, sample={"fields": {"text": "표본"}, "label": None},
                  templates=[{"id": "a", "kind": "instruction", "instruction": "이어 쓰세요.", "output": "{{ text }}"}])
    assert [r["label"] for r in _render(plain)] == [None, None]
    assert "label" in META_COLUMNS and set(_render(_task())[0]) == set(RECORD_COLUMNS)


def test_balanced_data_docs_show_the_label_distribution(tmp_path):
    from dagllm.data.gate import validate_balanced
    from dagllm.params import ValidateParams

    df = _records({"s": {"긍정": 8, "부정": 2}, "g": {None: 10}})
    summary, kept = validate_balanced(df, ValidateParams(), ["s", "g"], None, tmp_path / "v", tmp_path / "q")
    [entry] = [e for e in summary.points[0].expectations if e["column"] == "label"]
    assert summary.success and len(kept) == 20
    assert entry["success"] and entry["kwargs"]["value_set"] == ["긍정", "부정"]
    page = (tmp_path / "v/docs/expectations/balanced.html").read_text(encoding="utf-8")
    assert "most common 긍정 at 80.0%" in page and "부정: 2 records (20.0%)" in page
