"""Text that decoded without error but is garbage: mojibake of Korean and U+FFFD replacement characters.

A file read with the wrong code page decodes "successfully" into noise. Which noise is fixed by the
codecs themselves, so each class is recognised by undoing the misreading, not by a list of strange
strings:

- Korean bytes (CP949/EUC-KR or UTF-8) read as a single-byte code page (Windows-1252, Latin-1):
  every byte became one Latin-1/Windows-1252 character (``미래는`` -> ``¹Ì·¡´Â``, ``안녕`` ->
  ``ì•ˆë…•``). Encoding those characters back to their bytes and decoding with the right codec
  gives Hangul again; real Latin text (``café``, ``°C``, ``®``) does not turn into Hangul.
- UTF-8 read as CP949: each syllable's lead byte 0xEA-0xED pairs with the next byte into a Hanja or
  is an error (U+FFFD or dropped), and the other bytes pair into the Hangul syllables that the
  2,350 of KS X 1001 lack (``미래는`` -> ``誘몃옒�뒗``). Real Korean text draws its syllables almost only
  from KS X 1001; a text whose Hangul is mostly outside it and that holds Hanja or U+FFFD is this noise.
- U+FFFD, what a decoder writes for bytes it could not read (e.g. CP949 read as UTF-8 with
  ``errors="replace"``): the original characters are gone.

A text is garbage only when such noise makes up at least :data:`MIN_NOISE_SHARE` of its
non-ASCII characters (ASCII reads the same in all these codecs, so it is evidence neither way) and at
least :data:`MIN_NOISE_CHARS` characters: real text with a few foreign characters (Latin accents,
Hanja, emoji, math signs, ``®``) or one broken character stays.

Known limit: Latin-1 characters that are themselves valid CP949 pairs when re-encoded (a string of
adjacent accented capitals such as ``ÀÉÎÕÜ ÂÊÔ``, or symbol pairs like ``±°``) are indistinguishable
from mojibake of the syllables they spell; no row of the mirror is like that.
"""

from __future__ import annotations

import re

# At least this share of a text's non-ASCII, non-space characters must be noise ("mostly").
MIN_NOISE_SHARE = 0.5
# ... and at least this many characters (two misread Hangul syllables): a lone "±°" that happens to
# re-decode as one syllable is not evidence.
MIN_NOISE_CHARS = 4

# Rare syllables alone (no Hanja, no U+FFFD) count as UTF-8 read as CP949 only when at least this many
# different ones make up two thirds of the Hangul: slang repeats a few (햏햏햏 뷁 똠방각하 쀍쀍).
MIN_RARE_KINDS = 6

REPLACEMENT = "\ufffd"
# A lossy misreading leaves U+FFFD beside the characters its class makes (UTF-8 read as CP949: about
# one per syllable, next to one or two Hanja or rare syllables); when U+FFFD outnumbers those three to
# one, as in CP949 read as UTF-8, the reason names the replacement characters instead.
FFFD_DOMINANCE = 3
HANGUL = re.compile("[\uac00-\ud7a3]")
HANJA = re.compile("[\u4e00-\u9fff\uf900-\ufaff]")  # the Hanja CP949 has


def _single_byte_table() -> dict[str, int]:
    """Each character Windows-1252 or Latin-1 makes of a byte 0x80-0xFF -> that byte."""
    table: dict[str, int] = {}
    for b in range(0x80, 0x100):
        table[bytes([b]).decode("latin-1")] = b  # Latin-1: U+0080-U+00FF, C1 controls included
        try:
            table[bytes([b]).decode("cp1252")] = b  # Windows-1252: € ‚ ƒ „ … † ‡ ˆ ‰ Š ‹ Œ Ž ‘ ’ “ ” • – — ˜ ™ ...
        except UnicodeDecodeError:  # 0x81 0x8D 0x8F 0x90 0x9D are undefined in Windows-1252
            pass
    return table


SINGLE_BYTE = _single_byte_table()
TO_BYTES = {ord(c): b for c, b in SINGLE_BYTE.items()}  # str.translate table: then .encode("latin-1")
CP1252_ONLY = frozenset(c for c, b in SINGLE_BYTE.items() if 0x80 <= b <= 0x9F and ord(c) > 0xFF)
C1_CONTROLS = frozenset(chr(b) for b in range(0x80, 0xA0))
_SB_CLASS = "".join(sorted(re.escape(c) for c in SINGLE_BYTE))
# What breaks a stretch a single-byte misreading could have made (its characters and ASCII: bytes
# below 0x80 read the same, and CP949 trail bytes may be ASCII letters).
NOT_SINGLE_BYTE = re.compile(f"[^\x00-\x7f{_SB_CLASS}]+")
NON_ASCII = re.compile("[^\x00-\x7f]")


def _ksx1001(c: str) -> bool:
    """Whether a Hangul syllable is one of the 2,350 of KS X 1001 (two bytes 0xB0-0xC8, 0xA1-0xFE)."""
    b = c.encode("cp949")
    return 0xB0 <= b[0] <= 0xC8 and b[1] >= 0xA1


# The 8,822 syllables CP949 adds beyond KS X 1001 (its "UHC" extension), derived from the codec.
RARE_SYLLABLES = frozenset(chr(x) for x in range(0xAC00, 0xD7A4) if not _ksx1001(chr(x)))
RARE = re.compile("[" + "".join(sorted(RARE_SYLLABLES)) + "]")
# What real Korean is written in: KS X 1001 syllables and the compatibility jamo (ㅋㅋ, ㅠㅠ).
KOREAN_KSX = re.compile("[\u3131-\u318e" + "".join(sorted(set(map(chr, range(0xAC00, 0xD7A4))) - RARE_SYLLABLES)) + "]")
# Characters no clean Korean text is made of in bulk: the fast path skips texts with none of them.
SUSPECT = re.compile(f"[{_SB_CLASS}{REPLACEMENT}\u4e00-\u9fff\uf900-\ufaff]|{RARE.pattern}")
CODEC_NAMES = {"cp949": "CP949/EUC-KR", "utf-8": "UTF-8"}


def _non_ascii_visible(text: str) -> int:
    return sum(1 for c in text if ord(c) > 0x7F and not c.isspace())


def _korean_bytes(decoded: str, codec: str) -> int:
    """How many bytes of a re-decoded run became Korean (or, for UTF-8, any multi-byte character).

    A valid multi-byte UTF-8 sequence almost never arises from real Latin text, so every one counts.
    CP949 pairs up nearly any two high bytes, so only what real Korean is written in counts: the
    KS X 1001 syllables and jamo (English ``“Yes”`` would otherwise read as the UHC syllable ``밳``).
    """
    if codec == "utf-8":
        return sum(len(c.encode("utf-8")) for c in decoded if c > "\x7f" and c != REPLACEMENT)
    return 2 * len(KOREAN_KSX.findall(decoded))


def _single_byte_noise(text: str) -> tuple[int, str]:
    """Characters explained as Korean bytes read one byte at a time, and the codec those bytes were in.

    Each stretch of single-byte characters is turned back into its bytes and decoded as CP949 and as
    UTF-8; the bytes that come out as Korean account for as many of the stretch's characters.
    """
    best = {"cp949": 0, "utf-8": 0}
    for run in NOT_SINGLE_BYTE.split(text):
        non_ascii = len(NON_ASCII.findall(run))
        if non_ascii < 2:  # one byte makes no Korean character
            continue
        raw = run.translate(TO_BYTES).encode("latin-1")
        for codec in best:
            best[codec] += min(non_ascii, _korean_bytes(raw.decode(codec, errors="replace"), codec))
    codec = max(best, key=best.__getitem__)
    return best[codec], codec


def _wrong_page(text: str) -> str:
    """Which single-byte code page the noise is in: C1 controls only Latin-1 makes, € “ ” only Windows-1252."""
    if any(c in C1_CONTROLS for c in text):
        return "Latin-1 (ISO-8859-1)"
    if any(c in CP1252_ONLY for c in text):
        return "Windows-1252"
    return "Windows-1252/Latin-1"


def _utf8_as_cp949_noise(text: str) -> int:
    """Characters that look like UTF-8 Hangul decoded as CP949, or 0 when the text lacks the signature.

    The signature: Hangul syllables outside KS X 1001 (continuation bytes paired up) next to Hanja or
    U+FFFD (the lead bytes 0xEA-0xED), or, when the decoder dropped the lead bytes
    (``errors="ignore"``), Hangul that is mostly rare syllables of many kinds. Hanja-only text
    (Chinese, a Hanja gloss) and slang with a few rare syllables (``햏햏``, ``웃기놐``) lack it.
    """
    rare = RARE.findall(text)
    if not rare:
        return 0
    lead_bytes = len(HANJA.findall(text))
    common = len(HANGUL.findall(text)) - len(rare)
    if lead_bytes or REPLACEMENT in text or (len(set(rare)) >= MIN_RARE_KINDS and len(rare) >= 2 * common):
        return len(rare) + lead_bytes
    return 0


def garbage_reason(text: str) -> str | None:
    """Why ``text`` is mostly decoding noise rather than text, or None when it is text.

    Args:
        text: one field's value, as decoded.

    Returns:
        A short reason naming the class and the share, e.g. ``"mojibake: CP949/EUC-KR text read as
        Windows-1252 (12 of 14 non-ASCII characters)"``, or None.
    """
    found = garbage(text)
    return None if found is None else f"{found[0]} ({found[1]} of {found[2]} non-ASCII characters)"


def garbage(text: str) -> tuple[str, int, int] | None:
    """:func:`garbage_reason` in parts: ``(class, noise characters, non-ASCII characters)``, or None.

    The class alone is the same for every row of one misreading (a quarantine reason to count by).
    """
    if not SUSPECT.search(text):
        return None
    total = _non_ascii_visible(text)
    if total < MIN_NOISE_CHARS:
        return None
    replaced = text.count(REPLACEMENT)
    # (characters only that class makes, reason); U+FFFD comes with every lossy decode and is added below.
    evidence = [(0, "replacement characters (U+FFFD): the original characters were lost in decoding "
                    "(e.g. CP949/EUC-KR text read as UTF-8)")]
    single, codec = _single_byte_noise(text)
    if single:
        evidence.append((single, f"mojibake: {CODEC_NAMES[codec]} text read as {_wrong_page(text)}"))
    if cp949 := _utf8_as_cp949_noise(text):
        evidence.append((cp949, "mojibake: UTF-8 text read as CP949/EUC-KR"))
    own, reason = max(evidence, key=lambda e: e[0])
    if own * FFFD_DOMINANCE < replaced:  # U+FFFD swamps the rest: name the noise for what is there
        reason = evidence[0][1]
    noise = min(own + replaced, total)
    if noise < MIN_NOISE_CHARS or noise < MIN_NOISE_SHARE * total:
        return None
    return reason, noise, total
