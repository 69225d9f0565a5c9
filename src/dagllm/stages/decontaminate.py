"""Decontaminate: drop training records that overlap an evaluation item.

Evaluation items are the ``benchmark == True`` rows of the canonical table (KoBEST test splits,
KLUE STS/YNAT validation, and any benchmark source added later). Each item gives *units* to match:

- the item as a whole: the n-grams of each of its text fields (a COPA item = premise + two
  alternatives; a field shorter than n, such as a label or 원인/결과, adds nothing);
- each field at least ``min_unit_chars`` long on its own (one KLUE STS sentence copied into a
  ParaKQC record; a BoolQ passage without its question).

Short fields are not units on their own: everyday sentences such as "배터리가 방전되었다." occur in
both KoBEST COPA train and test, and matching them alone would flag unrelated records.

Texts are compared as character n-grams after NFKC, casefolding and removing all whitespace:
Korean spacing is inconsistent between copies of the same sentence and a syllable carries about a
morpheme, so character n-grams survive re-spacing and particle-level edits that break whitespace
tokens. A record is contaminated when its overlap with one unit reaches ``threshold``: for a field
unit, the share of the field's n-grams found in the record; for a whole item, the share of its
fields that are each at least ``threshold`` covered (premise + right answer of a COPA item = 2/3,
whatever the sentence lengths). It is an *exact copy* when every piece of the unit occurs
verbatim (compacted) in it. Exact copies are always dropped: their overlap is 1.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dagllm.io import read_parquet, write_json, write_parquet
from dagllm.params import DecontaminateParams
from dagllm.quality import char_ngram_hashes, compact


@dataclass
class Unit:
    source: str
    split: str
    item_id: str
    native_id: str | None
    field: str  # a field name, or "*" for the whole item
    pieces: list[str]

    @property
    def text(self) -> str:
        return " / ".join(self.pieces)


@dataclass
class DecontaminationSummary:
    records: int
    kept: int
    dropped: int
    units: int
    benchmark_items: int
    by_benchmark_source: dict[str, int]
    by_training_source: dict[str, int]
    by_kind: dict[str, int]
    contaminated: list[dict]

    def to_dict(self) -> dict:
        return self.__dict__

    def lines(self) -> list[str]:
        where = ", ".join(f"{k}={v}" for k, v in self.by_benchmark_source.items()) or "none"
        return [f"decontaminated {self.records} records against {self.benchmark_items} benchmark items "
                f"({self.units} texts): dropped {self.dropped} ({where}), kept {self.kept}"]


def benchmark_units(canonical: pd.DataFrame, min_chars: int, n: int, min_piece: int = 5) -> list[Unit]:
    """The units of every benchmark row: the whole item, and each field of at least ``min_chars``.

    An item's pieces are its fields of at least ``min_piece`` characters (labels such as 원인/결과
    or a score are not text). A unit totals at least ``min_chars`` characters: a COPA item whose only long field is
    "갑자기 소나기가 내렸다." says too little to call a record that contains it a copy.
    """
    units = []
    bench = canonical[canonical["benchmark"].astype(bool)]
    for row in bench.itertuples(index=False):
        fields = {name: compact(str(value)) for name, value in json.loads(row.fields).items()}
        pieces = [text for text in fields.values() if len(text) >= min_piece]
        long_fields = [(name, text) for name, text in fields.items() if len(text) >= max(min_chars, n)]
        if sum(map(len, pieces)) >= min_chars and (len(pieces) > 1 or not long_fields):
            units.append(Unit(row.source, row.split, row.id, row.native_id, "*", pieces))
        units += [Unit(row.source, row.split, row.id, row.native_id, name, [text]) for name, text in long_fields]
    return units


def record_texts(records: pd.DataFrame) -> list[str]:
    """The compacted text of each record: instruction, input and output together."""
    return [compact(f"{a}{b}{c}") for a, b, c in
            zip(records["instruction"].fillna(""), records["input"].fillna(""), records["output"].fillna(""),
                strict=True)]


def _piece_index(units: list[Unit], n: int):
    """n-gram hashes of every piece, which pieces own each hash, and each piece's distinct n-grams."""
    pieces = [p for u in units for p in u.pieces]
    uh, uoff = char_ngram_hashes(pieces, n)
    piece_of = np.repeat(np.arange(len(pieces)), np.diff(uoff))
    owners: dict[int, set[int]] = defaultdict(set)
    for h, p in zip(uh.tolist(), piece_of.tolist(), strict=True):
        owners[h].add(p)
    size = np.array([len(set(uh[uoff[i]:uoff[i + 1]].tolist())) for i in range(len(pieces))])
    first = np.concatenate([[0], np.cumsum([len(u.pieces) for u in units])])
    return uh, owners, size, first


def _overlap(unit: Unit, cover: np.ndarray, threshold: float) -> float:
    """A field unit: the share of its n-grams in the record. A whole item: the share of its pieces
    (fields) that are each at least ``threshold`` covered, so premise + answer of a COPA item
    counts 2/3 whatever the lengths."""
    return float(cover[0]) if unit.field != "*" else float((cover >= threshold).mean())


def find_contamination(records: pd.DataFrame, units: list[Unit], params: DecontaminateParams) -> list[dict]:
    """One entry per contaminated record: the unit it overlaps most, the overlap and the kind."""
    n, thr = params.ngram_chars, params.threshold
    if not units or records.empty:
        return []
    uh, owners, size, first = _piece_index(units, n)
    unit_of_piece = np.repeat(np.arange(len(units)), np.diff(first))
    texts = record_texts(records)
    rh, roff = char_ngram_hashes(texts, n)
    bench = np.unique(uh)
    pos = np.searchsorted(bench, rh).clip(0, len(bench) - 1)
    hit = bench[pos] == rh
    hits_per_record = np.add.reduceat(hit.astype(np.int64), roff[:-1]) if len(rh) else np.zeros(len(texts))
    hits_per_record[np.diff(roff) == 0] = 0  # reduceat reads the next text's slot for an empty one
    # A record needs threshold * (smallest piece) shared n-grams before any unit can match it.
    need = max(int(np.floor(thr * size[size > 0].min() - 1e-9)), 1) if (size > 0).any() else 1
    out = []
    for i in np.flatnonzero(hits_per_record >= need).tolist():
        grams = set(rh[roff[i]:roff[i + 1]][hit[roff[i]:roff[i + 1]]].tolist())
        shared: Counter = Counter(p for g in grams for p in owners[g])
        best = None
        for u in sorted({int(unit_of_piece[p]) for p in shared}):
            cover = np.array([shared.get(p, 0) / size[p] if size[p] else  # shorter than n: verbatim or not
                              float(units[u].pieces[p - first[u]] in texts[i]) for p in range(first[u], first[u + 1])])
            overlap = _overlap(units[u], cover, thr)
            exact = bool(cover.min() >= 1.0) and all(p in texts[i] for p in units[u].pieces)
            if (overlap >= thr or exact) and (best is None or (exact, overlap) > best[0]):
                best = ((exact, overlap), u)
        if best is None:
            continue
        (exact, overlap), u = best
        unit, rec = units[u], records.iloc[i]
        out.append({
            "id": rec["id"], "task": rec["task"], "source": rec["source"],
            "kind": "exact_copy" if exact else "ngram_overlap", "overlap": round(overlap, 4),
            "benchmark": {"source": unit.source, "split": unit.split, "id": unit.item_id,
                          "native_id": unit.native_id, "field": unit.field, "text": unit.text[:200]},
        })
    return out


def decontaminate_frame(records: pd.DataFrame, canonical: pd.DataFrame,
                        params: DecontaminateParams) -> tuple[pd.DataFrame, DecontaminationSummary]:
    """Drop the contaminated records; return the kept ones and the report."""
    units = benchmark_units(canonical, params.min_unit_chars, params.ngram_chars, params.min_piece_chars)
    hits = find_contamination(records.reset_index(drop=True), units, params)
    drop = {h["id"] for h in hits}
    kept = records[~records["id"].isin(drop)].reset_index(drop=True)
    summary = DecontaminationSummary(
        records=len(records), kept=len(kept), dropped=len(drop), units=len(units),
        benchmark_items=int(canonical["benchmark"].astype(bool).sum()),
        by_benchmark_source=dict(sorted(Counter(h["benchmark"]["source"] for h in hits).items())),
        by_training_source=dict(sorted(Counter(h["source"] for h in hits).items())),
        by_kind=dict(sorted(Counter(h["kind"] for h in hits).items())),
        contaminated=hits,
    )
    assert summary.records == summary.kept + summary.dropped
    return kept, summary


def run_decontaminate(params: DecontaminateParams, validated: Path, canonical: Path, out_table: Path,
                      report_path: Path) -> DecontaminationSummary:
    """Check every validated record against every benchmark item of ``canonical``: the canonical rows
    the gate kept (``data/validated/canonical.parquet``), so quarantined benchmark rows are not matched."""
    kept, summary = decontaminate_frame(read_parquet(validated, "validate"), read_parquet(canonical, "validate"),
                                        params)
    write_parquet(kept, out_table)
    write_json(report_path, summary.to_dict())
    return summary
