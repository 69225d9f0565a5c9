"""Params that used to pass but must not (issue #23): non-finite floats, seeds out of range,
integers beyond int64, a mix too large to hold, category weights that empty the mix, keys given
twice, YAML alias bombs and other unbounded YAML. Each is refused by ``load_params`` and by
``dagllm check`` (exit 2), naming the key (or the line), before any stage does work; the mixing
arithmetic itself no longer overflows on real rows.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path
from typing import get_args, get_origin

import pandas as pd
import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from dagllm.cli import app
from dagllm.data.catalog import default_catalog
from dagllm.data.mixing import balance_frame, task_targets
from dagllm.data.readers import READERS, Row
from dagllm.data.records import RECORD_COLUMNS
from dagllm.params import BalanceParams, Params, ParamsError, load_params, load_yaml
from dagllm.paths import resolve_mirror
from dagllm.stages.balance import run_balance

from ..conftest import REPO

PARAMS_TEXT = (REPO / "params.yaml").read_text(encoding="utf-8")


# --- helpers -----------------------------------------------------------------------------------

def _write(tmp_path: Path, text: str, name: str = "params.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _line_of(text: str, line: str, after: int = 0) -> int:
    """1-based number of the first line equal to ``line`` after line ``after``."""
    lines = text.splitlines()
    return next(i + 1 for i in range(after, len(lines)) if lines[i] == line)


def _insert_after(text: str, anchor: str, new: str) -> tuple[str, int]:
    """``text`` with line ``new`` inserted right after the line ``anchor``; and the new line's number."""
    lines = text.splitlines()
    at = lines.index(anchor) + 1
    lines.insert(at, new)
    return "\n".join(lines) + "\n", at + 1


def _check(args: list[str]):
    return CliRunner().invoke(app, ["check", *args])


def _float_keys(model: type[BaseModel], prefix: str = "") -> list[tuple[str, bool]]:
    """(dotted key, is a mapping of floats) for every float-valued key of params.yaml."""
    out: list[tuple[str, bool]] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        ann, args = field.annotation, get_args(field.annotation)
        if ann is float or (float in args and get_origin(ann) is not dict):
            out.append((key, False))
        elif get_origin(ann) is dict and args[1] is float:
            out.append((key, True))
        elif get_origin(ann) is dict and isinstance(args[1], type) and issubclass(args[1], BaseModel):
            out += _float_keys(args[1], f"{key}.default.")  # validate.hangul.default.min
        elif isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _float_keys(ann, f"{key}.")
    return out


FLOAT_KEYS = _float_keys(Params)
SEED_KEYS = ["render.seed", "balance.seed", "train.seed", "evaluate.seed"]


def _real_records(per_task: int = 40) -> pd.DataFrame:
    """Records of two tasks (two categories) whose inputs are real training rows of the mirror."""
    catalog, mirror = default_catalog(), resolve_mirror("auto")
    rows = []
    for task, source in (("kobest_sentineg_sentiment", "kobest_sentineg"), ("apeach_hate", "apeach")):
        sf = next(f for f in catalog.source(source).files if f.split == "train" and not f.benchmark)
        texts = [max(map(str, r.fields.values()), key=len) for r in READERS[sf.reader](mirror / sf.path)
                 if isinstance(r, Row)][:per_task]
        assert len(texts) == per_task, f"{sf.path} holds fewer than {per_task} rows"
        for i, text in enumerate(texts):
            rows.append({"id": f"{task}-{i:04d}", "record_id": f"{source}-{i}", "task": task,
                         "category": catalog.tasks[task].category, "template_id": "t",
                         "template_kind": "instruction", "instruction": "다음 글을 읽고 답하세요.",
                         "input": text, "output": "답", "source": source, "split": "train",
                         "license": "CC BY-SA 4.0"})
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


# --- non-finite floats, seeds, integers -------------------------------------------------------

def test_float_keys_cover_those_the_issue_names():
    keys = {k for k, _ in FLOAT_KEYS}
    named = {"train.learning_rate", "train.weight_decay", "train.num_epochs", "train.warmup_ratio",
             "balance.category_weights", "balance.temperature", "decontaminate.threshold",
             "decontaminate.edit_similarity", "balance.dedup.near_threshold", "validate.hangul.default.min"}
    assert named <= keys, named - keys


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
@pytest.mark.parametrize(("key", "mapping"), FLOAT_KEYS, ids=[k for k, _ in FLOAT_KEYS])
def test_every_float_key_refuses_non_finite(key: str, mapping: bool, value: str):
    override = f"{key}={{sentiment_analysis: {value}}}" if mapping else f"{key}={value}"
    with pytest.raises(ParamsError) as err:
        load_params(REPO / "params.yaml", [override])
    name = f"{key}.sentiment_analysis" if mapping else key
    assert f"{name}: Input should be a finite number" in str(err.value)


def test_non_finite_written_in_the_file_is_refused_with_its_key(tmp_path: Path):
    text = PARAMS_TEXT.replace("  learning_rate: 0.0005\n", "  learning_rate: .inf\n")
    assert text != PARAMS_TEXT
    with pytest.raises(ParamsError, match=r"train\.learning_rate: Input should be a finite number \(got inf\)"):
        load_params(_write(tmp_path, text))
    # a float literal too large for a double reads as inf: refused too
    text = PARAMS_TEXT.replace("  weight_decay: 0.0\n", "  weight_decay: 1.0e+999\n")
    with pytest.raises(ParamsError, match=r"train\.weight_decay: Input should be a finite number"):
        load_params(_write(tmp_path, text))


@pytest.mark.parametrize("key", SEED_KEYS)
def test_seeds_outside_what_numpy_and_torch_accept_are_refused(key: str):
    for bad in (-1, 2**32, 2**64):
        with pytest.raises(ParamsError, match=rf"{key}: a seed must be 0 <= seed < 2\*\*32"):
            load_params(REPO / "params.yaml", [f"{key}={bad}"])
    for good in (0, 2**32 - 1):  # the ends of numpy.random.seed's range
        assert load_params(REPO / "params.yaml", [f"{key}={good}"]).to_dict()[key.split(".")[0]]["seed"] == good


def test_the_seed_range_is_what_the_libraries_accept():
    import numpy as np

    np.random.seed(2**32 - 1)
    with pytest.raises(ValueError):
        np.random.seed(2**32)
    with pytest.raises(ValueError):
        np.random.seed(-1)


@pytest.mark.parametrize("override", ["balance.per_task_cap=9223372036854775808", "train.max_steps=" + "9" * 40,
                                      "ingest.max_rows_per_file=9223372036854775808"])
def test_integers_beyond_int64_are_refused_with_the_key(override: str):
    key = override.split("=")[0]
    with pytest.raises(ParamsError, match=rf"{key}: integer outside the int64 range"):
        load_params(REPO / "params.yaml", [override])


def test_an_integer_of_thousands_of_digits_is_one_short_error(tmp_path: Path):
    text, line = _insert_after(PARAMS_TEXT, "train:", "  grad_accum: " + "7" * 5000)
    text = text.replace("  grad_accum: 1\n", "")
    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, text))
    msg = str(err.value)
    assert f"line {line}" in msg and "not a usable integer" in msg and len(msg) < 400


def test_an_error_of_thousands_of_bad_items_stays_short():
    with pytest.raises(ParamsError) as err:
        load_params(REPO / "params.yaml", ["render.tasks=[" + ",".join(map(str, range(5000))) + "]"])
    msg = str(err.value)
    assert "render.tasks.0: Input should be a valid string" in msg
    assert "and 4,980 more problems not listed" in msg and msg.count("\n") == 21


# --- balance: the size of the mix and the mixing arithmetic ----------------------------------

def test_huge_total_is_refused_naming_the_key():
    for total in (10**7 + 1, 10**21, 10**400):
        with pytest.raises(ParamsError, match=r"balance\.total: Input should be less than or equal to 10000000"):
            load_params(REPO / "params.yaml", ["balance.mixing=proportional", "balance.upsample=true",
                                               f"balance.total={total}"])
    p = load_params(REPO / "params.yaml", ["balance.mixing=proportional", "balance.total=10000000"])
    assert p.balance.total == 10_000_000


def test_upsampled_mix_of_real_rows_reaches_its_total():
    df = _real_records()
    p = BalanceParams(mixing="proportional", upsample=True, total=1000, val_fraction=0.05, seed=3)
    train, val = balance_frame(df, p)
    # equal sizes and weights: half each; validation takes 5 % of the 40 real rows of each task
    assert (train.groupby("task").size() + val.groupby("task").size()).to_dict() == {
        "apeach_hate": 500, "kobest_sentineg_sentiment": 500}
    assert val.groupby("task").size().to_dict() == {"apeach_hate": 2, "kobest_sentineg_sentiment": 2}


def test_mixing_with_extreme_temperature_and_weights_does_not_overflow():
    sizes = {"big": 5000, "small": 10}
    cats = {"big": "x", "small": "y"}
    # T = 0.01: rate ~ n ** 100; (10 / 5000) ** 100 is ~1e-270 of the big task's rate
    t = task_targets(sizes, cats, BalanceParams(mixing="proportional", temperature=0.01, total=1000))
    assert t == {"big": 1000, "small": 0}
    # a weight of 1e300 on the small task's category beats the 500x size of the big one
    t = task_targets(sizes, cats, BalanceParams(mixing="proportional", total=1000, category_weights={"y": 1e300}))
    assert t == {"big": 0, "small": 1000}
    # ordinary values keep FLAN's formula: shares 5000 : 10 * 3 at T = 1
    t = task_targets(sizes, cats, BalanceParams(mixing="proportional", total=5030, category_weights={"y": 3.0}))
    assert t == {"big": 5000, "small": 30}
    with pytest.raises(ParamsError, match=r"balance\.temperature: Input should be greater than or equal to 0\.01"):
        load_params(REPO / "params.yaml", ["balance.temperature=1.0e-300"])


def test_weights_that_zero_every_category_are_refused_before_the_mix(tmp_path: Path):
    df = _real_records(10)
    cats = dict(zip(df["task"], df["category"], strict=True))
    p = BalanceParams(mixing="proportional", category_weights={c: 0.0 for c in cats.values()})
    assert "weight 0 for every category" in (p.empty_mix_problem(cats) or "")
    src = tmp_path / "records.parquet"
    df.to_parquet(src, index=False)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"balance\.category_weights: weight 0 for every category"):
        run_balance(p, src, out / "train.parquet", out / "val.parquet", out / "balance.json", out / "mix.png")
    assert not (out / "balance.json").exists() and not (out / "train.parquet").exists()
    # one category left above 0: that category's task fills the mix, the other gets none
    one = BalanceParams(mixing="proportional", total=10, category_weights={"sentiment_analysis": 0.0})
    assert one.empty_mix_problem(cats) is None
    assert task_targets({"apeach_hate": 10, "kobest_sentineg_sentiment": 10}, cats, one) == {
        "apeach_hate": 10, "kobest_sentineg_sentiment": 0}
    # cap mixing ignores the weights: nothing to refuse
    assert BalanceParams(mixing="cap", category_weights={c: 0.0 for c in cats.values()}).empty_mix_problem(cats) is None


# --- the YAML itself: keys given twice, anchors and aliases, bounds ---------------------------

def test_a_section_given_twice_names_it_and_both_lines(tmp_path: Path):
    text = PARAMS_TEXT + "\ntrain:\n  max_steps: 5\n"
    first = _line_of(text, "train:")
    second = _line_of(text, "train:", after=first)
    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, text))
    assert f"train: given twice (lines {first} and {second})" in str(err.value)


def test_a_key_given_twice_at_each_level_names_it_and_both_lines(tmp_path: Path):
    cases = [("train:", "  seed: 7", "  seed: 42", "train.seed"),
             ("  tiny:", "    hidden_size: 32", "    hidden_size: 64", "train.tiny.hidden_size"),
             ("    default: {min: 0.3, max: 1.0}", "    default: {min: 0.1, max: 1.0}", None,
              "validate.hangul.default")]
    for anchor, new, existing, key in cases:
        text, line = _insert_after(PARAMS_TEXT, anchor, new)
        other = _line_of(text, existing, after=line) if existing else line - 1
        with pytest.raises(ParamsError) as err:
            load_params(_write(tmp_path, text))
        assert f"{key}: given twice (lines {min(line, other)} and {max(line, other)})" in str(err.value), key


def test_a_key_given_twice_in_a_list_item_and_in_a_flow_mapping(tmp_path: Path):
    local = ("  local:\n    - {id: team, path: t.tsv, reader: nsmc_ratings, license: internal,\n"
             "       tasks: [nsmc_sentiment], id: team2}\n")
    text = PARAMS_TEXT.replace("  local: []               # a team's own files, e.g.\n", local)
    assert text != PARAMS_TEXT
    line = _line_of(text, "  local:") + 1
    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, text))
    assert f"ingest.local[0].id: given twice (lines {line} and {line + 1})" in str(err.value)
    lines = PARAMS_TEXT.splitlines()
    line = next(i + 1 for i, t in enumerate(lines) if t.startswith("  category_weights:"))
    lines[line - 1] = "  category_weights: {math: 2.0, math: 0.5}"
    text = "\n".join(lines) + "\n"
    with pytest.raises(ParamsError, match=rf"balance\.category_weights\.math: given twice \(both on line {line}\)"):
        load_params(_write(tmp_path, text))


def test_a_key_given_twice_in_an_override_value():
    with pytest.raises(ParamsError, match=r"(?s)override .*  balance\.category_weights\.math: given twice"):
        load_params(REPO / "params.yaml", ["balance.category_weights={math: 2.0, math: 0.5}"])


def _billion_laughs(levels: int = 9) -> str:
    lines = ['lol0: &lol0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        lines.append(f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_in_bounded_time_and_memory(tmp_path: Path):
    bomb = _billion_laughs()  # 10**10 strings once expanded
    text = bomb + PARAMS_TEXT.replace("  tasks: [kobest_copa_causal,", "  tasks: *lol9\n  _was: [kobest_copa_causal,",
                                      1)
    path = _write(tmp_path, text)
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(ParamsError) as err:
        load_params(path)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "line 1: anchor &lol0: anchors and aliases are not allowed in params" in str(err.value)
    assert seconds < 2 and peak < 20 * 2**20, (seconds, peak)


def test_aliases_are_refused_in_overrides_too():
    with pytest.raises(ParamsError, match=r"override .*: line 1: anchor &a: anchors and aliases are not allowed"):
        load_params(REPO / "params.yaml", ["render.tasks=[&a apeach_hate, *a]"])
    with pytest.raises(ParamsError, match=r"alias \*a: anchors and aliases are not allowed"):
        load_yaml("[*a]", "override")


def test_a_merge_key_is_refused(tmp_path: Path):
    text, line = _insert_after(PARAMS_TEXT, "fetch:                    # `dagllm fetch`: catalog files of "
                               "ingest.sources -> data/raw, sha256-checked", "  <<: {retries: 9}")
    with pytest.raises(ParamsError, match=rf"line {line}: merge key '<<' under fetch"):
        load_params(_write(tmp_path, text))


def test_too_large_too_many_values_too_deep_are_refused_quickly(tmp_path: Path):
    huge_comment = PARAMS_TEXT + "#" + "x" * (300 * 1024) + "\n"
    many = PARAMS_TEXT.replace("  optional_sources: [klue_ynat]",
                               "  optional_sources: [" + ",".join(["klue_ynat"] * 20000) + "]")
    deep = PARAMS_TEXT.replace("  optional_sources: [klue_ynat]", "  optional_sources: " + "[" * 100 + "]" * 100)
    for text, what in ((huge_comment, "a params file is at most 262,144 bytes"), (many, "more than 10,000 values"),
                       (deep, "nested deeper than 32 levels")):
        start = time.perf_counter()
        with pytest.raises(ParamsError, match=what):
            load_params(_write(tmp_path, text))
        assert time.perf_counter() - start < 3, what


def test_the_repo_params_and_a_plain_team_file_still_load(tmp_path: Path):
    assert load_params(REPO / "params.yaml").train.seed == 42
    assert load_yaml(PARAMS_TEXT, "params.yaml") == __import__("yaml").safe_load(PARAMS_TEXT)


# --- every class through `dagllm check`, refused before any stage works ----------------------

CLI_OVERRIDES = [
    (["train.learning_rate=.inf"], "train.learning_rate: Input should be a finite number"),
    (["train.num_epochs=.nan"], "train.num_epochs: Input should be a finite number"),
    (["balance.category_weights={sentiment_analysis: .nan}"], "balance.category_weights.sentiment_analysis: Input "
                                                               "should be a finite number"),
    (["train.seed=-1"], "train.seed: a seed must be 0 <= seed < 2**32"),
    (["evaluate.seed=4294967296"], "evaluate.seed: a seed must be 0 <= seed < 2**32"),
    (["balance.mixing=proportional", "balance.upsample=true", "balance.total=1000000000000000000000"],
     "balance.total: Input should be less than or equal to 10000000"),
    (["balance.per_task_cap=9223372036854775808"], "balance.per_task_cap: integer outside the int64 range"),
    (["render.tasks=[&x apeach_hate, *x]"], "anchors and aliases are not allowed in params"),
]


@pytest.mark.parametrize(("overrides", "message"), CLI_OVERRIDES, ids=[o[0] for o, _ in CLI_OVERRIDES])
def test_cli_check_refuses_bad_overrides(workdir: Path, overrides: list[str], message: str):
    res = _check(overrides)
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output


def test_cli_check_refuses_weights_that_empty_the_mix(workdir: Path):
    p = load_params(workdir / "params.yaml")
    catalog = default_catalog()
    cats = sorted({catalog.tasks[t].category for t in p.render.tasks})
    zero = "{" + ", ".join(f"{c}: 0" for c in cats) + "}"
    res = _check(["balance.mixing=proportional", f"balance.category_weights={zero}"])
    assert res.exit_code == 2, res.output
    assert "balance.category_weights: weight 0 for every category of the rendered tasks" in res.output
    one_left = "{" + ", ".join(f"{c}: {1 if i == 0 else 0}" for i, c in enumerate(cats)) + "}"
    assert _check(["balance.mixing=proportional", f"balance.category_weights={one_left}"]).exit_code == 0


def test_cli_check_refuses_bad_files(workdir: Path):
    text = (workdir / "params.yaml").read_text(encoding="utf-8")
    seed = _line_of(text, "  seed: 42", after=_line_of(text, "train:"))
    dup, line = _insert_after(text, "train:", "  seed: 7")
    res = _check(["-p", str(_write(workdir, dup, "dup.yaml"))])
    assert res.exit_code == 2 and f"train.seed: given twice (lines {line} and {seed + 1})" in res.output, res.output
    res = _check(["-p", str(_write(workdir, _billion_laughs() + text, "bomb.yaml"))])
    assert res.exit_code == 2 and "anchor &lol0: anchors and aliases are not allowed" in res.output, res.output
    big, _ = _insert_after(text, "train:", "  grad_accum_x: " + "1" * 5000)
    res = _check(["-p", str(_write(workdir, big, "bigint.yaml"))])
    assert res.exit_code == 2 and "not a usable integer" in res.output and "Traceback" not in res.output


def test_a_stage_refuses_before_it_works(workdir: Path):
    res = CliRunner().invoke(app, ["balance", "balance.seed=-1"])
    assert res.exit_code == 2 and "balance.seed: a seed must be 0 <= seed < 2**32" in res.output, res.output
    text = (workdir / "params.yaml").read_text(encoding="utf-8")
    dup, _ = _insert_after(text, "ingest:", "  max_rows_per_file: 3")
    (workdir / "params.yaml").write_text(dup, encoding="utf-8")
    res = CliRunner().invoke(app, ["ingest"])
    assert res.exit_code == 2 and "ingest.max_rows_per_file: given twice" in res.output, res.output
    assert not (workdir / "reports").exists() and not (workdir / "data").exists()


def test_the_largest_finite_float_still_passes():
    p = load_params(REPO / "params.yaml", ["balance.category_weights={math: 1.7976931348623157e+308}"])
    assert p.balance.category_weights["math"] == 1.7976931348623157e308
