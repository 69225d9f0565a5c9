"""The decontamination matcher: which training records overlap an evaluation item.

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
whatever the sentence lengths), or the words of all its fields in order with one replaced (two short
WiC contexts with one word changed). It is an *exact copy* when every piece of the unit occurs
verbatim (compacted) in it. Exact copies are always dropped: their overlap is 1.

A *weak* match (:func:`_weak`: not verbatim, of short texts only, and for a whole item one of its texts
missing) keeps its record, listed under ``generic`` in the report with the item and why, when its text is
a *generic phrase*, one that at least ``generic_near_records`` different training texts come near that way
(배송 빠르고 X 좋아요; kind ``generic_phrase``), or when it is part of an item without its other text (a
different COPA item with the same stock alternatives 여름이 되었다 / 겨울이 되었다; kind ``partial_item``,
``keep_partial_items``). Anything more (an item whole, its words in order with one replaced) drops.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from itertools import accumulate

import numpy as np
import pandas as pd
from rapidfuzz import fuzz

from dagllm.data.hashing import char_ngram_hashes
from dagllm.data.text import skeleton, skeleton_words
from dagllm.params import DecontaminateParams


@dataclass
class Unit:
    source: str
    split: str
    item_id: str
    native_id: str | None
    field: str  # a field name, or "*" for the whole item
    pieces: list[str]
    exact_only: bool = False  # too short for partial matches: only a verbatim copy of every piece counts
    words: list[list[str]] | None = None  # each piece's words (skeletons), for the one-word-off check

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
    # benchmark texts too short to match (a SentiNeg sentence 좋아요, an item of labels only), named here
    too_short: list[dict] = field(default_factory=list)
    # records matched only weakly (kinds generic_phrase, partial_item): kept, listed with why to be seen and
    # overridden (decontaminate.generic_near_records: 0, keep_partial_items: false drop them)
    generic: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return self.__dict__

    def lines(self) -> list[str]:
        where = ", ".join(f"{k}={v}" for k, v in self.by_benchmark_source.items()) or "none"
        lines = [f"decontaminated {self.records} records against {self.benchmark_items} benchmark items "
                 f"({self.units} texts): dropped {self.dropped} ({where}), kept {self.kept}"]
        if self.too_short:
            lines.append(f"{len(self.too_short)} benchmark texts too short to match (under min_piece_chars "
                         "letters; listed under too_short in the report): "
                         + ", ".join(f"{t['source']} {t['text']!r}" for t in self.too_short[:5])
                         + (" ..." if len(self.too_short) > 5 else ""))
        if self.generic:
            kinds = Counter(g["kind"] for g in self.generic)
            texts = Counter(f"{g['benchmark']['source']} {g['benchmark']['text'][:40]!r}" for g in self.generic)
            lines.append(f"kept {len(self.generic)} records that come near benchmark texts only weakly "
                         f"({kinds.get('generic_phrase', 0)} near a generic phrase that many training rows come "
                         f"near, {kinds.get('partial_item', 0)} holding part of an item without its other text; "
                         "listed under generic in the report with why; decontaminate.generic_near_records: 0 and "
                         "keep_partial_items: false drop them): " + ", ".join(t for t, _ in texts.most_common(3))
                         + (" ..." if len(texts) > 3 else ""))
        return lines


def benchmark_units(canonical: pd.DataFrame, min_chars: int, n: int, min_piece: int = 5,
                    unit_fields: dict[str, list[str]] | None = None) -> list[Unit]:
    """The units of every benchmark row: the whole item, and each field of at least ``min_chars``.

    An item's pieces are its fields of at least ``min_piece`` characters (labels such as 원인/결과
    or a score are not text). A unit totals at least ``min_chars`` characters: a COPA item whose only long field is
    "갑자기 소나기가 내렸다." says too little to call a record that contains it a copy. The fields
    named in ``unit_fields`` for the row's source (SentiNeg's sentence) are units whatever their length.
    A field with few distinct values over a source's items (:func:`label_fields`: KLUE STS's ``origin``,
    airbnb-rtt and five others over 519 items) is a category, not text, and is no piece either.
    """
    units = []
    unit_fields = unit_fields or {}
    bench = canonical[canonical["benchmark"].astype(bool)]
    labels = label_fields(bench)
    for row in bench.itertuples(index=False):
        raw = {name: str(value) for name, value in json.loads(row.fields).items()
               if name not in labels.get(row.source, ())}
        fields = {name: skeleton(value) for name, value in raw.items()}
        words = {name: skeleton_words(value) for name, value in raw.items()}
        names = [name for name, text in fields.items() if len(text) >= min_piece]
        alone = set(unit_fields.get(row.source, []))
        long_fields = [name for name, text in fields.items()
                       if len(text) >= max(min_chars, n) or (name in alone and len(text) >= min_piece)]
        if names and (len(names) > 1 or not long_fields):
            # an item of one or two texts shorter than min_chars in all says too little for a partial
            # match (exact copies only); three or more short sentences (a COPA item) together do
            units.append(Unit(row.source, row.split, row.id, row.native_id, "*", [fields[k] for k in names],
                              exact_only=sum(len(fields[k]) for k in names) < min_chars and len(names) < 3,
                              words=[words[k] for k in names]))
        units += [Unit(row.source, row.split, row.id, row.native_id, name, [fields[name]], words=[words[name]])
                  for name in long_fields]
    return units


# A benchmark field whose distinct values number at most this share of a source's items (and the source
# has at least LABEL_FIELD_ITEMS of them) is a category or label: KLUE STS origin 6 of 519, COPA question 2 of
# 1,000; the least varied text field of the mirror's benchmarks (WiC's target word) has 778 of 1,260.
LABEL_FIELD_SHARE = 0.05
LABEL_FIELD_ITEMS = 20


def label_fields(bench: pd.DataFrame) -> dict[str, set[str]]:
    """Per benchmark source, the fields whose values repeat across its items (:data:`LABEL_FIELD_SHARE`)."""
    values: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    items: Counter = Counter()
    for source, fields in zip(bench["source"], bench["fields"], strict=True):
        items[source] += 1
        for name, value in json.loads(fields).items():
            values[source][name].add(str(value))
    return {source: {name for name, v in by.items() if len(v) <= LABEL_FIELD_SHARE * items[source]}
            for source, by in values.items() if items[source] >= LABEL_FIELD_ITEMS}


def record_fields(records: pd.DataFrame) -> list[tuple[str, str, str]]:
    """Instruction, input and output of each record (missing ones empty)."""
    return list(zip(records["instruction"].fillna(""), records["input"].fillna(""), records["output"].fillna(""),
                    strict=True))


def record_text(fields: tuple[str, str, str]) -> str:
    """The skeleton of a record: letters and digits of instruction, input and output, one line each
    (the line breaks keep a match from running across two fields: 좋아 + 요약 is not 좋아요)."""
    return "\n".join(map(skeleton, fields))


def record_words(instruction: str, input_: str, output: str) -> list[str]:
    """The record's words (skeletons of its whitespace tokens), a line break between fields so that a word
    window never spans two of them."""
    out: list[str] = []
    for text in (instruction, input_, output):
        out += skeleton_words(text)
        out.append("\n")
    return out


def word_pairs(words: list[str]) -> set[tuple[str, str]]:
    """Each word with the next and the one after it: one word replaced or dropped in a run of three or more
    words leaves at least one of these pairs (the two around it) intact."""
    return set(zip(words, words[1:])) | set(zip(words, words[2:]))


# An n-gram found in more benchmark texts than this is a common phrase (했습니다, 있습니까): it says
# nothing about which item a record copies, and indexing it would make every record a candidate.
MAX_OWNERS = 64
# Share of a text's n-grams a record must hold before the edit-tolerant alignment is computed.
MIN_EVIDENCE = 0.2


def _piece_index(units: list[Unit], n: int):
    """n-gram hashes of every piece, which pieces own each hash, and each piece's distinct n-grams."""
    pieces = [p for u in units for p in u.pieces]
    uh, uoff = char_ngram_hashes(pieces, n, pad_short=True)
    piece_of = np.repeat(np.arange(len(pieces)), np.diff(uoff))
    owners: dict[int, set[int]] = defaultdict(set)
    for h, p in zip(uh.tolist(), piece_of.tolist(), strict=True):
        owners[h].add(p)
    size = np.array([len(set(uh[uoff[i]:uoff[i + 1]].tolist())) for i in range(len(pieces))])
    common = np.array([h for h, o in owners.items() if len(o) > MAX_OWNERS], dtype=np.uint64)
    for h in common.tolist():
        del owners[h]
    keep = ~np.isin(uh, common)
    first = np.concatenate([[0], np.cumsum([len(u.pieces) for u in units])])
    return uh[keep], owners, size, first


# Words of a benchmark text that must remain, in order, around one replaced word (characters).
MIN_REST_CHARS = 8
# Shortest benchmark text (letters and digits) matched by similarity ratio.
MIN_FUZZY_CHARS = 10


def _one_word_off(words: list[str], text: str) -> bool:
    """Whether ``text`` holds the words in order with exactly one of them replaced (or dropped).

    The rest must be at least :data:`MIN_REST_CHARS` long: in a short sentence one word is a large
    share of the characters, so a similarity ratio misses what this finds.
    """
    m = len(words)
    if m < 2:
        return False
    full, ends = "".join(words), list(accumulate(map(len, words)))
    half = ends[m // 2 - 1]
    # one replaced word leaves the half it is not in verbatim: the words before it or the words after it
    after_ok, before_ok = full[half:] in text, full[:half] in text
    for k, word in enumerate(words):
        if not (after_ok if k < m // 2 else before_ok):
            continue
        pre, suf = full[:ends[k] - len(word)], full[ends[k]:]
        if len(pre) + len(suf) < MIN_REST_CHARS:
            continue
        if not pre or not suf:
            if (pre or suf) in text:
                return True
            continue
        start = text.find(pre)
        while start != -1:
            gap = text.find(suf, start + len(pre))
            if gap != -1 and gap - start - len(pre) <= len(word) + 8:
                return True
            start = text.find(pre, start + 1)
    return False


# Words of a benchmark text that must remain around one replaced word when the record's words line up
# with the text's word for word (characters, over at least two whole words).
MIN_ALIGNED_REST_CHARS = 5
# A word in more than this share of the records (and more than COMMON_WORD_RECORDS of them) is a common word
# (것, 같습니다): its letters do not count towards MIN_ALIGNED_REST_CHARS.
COMMON_WORD_SHARE = 0.001
COMMON_WORD_RECORDS = 20


class RecordWords:
    """A record's words and where each occurs, for the word-aligned check, made when first asked for (most
    candidate records never need them); ``common``: the words common in the records."""

    def __init__(self, fields: tuple[str, str, str], common: frozenset[str]):
        self.fields, self.common = fields, common

    @cached_property
    def words(self) -> list[str]:
        return record_words(*self.fields)

    @cached_property
    def at(self) -> dict[str, list[int]]:
        at: dict[str, list[int]] = defaultdict(list)
        for i, w in enumerate(self.words):
            at[w].append(i)
        return at


def _word_pass(fields: list[tuple[str, str, str]], by_pair: dict[tuple[str, str], set[int]]
               ) -> tuple[frozenset[str], dict[int, set[int]]]:
    """One pass over the records' words (not kept: they are made again for the few records that need them):
    the common words, and per record the units whose word pairs it holds."""
    df: Counter = Counter()
    paired: dict[int, set[int]] = {}
    for i, f in enumerate(fields):
        ws = record_words(*f)
        df.update(set(ws))
        if found := by_pair.keys() & word_pairs(ws):
            paired[i] = set().union(*(by_pair[p] for p in found))
    floor = max(COMMON_WORD_RECORDS, COMMON_WORD_SHARE * len(fields))
    return frozenset(w for w, c in df.items() if c > floor), paired


def _aligned_one_word_off(words: list[str], record: RecordWords) -> bool:
    """Whether the record holds ``words`` as whole words, in order and adjacent, with exactly one replaced
    by another word or dropped.

    Whole words at word boundaries are a stricter match than letters in order, so the rest may be shorter
    than :data:`MIN_REST_CHARS`: at least two words and :data:`MIN_ALIGNED_REST_CHARS` letters in words that
    are not common in the records (배송이 너무 느려요 with one replaced, not 좋을 것 같습니다 after any word).
    One word left of two is never enough: it is a word.
    """
    m, rw = len(words), record.words
    missing = [k for k, w in enumerate(words) if w not in record.at]
    if m < 3 or len(missing) > 1:
        return False
    content = [0 if w in record.common else len(w) for w in words]
    for k in missing or range(m):  # the one word the record lacks is the replaced one
        if sum(content) - content[k] < MIN_ALIGNED_REST_CHARS:
            continue
        rest = words[:k] + words[k + 1:]
        for p in record.at.get(rest[0], ()):
            if rw[p:p + m - 1] == rest:  # dropped
                return True
            s = p - 1 if k == 0 else p  # replaced: the window starts one word earlier when the first one is
            if (s >= 0 and s + m <= len(rw) and rw[s + k] != "\n" and rw[s:s + k] == words[:k]
                    and rw[s + k + 1:s + m] == words[k + 1:]):
                return True
    return False


def _present(piece: str, words: list[str], text: str, share: float, params: DecontaminateParams,
             alone: bool, record: RecordWords) -> tuple[bool, float]:
    """Whether ``piece`` is in ``text``: verbatim, by n-gram share, by an edit-tolerant alignment, or
    with one word replaced. A short text (under min_unit_chars) matched ``alone`` never counts by
    share: a 7-character sentence shares most n-grams with any sentence ending the same way. A short
    text is aligned whatever its share (one replaced word leaves it few n-grams)."""
    short = len(piece) < params.min_unit_chars
    if piece in text:
        return True, 1.0
    if share >= params.threshold and not (short and alone):
        return True, share
    if share < MIN_EVIDENCE and not short:
        return False, share
    # under MIN_FUZZY_CHARS one substitution already passes a similarity ratio: such texts need the word check
    score = fuzz.partial_ratio(piece, text) / 100 if len(piece) >= MIN_FUZZY_CHARS else 0.0
    if (score >= params.edit_similarity or _one_word_off(words, text)
            or (short and alone and _aligned_one_word_off(words, record))):
        return True, max(share, score)
    return False, max(share, score)


def _match(unit: Unit, text: str, shares: list[float], params: DecontaminateParams,
           record: RecordWords) -> tuple[bool, bool, float]:
    """(matched, exact copy, overlap) of one unit in one record.

    A field unit matches when its text is present; a whole item when at least ``threshold`` of its
    pieces are (premise + right answer of a COPA item = 2/3, whatever the sentence lengths).
    """
    words = unit.words or [[p] for p in unit.pieces]
    # a short text alone needs more than an n-gram share; inside a whole item the other fields vouch for it
    alone = unit.field != "*"
    found = [_present(p, w, text, s, params, alone, record)
             for p, w, s in zip(unit.pieces, words, shares, strict=True)]
    exact = all(p in text for p in unit.pieces)
    if unit.exact_only:
        return exact, exact, 1.0 if exact else 0.0
    if unit.field != "*":
        return found[0][0] or exact, exact, 1.0 if exact else found[0][1]
    overlap = float(np.mean([ok for ok, _ in found]))
    if overlap < params.threshold and len(words) > 1 and _one_word_off([w for ws in words for w in ws], text):
        # the item's texts copied one after another with one word replaced across them (WiC's two
        # contexts): the words of the whole item in order, all but one, are as telling as one long text
        return True, exact, 1.0 - 1.0 / max(sum(len(ws) for ws in words), 2)
    return overlap >= params.threshold or exact, exact, 1.0 if exact else overlap


def find_contamination(records: pd.DataFrame, units: list[Unit], params: DecontaminateParams) -> list[dict]:
    """One entry per matched record: the unit it overlaps most, the overlap and the kind; a record matched
    only weakly (kinds in :data:`KEPT_KINDS`, with ``why``) is to be kept."""
    n = params.ngram_chars
    if not units or records.empty:
        return []
    uh, owners, size, first = _piece_index(units, n)
    unit_of_piece = np.repeat(np.arange(len(units)), np.diff(first))
    short_units = [u for u, unit in enumerate(units) if any(len(p) < n for p in unit.pieces)]
    short = np.array([len(p) < params.min_unit_chars for unit in units for p in unit.pieces])
    fields = record_fields(records)
    texts = [record_text(f) for f in fields]
    rh, roff = char_ngram_hashes(texts, n)
    bench = np.unique(uh)
    if not len(bench):
        return []
    pos = np.searchsorted(bench, rh).clip(0, len(bench) - 1)
    hit = bench[pos] == rh
    hits_per_record = np.add.reduceat(hit.astype(np.int64), roff[:-1]) if len(rh) else np.zeros(len(texts))
    hits_per_record[np.diff(roff) == 0] = 0  # reduceat reads the next text's slot for an empty one
    # a short text matched alone with one word replaced can keep none of its n-grams (배송이 너무 느려요 ->
    # 배송이 정말 느려요): such records are found by the word pairs around the replaced word, and a record
    # found only that way is matched only word-aligned
    by_pair: dict[tuple[str, str], set[int]] = defaultdict(set)
    for u, unit in enumerate(units):
        ws = unit.words[0] if unit.words else []
        if unit.field != "*" and len(unit.pieces[0]) < params.min_unit_chars and len(ws) >= 3:
            for pair in word_pairs(ws):
                by_pair[pair].add(u)
    common, paired = _word_pass(fields, by_pair)
    # every match of every candidate record, kept until all records are seen: whether a unit is generic
    # (near many records) is known only then
    matches: dict[int, list[tuple[bool, float, int]]] = {}
    for i in sorted(set(np.flatnonzero(hits_per_record > 0).tolist()) | set(paired)):
        grams = set(rh[roff[i]:roff[i + 1]][hit[roff[i]:roff[i + 1]]].tolist())
        shared: Counter = Counter(p for g in grams for p in owners.get(g, ()))
        record = RecordWords(fields[i], common)
        # a piece shorter than n has one padded n-gram that no record holds: such units are checked verbatim
        found = ({int(unit_of_piece[p]) for p, c in shared.items() if c >= MIN_EVIDENCE * size[p] or short[p]}
                 | {u for u in short_units if all(p in texts[i] for p in units[u].pieces)})
        for u in sorted(found | paired.get(i, set())):
            if u in found:
                shares = [shared.get(p, 0) / size[p] if size[p] else 0.0 for p in range(first[u], first[u + 1])]
                matched, exact, overlap = _match(units[u], texts[i], shares, params, record)
            else:
                ws = units[u].words[0]
                matched, exact, overlap = _aligned_one_word_off(ws, record), False, 1.0 - 1.0 / len(ws)
            if matched:
                matches.setdefault(i, []).append((exact, overlap, u))
    near = generic_units(matches, texts, units, params)
    out = []
    for i, found in matches.items():
        # a weak match is kept when its unit is a generic phrase, or when it is a whole item of which the
        # record lacks a text (a different item with the same stock alternatives)
        why = [_kept_why(u, units[u], texts[i], near, params) if _weak(units[u], texts[i], exact, overlap, params)
               else None for exact, overlap, u in found]
        dropped = [m for m, w in zip(found, why, strict=True) if w is None]
        exact, overlap, u = max(dropped or found, key=lambda m: (m[0], m[1]))
        unit, rec = units[u], records.iloc[i]
        entry = {
            "id": rec["id"], "task": rec["task"], "source": rec["source"],
            "kind": "exact_copy" if exact else "ngram_overlap", "overlap": round(overlap, 4),
            "benchmark": {"source": unit.source, "split": unit.split, "id": unit.item_id,
                          "native_id": unit.native_id, "field": unit.field, "text": unit.text[:200]},
        }
        if not dropped:
            entry["kind"], entry["why"] = why[found.index((exact, overlap, u))]
        out.append(entry)
    return out


# Kinds of match that keep their record (listed under ``generic`` in the report, with why): a benchmark text
# near (not verbatim) decontaminate.generic_near_records distinct training rows is a generic phrase (배송 빠르고 X
# 좋아요, 여름이 되었다 / 겨울이 되었다); a whole item matched weakly (one of its texts missing: a different COPA
# item with the same two stock alternatives) is a partial item (decontaminate.keep_partial_items). Exact copies
# are always dropped.
KEPT_KINDS = ("generic_phrase", "partial_item")


def generic_limit(params: DecontaminateParams) -> int:
    """``generic_near_records`` of the params (0: no text is generic, every near match drops its record)."""
    return params.generic_near_records


def _variant(unit: Unit, text: str) -> frozenset[str]:
    """The lines (record fields) of ``text`` that hold the unit's texts, verbatim or best-aligned (at least half
    their letters): the training text that comes near the unit, the same for every template of one row."""
    stretches = []
    for piece in unit.pieces:
        if piece in text:
            stretches.append(piece)
            continue
        a = fuzz.partial_ratio_alignment(piece, text)
        if a is not None and a.score >= 50:
            stretches += [part for part in text[a.dest_start:a.dest_end].split("\n") if part]
    return frozenset(line for line in text.split("\n") if any(s and s in line for s in stretches))


def _missing(unit: Unit, text: str, threshold: float) -> bool:
    """Whether one of the unit's texts is missing from ``text``: its best-aligned stretch is under
    ``threshold`` similar (rapidfuzz partial ratio). A COPA item with one word replaced keeps every
    sentence at 0.6 or more; a different item with the same two alternatives lacks the premise."""
    return any(p not in text and fuzz.partial_ratio(p, text) / 100 < threshold for p in unit.pieces)


def _weak(unit: Unit, text: str, exact: bool, overlap: float, params: DecontaminateParams) -> bool:
    """Whether a match of ``unit`` in ``text`` is weak: not verbatim, every text of the unit under
    ``min_unit_chars`` letters, and for a whole item one of its texts missing (:func:`_missing`) and not all
    its words there in order with one replaced (an edited copy of the item, as a block)."""
    return (not exact and all(len(p) < params.min_unit_chars for p in unit.pieces)
            and (unit.field != "*" or overlap < 1.0 and _missing(unit, text, params.threshold)
                 and not _one_word_off([w for ws in unit.words or [] for w in ws], text)))


def _kept_why(u: int, unit: Unit, text: str, near: dict[int, int], params: DecontaminateParams
              ) -> tuple[str, str] | None:
    """(kind, why) when a weak match (:func:`_weak`) of unit ``u`` keeps its record; None when it drops it."""
    if u in near:
        return "generic_phrase", (f"{near[u]} different training texts come near this benchmark text, not verbatim "
                                  f"(generic_near_records: {generic_limit(params)}): a phrase that common says "
                                  "nothing about a copy; kept, not dropped")
    if unit.field == "*" and keep_partial_items(params):
        lacks = next(p for p in unit.pieces if p not in text and fuzz.partial_ratio(p, text) / 100 < params.threshold)
        return "partial_item", (f"the record lacks {lacks!r} of this item (under threshold {params.threshold} "
                                "similar) and holds the rest only as short sentences (each under min_unit_chars "
                                f"{params.min_unit_chars} letters) that other items share: too little to call it "
                                "a copy; kept, not dropped (keep_partial_items: false drops it)")
    return None


def keep_partial_items(params: DecontaminateParams) -> bool:
    """``keep_partial_items`` of the params (false: a weak whole-item match drops its record, as before)."""
    return params.keep_partial_items


def generic_units(matches: dict[int, list[tuple[bool, float, int]]], texts: list[str], units: list[Unit],
                  params: DecontaminateParams) -> dict[int, int]:
    """The units that at least :func:`generic_limit` different training texts come near in a weak match
    (:func:`_weak`), with that count; a weak match of such a unit is reported, not dropped.

    Different: the record fields that hold the unit's texts differ (:func:`_variant`), so the templates of
    one row count once. A planted or copied item is near a few texts at most (its edited copies); a
    phrase that ordinary rows of the domain come near by themselves (배송 빠르고 X 좋아요; 여름이 되었다 /
    겨울이 되었다 after any premise) is near many. Only short texts (under ``min_unit_chars`` letters each)
    can be generic: a long sentence near many rows has a family of paraphrases among them (ParaKQC's of a
    KLUE STS sentence), which are near copies. A match that holds an item whole (overlap 1, each text at
    least ``threshold`` similar, or its words in order with one replaced) is a copy whatever else rows
    hold: never weak.
    """
    limit = generic_limit(params)
    if limit <= 0:
        return {}
    variants: dict[int, set] = defaultdict(set)
    for i, found in matches.items():
        for exact, overlap, u in found:
            unit = units[u]
            if _weak(unit, texts[i], exact, overlap, params):
                variants[u].add(_variant(unit, texts[i]))
    return {u: len(v) for u, v in variants.items() if len(v) >= limit}


def decontaminate_frame(records: pd.DataFrame, canonical: pd.DataFrame,
                        params: DecontaminateParams) -> tuple[pd.DataFrame, DecontaminationSummary]:
    """Drop the contaminated records; return the kept ones and the report."""
    units = benchmark_units(canonical, params.min_unit_chars, params.ngram_chars, params.min_piece_chars,
                            params.unit_fields)
    found = find_contamination(records.reset_index(drop=True), units, params)
    hits = [h for h in found if h["kind"] not in KEPT_KINDS]
    drop = {h["id"] for h in hits}
    kept = records[~records["id"].isin(drop)].reset_index(drop=True)
    summary = DecontaminationSummary(
        records=len(records), kept=len(kept), dropped=len(drop), units=len(units),
        benchmark_items=int(canonical["benchmark"].astype(bool).sum()),
        by_benchmark_source=dict(sorted(Counter(h["benchmark"]["source"] for h in hits).items())),
        by_training_source=dict(sorted(Counter(h["source"] for h in hits).items())),
        by_kind=dict(sorted(Counter(h["kind"] for h in hits).items())),
        contaminated=hits, too_short=_too_short(canonical, units, params),
        generic=[h for h in found if h["kind"] in KEPT_KINDS],
    )
    assert summary.records == summary.kept + summary.dropped
    return kept, summary


def _too_short(canonical: pd.DataFrame, units: list[Unit], params: DecontaminateParams) -> list[dict]:
    """The benchmark texts nothing can match: items that gave no unit, and fields named in ``unit_fields``
    (matched on their own) under ``min_piece_chars`` letters."""
    matched = {u.item_id for u in units}
    out = []
    for r in canonical[canonical["benchmark"].astype(bool)].itertuples(index=False):
        fields = {k: str(v) for k, v in json.loads(r.fields).items()}
        alone = [k for k in params.unit_fields.get(r.source, []) if 0 < len(skeleton(fields.get(k, ""))) <
                 params.min_piece_chars]
        if r.id not in matched or alone:
            out.append({"source": r.source, "split": r.split, "id": r.id, "native_id": r.native_id,
                        "field": alone[0] if alone else "*",
                        "text": (fields[alone[0]] if alone else " / ".join(fields.values()))[:200]})
    return out


