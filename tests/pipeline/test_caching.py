"""The per-stage params slices the fingerprint step hands out: what each stage's cache key sees.

(The cache decisions on the real DAG, with kfp.local computing the keys, are in test_kfp.py.)
"""

import json
from pathlib import Path

import pytest

from dagllm.params import params_from_dict
from dagllm.pipeline.slices import STAGE_SECTIONS, ParamsSlice, fingerprint
from dagllm.pipeline.steps import _params

from ..conftest import small_params


def _merge(base: dict, over: dict) -> dict:
    return {**base, **{k: _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
                       for k, v in over.items()}}


def _slices(**sections) -> dict[str, str]:
    """The slices of the small params with ``sections`` merged in, key by key."""
    return fingerprint(json.dumps(params_from_dict(_merge(small_params(), sections)).to_dict()))


def _changed(a: dict[str, str], b: dict[str, str]) -> set[str]:
    return {s for s in a if a[s] != b[s]}


def test_one_slice_per_stage_holding_only_its_sections():
    slices = _slices()
    assert set(slices) == set(STAGE_SECTIONS)
    for stage, text in slices.items():
        data = json.loads(text)
        assert set(data["params"]) == {path.split(".")[0] for path in STAGE_SECTIONS[stage]} and len(data["code"]) == 64
    train = json.loads(slices["train"])["params"]["kubeflow"]
    assert set(train["images"]) == {"train"} and "retries" not in train and "experiment" not in train


# What a change of each kind reaches, at the fingerprint: the stages whose slice changes (their
# tasks miss the cache; the DAG then reruns what consumes their outputs). register (never cached)
# records the whole params digest, so it sees every change. docs/deploy.md, "Caching", lists these.
CHANGES = [
    ({"serve": {"port": 8123}}, set()),  # no pipeline stage reads serve.*
    ({"kubeflow": {"images": {"cpu": "ghcr.io/dagllm/dagllm:0.2.0"}}}, set()),  # in the cache key as the image
    ({"kubeflow": {"retries": 1, "experiment": "other", "resources": {"ingest": {"cpu_limit": "8"}}}}, set()),
    ({"kubeflow": {"images": {"train": "ghcr.io/dagllm/dagllm-train:0.2.0-cu128"}}}, {"train"}),  # the TrainJob's
    ({"kubeflow": {"resources": {"train": {"memory_limit": "200Gi"}}}}, {"train"}),
    ({"train": {"max_steps": 5}}, {"train"}),  # evaluate reruns on the new model, not on the params
    ({"train": {"model": "polyglot-ko-1.3b"}}, {"train", "evaluate"}),  # the preset's protocol settings
    ({"evaluate": {"limit": 3}}, {"evaluate"}),
    ({"register": {"model_name": "other"}}, set()),
    ({"register": {"policy": "other.yaml"}}, {"evaluate"}),  # the policy's primary task: the confusion matrix
    ({"balance": {"seed": 7}}, {"balance"}),
    ({"render": {"seed": 7}}, {"render", "validate", "balance"}),
]


@pytest.mark.parametrize(("change", "expected"), CHANGES, ids=[json.dumps(c) for c, _ in CHANGES])
def test_a_change_reaches_only_the_stages_that_read_it(change: dict, expected: set):
    base = _slices()
    assert _changed(base, _slices()) == set()  # deterministic: an unchanged run keys the same
    assert _changed(base, _slices(**change)) == expected | {"register"}


def test_code_digest_covers_only_the_code_a_stage_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A copy of the package, edited file by file: each edit changes the digests of the stages whose
    task imports that file (or the data beside a package they import), and no other."""
    import shutil

    import dagllm
    from dagllm.pipeline import slices

    copy = tmp_path / "dagllm"
    shutil.copytree(Path(dagllm.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(slices, "PACKAGE_ROOT", copy)
    digests = lambda: {s: slices.code_digest(s) for s in STAGE_SECTIONS}  # noqa: E731
    base = digests()

    def after(rel: str) -> set[str]:
        path = copy / rel
        old = path.read_text(encoding="utf-8")
        path.write_text(old + "\n# edited\n", encoding="utf-8")
        try:
            return {s for s, d in digests().items() if d != base[s]}
        finally:
            path.write_text(old, encoding="utf-8")

    every = set(STAGE_SECTIONS)
    assert after("serving/api.py") == set()  # the chat server: no pipeline stage runs it
    assert after("training/finetune.py") == {"train"}
    assert after("training/prompt.py") == {"train", "evaluate"}  # the prompt format both use
    assert after("evaluation/harness.py") == {"evaluate"}
    # data beside a package counts for every stage importing the package: the task YAMLs sit beside
    # the protocol (evaluation/tasks/protocol.yaml), which every stage reads (the benchmark sources)
    assert after("evaluation/tasks/kit19/kobest_copa.yaml") == every
    assert after("evaluation/tasks/kit19/kit19_utils.py") == every  # code lm-eval loads by path
    assert after("data/catalog/tasks/nsmc_sentiment.yaml") == every  # the catalog: every stage reads it
    assert after("registry/versions.py") == {"register"}
    assert after("stages/balance.py") == {"balance"}
    assert after("params.py") == every  # the core: every stage reads params
    # steps.py: only the edited stage's function (and the shared top of the module) count
    steps = (copy / "pipeline/steps.py").read_text(encoding="utf-8")
    (copy / "pipeline/steps.py").write_text(steps.replace('"""Score the model;', '"""Score the model (edited);'),
                                           encoding="utf-8")
    assert {s for s, d in digests().items() if d != base[s]} == {"evaluate"}


@pytest.mark.parametrize(("source", "expected"), [
    ("nsmc", {"ingest"}),  # training data only
    ("kobest_copa", {"ingest", "evaluate"}),  # a benchmark source: evaluate reads its files too
])
def test_changed_source_content_reaches_the_stages_that_read_it(mirror_copy: Path, source: str, expected: set):
    from dagllm.data.catalog import default_catalog

    base = _slices(paths={"mirror": str(mirror_copy)})
    target = mirror_copy / default_catalog().source(source).files[0].path
    target.write_bytes(target.read_bytes() + b"\n")
    assert _changed(base, _slices(paths={"mirror": str(mirror_copy)})) == expected


def test_a_slice_refuses_a_section_it_lacks():
    p = _params(_slices()["render"])
    assert isinstance(p, ParamsSlice) and p.render.seed == 42
    with pytest.raises(KeyError, match="STAGE_SECTIONS"):
        p.train  # noqa: B018 - the read is the test
    with pytest.raises(KeyError, match="register's slice"):
        p.digest()
    t = _params(_slices()["train"])  # a partly sliced section: the fields it names, no others
    assert t.kubeflow.images.train == params_from_dict(small_params()).kubeflow.images.train
    assert t.kubeflow.task_resources("train").cpu_limit  # methods pass through
    with pytest.raises(KeyError, match="'kubeflow.images.cpu'"):
        t.kubeflow.images.cpu  # noqa: B018 - the read is the test
    with pytest.raises(KeyError, match="'kubeflow.retries'"):
        t.kubeflow.retries  # noqa: B018 - the read is the test
    e = _params(_slices()["evaluate"])
    assert e.train.model == "tiny" and e.register_.policy
    with pytest.raises(KeyError, match="'train.learning_rate'"):
        e.train.learning_rate  # noqa: B018 - the read is the test
    assert _params(_slices()["register"]).digest() == params_from_dict(small_params()).digest()
