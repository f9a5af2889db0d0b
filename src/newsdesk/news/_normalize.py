"""Pure helpers that turn what feeds say into comparable, safe values.

Nothing here does I/O. Feeds are untrusted input: ``html_to_text`` is the one place where their
HTML becomes plain text, and everything downstream (prompts, the store, the web UI) sees only
that text.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "canonical_url",
    "clean_text",
    "html_to_text",
    "normalize_text",
    "normalized_words",
    "content_hash",
    "article_id",
    "guess_language",
]

# Query parameters that only say how a reader got to the page, never which page it is.
_TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "gclsrc",
        "dclid",
        "msclkid",
        "yclid",
        "igshid",
        "mc_cid",
        "mc_eid",
        "ref",
        "ref_src",
        "ref_url",
        "mkt_tok",
        "spm",
        "cmpid",
        "ocid",
        "smid",
        "wt_mc",
    }
)
_TRACKING_PREFIXES = ("utm_", "_ga", "_gl", "_hs", "pk_", "mtm_", "__twitter")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Already canonical: http(s), a lowercase host not ending in ".", no port, user, query or fragment,
# a non-empty path with nothing urlsplit would drop or reinterpret.
_CANONICAL = re.compile(r"https?://[a-z0-9-]+(?:\.[a-z0-9-]+)*/[!$&'()*+,\-./0-9:;=@A-Z_a-z~%]*")


def _is_tracking(name: str) -> bool:
    low = name.lower()
    return low in _TRACKING_PARAMS or low.startswith(_TRACKING_PREFIXES)


@functools.lru_cache(maxsize=4096)  # one article asks for its URL's canonical form 3-4 times
def canonical_url(url: str) -> str:
    """One spelling per page, so the same story linked two ways compares equal.

    Lowercases scheme and host, drops the default port, the fragment and tracking parameters,
    and sorts what is left of the query. Anything that is not an absolute URL (a local path,
    an opaque GUID) comes back stripped but otherwise untouched.
    """
    url = url.strip()
    if _CANONICAL.fullmatch(url):
        return url  # what the steps below would give back: nothing in it to change
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced "[" in the host: not a URL we can improve
        return url
    if not parts.scheme or not parts.netloc:
        return url
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host
    if ":" in host:  # IPv6 literal: urlsplit took the brackets off
        netloc = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc = f"{netloc}:{port}"
    if parts.username is not None:
        # Credentials are part of where the page is (rare in feeds, but keep them exact).
        userinfo = parts.username + (f":{parts.password}" if parts.password is not None else "")
        netloc = f"{userinfo}@{netloc}"
    path = parts.path or "/"
    query_pairs = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k)
    ]
    query = urlencode(sorted(query_pairs), doseq=True)
    return urlunsplit((scheme, netloc, path, query, ""))


# Elements whose content is never text a reader sees: dropped with everything inside them.
_DROP_CONTENT = frozenset(
    {"script", "style", "iframe", "noscript", "template", "object", "embed", "svg", "math", "head"}
)
# Void elements never get an end tag, so they must not open a "drop" region.
_VOID = frozenset(
    {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "source",
        "track",
        "wbr",
    }
)
# Elements that separate words visually; without a space "<p>a</p><p>b</p>" would read "ab".
_BLOCK = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption",
        "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main",
        "nav", "ol", "p", "pre", "section", "table", "td", "th", "tr", "ul",
    }
)  # fmt: skip
_WS = re.compile(r"\s+")


class _TextExtractor(HTMLParser):
    """Collects the text a browser would show, skipping scripts, styles and frames."""

    def __init__(self) -> None:
        # convert_charrefs: the parser unescapes entities in text for us, including the
        # malformed ones ("&amp" without ";") browsers accept.
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROP_CONTENT and tag not in _VOID:
            self._skip_depth += 1
        elif tag in _BLOCK:
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # "<script/>" opens nothing; only block-ness matters for a self-closed tag.
        if tag in _BLOCK:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROP_CONTENT and tag not in _VOID:
            if self._skip_depth:
                self._skip_depth -= 1
        elif tag in _BLOCK:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self.parts.append(data)


# Lone UTF-16 surrogates (a JSON "\ud800" escape, an XML "&#xD800;" reference) are not characters:
# they cannot be encoded as UTF-8, so one of them would fail the store, the events and the prompt.
_SURROGATES = re.compile(r"[\ud800-\udfff]")
# C0 controls but tab, newline and carriage return: invisible, and they break terminals and stores.
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def clean_text(value: str | None) -> str:
    """``value`` with lone surrogates replaced by U+FFFD and C0 controls (NUL...) removed.

    Applied at the boundary to every string a feed gives, so everything downstream can encode it.
    """
    if not value:
        return ""
    return _clean(value)


def _clean(value: str) -> str:
    # the checks are C scans that spare the common case (ASCII, printable) the regexes
    if not value.isascii():
        value = _SURROGATES.sub("\ufffd", value)
    return value if value.isprintable() else _CONTROLS.sub("", value)


def html_to_text(html: str | None) -> str:
    """Plain text from untrusted HTML: no tags, no scripts, entities decoded, one space between words.

    The result is text, not HTML: a literal "<" in it is a character the author wrote (for
    example from a doubly escaped "&amp;lt;"), so whoever renders it must escape it again.
    """
    if not html:
        return ""
    if not html.isascii():
        html = _SURROGATES.sub("\ufffd", html)
    if "<" in html or "&" in html:
        parser = _TextExtractor()
        try:
            parser.feed(html)
            parser.close()
        except Exception:  # the stdlib parser is lenient, but never let odd input crash a feed
            pass
        text = "".join(parser.parts)
    else:
        text = html  # no tag, no reference: what the parser would hand back as it is
    # NUL and other C0 controls are invisible and break some terminals and stores.
    if not text.isprintable():
        text = _CONTROLS.sub("", text)
    return " ".join(text.split())  # one space between words (str.split's whitespace is \s's)


_WORD = re.compile(r"\w+")


def normalize_text(text: str) -> str:
    """Lowercase words only: the form used for hashing and shingling.

    NFKC folds look-alike characters (full-width letters, ligatures), punctuation goes, so a
    re-typeset copy of a story hashes the same.
    """
    return " ".join(normalized_words(text))


def normalized_words(text: str) -> list[str]:
    """``normalize_text(text).split()``: the runs of word characters (punctuation and spacing
    both separate words)."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def content_hash(title: str, text: str) -> str:
    """sha256 (hex) of the normalized title and text: equal for the same story however it was marked up."""
    data = normalize_text(title) + "\n" + normalize_text(text)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def _looks_global(guid: str) -> bool:
    # A GUID that is a URL, URN or tag: URI names the item worldwide; "1234" names it only
    # within its own feed.
    low = guid.lower()
    return low.startswith(("http://", "https://", "urn:", "tag:"))


def article_id(
    *, source: str, guid: str | None = None, url: str | None = None, title: str = ""
) -> str:
    """A stable id (24 hex chars): the same item gets the same id on every run.

    Preference: a global GUID, then the canonical URL, then a feed-local GUID (scoped by the
    source, because many feeds number items 1, 2, 3), then the title within the source.
    """
    if guid and guid.strip() and _looks_global(guid.strip()):
        key = "guid:" + canonical_url(guid)
    elif url and url.strip():
        key = "url:" + canonical_url(url)
    elif guid and guid.strip():
        key = f"guid:{source}\x00{guid.strip()}"
    else:
        key = f"title:{source}\x00{normalize_text(title)}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


# Languages written in Cyrillic: a feed that declares one of these keeps its own label.
_CYRILLIC_LANGS = frozenset({"ru", "uk", "be", "bg", "sr", "mk", "kk", "ky", "tg", "mn"})
# The letters (``str.isalpha``) of the Cyrillic block U+0400-U+04FF.
_CYRILLIC_LETTER = re.compile(
    "[" + "".join(re.escape(c) for c in map(chr, range(0x400, 0x500)) if c.isalpha()) + "]"
)


def _base_language(tag: str | None) -> str | None:
    if not tag:
        return None
    base = tag.strip().replace("_", "-").split("-")[0].lower()
    return base if base.isalpha() and 2 <= len(base) <= 3 else None


def guess_language(text: str, declared: str | None = None) -> str:
    """A cheap language label: "ru" for mostly-Cyrillic text, else what the feed declared, else "en".

    Counting scripts is enough for what the analyzer needs (which prompt language to expect);
    a real detector would be a dependency for little gain.
    """
    declared_base = _base_language(declared)
    sample = text[:2000]
    cyrillic = 0 if sample.isascii() else len(_CYRILLIC_LETTER.findall(sample))
    # letters only matter for Cyrillic text or a Cyrillic label; counting them costs the most
    letters = sum(map(str.isalpha, sample)) if cyrillic or declared_base in _CYRILLIC_LANGS else 0
    if letters and cyrillic / letters > 0.3:
        return declared_base if declared_base in _CYRILLIC_LANGS else "ru"
    # A Cyrillic-script label on plainly Latin text is wrong; on too little text, trust the feed.
    if declared_base and (declared_base not in _CYRILLIC_LANGS or letters < 20):
        return declared_base
    return "en"
