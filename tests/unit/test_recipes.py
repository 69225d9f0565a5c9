"""Recipes: the KIT-19 and DaG mixes as params files, with what a mirror lacks dropped and listed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dagllm.cli import app
from dagllm.data.catalog import load_catalog
from dagllm.data.recipes import apply_recipe, load_recipe
from dagllm.params import ParamsError, load_params

from ..conftest import REPO, SAMPLES

BASE = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


def test_kit19_on_a_complete_mirror_is_19_sources_and_20_slots_of_5000():
    r = apply_recipe(load_recipe("kit19"), BASE, load_catalog(), SAMPLES)
    assert r.dropped_sources == [] and r.dropped_tasks == []
    cat = load_catalog()
    tasks = r.params["render"]["tasks"]
    fed = {ts.source for t in tasks for ts in cat.task(t).sources}
    assert len(tasks) == 20 and len(fed) == 19  # kowiki feeds two tasks (DESIGN.md: 20 slots)
    assert [t for t in tasks if cat.task(t).sources[0].source == "kowiki"] == ["kowiki_text_generation",
                                                                                 "kowiki_closed_book_qa"]
    assert all(cat.categories[cat.task(t).category].kit19 for t in tasks)
    assert r.params["balance"] == {**BASE["balance"], "seed": 42, "mixing": "cap", "per_task_cap": 5000}


def test_dag_is_every_task_of_the_13_categories():
    r = apply_recipe(load_recipe("dag"), BASE, load_catalog(), SAMPLES)
    cat = load_catalog()
    assert sorted(r.params["render"]["tasks"]) == sorted(cat.tasks)
    assert {cat.task(t).category for t in r.params["render"]["tasks"]} == set(cat.categories)
    assert len(cat.categories) == 13


def test_sources_a_mirror_lacks_are_dropped_with_their_tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    mirror = tmp_path / "mirror"
    for folder in ("kobest", "apeach", "klue_sts"):
        shutil.copytree(SAMPLES / folder, mirror / folder)
    base = {**BASE, "paths": {**BASE["paths"], "mirror": str(mirror)}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(base, allow_unicode=True), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["recipe", "kit19"])
    assert result.exit_code == 0, result.output
    written = tmp_path / "params.kit19.yaml"
    head = written.read_text(encoding="utf-8").splitlines()[:3]
    assert "Not in the mirror (dropped): sources" in head[1] and "unsmile" in head[1]
    p = load_params(written)
    assert set(p.ingest.sources) == {"apeach", "kobest_boolq", "kobest_copa", "kobest_hellaswag", "kobest_wic",
                                     "kobest_sentineg", "klue_sts"}
    assert "unsmile_hate" not in p.render.tasks and "apeach_hate" in p.render.tasks
    assert CliRunner().invoke(app, ["check", "--params", str(written)]).exit_code == 0


def test_unknown_recipe_names_the_known_ones():
    with pytest.raises(ParamsError, match="unknown recipe 'kit20'; known: dag, kit19"):
        load_recipe("kit20")
