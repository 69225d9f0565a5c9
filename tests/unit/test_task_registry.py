"""The task registry as a whole and the render stage's task options."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from dagllm.data.canonical import CANONICAL_COLUMNS
from dagllm.data.catalog import CatalogError, load_catalog, load_categories
from dagllm.data.records import RECORD_COLUMNS
from dagllm.data.templating import (
    RenderError,
    choose_templates,
    first_paragraph,
    first_sentence,
    render_sample,
    render_template,
    template_variables,
)
from dagllm.params import RenderParams
from dagllm.stages.render import run_render

from ..conftest import REPO

CATALOG = load_catalog()
ALL = CATALOG.tasks
KIT19_SOURCES = {"apeach", "unsmile", "hatescore", "kobest_boolq", "kobest_copa", "kobest_hellaswag", "kornli",
                 "kowiki", "kobest_wic", "korsts", "pawsx_ko", "parakqc", "question_pair", "nsmc",
                 "kobest_sentineg", "sae4k", "math_korean", "lbox_summarization"}


def _contract() -> dict[str, set[str]]:
    """source id -> canonical field names, read from the table in docs/data.md."""
    out = {}
    for line in (REPO / "docs" / "data.md").read_text(encoding="utf-8").splitlines():
        cells = line.split("|")
        if len(cells) > 5 and re.match(r"\s*`[a-z0-9_]+`\s*$", cells[1]):
            names = set(re.findall(r"`([a-z0-9_]+)`", cells[4]))
            for a, b, c in re.findall(r"`([a-z_]+)_(\d)` … `[a-z_]+_(\d)`", cells[4]):  # `ending_1` … `ending_4`
                names |= {f"{a}_{i}" for i in range(int(b), int(c) + 1)}
            out[cells[1].strip(" `")] = names
    return out


def test_registry_size_categories_and_kit19_slots():
    cats = load_categories()
    assert len(ALL) >= 41
    used = {t.category for t in ALL.values()}
    assert used == set(cats) and len(cats) == 13
    assert sum(c.kit19 for c in cats.values()) == 10
    sources = {ts.source for t in ALL.values() for ts in t.sources}
    assert KIT19_SOURCES | {"stylekqc_sts"} <= sources
    kowiki = {t.category for t in ALL.values() if t.sources[0].source == "kowiki"}
    assert {"text_generation", "closed_book_qa"} <= kowiki  # kowiki feeds two KIT-19 slots


def test_tasks_name_contract_sources_and_fields():
    contract = _contract()
    assert len(contract) >= 20
    for task in ALL.values():
        for ts in task.sources:
            assert ts.source in contract, f"{task.id}: source {ts.source} not in docs/data.md"
            assert set(task.fields) <= contract[ts.source], f"{task.id}: {set(task.fields) - contract[ts.source]}"


def test_template_ids_unique_across_the_registry():
    ids = [tpl.id for t in ALL.values() for tpl in t.templates]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("task_id", sorted(ALL))
def test_task_templates_parse_use_known_variables_and_render_the_sample(task_id):
    task = ALL[task_id]
    kinds = [t.kind for t in task.templates]
    assert kinds.count("instruction") >= 3 and kinds.count("question") >= 3
    for tpl in task.templates:
        for part in (tpl.instruction, tpl.input, tpl.output, *(tpl.choices or [])):
            assert template_variables(part) <= task.variables, f"{tpl.id}: {template_variables(part) - task.variables}"
    rendered = render_sample(task)
    for r in rendered:
        text = r["instruction"] + r["input"] + r["output"]
        assert r["instruction"] and r["output"] and "{{" not in text and "{%" not in text, r
        assert re.search("[가-힣]", r["instruction"]), r  # Korean
        if task.classification:
            assert len(r["choices"]) >= 2 and r["output"] in r["choices"], r
    assert len({r["instruction"] + r["input"] for r in rendered}) == len(rendered)  # distinct phrasings


def test_duplicate_template_id_across_tasks_is_rejected(tmp_path: Path):
    import shutil

    from dagllm.data.catalog import CATALOG_DIR

    root = tmp_path / "cat"
    shutil.copytree(CATALOG_DIR, root, ignore=shutil.ignore_patterns("samples"))
    text = (root / "tasks" / "nsmc_sentiment.yaml").read_text(encoding="utf-8")
    (root / "tasks" / "nsmc_copy.yaml").write_text(text.replace("id: nsmc_sentiment", "id: nsmc_copy"), "utf-8")
    with pytest.raises(CatalogError, match="template id 'nsmc_inst_polarity' is used by tasks"):
        load_catalog(root)
    (root / "tasks" / "nsmc_copy.yaml").unlink()
    bad = text.replace("category: sentiment_analysis", "category: gossip")
    (root / "tasks" / "nsmc_sentiment.yaml").write_text(bad, "utf-8")
    with pytest.raises(CatalogError, match="category 'gossip' is not in categories.yaml"):
        load_catalog(root)


def test_question_fraction_and_k_per_record_are_deterministic():
    task = CATALOG.tasks["nsmc_sentiment"]
    ids = [f"r{i}" for i in range(300)]
    only_q = [choose_templates(task, r, 7, 1, 1.0)[0].kind for r in ids]
    only_i = [choose_templates(task, r, 7, 1, 0.0)[0].kind for r in ids]
    assert set(only_q) == {"question"} and set(only_i) == {"instruction"}
    mixed = [choose_templates(task, r, 7, 1, 0.25)[0].kind for r in ids]
    assert 0.15 < mixed.count("question") / len(ids) < 0.35
    assert mixed == [choose_templates(task, r, 7, 1, 0.25)[0].kind for r in ids]
    four = choose_templates(task, "r1", 7, 4, 0.5)
    assert len({t.id for t in four}) == 4
    assert [t.id for t in four] == [t.id for t in choose_templates(task, "r1", 7, 4, 0.5)]
    assert len(choose_templates(task, "r1", 7, 10, 0.9)) == 6  # capped at the template count


def test_derivations_and_unknown_labels():
    assert first_paragraph("\n첫 문단이다. 둘째 문장.\n\n둘째 문단", 1000) == "첫 문단이다. 둘째 문장."
    assert first_paragraph("가나다라. " * 50, 40).endswith(".") and len(first_paragraph("가나다라. " * 50, 40)) <= 40
    assert first_sentence("서울은 수도이다. 인구가 많다.") == "서울은 수도이다."
    task = CATALOG.tasks["nsmc_sentiment"]
    with pytest.raises(RenderError, match=r"record r7: label '9' is not one of 0, 1"):
        render_template(task, task.templates[0], {"text": "글"}, "9", "r7")


def _canonical(tmp_path: Path, rows: list[dict]) -> Path:
    base = {"native_id": None, "license": "CC BY-SA 4.0", "benchmark": False, "file": "f", "line": 1,
            "split": "train", "label": None}
    df = pd.DataFrame([{**base, **r, "fields": json.dumps(r["fields"], ensure_ascii=False)} for r in rows])
    path = tmp_path / "canonical.parquet"
    df[CANONICAL_COLUMNS].to_parquet(path, index=False)
    return path


def _rows() -> list[dict]:
    rows = [{"id": f"n{i}", "source": "nsmc", "fields": {"text": f"리뷰 {i} {{{{ 7*7 }}}} {{% if 1 %}}x{{% endif %}}"},
             "label": str(i % 2)} for i in range(40)]
    rows += [{"id": f"p{g}-{j}", "source": "parakqc", "label": None,
              "fields": {"sentence": f"문장 {g}-{j}", "topic": "0", "act": str(j % 4), "group": str(g)}}
             for g in range(3) for j in range(10)]
    rows.append({"id": "alone", "source": "parakqc", "label": None,
                 "fields": {"sentence": "혼자", "topic": "0", "act": "0", "group": "99"}})
    return rows


def _render(tmp_path: Path, name: str, **params) -> tuple[pd.DataFrame, object]:
    tasks = {t: ALL[t] for t in ("nsmc_sentiment", "parakqc_paraphrase", "parakqc_act")}
    catalog = CATALOG.model_copy(update={"tasks": tasks})
    p = RenderParams(tasks=list(tasks), **params)
    out = tmp_path / name / "records.parquet"
    summary = run_render(p, catalog, _canonical(tmp_path, _rows()), out, tmp_path / name / "render.json")
    return pd.read_parquet(out), summary


def test_render_stage_options_counts_exports_and_determinism(tmp_path: Path):
    df, s = _render(tmp_path, "a", templates_per_record=2)
    assert list(df.columns) == RECORD_COLUMNS
    # injection: dataset text stays literal through the whole stage
    nsmc = df[df.task == "nsmc_sentiment"]
    assert nsmc["input"].str.contains(r"\{\{ 7\*7 \}\}", regex=True).any() or \
        nsmc["instruction"].str.contains(r"\{\{ 7\*7 \}\}", regex=True).all()
    assert not (df["instruction"] + df["input"] + df["output"]).str.contains("49").any()
    # counts reconcile: rows == kept + skipped, records == kept * k
    for c in s.counts.values():
        assert c.rows == c.kept + sum(c.skipped.values())
        assert c.records == 2 * c.kept
    assert s.counts["parakqc_paraphrase"].skipped == {"group of one": 1}
    assert s.counts["parakqc_act"].skipped == {}
    # group pairs: the output is another member of the same group
    para = df[df.task == "parakqc_paraphrase"]
    assert len(para) == 2 * 30
    for prompt, outp in zip(para["instruction"] + para["input"], para["output"], strict=True):
        src = re.search(r"문장 (\d+)-(\d+)", prompt).groups()
        dst = re.fullmatch(r"문장 (\d+)-(\d+)", outp).groups()
        assert src[0] == dst[0] and src[1] != dst[1]
    # label_field: the act comes from the field, verbalised
    act = df[(df.task == "parakqc_act") & (df.template_id == "parakqc_act_inst_options")]
    assert set(act["output"]) <= {"선택 의문", "설명 의문", "금지", "요구"} and len(act)
    # exports carry the metadata, one line per record
    alpaca = [json.loads(x) for x in (tmp_path / "a" / "alpaca.jsonl").read_text("utf-8").splitlines()]
    chat = [json.loads(x) for x in (tmp_path / "a" / "chat.jsonl").read_text("utf-8").splitlines()]
    assert len(alpaca) == len(chat) == len(df)
    for rec in (alpaca[0], chat[0]):
        assert {"source", "split", "record_id", "task", "category", "template_id", "license"} <= set(rec)
    assert chat[0]["messages"][1] == {"role": "assistant", "content": alpaca[0]["output"]}
    # deterministic: same params, same bytes; another seed, other picks
    again, _ = _render(tmp_path, "b", templates_per_record=2)
    pd.testing.assert_frame_equal(df, again)
    assert (tmp_path / "a" / "chat.jsonl").read_bytes() == (tmp_path / "b" / "chat.jsonl").read_bytes()
    other, _ = _render(tmp_path, "c", templates_per_record=2, seed=43)
    assert list(other["template_id"]) != list(df["template_id"])
