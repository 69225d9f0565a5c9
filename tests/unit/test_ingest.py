import json
from pathlib import Path

import pandas as pd
import pytest

from dagllm.data.canonical import IngestError
from dagllm.data.catalog import load_catalog
from dagllm.params import IngestParams
from dagllm.stages.ingest import run_ingest


def _ingest(mirror: Path, out: Path, sources=("kobest_copa", "apeach", "nsmc"), limit=None):
    return run_ingest(IngestParams(sources=list(sources), max_rows_per_file=limit), load_catalog(), mirror,
                      out / "records.parquet", out / "rejected", out / "ingest.json")


def test_counts_reconcile_and_rejects_are_kept(mirror_copy: Path, tmp_path: Path):
    copa = mirror_copy / "kobest/v1.0/COPA/train.tsv"
    copa.write_bytes(copa.read_bytes() + "99\t문장.\t원인\t가.\t나.\t7\r\n".encode())
    s = _ingest(mirror_copy, tmp_path / "out")
    report = json.loads((tmp_path / "out/ingest.json").read_text())
    for f in report["files"]:
        assert f["read"] == f["kept"] + sum(f["rejected"].values()), f
    table = pd.read_parquet(tmp_path / "out/records.parquet")
    assert len(table) == s.rows == sum(f["kept"] for f in report["files"])
    assert table["id"].is_unique
    rejected = [json.loads(x) for x in (tmp_path / "out/rejected/kobest_copa.jsonl").read_text().splitlines()]
    assert rejected == [{"source": "kobest_copa", "file": "kobest/v1.0/COPA/train.tsv", "line": 18,
                         "reason": "unknown label '7' (expected 1 or 2)", "raw": "99\t문장.\t원인\t가.\t나.\t7"}]
    assert s.rejected == sum(len((tmp_path / "out/rejected" / f"{x}.jsonl").read_text().splitlines())
                             for x in ("kobest_copa", "apeach", "nsmc"))
    assert set(table[table["benchmark"]]["split"]) == {"test"}
    assert set(table["license"]) == {"CC BY-SA 4.0", "CC0 1.0"}


def test_ids_are_stable_across_runs(mirror_copy: Path, tmp_path: Path):
    _ingest(mirror_copy, tmp_path / "a")
    _ingest(mirror_copy, tmp_path / "b")
    a = pd.read_parquet(tmp_path / "a/records.parquet")
    b = pd.read_parquet(tmp_path / "b/records.parquet")
    assert a["id"].tolist() == b["id"].tolist()


def test_missing_file_names_source_and_fix(mirror_copy: Path, tmp_path: Path):
    (mirror_copy / "apeach/APEACH/test.csv").unlink()
    with pytest.raises(IngestError, match=r"source apeach: file .*test\.csv not found; fetch it"):
        _ingest(mirror_copy, tmp_path / "out")
    assert not (tmp_path / "out/records.parquet").exists()


def test_limit_caps_rows_per_file(mirror_copy: Path, tmp_path: Path):
    s = _ingest(mirror_copy, tmp_path / "out", sources=["kobest_copa"], limit=3)
    assert [f.read for f in s.files] == [3, 3, 3]


def test_optional_files_absent_are_skipped_and_reported(mirror_copy: Path, tmp_path: Path):
    (mirror_copy / "nsmc/ratings_train.txt").unlink()
    (mirror_copy / "nsmc/ratings_test.txt").unlink()
    s = _ingest(mirror_copy, tmp_path / "out", sources=["nsmc"])
    report = json.loads((tmp_path / "out/ingest.json").read_text())
    assert [x["file"] for x in report["skipped"]] == ["nsmc/ratings_train.txt", "nsmc/ratings_test.txt"]
    assert [f.file for f in s.files] == ["nsmc/raw/10001.json", "nsmc/raw/10002.json", "nsmc/raw/10003.json"]


def test_a_source_with_none_of_its_files_is_an_error(mirror_copy: Path, tmp_path: Path):
    import shutil

    shutil.rmtree(mirror_copy / "klue_ynat")
    with pytest.raises(IngestError, match=r"source klue_ynat: file .*ynat-v1\.1_train\.json not found"):
        _ingest(mirror_copy, tmp_path / "out", sources=["klue_ynat"])


def test_undecodable_rows_go_to_quarantine_with_line(mirror_copy: Path, tmp_path: Path):
    f = mirror_copy / "nsmc/ratings_test.txt"
    f.write_bytes(f.read_bytes() + b"8100009\t" + "별로".encode("euc-kr") + b"\t0\n")
    _ingest(mirror_copy, tmp_path / "out", sources=["nsmc"])
    rejected = [json.loads(x) for x in (tmp_path / "out/rejected/nsmc.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {"file": "nsmc/ratings_test.txt", "line": 6, "reason": "undecodable bytes (not UTF-8)"}.items() <= \
        next(r for r in rejected if r["file"] == "nsmc/ratings_test.txt").items()


def test_every_catalog_source_ingests_from_the_samples(tmp_path: Path):
    from ..conftest import SAMPLES

    cat = load_catalog()
    s = _ingest(SAMPLES, tmp_path / "out", sources=sorted(cat.sources))
    report = json.loads((tmp_path / "out/ingest.json").read_text())
    assert {f["source"] for f in report["files"]} == set(cat.sources)
    for f in report["files"]:
        assert f["read"] == f["kept"] + sum(f["rejected"].values()), f
    table = pd.read_parquet(tmp_path / "out/records.parquet")
    assert table["id"].is_unique and len(table) == s.rows
    assert "CC BY-NC-ND 4.0" in set(table["license"])


def test_local_sources_use_the_same_readers_and_quarantine(mirror_copy: Path, tmp_path: Path):
    from dagllm.params import LocalSource

    own = tmp_path / "team" / "reviews.tsv"
    own.parent.mkdir()
    own.write_text("id\tdocument\tlabel\n1\t우리 팀이 모은 리뷰\t1\n2\t\t0\n3\t별점 없음\t9\n", encoding="utf-8")
    params = IngestParams(sources=["apeach"], local=[LocalSource(id="team_reviews", path=str(own),
                                                                 reader="nsmc_ratings", license="internal",
                                                                 tasks=["nsmc_sentiment"])])
    out = tmp_path / "out"
    run_ingest(params, load_catalog(), mirror_copy, out / "records.parquet", out / "rejected", out / "ingest.json")
    table = pd.read_parquet(out / "records.parquet")
    mine = table[table["source"] == "team_reviews"]
    assert len(mine) == 1 and set(mine["license"]) == {"internal"} and set(mine["split"]) == {"train"}
    reasons = [json.loads(x)["reason"] for x in (out / "rejected/team_reviews.jsonl").read_text().splitlines()]
    assert reasons == ["empty text", "unknown label '9' (expected 0 or 1)"]


def test_local_source_errors_name_the_key(mirror_copy: Path, tmp_path: Path):
    from dagllm.params import LocalSource

    clash = IngestParams(sources=["apeach"], local=[LocalSource(id="apeach", path="x", reader="apeach", license="l",
                                                                tasks=["apeach_hate"])])
    with pytest.raises(IngestError, match="ingest.local: id 'apeach' is a catalog source"):
        run_ingest(clash, load_catalog(), mirror_copy, tmp_path / "r.parquet", tmp_path / "rej", tmp_path / "i.json")
    gone = IngestParams(sources=["apeach"], local=[LocalSource(id="mine", path="nowhere.tsv", reader="apeach",
                                                               license="l", tasks=["apeach_hate"])])
    with pytest.raises(IngestError, match=r"ingest.local mine: file nowhere\.tsv not found"):
        run_ingest(gone, load_catalog(), mirror_copy, tmp_path / "r.parquet", tmp_path / "rej", tmp_path / "i.json")


def test_cli_fetch_then_ingest_and_clear_errors(workdir: Path, mirror_copy: Path):
    from typer.testing import CliRunner

    from dagllm.cli import app

    run = CliRunner().invoke
    ok = run(app, ["fetch", "--mirror", str(mirror_copy)])
    assert ok.exit_code == 0, ok.output
    assert (workdir / "data/raw/apeach/APEACH/test.csv").is_file()
    ok = run(app, ["ingest"])
    assert ok.exit_code == 0, ok.output
    (mirror_copy / "apeach/APEACH/test.csv").unlink()
    bad = run(app, ["fetch", "--mirror", str(mirror_copy)])
    assert bad.exit_code == 2 and "source apeach: file apeach/APEACH/test.csv not found" in bad.output
    assert "Traceback" not in bad.output
    (workdir / "data/raw/kobest/v1.0/COPA/train.tsv").write_bytes("한국어".encode("euc-kr") * 50)
    bad = run(app, ["ingest"])
    assert bad.exit_code == 2 and "COPA/train.tsv: not UTF-8" in bad.output and "Traceback" not in bad.output


def test_optional_benchmark_source_is_skipped_when_absent(mirror_copy: Path, tmp_path: Path):
    params = IngestParams(sources=["kobest_copa"], optional_sources=["klue_ynat"])
    present = run_ingest(params, load_catalog(), mirror_copy, tmp_path / "a/records.parquet", tmp_path / "a/rej",
                         tmp_path / "a/ingest.json")
    assert present.skipped == []
    table = pd.read_parquet(tmp_path / "a/records.parquet")
    assert set(table[table["source"] == "klue_ynat"]["split"]) == {"train", "validation"}
    (mirror_copy / "klue_ynat/ynat-v1.1_train.json").unlink()
    (mirror_copy / "klue_ynat/ynat-v1.1_dev.json").unlink()
    absent = run_ingest(params, load_catalog(), mirror_copy, tmp_path / "b/records.parquet", tmp_path / "b/rej",
                        tmp_path / "b/ingest.json")
    assert [s["file"] for s in absent.skipped] == ["klue_ynat/ynat-v1.1_train.json", "klue_ynat/ynat-v1.1_dev.json"]
    assert "klue_ynat" not in set(pd.read_parquet(tmp_path / "b/records.parquet")["source"])
    assert json.loads((tmp_path / "b/ingest.json").read_text())["skipped"] == absent.skipped
    assert any(line.startswith("skipped klue_ynat") for line in absent.lines())
    with pytest.raises(IngestError, match="klue_ynat"):  # a required source still fails loudly
        run_ingest(IngestParams(sources=["klue_ynat"]), load_catalog(), mirror_copy, tmp_path / "c/r.parquet",
                   tmp_path / "c/rej", tmp_path / "c/ingest.json")
