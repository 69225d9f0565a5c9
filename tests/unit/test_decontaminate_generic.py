"""Generic benchmark phrases: real training rows that only come near a benchmark text so common that many
ordinary rows do are kept and listed under ``generic``; copies of the same items are still dropped.

The items and rows are picked from the real files (../shared/data, the mirror) by a rule written here
(string comparison of words and sentences, not the matcher), so the test follows the data.
"""

import json
import os
from collections import defaultdict
from pathlib import Path

import pandas as pd

from dagllm.data.canonical import CANONICAL_COLUMNS
from dagllm.data.catalog import load_catalog
from dagllm.data.overlap import decontaminate_frame
from dagllm.data.readers import READERS, Row
from dagllm.data.records import RECORD_COLUMNS
from dagllm.data.text import skeleton
from dagllm.params import DecontaminateParams

REPO = Path(__file__).resolve().parents[2]
MIRROR = Path(os.environ.get("DAGLLM_SHARED_DATA", REPO.parent / "shared" / "data"))


def _rows(source: str, benchmark: bool) -> list[Row]:
    assert MIRROR.is_dir(), f"the real files are read from {MIRROR} (set DAGLLM_SHARED_DATA)"
    out = []
    for sf in load_catalog().source(source).files:
        if sf.benchmark == benchmark and (MIRROR / sf.path).is_file():
            out += [r for r in READERS[sf.reader](MIRROR / sf.path) if isinstance(r, Row)]
    return out


def _item(source: str, row: Row) -> pd.DataFrame:
    return pd.DataFrame([{"id": "b0", "source": source, "split": "test", "native_id": row.native_id,
                          "fields": json.dumps(row.fields, ensure_ascii=False), "label": row.label,
                          "license": "CC BY-SA 4.0", "benchmark": True, "file": "f", "line": row.line}],
                        columns=CANONICAL_COLUMNS)


def _rec(rid: str, text: str, source: str) -> dict:
    return {"id": rid, "record_id": rid, "task": f"{source}_t", "category": "c", "template_id": "t",
            "template_kind": "instruction", "instruction": "다음 글을 읽고 답하세요.", "input": text, "output": "답",
            "source": source, "split": "train", "license": "CC BY-SA 4.0"}


def _frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


def _copa_generic() -> tuple[Row, list[Row]]:
    """The COPA test item whose two alternatives (both, verbatim) most train/dev items also have, after a
    premise of their own: 여름이 되었다 / 겨울이 되었다 after any sign of the season."""
    def alts(r: Row) -> frozenset[str]:
        return frozenset(skeleton(r.fields[k]) for k in ("alternative_1", "alternative_2"))
    train = defaultdict(list)
    for r in _rows("kobest_copa", False):
        train[alts(r)].append(r)
    best = max(_rows("kobest_copa", True), key=lambda t: len({skeleton(r.fields["premise"]) for r in train[alts(t)]
                                                               if skeleton(r.fields["premise"]) not in
                                                               skeleton(t.fields["premise"])}))
    hosts = [r for r in train[alts(best)] if skeleton(r.fields["premise"]) not in skeleton(best.fields["premise"])
             and skeleton(best.fields["premise"]) not in skeleton(r.fields["premise"])]
    return best, hosts


def _copa_text(r: Row) -> str:
    return " / ".join(r.fields[k] for k in ("premise", "alternative_1", "alternative_2"))


def test_real_copa_items_sharing_common_alternatives_are_kept_and_listed_as_generic():
    item, hosts = _copa_generic()
    assert len(hosts) >= DecontaminateParams().generic_near_records  # the data has such a family (8 items in the mirror)
    rows = [_rec(f"train{j}", _copa_text(r), "kobest_copa") for j, r in enumerate(hosts)]
    rows.append(_rec("copy", _copa_text(item), "kobest_copa"))  # the test item itself, as shown to the model
    kept, s = decontaminate_frame(_frame(rows), _item("kobest_copa", item), DecontaminateParams())
    assert [(h["id"], h["kind"]) for h in s.contaminated] == [("copy", "exact_copy")]
    assert set(kept["id"]) == {f"train{j}" for j in range(len(hosts))}
    assert {g["id"] for g in s.generic} == {f"train{j}" for j in range(len(hosts))}
    assert all(g["kind"] == "generic_phrase" and g["benchmark"]["id"] == "b0" and "generic_near_records" in g["why"]
               for g in s.generic)
    assert s.records == s.kept + s.dropped == len(rows)
    assert any(f"kept {len(hosts)} records that come near benchmark texts only weakly ({len(hosts)} near a generic"
               in line for line in s.lines())


def test_generic_matches_are_dropped_when_the_user_turns_the_rules_off():
    item, hosts = _copa_generic()
    rows = [_rec(f"train{j}", _copa_text(r), "kobest_copa") for j, r in enumerate(hosts)]
    _, s = decontaminate_frame(_frame(rows), _item("kobest_copa", item), DecontaminateParams(generic_near_records=0))
    # not generic any more, but each row still lacks the item's premise: a partial item, kept
    assert s.dropped == 0 and {g["kind"] for g in s.generic} == {"partial_item"}
    kept, s = decontaminate_frame(_frame(rows), _item("kobest_copa", item),
                                  DecontaminateParams(generic_near_records=0, keep_partial_items=False))
    assert len(kept) == 0 and s.generic == [] and {h["kind"] for h in s.contaminated} == {"ngram_overlap"}


def test_a_real_copa_train_item_with_a_test_items_alternatives_but_its_own_premise_is_kept():
    # the class of the issue: a COPA train item sharing most of a *different* test item's text; picked from
    # the mirror: a train item with both alternatives of a test item verbatim and a premise of its own, and no
    # other train item near that test item (so not generic: a partial item)
    def alts(r: Row) -> frozenset[str]:
        return frozenset(skeleton(r.fields[k]) for k in ("alternative_1", "alternative_2"))
    train = defaultdict(list)
    for r in _rows("kobest_copa", False):
        train[alts(r)].append(r)
    def words(text: str) -> set[str]:
        return {skeleton(w) for w in text.split()}
    # a premise of its own: no word in common with the test item's premise
    pairs = [(t, train[alts(t)][0]) for t in _rows("kobest_copa", True) if len(train[alts(t)]) == 1
             and len(t.fields["premise"].split()) >= 3
             and not words(train[alts(t)][0].fields["premise"]) & words(t.fields["premise"])]
    assert len(pairs) >= 5
    for item, host in pairs[:5]:
        words = item.fields["premise"].split()
        edited = " ".join(["정말", *words[1:]])  # the item itself with one word of its premise replaced
        rows = [_rec("train", _copa_text(host), "kobest_copa"),
                _rec("leak", " / ".join([edited, item.fields["alternative_1"], item.fields["alternative_2"]]),
                     "kobest_copa")]
        _, s = decontaminate_frame(_frame(rows), _item("kobest_copa", item), DecontaminateParams())
        assert [(g["id"], g["kind"]) for g in s.generic] == [("train", "partial_item")], host.fields
        assert skeleton(item.fields["premise"]) in s.generic[0]["why"]
        assert [h["id"] for h in s.contaminated] == ["leak"], item.fields


def _one_word_off(a: list[str], b: list[str]) -> bool:
    """b is a with exactly one word replaced (same length, one position differs) or dropped."""
    if len(b) == len(a):
        return sum(x != y for x, y in zip(a, b, strict=True)) == 1
    return len(b) == len(a) - 1 and any(a[:k] + a[k + 1:] == b for k in range(len(a)))


def test_real_reviews_one_word_from_a_generic_sentineg_sentence_are_kept_and_listed():
    train = sorted({r.fields["text"] for r in _rows("kobest_sentineg", False)})
    words = {t: skeleton(t) for t in train}
    best, near = None, []
    for item in _rows("kobest_sentineg", True):
        for field in ("text", "text_origin"):
            ws = [skeleton(w) for w in item.fields[field].split()]
            if len(ws) < 3:
                continue
            found = sorted({t for t in train if _one_word_off(ws, [skeleton(w) for w in t.split()])
                            and skeleton(item.fields[field]) not in words[t]})
            if len({words[t] for t in found}) > len({words[t] for t in near}):
                best, near = item, found
    assert len({words[t] for t in near}) >= DecontaminateParams().generic_near_records
    rows = [_rec(f"train{j}", t, "kobest_sentineg") for j, t in enumerate(near)]
    kept, s = decontaminate_frame(_frame(rows), _item("kobest_sentineg", best), DecontaminateParams())
    assert s.dropped == 0 and len(kept) == len(rows)
    assert {g["id"] for g in s.generic} == {f"train{j}" for j in range(len(near))}
    # the same item copied is still dropped, beside its generic neighbours
    rows.append(_rec("copy", f"리뷰: {best.fields['text_origin']} / {best.fields['text']}", "kobest_sentineg"))
    _, s = decontaminate_frame(_frame(rows), _item("kobest_sentineg", best), DecontaminateParams())
    assert [(h["id"], h["kind"]) for h in s.contaminated] == [("copy", "exact_copy")]


def test_a_text_near_few_rows_is_not_generic_and_each_near_copy_still_drops():
    # written for this test: one SentiNeg-layout item, two edited copies of it (two variants, under the limit)
    canonical = pd.DataFrame([{"id": "s0", "source": "kobest_sentineg", "split": "test", "native_id": "0",
                               "fields": json.dumps({"text": "포장이 꼼꼼해서 선물하기 좋았어요", "label_origin": "1"},
                                                    ensure_ascii=False), "label": "1", "license": "x",
                               "benchmark": True, "file": "f", "line": 2}], columns=CANONICAL_COLUMNS)
    rows = [_rec("a", "포장이 꼼꼼해서 선물하기 괜찮았어요", "x"), _rec("a2", "포장이 꼼꼼해서 선물하기 괜찮았어요", "x"),
            _rec("b", "포장이 튼튼해서 선물하기 좋았어요", "x")]
    _, s = decontaminate_frame(_frame(rows), canonical, DecontaminateParams())
    assert {h["id"] for h in s.contaminated} == {"a", "a2", "b"} and s.generic == []


def test_cli_report_lists_generic_matches_apart_from_the_dropped_ones(workdir):
    from typer.testing import CliRunner

    from dagllm.cli import app

    item, hosts = _copa_generic()
    rows = [_rec(f"train{j}", _copa_text(r), "kobest_copa") for j, r in enumerate(hosts)]
    rows.append(_rec("copy", _copa_text(item), "kobest_copa"))
    (workdir / "data/validated").mkdir(parents=True)
    _frame(rows).to_parquet(workdir / "data/validated/records.parquet", index=False)
    _item("kobest_copa", item).to_parquet(workdir / "data/validated/canonical.parquet", index=False)
    result = CliRunner().invoke(app, ["decontaminate"])
    assert result.exit_code == 0, result.output
    report = json.loads((workdir / "reports/decontamination.json").read_text())
    assert report["dropped"] == 1 and [h["id"] for h in report["contaminated"]] == ["copy"]
    assert sorted(g["id"] for g in report["generic"]) == sorted(f"train{j}" for j in range(len(hosts)))
    assert all(g["why"] and g["benchmark"]["id"] == "b0" for g in report["generic"])
    assert len(pd.read_parquet(workdir / "data/decontaminated/records.parquet")) == len(hosts)
