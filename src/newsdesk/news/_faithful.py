"""Faithfulness: does a summary or key fact state only what its article states?

A small model invents the details a reader trusts most: "a $1.2 million budget" for an article
about $1.1 billion, "for the first time in 24 months", a name the article never mentions. This
module checks the *checkable* claims of a phrase against its article - every number, date word
and name - after normalising both sides, so "ten million" = "10 million" = "10,000,000",
"1,200" = "1200", "$1.1 billion" = "1.1 billion dollars", "twelve-hour" = "12-hour", and
"Australian" is supported by "Australia". Pure functions over strings; no model.

``repair`` applies it to an analysis: unfaithful or fragmentary key facts are dropped, and an
unfaithful or looping summary is replaced by the article's own first sentence (an honest extract
beats an invented abstract; measured in bench/quality.py, docs/QUALITY.md).

What it cannot see: a wrong claim built only from words the article contains ("the council
rejected the budget" for one that passed). It checks what can be checked without a model.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = [
    "Claims",
    "claims",
    "unsupported",
    "is_faithful",
    "is_fragment",
    "cut_loop",
    "lead_sentence",
    "repair",
    "Repair",
]

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19,
}  # fmt: skip
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}  # fmt: skip
_SCALES = {
    "hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000,
    "trillion": 1_000_000_000_000, "k": 1_000, "m": 1_000_000, "bn": 1_000_000_000,
    "mln": 1_000_000,
}  # fmt: skip
_MONTHS = (
    "january february march april may june july august september october november december".split()
)
_MONTH_ABBR = {m[:3]: m for m in _MONTHS} | {"sept": "september"}
_WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
# Capitalised words that are not names: sentence furniture, honorifics and titles the model adds
# around a name the article does give ("Mr Howard", "President Bush").
_NOT_NAMES = frozenset(
    """a an the this that these those it its he she they we i you his her their our my in on at
    of for to from by with and or but if as after before while when where since during under over
    about into no not new mr mrs ms dr sir prof president prime minister premier senator chairman
    chief secretary general governor mayor judge king queen prince princess pope
    police officials official government""".split()
)

# a number: digits with thousands separators or a decimal part, optionally a scale word after it
_NUM = re.compile(
    r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?:\s*(?:-\s*)?"
    r"(hundred|thousand|million|billion|trillion|bn|mln|m|k)\b)?",
    re.I,
)
# a word, with the dots of abbreviations ("U.S.") and inner hyphens/apostrophes
_WORDISH = re.compile(r"[^\W_](?:[\w'’-]|\.(?=\w))*\.?", re.U)


@dataclass(frozen=True)
class Claims:
    """The checkable claims of a text: numeric values, date words, name words (lower-case)."""

    numbers: frozenset[float] = frozenset()
    dates: frozenset[str] = frozenset()
    names: frozenset[str] = frozenset()


def _num_value(digits: str, scale: str | None) -> float:
    value = float(digits.replace(",", ""))
    if scale:
        value *= _SCALES[scale.lower()]
    return round(value, 6)


def _word_numbers(text: str) -> list[float]:
    """Values of spelled-out numbers: "ten million", "twenty-five", "three hundred", "twelve-hour".
    A lone "one" is skipped: it is far more often a pronoun ("one of the...") than a count."""
    out: list[float] = []
    words = re.findall(r"[a-z]+", text.lower())
    i = 0
    while i < len(words):
        w = words[i]
        if w in _UNITS or w in _TENS:
            value = float(_UNITS.get(w, _TENS.get(w, 0)))
            j = i + 1
            if w in _TENS and j < len(words) and words[j] in _UNITS:
                value += _UNITS[words[j]]
                j += 1
            total = 0.0
            while j < len(words) and words[j] in _SCALES and len(words[j]) > 2:
                value *= _SCALES[words[j]]
                if _SCALES[words[j]] >= 1000:
                    total += value
                    value = 0.0
                j += 1
            value += total
            if not (w == "one" and j == i + 1):
                out.append(round(value, 6))
            i = j
        else:
            i += 1
    return out


def _numbers(text: str) -> set[float]:
    vals = {_num_value(m.group(1), m.group(2)) for m in _NUM.finditer(text)}
    vals.update(_word_numbers(text))
    # "a dozen" / "dozens" are too vague to check; "per cent" and "%" need nothing (the value is
    # the same either way)
    return vals


def _norm_word(w: str) -> str:
    w = w.lower().replace("’", "'").strip("'.-")
    if w.endswith("'s"):
        w = w[:-2]
    return w.replace(".", "")  # "U.S." -> "us"


def _dates(text: str) -> set[str]:
    out: set[str] = set()
    for w in re.findall(r"[A-Za-z]+\.?", text):
        lw = w.lower().rstrip(".")
        if lw in _MONTHS or lw in _WEEKDAYS:
            if lw == "may" and w[0].islower():
                continue  # the verb
            out.add(lw)
        elif w[0].isupper() and lw in _MONTH_ABBR and (w.endswith(".") or len(lw) == 3):
            if lw not in ("mar", "may", "jun"):  # too often words of their own
                out.add(_MONTH_ABBR[lw])
    return out


_SENT_START = re.compile(r"(?:^|[.!?:;]\s+|[\"“(]\s*)$")


def _names(text: str) -> set[str]:
    """Capitalised words that look like parts of names. A sentence's first word counts only when
    the next word is capitalised too ("Kestrel Motors will..."), since any sentence starts with
    a capital."""
    out: set[str] = set()
    toks = list(_WORDISH.finditer(text))
    for k, m in enumerate(toks):
        w = m.group(0)
        if not w[0].isupper() or w.isdigit():
            continue
        lw = _norm_word(w)
        if not lw or lw in _NOT_NAMES or lw in _MONTHS or lw in _WEEKDAYS:
            continue
        if _SENT_START.search(text[: m.start()]):
            nxt = toks[k + 1].group(0) if k + 1 < len(toks) else ""
            if not (nxt[:1].isupper() and _norm_word(nxt) not in _NOT_NAMES):
                continue
        for part in lw.split("-"):
            if len(part) > 1 and not part.isdigit():  # initials ("W.") say too little
                out.add(part)
    return out


def claims(text: str) -> Claims:
    """The numbers, date words and name words a text asserts."""
    return Claims(frozenset(_numbers(text)), frozenset(_dates(text)), frozenset(_names(text)))


# abbreviations a model spells out (or the reverse): the measured false alarm on lee50 was
# "United States" for an article saying "US"
_ALIASES: list[tuple[str, set[str]]] = [
    ("us", {"united", "states"}),
    ("usa", {"united", "states"}),
    ("uk", {"united", "kingdom"}),
    ("un", {"united", "nations"}),
    ("eu", {"european", "union"}),
]


@dataclass
class _Source:
    """An article, indexed once for checking many phrases against it."""

    numbers: set[float]
    words: set[str]

    @classmethod
    def of(cls, text: str) -> _Source:
        words: set[str] = set()
        for w in _WORDISH.findall(text):
            lw = _norm_word(w)
            words.add(lw)
            words.update(p for p in lw.split("-") if p)
        words.update(_dates(text))  # "Sept." in the article supports "September"
        for short, long in _ALIASES:  # "US" in the article supports "United States", and back
            if short in words or long <= words:
                words.add(short)
                words.update(long)
        return cls(_numbers(text), words)

    def has_number(self, value: float) -> bool:
        if value in self.numbers:
            return True
        # "4,000 jobs" in the article, "4000" in the summary are equal already; allow rounding
        # the model does honestly ("about 300,000" for 298,000 is still invention: not allowed)
        return any(abs(value - v) <= 1e-9 * max(1.0, abs(v)) for v in self.numbers)

    def has_word(self, word: str) -> bool:
        if word in self.words:
            return True
        # "Australian" / "Australia", "Israeli" / "Israel", "Palestinian" / "Palestine"
        if len(word) < 4:
            return False
        for w in self.words:
            if len(w) >= 4 and w[:4] == word[:4]:
                n = len(_common_prefix(w, word))
                if n >= 4 and n >= min(len(w), len(word)) - 1:
                    return True
        return False


def _common_prefix(a: str, b: str) -> str:
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    return a[:i]


def unsupported(text: str, article: str | _Source) -> list[str]:
    """The claims of ``text`` its article does not support, as readable strings (empty = faithful)."""
    src = article if isinstance(article, _Source) else _Source.of(article)
    c = claims(text)
    bad = [_fmt(n) for n in sorted(c.numbers) if not src.has_number(n)]
    bad += [d for d in sorted(c.dates) if d not in src.words]
    bad += [n for n in sorted(c.names) if not src.has_word(n)]
    return bad


def _fmt(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def is_faithful(text: str, article: str) -> bool:
    """Whether every number, date and name in ``text`` occurs in ``article`` (normalised)."""
    return not unsupported(text, article)


# --- form ------------------------------------------------------------------------------------

_DANGLING = frozenset(
    "a an the of to in on at for and or but with by from that which who as is are was were".split()
)


_CONTINUATIONS = frozenset(
    "and but or nor so which who whom whose whereas while because although though of than".split()
)


def is_fragment(fact: str) -> bool:
    """Not a sentence a reader can take alone: starts mid-sentence ("2.5, Kestrel Motors will...",
    "and the mayor said") or ends on a dangling word ("...the council of")."""
    f = fact.strip()
    if not f:
        return True
    if re.match(r"^[\d.,]+\s*[,;:)]", f) or re.match(r"^[,;:.)\]–-]", f):
        return True
    # a continuation ("and the mayor said...", "which means..."); a fact merely written in lower
    # case ("council approved the budget") is a sentence all the same
    if f.split()[0].lower().strip(",;:") in _CONTINUATIONS:
        return True
    last = f.rstrip(" .!?…").rsplit(" ", 1)[-1].lower()
    return last in _DANGLING or f.rstrip().endswith((",", ";", ":"))


def cut_loop(text: str, *, n: int = 3) -> tuple[str, bool]:
    """Cut a text where it starts repeating itself: at the second occurrence of any run of ``n``
    words (case and punctuation ignored). Returns (text, whether it looped)."""
    toks = list(re.finditer(r"\S+", text))
    keys = [re.sub(r"\W+", "", t.group(0).lower()) for t in toks]
    seen: dict[tuple[str, ...], int] = {}
    for i in range(len(keys) - n + 1):
        gram = tuple(keys[i : i + n])
        if not all(gram):
            continue
        if gram in seen and seen[gram] + n <= i:
            return text[: toks[i].start()].rstrip(" ,;:-–"), True
        seen.setdefault(gram, i)
    return text, False


_SENT_END = re.compile(r"(?<=[.!?])[\"'”’)]?\s+(?=[\"'“‘(]?[A-ZА-ЯЁ0-9])")


def lead_sentence(text: str, limit: int = 200) -> str:
    """The article's first sentence (its lead, which in news says what happened), at most
    ``limit`` characters, cut on a word with "…"."""
    text = " ".join(text.split())
    start = 0
    for m in _SENT_END.finditer(text):
        before = text[start : m.start()].rstrip(".!?\"'”’)")
        last = before.rsplit(" ", 1)[-1]
        if (len(last) <= 4 and last[:1].isupper()) or len(last) <= 1 or "." in last:
            continue  # "Mr.", "U.S.", "Sept." - not a sentence end
        if m.start() >= 40:
            text = text[: m.start()]
            break
    text = text.strip()
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0].rstrip(",;:-–") + "…"
    return text


# --- applied to an analysis ----------------------------------------------------------------------


@dataclass
class Repair:
    """What ``repair`` changed, for measurement and for the reader's trust (never silently wrong)."""

    summary_replaced: str | None = None  # why: "unsupported: 1.2 million" / "loop" / None
    facts_dropped: list[tuple[str, str]] = field(default_factory=list)  # (fact, why)

    @property
    def changed(self) -> bool:
        return bool(self.summary_replaced or self.facts_dropped)


def repair(
    summary: str,
    facts: Iterable[str],
    article_text: str,
    *,
    title: str = "",
    translated: bool = False,
    lead_limit: int = 200,
) -> tuple[str, list[str], Repair]:
    """A faithful (summary, key facts) for an article, and what was changed.

    * a summary that loops is cut where it repeats; what is left must still say something
      (≥ 6 words) or the lead sentence replaces it;
    * a summary with a number, date or name the article lacks is replaced by the lead sentence;
    * a key fact that is a fragment or unsupported is dropped (facts are extras: none is better
      than a wrong one).

    ``translated`` (the summary was asked for in another language): names may be transliterated,
    so only numbers are checked, and the summary is not swapped for a lead in the wrong language -
    it is cut to nothing but its loop-free part.
    """
    src = _Source.of(f"{title}. {article_text}" if title else article_text)
    rep = Repair()

    def bad(text: str) -> list[str]:
        found = unsupported(text, src)
        if translated:
            found = [b for b in found if b[:1].isdigit()]
        return found

    out = summary.strip()
    cut, looped = cut_loop(out)
    if looped:
        out = cut + ("…" if cut and not cut.endswith((".", "!", "?", "…")) else "")
        if len(cut.split()) < 6 and not translated:
            rep.summary_replaced = "loop"
    missing = bad(out) if not rep.summary_replaced else []
    if missing and not translated:
        rep.summary_replaced = "unsupported: " + ", ".join(missing)
    elif missing:
        rep.summary_replaced = "unsupported (kept: translated): " + ", ".join(missing)
    if rep.summary_replaced and not translated:
        out = lead_sentence(article_text or title, lead_limit) or out
    elif looped and not rep.summary_replaced:
        rep.summary_replaced = "loop cut"

    kept: list[str] = []
    for f in facts:
        f = f.strip()
        f_cut, f_looped = cut_loop(f)
        if f_looped:
            rep.facts_dropped.append((f, "loop"))
        elif is_fragment(f):
            rep.facts_dropped.append((f, "fragment"))
        elif why := bad(f):
            rep.facts_dropped.append((f, "unsupported: " + ", ".join(why)))
        else:
            kept.append(f_cut)
    return out, kept, rep
