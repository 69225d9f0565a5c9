import pandas as pd

from dagllm.params import BalanceParams
from dagllm.stages.balance import balance_frame


def _records(n_a=50, n_b=7):
    rows = [{"id": f"a{i:03d}", "task": "a"} for i in range(n_a)] + [{"id": f"b{i:03d}", "task": "b"} for i in range(n_b)]
    return pd.DataFrame(rows)


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
