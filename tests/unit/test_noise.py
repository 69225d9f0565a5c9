"""Garbage that decoded: mojibake of Korean and U+FFFD text is named, real text with foreign characters is not.

The mojibake here is made the way it arises: real Korean (rows of the mirror, or sentences written
here) encoded with one codec and decoded with another. The false-positive check reads every text
field of every row of every file in the mirror.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dagllm.data.catalog import load_catalog
from dagllm.data.noise import garbage_reason
from dagllm.data.readers import READERS, Row

from ..conftest import REPO

# DAGLLM_SHARED_DATA points a worktree outside /work at the mirror
MIRROR = Path(os.environ.get("DAGLLM_SHARED_DATA", REPO.parent / "shared" / "data"))
# Mirror files no catalog source lists, read by the reader of their family.
EXTRA_FILES = {"nsmc/ratings_test.head5.txt": "nsmc_ratings", "nsmc/raw/10004.json": "nsmc_raw",
               "nsmc/raw/10005.json": "nsmc_raw"}

# (true codec, codec it was read with, errors=) -> what the reason must say
MISREADINGS = {
    ("cp949", "cp1252", "replace"): "mojibake: CP949/EUC-KR text read as Windows-1252",
    ("cp949", "cp1252", "ignore"): "mojibake: CP949/EUC-KR text read as Windows-1252",
    ("cp949", "latin-1", "strict"): "mojibake: CP949/EUC-KR text read as",  # + Latin-1 (checked below)
    ("utf-8", "cp1252", "replace"): "mojibake: UTF-8 text read as Windows-1252",
    ("utf-8", "cp1252", "ignore"): "mojibake: UTF-8 text read as Windows-1252",
    ("utf-8", "latin-1", "strict"): "mojibake: UTF-8 text read as",
    ("utf-8", "cp949", "replace"): "mojibake: UTF-8 text read as CP949/EUC-KR",
    ("utf-8", "cp949", "ignore"): "mojibake: UTF-8 text read as CP949/EUC-KR",
    ("cp949", "utf-8", "replace"): "replacement characters (U+FFFD)",
}

SENTENCES = ["미래는 미리 적힌게 아니다.", "안녕하세요, 오늘 날씨가 정말 좋네요!", "배송 빠르고 포장도 꼼꼼해서 좋았어요 ㅋㅋ",
             "이 영화는 배우들의 연기가 훌륭했고 음악도 좋았다.", "서울특별시 종로구 세종대로 209 정부서울청사"]


def misread(text: str, true: str, read_as: str, errors: str) -> str:
    return text.encode(true, errors="replace").decode(read_as, errors=errors)


# --- the mirror ------------------------------------------------------------------------------------


def _mirror_files() -> dict[str, str]:
    assert MIRROR.is_dir(), f"the real files are read from {MIRROR} (set DAGLLM_SHARED_DATA)"
    files = {sf.path: sf.reader for src in load_catalog().sources.values() for sf in src.files
             if (MIRROR / sf.path).is_file()}
    return {**files, **EXTRA_FILES}


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _raw_cells(path: Path) -> Iterator[str]:
    """Every string a file holds: each cell of a TSV/CSV, each string value of JSON or JSON Lines."""
    text = path.read_text(encoding="utf-8-sig")
    head = text.lstrip()[:1]
    if head == "[":
        yield from _strings(json.loads(text))
    elif head == "{":
        for line in text.splitlines():
            if line.strip():
                yield from _strings(json.loads(line))
    else:
        delimiter, quoting = (",", csv.QUOTE_MINIMAL) if path.suffix == ".csv" else ("\t", csv.QUOTE_NONE)
        for row in csv.reader(text.splitlines(), delimiter=delimiter, quoting=quoting):
            yield from row


@pytest.fixture(scope="module")
def reader_texts() -> list[tuple[str, int, str, str]]:
    """(file, line, field, text) for every non-empty field, label and id of every row the readers keep."""
    out = []
    for rel, name in sorted(_mirror_files().items()):
        for item in READERS[name](MIRROR / rel):
            if isinstance(item, Row):
                named = {**item.fields, "label": item.label or "", "id": item.native_id or ""}
                out += [(rel, item.line, k, v) for k, v in named.items() if v]
    return out


def test_no_real_text_of_the_mirror_is_called_garbage(reader_texts):
    assert len({f for f, *_ in reader_texts}) == len(_mirror_files())  # every file gave rows
    start = time.perf_counter()
    flagged = [(f, line, k, v[:80], r) for f, line, k, v in reader_texts if (r := garbage_reason(v))]
    per_text = (time.perf_counter() - start) / len(reader_texts)
    assert flagged == []
    assert per_text < 50e-6, f"{per_text * 1e6:.1f} µs per text"  # measured ~1 µs: cheap enough per row


def test_no_string_in_any_file_of_the_mirror_is_called_garbage():
    """Fields the readers do not keep (authors, dates, status) too: every cell of every file."""
    files = sorted(p for p in MIRROR.rglob("*") if p.is_file() and p.name != "MANIFEST.md")
    assert len(files) >= 40
    flagged, cells = [], 0
    for path in files:
        for cell in _raw_cells(path):
            cells += 1
            if reason := garbage_reason(cell):
                flagged.append((str(path.relative_to(MIRROR)), cell[:80], reason))
    assert cells > 300_000 and flagged == []


@pytest.fixture(scope="module")
def korean_sample(reader_texts) -> list[str]:
    """Distinct mirror texts over 10 characters holding Korean, every 25th (deterministic)."""
    texts = sorted({v for *_, v in reader_texts if len(v) > 10 and sum("가" <= c <= "힣" for c in v) >= 2})
    return texts[::25]


@pytest.mark.parametrize("how", list(MISREADINGS), ids=lambda h: "-".join(h))
def test_mojibake_made_from_real_rows_is_caught_and_named(korean_sample, how):
    assert len(korean_sample) > 5000
    reasons = [garbage_reason(misread(t, *how)) for t in korean_sample]
    caught = [r for r in reasons if r]
    named = [r for r in caught if r.startswith(MISREADINGS[how])]
    if how[1] == "latin-1":
        named = [r for r in named if "Latin-1" in r]
    assert len(caught) >= 0.995 * len(reasons), f"caught {len(caught)} of {len(reasons)}"
    assert len(named) >= 0.99 * len(caught), [r for r in caught if r not in named][:5]


# --- written cases ---------------------------------------------------------------------------------


def test_the_issue_examples_are_what_these_misreadings_make():
    assert misread("미래는 미리 적힌게", "cp949", "cp1252", "replace") == "¹Ì·¡´Â ¹Ì¸® ÀûÈù°Ô"
    assert misread("안녕", "utf-8", "cp1252", "replace") == "ì•ˆë…•"
    assert garbage_reason("¹Ì·¡´Â ¹Ì¸® ÀûÈù°Ô").startswith("mojibake: CP949/EUC-KR text read as Windows-1252")
    assert garbage_reason(misread("안녕하세요", "utf-8", "cp1252", "replace")).startswith(
        "mojibake: UTF-8 text read as Windows-1252")


@pytest.mark.parametrize("how", list(MISREADINGS), ids=lambda h: "-".join(h))
@pytest.mark.parametrize("sentence", SENTENCES)
def test_each_misreading_of_a_written_sentence_is_caught(sentence, how):
    reason = garbage_reason(misread(sentence, *how))
    assert reason is not None and reason.startswith(MISREADINGS[how]), reason
    assert "non-ASCII characters)" in reason  # says how much of the text is noise


def test_the_wrong_code_page_is_named_when_the_characters_tell():
    text = "똠양꿍 먹고 싶다"  # 똠 is CP949 0x8C 0x63: Latin-1 reads 0x8C as a C1 control, Windows-1252 as Œ
    assert "read as Latin-1" in garbage_reason(misread(text, "cp949", "latin-1", "strict"))
    assert "read as Windows-1252 (" in garbage_reason(misread(text, "cp949", "cp1252", "replace"))
    # KS X 1001 syllables are bytes 0xA1-0xFE, the same in both code pages: the reason says so
    assert "read as Windows-1252/Latin-1 (" in garbage_reason(misread("서방님 오셨어요", "cp949", "latin-1", "strict"))


@pytest.mark.parametrize("text", [
    "Café au lait, s'il vous plaît. À bientôt, Éloïse! Où ça? Là-bas, près du château.",
    "Größenwahn über Äpfel, Öl und Übermut; Straße, Fußgänger, Müller.",
    "São Paulo não é só ações; Pelé, Conceição, irmã, avô, coração.",
    "Mañana, señor Muñoz comerá piñatas en Cádiz; ¿Qué? ¡Olé!",
    "Þórður og Guðrún fóru í ferð til Ísafjarðar; Ærø, Øresund, smørrebrød og blåbær.",
    "Tiếng Việt: Hà Nội, Thành phố Hồ Chí Minh; Zażółć gęślą jaźń; İstanbul'da çay içtik.",
    "Русский текст и ελληνικά γράμματα",
    "x² + y² = z², ±0.5°C, ½ ¼ ¾, 5µm × 3 ÷ 2, ∑∫√∞≠≤≥",
    "가격: €100, £50, ¥2000, ©2024 ACME®™ · 무료 배송",
    "“정말요?” ‘네’ — 그렇습니다… • 첫째 · 둘째",
    "오늘 기분 최고 😀👍🎉🔥 ㅋㅋㅋ",
    "我爱你中国，北京欢迎你。天下大势，分久必合，合久必分。",
    "ありがとうございます。東京は今日も晴れです。",
    "大韓民國 憲法 第一條 大韓民國은 民主共和國이다.",
    "한국사능력검정시험(韓國史能力檢定試驗)은 국사편찬위원회가 주관한다.",
    "햏햏햏햏 뷁 똠방각하 쀍쀍",                 # syllables KS X 1001 lacks, in real slang
    "좋아요 � 정말 좋아요",                        # one broken character
    "이모티콘이 깨졌어요 ��",
    "¡¿«»¬¦§¨ª¯´¶¸º¿ 기호들",
    "",
])
def test_real_text_with_foreign_characters_stays(text):
    assert garbage_reason(text) is None


def test_a_few_garbled_characters_in_real_text_do_not_make_it_garbage():
    body = "정말 재미있는 영화였다. 배우들의 연기가 훌륭했다"
    assert garbage_reason(body + " " + misread("미래", "cp949", "cp1252", "replace")) is None
    assert garbage_reason(body + " " + misread("미래", "utf-8", "cp949", "replace")) is None
    # mostly noise with a few intact words is garbage
    assert garbage_reason("정말 " + misread(body, "cp949", "cp1252", "replace")) is not None


def test_replacement_characters_are_garbage_only_when_they_are_most_of_the_text():
    lost = misread("이 영화는 배우들의 연기가 훌륭했다.", "cp949", "utf-8", "replace")  # what U+FFFD text looks like
    assert garbage_reason(lost).startswith("replacement characters (U+FFFD)")
    assert garbage_reason("\ufffd" * 6).startswith("replacement characters (U+FFFD)")
    assert garbage_reason("정말 좋은 영화 \ufffd\ufffd 추천합니다 배우들 연기 최고") is None


def test_huge_text_is_checked_in_linear_time():
    """A 300,000-character field (a judgement's full text) must not make the check backtrack."""
    english = "a" * 200_000 + "“" + "b" * 100_000 + "”"
    garbled = misread("미래는 미리 적힌게 아니다. ", "cp949", "cp1252", "replace") * 10_000
    start = time.perf_counter()
    assert garbage_reason(english) is None
    assert garbage_reason(garbled) is not None
    assert time.perf_counter() - start < 5  # ~0.2 s; a quadratic scan would take minutes
