"""A team's own file with its own task reaches training, decontamination and the balance report;
params that do not match the catalog fail before any work, naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from dagllm.cli import app
from dagllm.data.teamdata import resolve
from dagllm.params import ParamsError, load_params

from ..conftest import REPO, SAMPLES

runner = CliRunner()

TEAM_ROWS = [
    ("1", "우리 동아리에서 함께 본 영화인데 결말이 정말 감동적이었다", "1"),
    ("2", "음향이 너무 커서 머리가 아팠고 줄거리도 엉성했다", "0"),
    ("3", "조연 배우의 연기가 주인공보다 훨씬 인상적이었다", "1"),
    ("4", "두 시간 내내 지루해서 몇 번이나 시계를 봤다", "0"),
    ("5", "가족과 다시 보러 가고 싶을 만큼 따뜻한 이야기였다", "1"),
    ("6", "광고와 달리 액션 장면이 거의 없어서 실망했다", "0"),
]


def _boolq_test_passage() -> str:
    lines = (SAMPLES / "kobest/v1.0/BoolQ/test.tsv").read_text(encoding="utf-8").splitlines()
    return lines[1].split("\t")[1]  # a benchmark passage, copied into a team row below


def _team_task(tmp: Path) -> Path:
    """A new task in the catalog's YAML shape, fed by the team file."""
    task = yaml.safe_load((REPO / "src/dagllm/data/catalog/tasks/nsmc_sentiment.yaml").read_text(encoding="utf-8"))
    task["id"] = "team_review_sentiment"
    task["description"] = "팀이 모은 리뷰의 감정을 분류한다."
    task["sources"] = [{"source": "team_reviews", "splits": ["train"]}]
    for tpl in task["templates"]:
        tpl["id"] = "team_" + tpl["id"]
    path = tmp / "team" / "team_review_sentiment.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(task, allow_unicode=True), encoding="utf-8")
    return path


def _with_team(workdir: Path, **local) -> None:
    team = workdir / "team"
    team.mkdir(exist_ok=True)
    rows = [*TEAM_ROWS, ("7", _boolq_test_passage(), "1")]
    (team / "reviews.tsv").write_text("id\tdocument\tlabel\n" + "".join(f"{a}\t{b}\t{c}\n" for a, b, c in rows),
                                      encoding="utf-8")
    data = yaml.safe_load((workdir / "params.yaml").read_text(encoding="utf-8"))
    data["ingest"]["local"] = [{"id": "team_reviews", "path": "team/reviews.tsv", "reader": "nsmc_ratings",
                                "license": "internal", **local}]
    (workdir / "params.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def _run(*args: str) -> None:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output


def test_team_rows_reach_training_decontamination_and_balance(workdir: Path):
    _with_team(workdir, tasks=["team_review_sentiment", "nsmc_sentiment"],
               task_files=[str(_team_task(workdir).relative_to(workdir))])
    for stage in ("check", "fetch", "ingest", "render", "validate", "decontaminate", "balance"):
        _run(stage)
    train = pd.read_parquet(workdir / "data/balanced/train.parquet")
    mix = pd.concat([train, pd.read_parquet(workdir / "data/balanced/validation.parquet")])
    team = train[train["source"] == "team_reviews"]
    assert set(team["task"]) == {"team_review_sentiment", "nsmc_sentiment"}  # a new task and a catalog one
    assert set(team["license"]) == {"internal"}
    report = json.loads((workdir / "reports/decontamination.json").read_text(encoding="utf-8"))
    caught = [h for h in report["contaminated"] if h["source"] == "team_reviews"]
    assert caught and {h["benchmark"]["source"] for h in caught} == {"kobest_boolq"}
    assert _boolq_test_passage() not in " ".join(mix["input"].fillna("") + mix["instruction"].fillna(""))
    listed = json.loads(runner.invoke(app, ["catalog", "ls", "--json"]).output)
    team_task = next(r for r in listed if r["task"] == "team_review_sentiment")
    assert team_task["sources"] == ["team_reviews"] and team_task["records"] == len(TEAM_ROWS) + 1
    balance = json.loads((workdir / "reports/balance.json").read_text(encoding="utf-8"))
    assert balance["before"]["team_review_sentiment"] >= len(TEAM_ROWS)
    assert balance["after"]["team_review_sentiment"] >= 1


def test_local_source_must_name_a_known_task(workdir: Path):
    _with_team(workdir, tasks=["no_such_task"])
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 2
    assert "ingest.local[0].tasks: unknown task 'no_such_task'" in result.output
    _with_team(workdir)  # no task at all
    result = runner.invoke(app, ["ingest"])
    assert result.exit_code == 2 and "feeds no task" in result.output


@pytest.mark.parametrize("override, key", [
    ("ingest.local=[{id: mine, path: params.yaml, reader: nsmc_ratingz, license: l, tasks: [nsmc_sentiment]}]",
     "ingest.local[0].reader: unknown reader 'nsmc_ratingz'"),
    ("render.tasks=[nsmc_sentiment, nsmc_sentimnt]", "render.tasks: unknown task 'nsmc_sentimnt'"),
    ("validate.hangul.nsmc_sentimnt={min: 0.1, max: 1.0}", "validate.hangul: unknown task or category 'nsmc_sentimnt'"),
    ("balance.category_weights.sentimnt=2.0", "balance.category_weights: unknown category 'sentimnt'"),
    ("ingest.sources=[nsmc, apeachh]", "ingest.sources: unknown source 'apeachh'"),
    ("ingest.local=[{id: mine, path: team, reader: nsmc_ratings, license: l, tasks: [nsmc_sentiment]}]",
     "ingest.local[0].path: team is a directory"),
])
@pytest.mark.parametrize("command", ["check", "ingest", "fetch"])
def test_params_that_do_not_match_the_catalog_fail_before_work(workdir: Path, override: str, key: str, command: str):
    (workdir / "team").mkdir()
    result = runner.invoke(app, [command, override])
    assert result.exit_code == 2, result.output
    assert key in " ".join(result.output.split()), result.output
    assert not (workdir / "data").exists(), "nothing may be read or written before the params are checked"


@pytest.mark.parametrize("override, key", [
    ("train.max_steps=true", "train.max_steps"), ("serve.port=true", "serve.port"),
    ("balance.seed=false", "balance.seed"), ("train.max_steps=7.5", "train.max_steps"),
    ("mlflow.experiment=12", "mlflow.experiment"),
])
def test_wrong_types_are_not_coerced(override: str, key: str):
    with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
        load_params(REPO / "params.yaml", [override])


def test_int_is_still_a_float_and_local_tasks_join_render_tasks(tmp_path: Path):
    p = load_params(REPO / "params.yaml", ["train.learning_rate=1"])
    assert p.train.learning_rate == 1.0
    f = tmp_path / "r.tsv"
    f.write_text("id\tdocument\tlabel\n1\t정말 재미있는 영화였다\t1\n", encoding="utf-8")
    p = load_params(REPO / "params.yaml", [f"ingest.local=[{{id: mine, path: {f}, reader: nsmc_ratings, "
                                           f"license: l, tasks: [apeach_hate]}}]", "render.tasks=[nsmc_sentiment]"])
    resolved, catalog = resolve(p)
    assert resolved.render.tasks == ["nsmc_sentiment", "apeach_hate"]
    assert {ts.source for ts in catalog.task("apeach_hate").sources} == {"apeach", "mine"}
