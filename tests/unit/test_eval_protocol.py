"""The KIT-19 protocol as data: every entry loads, choice strings, connectors, metrics, split sizes
on the real files (../shared/data), and the published table copied from ../shared/reference."""

import csv
from pathlib import Path

import pandas as pd
import pytest

from dagllm.data.catalog import load_catalog
from dagllm.data.readers import READERS, Row
from dagllm.data.readers.klue import YNAT_TOPICS
from dagllm.evaluation import metrics as M
from dagllm.evaluation import protocol as P
from dagllm.evaluation.tasks.dagllm import dagllm_utils as utils
from dagllm.evaluation.tasks.kit19 import kit19_utils
from dagllm.params import EvaluateParams

from ..conftest import REPO

SHARED = REPO.parent / "shared"
TASKS = ["kobest_copa", "kobest_boolq", "kobest_hellaswag", "kobest_sentineg", "kobest_wic", "klue_sts", "klue_ynat"]
needs_mirror = pytest.mark.skipif(not (SHARED / "data").is_dir(), reason="the real files live in ../shared/data")


def test_every_protocol_entry_loads_with_its_lm_eval_config():
    specs = P.protocol()
    assert sorted(specs) == sorted(TASKS)
    assert sorted(EvaluateParams.model_fields["tasks"].annotation.__args__[0].__args__) == sorted(TASKS)
    catalog = load_catalog()
    for task, spec in specs.items():
        for prompts in ("kit19", "dagllm"):
            cfg = P.lm_eval_config(task, prompts)
            assert cfg["task"] == task and cfg["output_type"] == "multiple_choice"
            assert cfg["dataset_path"] == "json"  # local files, never a hub dataset
            assert cfg["target_delimiter"] == " " and isinstance(cfg["metadata"]["version"], float)
        files = [f for f in catalog.source(spec.source).files if f.split == spec.split]
        assert len(files) == 1 and files[0].benchmark, f"{task}: {spec.source}/{spec.split} must be a benchmark file"


@pytest.mark.parametrize(("task", "choices"), [
    ("kobest_boolq", ["아니오", "예"]), ("kobest_wic", ["아니오", "예"]), ("kobest_sentineg", ["부정", "긍정"]),
    ("klue_sts", ["아니오", "예"]), ("klue_ynat", list(YNAT_TOPICS)),
])
def test_choice_strings_of_the_dagllm_prompts(task: str, choices: list[str]):
    assert P.lm_eval_config(task, "dagllm")["doc_to_choice"] == choices
    assert len(P.protocol()[task].labels) == len(choices)
    assert P.choice_names(task, len(choices), "dagllm") == choices


def test_kit19_ynat_choices_are_the_short_names_in_klue_order():
    short = ["과학", "경제", "사회", "생활", "세계", "스포츠", "정치"]
    assert P.lm_eval_config("klue_ynat")["doc_to_choice"] == short == kit19_utils.YNAT_CHOICES
    # label i of KLUE (IT과학, 경제, 사회, 생활문화, ...) is choice i: each short name ends its long one
    assert all(long.endswith(s) or long.startswith(s) for long, s in zip(YNAT_TOPICS, short, strict=True))


def test_unknown_protocol_is_an_error():
    with pytest.raises(P.ProtocolError, match="unknown protocol 'kit20'; known: kit19, dagllm"):
        P.lm_eval_config("kobest_copa", "kit20")


def test_ynat_labels_are_the_seven_topics_in_choice_order():
    assert P.protocol()["klue_ynat"].labels == list(YNAT_TOPICS) == ["IT과학", "경제", "사회", "생활문화", "세계", "스포츠", "정치"]


def test_copa_connectors_and_alternatives():
    doc = {"premise": "길이 미끄러웠다.", "question": "결과", "alternative_1": "넘어졌다.", "alternative_2": "웃었다."}
    assert utils.copa_doc_to_text(doc) == "길이 미끄러웠다. 그래서"
    assert utils.copa_doc_to_text({**doc, "question": "원인"}) == "길이 미끄러웠다. 왜냐하면"
    assert utils.copa_doc_to_choice(doc) == ["넘어졌다.", "웃었다."]
    assert P.choice_names("kobest_copa", 2, "dagllm") == ["choice 1", "choice 2"]


def test_hellaswag_endings_in_label_order():
    doc = {"context": "문맥", **{f"ending_{i}": f"끝{i}" for i in range(1, 5)}}
    assert utils.hellaswag_doc_to_choice(doc) == ["끝1", "끝2", "끝3", "끝4"]


def test_metrics_per_task_follow_the_protocol():
    specs = P.protocol()
    assert specs["kobest_hellaswag"].metrics == ["acc", "acc_norm", "macro_f1"]
    assert specs["klue_sts"].metrics == ["acc", "f1"]  # binary F1 of the positive class
    for task in ("kobest_copa", "kobest_boolq", "kobest_sentineg", "kobest_wic", "klue_ynat"):
        assert "macro_f1" in specs[task].metrics and "f1" not in specs[task].metrics
    # the lm-eval configs aggregate F1 the same way (binary for STS, macro elsewhere)
    # (lm-eval imports utils.py by file path: compare the functions by name; both name metrics.*_of_pairs)
    for prompts in ("kit19", "dagllm"):
        aggregations = {t: next(m["aggregation"] for m in P.lm_eval_config(t, prompts)["metric_list"]
                                if m["metric"] == "f1") for t in TASKS}
        assert aggregations.pop("klue_sts").__name__ == "binary_f1_of_pairs"
        assert {a.__name__ for a in aggregations.values()} == {"macro_f1_of_pairs"}
    assert utils.binary_f1([(1, 1), (0, 1), (0, 0), (0, 0)]) == pytest.approx(2 / 3)
    assert utils.macro_f1([(1, 1), (0, 1), (0, 0), (0, 0)]) == pytest.approx((2 / 3 + 4 / 5) / 2)


def test_docs_carry_the_gold_choice_index():
    spec = P.protocol()["kobest_copa"]
    rows = pd.DataFrame([{"id": "a", "fields": '{"premise": "p"}', "label": "2", "file": "f", "line": 3}])
    assert P.to_docs(spec, rows) == [{"premise": "p", "id": "a", "label": 1}]
    with pytest.raises(ValueError, match=r"f line 3: label '9' is not one of \['1', '2'\]"):
        P.to_docs(spec, rows.assign(label="9"))


def test_bad_protocol_file_names_the_key(tmp_path: Path):
    bad = tmp_path / "protocol.yaml"
    bad.write_text("tasks:\n  kobest_copa:\n    source: kobest_copa\n    split: dev\n", encoding="utf-8")
    with pytest.raises(P.ProtocolError, match="tasks.kobest_copa"):
        P.protocol.__wrapped__(bad)


@needs_mirror
@pytest.mark.parametrize("task", [t for t in TASKS if t != "klue_ynat"])  # YNAT is not in the mirror
def test_split_sizes_on_the_real_files(task: str):
    spec = P.protocol()[task]
    expected = {"kobest_copa": 1000, "kobest_boolq": 1404, "kobest_hellaswag": 500, "kobest_sentineg": 397,
                "kobest_wic": 1260, "klue_sts": 519}[task]
    assert spec.size == expected
    sf = next(f for f in load_catalog().source(spec.source).files if f.split == spec.split)
    items = list(READERS[sf.reader](SHARED / "data" / sf.path))
    rows = [i for i in items if isinstance(i, Row)]
    assert len(items) == len(rows) == expected  # nothing rejected: every item is scored
    assert {spec.label_index(r.label) for r in rows} == set(range(len(spec.labels)))


@needs_mirror
def test_sts_constant_positive_reproduces_a_published_collapsed_model():
    """Always answering 예 on KLUE STS gives acc 42.39 / F1 59.54: polyglot-ko-1.3b's published figures."""
    spec = P.protocol()["klue_sts"]
    rows = [r for r in READERS["klue_sts"](SHARED / "data/klue_sts/klue-sts-v1.1_dev.json") if isinstance(r, Row)]
    golds = [spec.label_index(r.label) for r in rows]
    got = M.score(spec.metrics, golds, [1] * len(golds))
    pub = P.published().results["klue_sts"]
    assert round(100 * got["acc"], 2) == pub["acc"]["polyglot-ko-1.3b"] == 42.39
    assert round(100 * got["f1"], 2) == pub["f1"]["polyglot-ko-1.3b"] == 59.54


@pytest.mark.skipif(not (SHARED / "reference").is_dir(), reason="the reference table lives in ../shared/reference")
def test_published_figures_equal_the_reference_csv():
    pub = P.published()
    with open(SHARED / "reference/kit19_published_results.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert pub.models == [k for k in rows[0] if k not in ("benchmark", "metric")]
    assert sum(len(ms) for ms in pub.results.values()) == len(rows)
    for r in rows:
        assert pub.results[r["benchmark"]][r["metric"]] == {m: float(r[m]) for m in pub.models}
    specs = P.protocol()
    for task, ms in pub.results.items():  # every published metric is one the protocol computes
        assert set(ms) <= set(specs[task].metrics), task


def test_every_protocol_default_is_the_params_default():
    """A caller that leaves the protocol out scores what ``evaluate.protocol`` defaults to (KIT-19's)."""
    import importlib
    import inspect
    import pkgutil

    import dagllm.evaluation
    from dagllm.params import EvaluateParams

    default = EvaluateParams.model_fields["protocol"].default  # what params.yaml gets when it says nothing
    assert default == "kit19"
    modules = [importlib.import_module(m.name)
               for m in pkgutil.walk_packages(dagllm.evaluation.__path__, "dagllm.evaluation.")]
    modules.append(importlib.import_module("dagllm.stages.evaluate"))
    seen = []
    for mod in modules:
        for name, fn in inspect.getmembers(mod, inspect.isfunction):
            if fn.__module__ != mod.__name__:
                continue
            for param in inspect.signature(fn).parameters.values():
                if param.name in ("prompts", "protocol") and param.default is not inspect.Parameter.empty:
                    seen.append(f"{mod.__name__}.{name}")
                    assert param.default == default, f"{mod.__name__}.{name}({param.name}={param.default!r})"
    assert len(seen) >= 4  # prepare_task, score_task, run_lm_eval, lm_eval_config, ...
