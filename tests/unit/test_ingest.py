import json
from pathlib import Path

import pandas as pd
import pytest

from dagllm.catalog import load_catalog
from dagllm.params import IngestParams
from dagllm.stages.ingest import IngestError, run_ingest


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
    assert any("skipped optional klue_ynat" in line for line in absent.lines())
    with pytest.raises(IngestError, match="klue_ynat"):  # a required source still fails loudly
        run_ingest(IngestParams(sources=["klue_ynat"]), load_catalog(), mirror_copy, tmp_path / "c/r.parquet",
                   tmp_path / "c/rej", tmp_path / "c/ingest.json")
