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


def _slices(**sections) -> dict[str, str]:
    return fingerprint(json.dumps(params_from_dict(small_params(**sections)).to_dict()))


def _changed(a: dict[str, str], b: dict[str, str]) -> set[str]:
    return {s for s in a if a[s] != b[s]}


def test_one_slice_per_stage_holding_only_its_sections():
    slices = _slices()
    assert set(slices) == set(STAGE_SECTIONS)
    for stage, text in slices.items():
        data = json.loads(text)
        assert set(data["params"]) == set(STAGE_SECTIONS[stage]) and len(data["code"]) == 64


def test_a_change_reaches_only_the_stages_that_read_it():
    base = _slices()
    assert _changed(base, _slices()) == set()  # deterministic: an unchanged run keys the same
    # register (never cached) records the whole params digest, so it sees every change
    assert _changed(base, _slices(serve={"port": 8123})) == {"register"}  # no cached stage reads serve.*
    # evaluate reads train.model (the preset's protocol settings); it reruns on a new model anyway
    assert _changed(base, _slices(train={"max_steps": 5})) == {"train", "evaluate", "register"}
    assert _changed(base, _slices(evaluate={"limit": 3})) == {"evaluate", "register"}
    assert _changed(base, _slices(balance={"seed": 7})) == {"balance", "register"}
    assert _changed(base, _slices(render={"seed": 7})) == {"render", "validate", "balance", "register"}


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
    assert _params(_slices()["register"]).digest() == params_from_dict(small_params()).digest()
