"""The quality gate: row-level failures are quarantined, a bad batch fails with a readable report."""

import json
from pathlib import Path

import pandas as pd
import pytest

from dagllm.data.canonical import CANONICAL_COLUMNS
from dagllm.data.catalog import load_catalog
from dagllm.data.gate import ValidationFailed, balanced_gate, validate_balanced, validate_points
from dagllm.data.records import RECORD_COLUMNS
from dagllm.params import HangulBounds, ValidateParams
from dagllm.stages.validate import run_validate

TASKS = ["nsmc_sentiment", "apeach_hate"]
P = ValidateParams(min_records_per_task=5, max_bad_fraction=0.1)


def _canonical(n=40) -> pd.DataFrame:
    rows = []
    for i in range(n):
        source = "nsmc" if i % 2 else "apeach"
        rows.append({"id": f"c{i}", "source": source, "split": "train", "native_id": str(i),
                     "fields": json.dumps({"text": f"정말 재미있는 영화였어요 {i}"}, ensure_ascii=False),
                     "label": str(i % 2), "license": "CC BY 4.0", "benchmark": False, "file": "f", "line": i + 1})
    return pd.DataFrame(rows, columns=CANONICAL_COLUMNS)


def _records(n=40) -> pd.DataFrame:
    rows = []
    for i in range(n):
        task = "nsmc_sentiment" if i % 2 else "apeach_hate"
        rows.append({"id": f"id{i}", "record_id": f"c{i}", "task": task, "category": "sentiment_analysis",
                     "template_id": "x", "template_kind": "question" if i % 3 else "instruction",
                     "instruction": f"다음 문장을 분류하세요 {i}번", "input": f"정말 재미있는 영화였어요 {i}",
                     "output": "긍정", "source": "nsmc" if i % 2 else "apeach", "split": "train",
                     "license": "CC BY 4.0"})
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


def _run(tmp_path, canonical=None, records=None, params=P):
    return validate_points(_canonical() if canonical is None else canonical,
                           _records() if records is None else records, params, TASKS, load_catalog(),
                           tmp_path / "v", tmp_path / "q")


def _quarantine(tmp_path, point):
    return [json.loads(x) for x in (tmp_path / f"q/{point}.jsonl").read_text().splitlines()]


def test_clean_records_pass_and_docs_are_built(tmp_path: Path):
    s, kept = _run(tmp_path)
    assert s.success and len(kept) == 40
    assert [p.point for p in s.points] == ["ingested", "rendered"]
    assert (tmp_path / "v/docs/index.html").is_file()
    pages = {p.parts[-4] for p in (tmp_path / "v/docs/validations").rglob("*.html")}
    assert pages == {"ingested", "rendered"}
    summary = json.loads((tmp_path / "v/summary.json").read_text())
    assert summary["success"] is True and summary["points"]["rendered"]["rows"] == 40
    assert _quarantine(tmp_path, "rendered") == []


def test_a_few_bad_rows_are_quarantined_and_the_run_goes_on(tmp_path: Path):
    df = _records()
    df.loc[0, "output"] = None
    df.loc[1, "instruction"] = "아"
    df.loc[2, "input"] = "abcdefghij klmnopqrstu vwxyz abcdefghijkl mnopqrstu"  # too little Hangul
    canonical = _canonical()
    canonical.loc[3, "label"] = "7"  # outside nsmc_sentiment's labels
    s, kept = _run(tmp_path, canonical, df, ValidateParams(min_records_per_task=5, max_bad_fraction=0.1))
    assert s.success, s.lines()
    ingested, rendered = s.points
    assert (ingested.rows, ingested.kept, ingested.quarantined) == (40, 39, 1)
    assert (rendered.rows, rendered.kept, rendered.quarantined) == (40, 36, 4)
    assert sorted(set(df["id"]) - set(kept["id"])) == ["id0", "id1", "id2", "id3"]
    q = {r["id"]: r["reasons"] for r in _quarantine(tmp_path, "rendered")}
    assert "expect_column_values_to_not_be_null(output)" in q["id0"]
    assert q["id1"] == ["expect_column_value_lengths_to_be_between(instruction)"]
    assert q["id2"] == ["expect_column_pair_values_a_to_be_greater_than_b(_q_hangul)"]
    assert q["id3"] == ["canonical_row_quarantined"]  # its canonical row had a bad label
    assert _quarantine(tmp_path, "ingested")[0]["reasons"] == ["expect_column_values_to_be_in_set(_q_source_label)"]
    assert list(kept.columns) == RECORD_COLUMNS


def test_rendered_label_outside_the_task_set_is_quarantined(tmp_path: Path):
    canonical = _canonical()
    df = _records()
    df.loc[5, "record_id"] = "missing"  # no canonical label: "nsmc_sentiment|nan" is not allowed
    s, kept = _run(tmp_path, canonical, df)
    assert s.success and "id5" not in set(kept["id"])
    assert _quarantine(tmp_path, "rendered")[0]["reasons"] == ["expect_column_values_to_be_in_set(_q_task_label)"]


def test_hangul_bounds_per_task(tmp_path: Path):
    df = _records()
    df.loc[df["task"] == "nsmc_sentiment", "input"] = "1234 + 5678 = 6912, 99 * 3 = 297; 2 ** 10 = 1024, 17 * 19 = 323"
    strict = ValidateParams(min_records_per_task=5, max_bad_fraction=0.1)
    s, _ = _run(tmp_path / "a", records=df, params=strict)
    assert not s.success and s.points[1].quarantined == 20
    loose = ValidateParams(min_records_per_task=5, max_bad_fraction=0.1,
                           hangul={"default": HangulBounds(min=0.3), "nsmc_sentiment": HangulBounds(min=0.1)})
    s, kept = _run(tmp_path / "b", records=df, params=loose)
    assert s.success and len(kept) == 40


def test_bad_batch_fails_with_counts(tmp_path: Path):
    df = _records()
    df.loc[0:2, "output"] = None
    df.loc[3, "task"] = "unknown_task"
    df.loc[4:5, "instruction"] = "아"
    c, r = tmp_path / "c.parquet", tmp_path / "r.parquet"
    _canonical().to_parquet(c, index=False)
    df.to_parquet(r, index=False)
    with pytest.raises(ValidationFailed) as err:
        run_validate(P.model_copy(update={"max_bad_fraction": 0.05}), TASKS, load_catalog(), c, r, tmp_path / "v",
                     tmp_path / "out.parquet", tmp_path / "q")
    rendered = err.value.summary.points[1]
    counts = {(e["expectation"], e["column"]): (e["success"], e["unexpected_count"]) for e in rendered.expectations}
    assert counts[("expect_column_values_to_not_be_null", "output")] == (False, 3)
    assert counts[("expect_column_value_lengths_to_be_between", "instruction")] == (True, 2)  # 5% is within mostly
    assert counts[("expect_column_values_to_be_in_set", "task")] == (True, 1)
    assert "rendered: expect_column_values_to_not_be_null(output) failed on 3 of 40 rows" in str(err.value)
    assert "6 of 40 rows quarantined (15.0% > max_bad_fraction 5.0%)" in str(err.value)
    assert rendered.rows == rendered.kept + rendered.quarantined == 40
    assert not (tmp_path / "out.parquet").exists()
    assert json.loads((tmp_path / "v/summary.json").read_text())["success"] is False


def test_duplicates_beyond_threshold_and_task_counts_fail(tmp_path: Path):
    df = _records()
    df.loc[0:9, ["instruction", "input", "output"]] = ["같은 지시문입니다", "같은 입력", "같은 출력"]
    s, _ = _run(tmp_path / "a", records=df)
    assert [e["expectation"] for e in s.points[1].expectations if not e["success"]] == [
        "expect_compound_columns_to_be_unique"]
    s, _ = _run(tmp_path / "b", params=P.model_copy(update={"max_records_per_task": 10}))
    failed = [e for e in s.points[1].expectations if not e["success"]]
    assert [e["column"] for e in failed] == ["_q_task_count"] and not s.success


def test_balanced_gate_counts_repeats_once(tmp_path: Path):
    train = pd.concat([_records(), _records().head(4)], ignore_index=True)  # upsampled repeats
    gate = balanced_gate(P, TASKS, 100, tmp_path / "v", tmp_path / "q")
    t, v, summary = gate(train, _records().head(0))
    assert len(t) == 44 and summary["success"] and summary["points"]["balanced"]["rows"] == 40
    bad = _records()
    bad.loc[0:9, "license"] = ""
    with pytest.raises(ValidationFailed, match=r"balanced: expect_column_value_lengths_to_be_between\(license\)"):
        validate_balanced(bad, P, TASKS, 100, tmp_path / "w", tmp_path / "q2") and gate(bad, bad.head(0))
    s, _ = validate_balanced(bad, P, TASKS, 100, tmp_path / "x", tmp_path / "q3")
    assert not s.success and s.points[0].quarantined == 10


def test_cli_validate_exits_nonzero_and_names_failures(workdir: Path):
    from typer.testing import CliRunner

    from dagllm.cli import app

    df = _records()
    df.loc[0:5, "output"] = None
    for sub, frame in (("canonical", _canonical()), ("rendered", df)):
        (workdir / f"data/{sub}").mkdir(parents=True)
        frame.to_parquet(workdir / f"data/{sub}/records.parquet", index=False)
    result = CliRunner().invoke(app, ["validate", "render.tasks=[nsmc_sentiment,apeach_hate]"])
    assert result.exit_code == 1
    assert "rendered: expect_column_values_to_not_be_null(output) failed on 6 of 40 rows" in result.output
    assert "Data Docs:" in result.output
    assert (workdir / "reports/validation/docs/index.html").is_file()
    assert len((workdir / "data/validated/quarantine/rendered.jsonl").read_text().splitlines()) == 6


def _wic_batch(catalog, words):
    from dagllm.data.records import render_task
    from dagllm.params import RenderParams

    rows = [(f"w{i}", json.dumps({"word": w, "context_1": f"{w}가 있다.", "context_2": f"{w}를 보았다."},
                                 ensure_ascii=False), str(i % 2), "kobest_wic", "train", "CC BY-SA 4.0")
            for i, w in enumerate(words)]
    canonical = pd.DataFrame([{"id": r[0], "source": r[3], "split": "train", "native_id": r[0], "fields": r[1],
                               "label": r[2], "license": r[5], "benchmark": False, "file": "f", "line": i + 1}
                              for i, r in enumerate(rows)], columns=CANONICAL_COLUMNS)
    records, _ = render_task(catalog.task("kobest_wic_sense"), rows, RenderParams(tasks=["kobest_wic_sense"], seed=7))
    return canonical, pd.DataFrame(records, columns=RECORD_COLUMNS)


def test_rendered_gate_counts_particle_disagreements(tmp_path: Path):
    """A template writing 가 after any word fails the gate (자전가); the committed one passes it."""
    catalog = load_catalog()
    wic = catalog.task("kobest_wic_sense")
    bad_tpl = wic.templates[0].model_copy(update={"instruction": '두 문장에서 "{{ word }}"가 같은 뜻인가요?'})
    bad = catalog.model_copy(update={"tasks": {**catalog.tasks, wic.id: wic.model_copy(
        update={"templates": [bad_tpl]})}})
    words = ["자전", "무명", "배", "물", "눈", "말"]  # 자전 무명 눈 물 말 take 이: five disagreements
    params = P.model_copy(update={"min_records_per_task": 1})
    canonical, records = _wic_batch(bad, words)
    c, r = tmp_path / "c.parquet", tmp_path / "r.parquet"
    canonical.to_parquet(c, index=False)
    records.to_parquet(r, index=False)
    with pytest.raises(ValidationFailed) as err:
        run_validate(params, ["kobest_wic_sense"], bad, c, r, tmp_path / "v", tmp_path / "ok.parquet",
                     tmp_path / "q", render_seed=7)
    counted = json.loads((tmp_path / "v/particles.json").read_text())
    assert (counted["errors"], counted["unverified"], counted["records"]) == (5, 0, 6)
    sums = [e for e in err.value.summary.points[1].expectations
            if e["expectation"] == "expect_column_sum_to_be_between"]
    assert [(e["success"], e["observed_value"]) for e in sums] == [(False, 5)]
    # the same records pass when the threshold allows them; the committed templates give none
    s, _ = validate_points(canonical, records, params.model_copy(update={"max_particle_errors": 5}),
                           ["kobest_wic_sense"], bad, tmp_path / "v2", tmp_path / "q2", render_seed=7)
    assert s.success
    canonical, records = _wic_batch(catalog, words)
    s, _ = validate_points(canonical, records, params, ["kobest_wic_sense"], catalog, tmp_path / "v3",
                           tmp_path / "q3", render_seed=7)
    assert s.success and json.loads((tmp_path / "v3/particles.json").read_text())["errors"] == 0
    assert json.loads((tmp_path / "v3/particles.json").read_text())["by_markers"] > 0
    # a record that is not what its template renders from its row is reported, not checked
    canonical, records = _wic_batch(bad, words)
    records.loc[0, "instruction"] = "바뀐 지시문입니다"  # w0: 자전
    validate_points(canonical, records, params.model_copy(update={"max_particle_errors": 5}), ["kobest_wic_sense"],
                    bad, tmp_path / "v4", tmp_path / "q4", render_seed=7)
    counted = json.loads((tmp_path / "v4/particles.json").read_text())
    assert (counted["unverified"], counted["errors"]) == (1, 4)


def test_the_gate_re_renders_group_paired_records_with_the_render_seed(tmp_path: Path):
    """ParaKQC pairs each sentence with another of its group; the gate re-pairs with render.seed."""
    from dagllm.data.records import render_task
    from dagllm.params import RenderParams

    catalog = load_catalog()
    task = catalog.task("parakqc_paraphrase")
    sentences = ["불 좀 꺼 줄래?", "거실 불을 꺼 줘.", "불 끄는 거 잊지 마.", "메일 왔는지 알려 줘.", "새 메일 있어?", "메일함 확인해 줘."]
    rows = [(f"p{i}", json.dumps({"sentence": s, "topic": "2", "act": "3", "group": str(i // 3)}, ensure_ascii=False),
             None, "parakqc", "train", "CC BY-SA 4.0") for i, s in enumerate(sentences)]
    canonical = pd.DataFrame([{"id": r[0], "source": "parakqc", "split": "train", "native_id": r[0], "fields": r[1],
                               "label": None, "license": r[5], "benchmark": False, "file": "f", "line": i + 1}
                              for i, r in enumerate(rows)], columns=CANONICAL_COLUMNS)
    # a template writing 라는 literally is re-rendered per record (one using markers only needs not be)
    literal = task.templates[0].model_copy(update={"instruction": '"{{ sentence }}"라는 말을 바꿔 쓰세요.',
                                                   "input": "", "output": "{{ paraphrase }}"})
    task = task.model_copy(update={"templates": [literal, task.templates[1]]})
    catalog = catalog.model_copy(update={"tasks": {**catalog.tasks, task.id: task}})
    records, _ = render_task(task, rows, RenderParams(tasks=[task.id], seed=11, templates_per_record=2))
    records = pd.DataFrame(records, columns=RECORD_COLUMNS)
    params = P.model_copy(update={"min_records_per_task": 1})
    validate_points(canonical, records, params, [task.id], catalog, tmp_path / "v", tmp_path / "q", render_seed=11)
    counted = json.loads((tmp_path / "v/particles.json").read_text())
    # every sentence ends in a vowel (줄래, 줘, 마, 있어): 라는 agrees
    assert (counted["records"], counted["rendered_again"], counted["by_markers"]) == (12, 6, 6)
    assert (counted["unverified"], counted["errors"]) == (0, 0)
    # another seed pairs differently: those records are not what the gate renders, so none is vouched for
    validate_points(canonical, records, params, [task.id], catalog, tmp_path / "w", tmp_path / "q2", render_seed=12)
    assert json.loads((tmp_path / "w/particles.json").read_text())["unverified"] > 0


def test_a_benchmark_row_the_gate_quarantines_is_not_used_downstream(tmp_path: Path):
    """decontaminate (and evaluate) read data/validated/canonical.parquet: the gate's kept rows."""
    from dagllm.params import DecontaminateParams
    from dagllm.stages.decontaminate import run_decontaminate

    item = "해바라기는 국화과에 속하는 한해살이풀로 키가 2미터까지 자라며 여름에 노란 꽃을 피운다"
    fields = {"passage": item, "question": "질문인가?", "note": "가" * 120_000}  # over max_fields_chars
    bench = pd.DataFrame([{"id": "b0", "source": "kobest_boolq", "split": "test", "native_id": "0",
                           "fields": json.dumps(fields, ensure_ascii=False), "label": "1", "license": "CC BY-SA 4.0",
                           "benchmark": True, "file": "f", "line": 2}], columns=CANONICAL_COLUMNS)
    canonical = pd.concat([_canonical(), bench], ignore_index=True)
    records = _records()
    records.loc[0, "input"] = item  # a training record copying the passage
    c, r, v = tmp_path / "c.parquet", tmp_path / "r.parquet", tmp_path / "validated/records.parquet"
    canonical.to_parquet(c, index=False)
    records.to_parquet(r, index=False)
    s = run_validate(P, TASKS, load_catalog(), c, r, tmp_path / "v", v, tmp_path / "q")
    assert s.points[0].quarantined == 1 and _quarantine(tmp_path, "ingested")[0]["id"] == "b0"
    kept = pd.read_parquet(v.with_name("canonical.parquet"))
    assert set(kept["id"]) == set(canonical["id"]) - {"b0"}
    after = run_decontaminate(DecontaminateParams(), v, v.with_name("canonical.parquet"), tmp_path / "d.parquet",
                              tmp_path / "d.json")
    before = run_decontaminate(DecontaminateParams(), v, c, tmp_path / "d0.parquet", tmp_path / "d0.json")
    assert before.dropped == 1 and before.contaminated[0]["benchmark"]["id"] == "b0"  # the pre-gate table would
    assert after.dropped == 0


def test_a_selected_task_without_records_fails_the_gate_by_name(tmp_path: Path):
    # a team task whose file gave no rows renders nothing: the gate must say which task, not pass
    tasks = [*TASKS, "kobest_copa_causal"]
    s, _ = validate_points(_canonical(), _records(), P, tasks, load_catalog(), tmp_path / "v", tmp_path / "q")
    assert not s.success
    lines = [line for p in s.points for line in p.failure_lines()]
    assert lines == ["rendered: expect_column_distinct_values_to_contain_set(task) failed: missing "
                     "['kobest_copa_causal']"]
