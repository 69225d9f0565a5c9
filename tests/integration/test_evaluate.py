"""evaluate end to end on a tiny model: all seven tasks, YNAT absent, MLflow, reports, cross-checks."""

import json
from pathlib import Path

import pandas as pd
import pytest

from dagllm.data.catalog import load_catalog
from dagllm.params import EvaluateParams, IngestParams, MlflowParams, TinyModelParams, TrainParams
from dagllm.stages.evaluate import run_evaluate
from dagllm.stages.ingest import run_ingest

from ..conftest import registry

pytestmark = pytest.mark.slow
TASKS = ["kobest_copa", "kobest_boolq", "kobest_hellaswag", "kobest_sentineg", "kobest_wic", "klue_sts", "klue_ynat"]
SENTENCES = ["오늘은 날씨가 맑아서 산책을 했다.", "뉴스 제목을 읽고 주제를 고른다.", "두 문장의 의미가 비슷합니까?",
             "문장: 배송이 빨라서 좋았어요", "질문: 정답은 예 또는 아니오입니다."] * 4


def _tiny_model(out: Path) -> Path:
    from dagllm.training.presets import build_tiny_model as build_model
    from dagllm.training.presets import train_tokenizer

    params = TrainParams(max_seq_len=128, tiny=TinyModelParams(hidden_size=32, num_heads=2, intermediate_size=64,
                                                               vocab_size=400))
    tok = train_tokenizer(SENTENCES, params.tiny.vocab_size)
    build_model(params, tok).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, request) -> dict:
    import shutil

    import mlflow

    from ..conftest import SAMPLES

    wd = tmp_path_factory.mktemp("evaluate")
    mirror = wd / "mirror"
    shutil.copytree(SAMPLES, mirror)
    shutil.rmtree(mirror / "klue_ynat")  # as in ../shared/data: YNAT has no files
    sources = ["kobest_copa", "kobest_boolq", "kobest_hellaswag", "kobest_sentineg", "kobest_wic", "klue_sts"]
    run_ingest(IngestParams(sources=sources, optional_sources=["klue_ynat"]), load_catalog(), mirror,
               wd / "canonical.parquet", wd / "rejected", wd / "ingest.json")
    model = _tiny_model(wd / "model")
    pd.DataFrame({"instruction": ["다음 문장의 감정은?", "문장을 요약하세요.", "긍정인가요?"], "input": ["좋았어요", "", "별로"],
                  "output": ["긍정", "오늘 산책했다.", "부정"],
                  "category": ["sentiment_analysis", "summarization", "sentiment_analysis"]}).to_parquet(wd / "val.parquet")
    mlf = MlflowParams(tracking_uri=f"sqlite:///{wd / 'mlflow.db'}", artifact_root=str(wd / "mlartifacts"))
    from dagllm.registry.tracking import configure

    with mlflow.start_run(experiment_id=configure(mlf)) as run:
        pass
    (wd / "run.json").write_text(json.dumps({"run_id": run.info.run_id}))
    params = EvaluateParams(tasks=TASKS, limit=4, batch_size=8, seed=3)
    summary = run_evaluate(params, mlf, wd / "canonical.parquet", model, wd / "run.json", wd / "eval", wd / "val.parquet",
                           raw_dir=mirror)
    return {"wd": wd, "summary": summary, "run_id": run.info.run_id, "params": params, "mlflow": mlf,
            "mirror": mirror}


def _samples(wd: Path, task: str) -> list[dict]:
    return [json.loads(x) for x in (wd / "eval/samples" / f"{task}.jsonl").read_text(encoding="utf-8").splitlines()]


def test_all_tasks_scored_and_ynat_reported_absent(evaluated):
    m = json.loads((evaluated["wd"] / "eval/metrics.json").read_text(encoding="utf-8"))
    assert m["lm_eval_version"] == "0.4.13"
    assert m["missing"] == {"klue_ynat": "no data in this mirror"} == evaluated["summary"].missing
    scored = TASKS[:-1]
    assert m["samples"] == {t: 4 for t in scored} and m["task_versions"] == {t: 1.0 for t in scored}
    assert m["protocol"] == {"name": "kit19", "num_fewshot": 0, "limit": 4, "batch_size": 8, "device": "cpu",
                             "seed": 3}  # device auto: no GPU here
    assert set(m["metrics"]["kobest_hellaswag"]) == {"acc", "acc_norm", "macro_f1"}
    assert set(m["metrics"]["klue_sts"]) == {"acc", "f1"}
    table = (evaluated["wd"] / "eval/table.md").read_text(encoding="utf-8")
    assert "| klue_ynat | – | 0 | no data in this mirror |" in table
    assert "## kobest_wic (test, 4 of 1,260 items)" in table
    # limit 4: no number is comparable with the published table, and the report says why
    for task in scored:
        n = len((evaluated["wd"] / "eval/data" / f"{task}.jsonl").read_text(encoding="utf-8").splitlines())
        assert m["comparable"][task] == {"comparable": False, "why": [f"limit 4: 4 of {n:,} items scored"]}
        assert f"| {task} | no | limit 4: 4 of {n:,} items scored |" in table
    assert m["comparable"]["klue_ynat"]["why"] == ["not scored: no data in this mirror"]


def test_kit19_contexts_in_the_samples(evaluated):
    """The logged samples carry KIT-19's context of the loader's document (the brackets of WiC kept)."""
    wic = _samples(evaluated["wd"], "kobest_wic")
    doc = json.loads((evaluated["wd"] / "eval/data/kobest_wic.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert "[" in doc["context_1"]
    assert wic[0]["context"] == (f"문장1: {doc['context_1']} 문장2: {doc['context_2']} 두 문장에서 {doc['word']}가 "
                                 "같은 뜻으로 쓰였나?") and wic[0]["choices"] == ["아니오", "예"]
    boolq = _samples(evaluated["wd"], "kobest_boolq")[0]
    assert boolq["context"].endswith(" 답변: ")


def test_dagllm_protocol_uses_the_canonical_rows_and_our_prompts(evaluated):
    wd = evaluated["wd"]
    params = EvaluateParams(tasks=["kobest_wic", "klue_ynat"], protocol="dagllm", limit=2, validation_loss=False)
    summary = run_evaluate(params, evaluated["mlflow"], wd / "canonical.parquet", wd / "model", None, wd / "eval_dg")
    assert summary.samples == {"kobest_wic": 2} and summary.missing == {"klue_ynat": "no data in this mirror"}
    doc = json.loads((wd / "eval_dg/data/kobest_wic.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert "[" not in doc["context_1"]  # the canonical rows: brackets removed
    first = json.loads((wd / "eval_dg/samples/kobest_wic.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first["context"].startswith(f"문장 1: {doc['context_1']}\n문장 2: ")
    m = json.loads((wd / "eval_dg/metrics.json").read_text(encoding="utf-8"))
    assert m["comparable"]["kobest_wic"]["why"][0].startswith("protocol dagllm")
    assert (wd / "eval_dg/table.md").read_text(encoding="utf-8").startswith(
        "# Evaluation: protocol dagllm (our prompts, not KIT-19's)")


def test_metrics_agree_with_lm_eval_and_the_samples(evaluated):
    m = json.loads((evaluated["wd"] / "eval/metrics.json").read_text(encoding="utf-8"))
    for task, ours in m["metrics"].items():
        theirs = m["tasks"][task]["lm_eval"]
        assert ours["acc"] == pytest.approx(theirs["acc"]), task
        assert ours.get("macro_f1", ours.get("f1")) == pytest.approx(theirs["f1"]), task
        samples = _samples(evaluated["wd"], task)
        assert ours["acc"] == pytest.approx(sum(s["acc"] for s in samples) / len(samples))
    # acc_norm by characters is lm-eval 0.4.13's acc_norm (len of the str); acc_bytes would differ
    assert m["metrics"]["kobest_hellaswag"]["acc_norm"] == pytest.approx(m["tasks"]["kobest_hellaswag"]["lm_eval"]["acc_norm"])
    for s in _samples(evaluated["wd"], "kobest_hellaswag"):
        per_char = [ll / len(c) for ll, c in zip(s["loglikelihoods"], s["choices"], strict=True)]
        assert s["pred_norm"] == per_char.index(max(per_char)) and len(s["choices"]) == 4


def test_reference_predictors_and_collapse_flags(evaluated):
    m = json.loads((evaluated["wd"] / "eval/metrics.json").read_text(encoding="utf-8"))
    assert set(m["reference"]["kobest_hellaswag"]) == {"majority", "constant_0", "constant_1", "constant_2",
                                                       "constant_3", "random"}
    for task, refs in m["reference"].items():
        docs = [json.loads(x) for x in (evaluated["wd"] / "eval/data" / f"{task}.jsonl").read_text().splitlines()]
        golds = [s["gold"] for s in _samples(evaluated["wd"], task)]
        assert golds == [d["label"] for d in docs[:4]]  # the first `limit` items of the split
        for k in range(len(refs) - 2):
            assert refs[f"constant_{k}"]["acc"] == pytest.approx(golds.count(k) / 4)
        split = [d["label"] for d in docs]
        top = max(sorted(set(split)), key=split.count)
        assert refs["majority"]["acc"] == pytest.approx(golds.count(top) / 4)
        preds = {s["pred"] for s in _samples(evaluated["wd"], task)}
        flagged = any("argmax" in f for f in m["tasks"][task]["flags"])
        assert flagged == (len(preds) == 1), task
        if flagged:
            assert m["metrics"][task]["acc"] == refs[f"constant_{preds.pop()}"]["acc"]


def test_validation_loss_per_category(evaluated):
    vl = evaluated["summary"].validation_loss
    assert set(vl) == {"sentiment_analysis", "summarization", "all"}
    assert vl["sentiment_analysis"]["records"] == 2 and vl["all"]["records"] == 3
    assert vl["all"]["tokens"] == vl["sentiment_analysis"]["tokens"] + vl["summarization"]["tokens"]
    assert 0 < vl["all"]["loss"] < 20


def test_everything_logged_to_the_training_run(evaluated):
    client = registry(evaluated["wd"] / "mlflow.db")
    run = client.get_run(evaluated["run_id"])
    for key in ("eval.kobest_copa.acc", "eval.kobest_hellaswag.acc_norm", "eval.klue_sts.f1",
                "eval_ref.klue_sts.constant_1.f1", "eval_ref.kobest_wic.random.macro_f1", "eval_val_loss.all"):
        assert key in run.data.metrics, key
    assert run.data.tags["eval.lm_eval_version"] == "0.4.13"
    assert run.data.tags["eval.klue_ynat.status"] == "no data in this mirror"
    assert run.data.tags["eval.protocol"] == "kit19" and run.data.tags["eval.kobest_copa.comparable"] == "false"
    names = {a.path for a in client.list_artifacts(evaluated["run_id"], "eval")}
    assert {"eval/metrics.json", "eval/table.md", "eval/chart.png", "eval/report.html", "eval/samples"} <= names
    html = (evaluated["wd"] / "eval/report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html


def test_no_task_with_data_is_a_clear_error(evaluated):
    wd = evaluated["wd"]
    with pytest.raises(ValueError, match="none of evaluate.tasks \\(klue_ynat\\) has benchmark rows"):
        run_evaluate(EvaluateParams(tasks=["klue_ynat"]), evaluated["mlflow"], wd / "canonical.parquet",
                     wd / "model", None, wd / "eval2", raw_dir=evaluated["mirror"])


def test_few_shot_examples_come_from_the_train_split(evaluated):
    wd = evaluated["wd"]
    params = EvaluateParams(tasks=["kobest_copa", "klue_sts"], num_fewshot=1, limit=2, validation_loss=False)
    summary = run_evaluate(params, evaluated["mlflow"], wd / "canonical.parquet", wd / "model", None, wd / "eval_fs",
                           raw_dir=evaluated["mirror"])
    m = json.loads((wd / "eval_fs/metrics.json").read_text(encoding="utf-8"))
    assert m["protocol"]["num_fewshot"] == 1 and summary.samples == {"kobest_copa": 2, "klue_sts": 2}
    train = pd.read_parquet(wd / "canonical.parquet").query("source == 'kobest_copa' and split == 'train'")
    assert len((wd / "eval_fs/data/kobest_copa.fewshot.jsonl").read_text().splitlines()) == len(train)
    # KLUE STS has no train split in the catalog: examples come from the scored split, said so
    assert not (wd / "eval_fs/data/klue_sts.fewshot.jsonl").exists()
    assert any("few-shot examples drawn from the scored split" in f for f in m["tasks"]["klue_sts"]["flags"])
