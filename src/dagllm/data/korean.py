"""Korean particles that agree with the value before them.

A template writes a particle after a substituted value as a marker, ``{이/가}`` (the form after a
final consonant, a slash, the form after a vowel): ``"{{ word }}"{이/가} 같은 뜻으로``. The
renderer wraps every ``{{ ... }}`` output in two noncharacters (:data:`OPEN`, :data:`CLOSE`), so a
marker is resolved only where the template wrote it, never inside dataset text, and the lint and
the gate can see where each value ends.

How the form is chosen (:func:`final_sound`), from the last meaningful character of the text
before the marker (trailing spaces, ``. , ! ? …`` and closing quotes are looked through; a text
ending in a parenthesis, ``사과(apple)``, is read before the parenthesis):

- a Hangul syllable: its final consonant, ``(code - 0xAC00) % 28`` (0 none, 8 ㄹ);
- a number, by its Sino-Korean reading: the last digit (1 일, 2 이, 3 삼, 4 사, 5 오, 6 육, 7 칠,
  8 팔, 9 구, 0 영), or the unit its trailing zeros make (10 십, 100 백, 1000 천, 10^4..10^7 만,
  10^8..10^11 억, 10^12..10^15 조); after a decimal point each digit is read alone (3.14 → 사);
- Latin letters: only where the reading is certain, an upper-case abbreviation of up to five
  letters or a lone letter, read by letter names (L, R 엘/알 → ㄹ; M, N 엠/엔 → final consonant;
  the rest end in a vowel, Z excepted); ``%`` is 퍼센트;
- anything else (a word such as ``Google``, hanja, emoji, jamo, a symbol, an empty value) has no
  certain reading and gets the style Korean uses then: ``이(가)``, ``을(를)``, ``(으)로``, ``(이)나``.

``으로/로`` (and ``으로서``, ``으로써``...) takes the vowel form after ㄹ as well (``물로``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

OPEN = "\ufdd0"
CLOSE = "\ufdd1"
BLOCK_OPEN = "\ufdd2"  # around an {% if %} block, in probe renders only (lint, gate)
BLOCK_CLOSE = "\ufdd3"
Final = Literal["vowel", "rieul", "consonant"]

# (form after a final consonant, form after a vowel); forms starting with 으 also take the vowel
# form after ㄹ
PAIRS: tuple[tuple[str, str], ...] = (
    ("이", "가"), ("을", "를"), ("은", "는"), ("과", "와"), ("아", "야"),
    ("으로", "로"), ("으로서", "로서"), ("으로써", "로써"), ("으로는", "로는"), ("으로도", "로도"),
    ("이나", "나"), ("이랑", "랑"), ("이다", "다"), ("이라고", "라고"), ("이라는", "라는"),
    ("이라", "라"), ("이에요", "예요"), ("이며", "며"), ("이고", "고"), ("이면", "면"),
    ("이든지", "든지"), ("이든", "든"), ("이었다", "였다"),
)
_PAIR_OF = {f"{c}/{v}": (c, v) for c, v in PAIRS}
MARKER = re.compile(r"\{([가-힣]+)/([가-힣]+)\}")
# every form either column can take, longest first (a literal particle is matched by prefix)
_FORMS = sorted({f: (c, v) for c, v in PAIRS for f in (c, v)}.items(), key=lambda kv: -len(kv[0]))

_TRAILING = " \t\r\n.,!?…~:;·\"'”’」』》〉>" + OPEN + CLOSE
_CLOSERS = "\"'”’」』》〉>)]}"
_DIGIT_FINAL: dict[str, Final] = {"0": "consonant", "1": "rieul", "2": "vowel", "3": "consonant",
                                  "4": "vowel", "5": "vowel", "6": "consonant", "7": "rieul",
                                  "8": "rieul", "9": "vowel"}
# trailing zeros -> the unit read last: 십 ㅂ, 백 ㄱ, 천 ㄴ, 만 ㄴ, 억 ㄱ, 조 vowel
_ZEROS_FINAL: dict[int, Final] = {1: "consonant", 2: "consonant", 3: "consonant",
                                  **dict.fromkeys(range(4, 8), "consonant"),
                                  **dict.fromkeys(range(8, 12), "consonant"),
                                  **dict.fromkeys(range(12, 16), "vowel")}
_LETTER_FINAL: dict[str, Final] = {**dict.fromkeys("ABCDEFGHIJKOPQSTUVWXY", "vowel"),
                                   "L": "rieul", "R": "rieul", "M": "consonant", "N": "consonant"}
_NUMBER = re.compile(r"(\d[\d,]*)(?:\.(\d+))?$")
_LATIN = re.compile(r"(?<![A-Za-z])([A-Za-z]+)$")


class ParticleError(ValueError):
    """A particle marker names a pair the renderer does not know."""


def _meaningful(c: str) -> bool:
    if "\u3131" <= c <= "\u318e":  # ㅋㅋ, ㅠㅠ: emoticons, looked through like symbols
        return False
    return unicodedata.category(c)[0] in "LN"


def final_sound(text: str) -> Final | None:
    """How the last meaningful character of ``text`` ends, or None when its reading is uncertain."""
    s = strip_sentinels(text).rstrip()
    if s.endswith((")", "]")) and ("(" in s or "[" in s):
        head = s[: max(s.rfind("("), s.rfind("["))].rstrip()
        s = head or s  # "(주)" alone: look inside
    i = len(s)
    while i > 0 and not _meaningful(s[i - 1]):
        if s[i - 1] == "%":
            return "vowel"  # 퍼센트
        i -= 1
    s = s[:i]
    if not s:
        return None
    c = s[-1]
    if "가" <= c <= "힣":
        jong = (ord(c) - 0xAC00) % 28
        return "vowel" if jong == 0 else "rieul" if jong == 8 else "consonant"
    if c.isascii() and c.isdigit():
        return _number_final(s)
    if c.isascii() and c.isalpha():
        word = _LATIN.search(s).group(1)
        if len(word) == 1 or (word.isupper() and len(word) <= 5):
            return _LETTER_FINAL.get(c.upper())
    return None


def _number_final(s: str) -> Final | None:
    m = _NUMBER.search(s)
    whole, frac = m.group(1).replace(",", ""), m.group(2)
    if frac:
        return _DIGIT_FINAL[frac[-1]]
    digits = whole.lstrip("0") or "0"
    if digits == "0":
        return "consonant"  # 영
    zeros = len(digits) - len(digits.rstrip("0"))
    if zeros == 0:
        return _DIGIT_FINAL[digits[-1]]
    return _ZEROS_FINAL.get(zeros)


def choose(consonant: str, vowel: str, final: Final | None) -> str:
    """The form of a particle pair after a text ending as ``final`` (None: the ``이(가)`` style)."""
    if final == "vowel" or (final == "rieul" and consonant.startswith("으")):
        return vowel
    if final in ("rieul", "consonant"):
        return consonant
    if consonant[1:] == vowel:  # 으로/로, 이나/나: the optional syllable in brackets
        return f"({consonant[0]}){vowel}"
    return f"{consonant}({vowel})"


def pair(marker_body: str) -> tuple[str, str]:
    """The ``(consonant form, vowel form)`` of a marker ``이/가``; unknown pairs raise."""
    if marker_body not in _PAIR_OF:
        known = ", ".join(f"{{{k}}}" for k in _PAIR_OF)
        raise ParticleError(f"unknown particle marker {{{marker_body}}}; use one of {known}")
    return _PAIR_OF[marker_body]


def mask_values(probe: str, fill: str) -> str:
    """``probe`` with every value (sentinels included) replaced by ``fill`` repeated to its length."""
    return re.sub(OPEN + "[^" + CLOSE + "]*" + CLOSE, lambda m: fill * len(m.group(0)), probe)


def strip_sentinels(text: str) -> str:
    return text.replace(OPEN, "").replace(CLOSE, "").replace(BLOCK_OPEN, "").replace(BLOCK_CLOSE, "")


def resolve(text: str) -> str:
    """Resolve the markers of a rendered text outside its values and drop the value sentinels."""
    if "{" not in text:
        return strip_sentinels(text) if OPEN in text or BLOCK_OPEN in text else text
    out: list[str] = []
    pos = depth = 0
    for m in MARKER.finditer(text):
        before = text[pos:m.start()]
        depth += before.count(OPEN) - before.count(CLOSE)
        out.append(before)
        pos = m.end()
        if depth > 0:  # inside a value: dataset text stays as it is
            out.append(m.group(0))
            continue
        consonant, vowel = pair(f"{m.group(1)}/{m.group(2)}")
        out.append(choose(consonant, vowel, final_sound(strip_sentinels("".join(out)))))
    out.append(text[pos:])
    return strip_sentinels("".join(out))


# --- checking ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Site:
    """A particle after a substituted value (or after a quoted literal) in a rendered text."""

    before: str   # the value (or quoted literal) the particle follows
    written: str  # the form written (after marker resolution)
    expected: str  # the form the value's last character takes
    marker: bool  # written as a marker (chosen at render time) rather than literally
    value: bool = True  # after a substituted value (False: after a quoted literal of the template)

    @property
    def agrees(self) -> bool:
        return self.written == self.expected


def _literal_form(rest: str) -> tuple[str, tuple[str, str]] | None:
    for form, p in _FORMS:
        if rest.startswith(form):
            return form, p
    return None


def _site_after(before: str, rest: str) -> Site | None:
    """The particle site where ``rest`` follows ``before`` (closing quotes already passed)."""
    final = final_sound(before)
    m = MARKER.match(rest)
    if m:
        consonant, vowel = pair(f"{m.group(1)}/{m.group(2)}")
        expected = choose(consonant, vowel, final)
        return Site(before, expected, expected, True)
    lit = _literal_form(rest)
    if lit is None:
        return None
    form, (consonant, vowel) = lit
    return Site(before, form, choose(consonant, vowel, final), False)


_PAIRED = {"\"": "\"", "'": "'", "“": "”", "‘": "’", "「": "」", "『": "』"}


def _quoted_literals(literal: str) -> Iterator[tuple[str, int]]:
    """``(quoted text, end)`` of every quotation of the template's own text, quotes paired in order."""
    i = 0
    while i < len(literal):
        c = literal[i]
        close = _PAIRED.get(c)
        if close is None:
            i += 1
            continue
        j = literal.find(close, i + 1)
        if j < 0 or "\n" in literal[i:j]:
            i += 1
            continue
        yield literal[i + 1:j], j + 1
        i = j + 1


def _skip_closers(probe: str, k: int) -> int:
    while k < len(probe) and (probe[k] in _CLOSERS or probe[k] in (CLOSE, BLOCK_CLOSE)):
        k += 1
    return k


def particle_sites(probe: str) -> list[Site]:
    """Every particle written right after a value, an ``{% if %}`` block or a quoted literal.

    ``probe`` is a render whose values are still wrapped in :data:`OPEN`/:data:`CLOSE`, whose
    ``{% if %}...{% endif %}`` blocks are wrapped in :data:`BLOCK_OPEN`/:data:`BLOCK_CLOSE` and whose
    markers are not resolved (``dagllm.data.templating.probe_parts``). A particle is reported once, for the
    innermost value or block it follows.
    """
    found: dict[int, Site] = {}
    stack: list[int] = []
    for i, c in enumerate(probe):
        if c in (OPEN, BLOCK_OPEN):
            stack.append(i)
        elif c in (CLOSE, BLOCK_CLOSE) and stack:
            j = stack.pop()
            before = strip_sentinels(probe[j + 1:i])
            k = _skip_closers(probe, i + 1)
            if k in found or not before.strip():
                continue
            site = _site_after(before, probe[k:k + 12])
            if site is not None:
                found[k] = site
    # quoted literals the template wrote itself ("그래서"으로)
    literal = mask_values(probe, "\x00").replace(BLOCK_OPEN, "\x01").replace(BLOCK_CLOSE, "\x01")
    for quoted, end in _quoted_literals(literal):
        quoted = quoted.replace("\x01", "")
        if "\x00" in quoted or not quoted.strip() or end in found:
            continue
        site = _site_after(quoted, literal[end:end + 12])
        if site is not None:
            found[end] = Site(site.before, site.written, site.expected, site.marker, value=False)
    return [found[k] for k in sorted(found)]
