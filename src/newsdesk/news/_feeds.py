"""Feed bytes in, normalized ``Article`` objects out. Pure: no network, no disk.

RSS 0.9x/1.0/2.0 and Atom go through feedparser, always handed a byte stream so it can never
fetch anything itself; plain well-formed RSS 2.0 and Atom take a fast path (``_fastfeed``) that
gives the same entries at a small fraction of the cost. JSON Feed 1.x (which feedparser does not
read) is parsed here with json. Every title and body passes through ``html_to_text``: feed HTML
is untrusted. ``open_feed`` builds articles on demand, so a run that needs only a few of a big
feed's items does not pay for the rest.
"""

from __future__ import annotations

import calendar
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from newsdesk._exceptions import SourceError
from newsdesk.news._fastfeed import fast_entries
from newsdesk.news._models import Article, Source
from newsdesk.news._normalize import (
    article_id,
    canonical_url,
    clean_text,
    content_hash,
    guess_language,
    html_to_text,
)

__all__ = ["ParsedFeed", "parse_feed", "open_feed", "MAX_TEXT_CHARS"]

# One article's text is cut here: a feed that inlines a whole book must not blow up a prompt
# or the store. Far above any real news article.
MAX_TEXT_CHARS = 50_000
_TITLE_FROM_TEXT_CHARS = 100


@dataclass
class ParsedFeed:
    """What one feed yielded: its articles, and warnings about problems that were worked around.

    From ``open_feed`` the articles are built on demand: ``more(n)`` builds the next ``n``
    (appending them to ``articles``) and ``complete`` says whether every entry has been read."""

    articles: list[Article] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    title: str | None = None
    language: str | None = None
    entries: int = 0  # items in the document, usable or not
    _rest: Iterator[Article] | None = field(default=None, repr=False)

    @property
    def complete(self) -> bool:
        return self._rest is None

    def more(self, n: int) -> list[Article]:
        """Up to ``n`` further articles (fewer at the end), appended to ``articles`` too."""
        if self._rest is None:
            return []
        start = len(self.articles)
        for article in self._rest:
            self.articles.append(article)
            if len(self.articles) - start >= n:
                break
        else:
            self._rest = None
        return self.articles[start:]

    def read_all(self) -> ParsedFeed:
        while self._rest is not None:
            self.more(1 << 30)
        return self


def parse_feed(data: bytes, source: Source, *, content_type: str | None = None) -> ParsedFeed:
    """Parse one feed document. Raises ``SourceError`` when ``data`` is not a usable feed.

    A feed with syntax errors whose entries still parse is used, with a warning; an empty feed
    gives zero articles. ``source.max_articles`` keeps only the first N entries.
    """
    return open_feed(data, source, content_type=content_type).read_all()


def open_feed(data: bytes, source: Source, *, content_type: str | None = None) -> ParsedFeed:
    """``parse_feed``, with the articles built on demand (``ParsedFeed.more``)."""
    if not data.strip():
        raise SourceError(source.name, "empty response (no feed in it)")
    if _looks_like_json(data, content_type):
        parsed = _parse_json_feed(data, source)
    else:
        parsed = _parse_xml_feed(data, source, content_type)
    if source.max_articles is not None:
        if parsed._rest is not None:
            parsed._rest = _first(parsed._rest, source.max_articles - len(parsed.articles))
        if len(parsed.articles) > source.max_articles:
            del parsed.articles[source.max_articles :]
    return parsed


def _first(items: Iterator[Article], n: int) -> Iterator[Article]:
    for i, item in enumerate(items):
        if i >= n:
            return
        yield item


# --- XML feeds (feedparser) ------------------------------------------------------------------

# Bozo reasons that say nothing about the document's structure: the feed parsed fine.
_BENIGN_BOZO = ("NonXMLContentType",)
_ENCODING_BOZO = ("CharacterEncodingOverride", "CharacterEncodingUnknown")
_XML_DECL = re.compile(rb"^(\s*<\?xml[^>]*?encoding\s*=\s*)([\"'])[^\"']*\2", re.IGNORECASE)


_CHAR_REF = re.compile(rb"&#(?:[xX]([0-9a-fA-F]{1,8})|([0-9]{1,10}));")


def _fix_char_refs(data: bytes) -> bytes:
    """Character references to no character (a lone surrogate ``&#xD800;``, ``&#0;``, beyond
    U+10FFFF) become U+FFFD: feedparser's lenient parser crashes on them, losing the whole feed."""

    def fix(m: re.Match[bytes]) -> bytes:
        code = int(m.group(1), 16) if m.group(1) else int(m.group(2))
        if code == 0 or 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
            return b"&#xFFFD;"
        return m.group(0)

    return _CHAR_REF.sub(fix, data) if b"&#" in data else data


def _parse_xml_feed(data: bytes, source: Source, content_type: str | None) -> ParsedFeed:
    data = _fix_char_refs(data)
    fast = fast_entries(data, _base_uri(source), content_type)
    if fast is not None:
        feed_lang = clean_text(_str(fast.language)) or None
        result = ParsedFeed(
            title=html_to_text(fast.title) or None, language=feed_lang, entries=len(fast.entries)
        )
        result._rest = _articles(fast.entries, source, feed_lang, result.warnings)
        return result
    return _parse_with_feedparser(data, source, content_type)


def _base_uri(source: Source) -> str:
    """The base feedparser resolves relative links against (``_feedparse`` gives it the source's
    URL as Content-Location; a file has none)."""
    return source.url if source.url.startswith(("http://", "https://")) else ""


def _articles(
    entries: list[Any], source: Source, feed_lang: str | None, warnings: list[str]
) -> Iterator[Article]:
    """The articles of feedparser-shaped ``entries``, built one by one; problems go to ``warnings``."""
    skipped = 0
    for entry in entries:
        try:
            article = _article_from_entry(entry, source, feed_lang)
        except _UnusableItem as exc:
            warnings.append(str(exc))
            continue
        if article is None:
            skipped += 1
        else:
            yield article
    if skipped:
        warnings.append(f"skipped {skipped} entries with neither title nor text")


def _parse_with_feedparser(data: bytes, source: Source, content_type: str | None) -> ParsedFeed:
    warnings: list[str] = []
    parsed = _feedparse(data, source, content_type)
    exc = parsed.get("bozo_exception") if parsed.get("bozo") else None
    exc_name = type(exc).__name__ if exc is not None else ""

    if exc_name in _ENCODING_BOZO:
        # The declared (or assumed UTF-8) encoding did not fit the bytes and feedparser fell back
        # to windows-1252, which turns Russian into "Ïðèâåò". Ask a detector what the bytes are.
        redecoded = _redecode(data)
        if redecoded is not None:
            utf8, encoding = redecoded
            parsed = _feedparse(utf8, source, _utf8_type(content_type))
            warnings.append(f"encoding was missing or wrong; read as {encoding}")
        else:
            warnings.append(f"declared encoding was wrong; read as {parsed.get('encoding')}")
        exc = parsed.get("bozo_exception") if parsed.get("bozo") else None
        exc_name = type(exc).__name__ if exc is not None else ""
        if exc_name in _ENCODING_BOZO:
            exc, exc_name = None, ""

    entries = list(parsed.get("entries") or [])
    version = parsed.get("version") or ""
    if not entries and not version and _is_html(data):
        # An HTML page (a site's front page, a login wall) is the commonest wrong URL.
        raise SourceError(source.name, "not a feed: got an HTML page, not RSS or Atom")
    if exc is not None and exc_name not in _BENIGN_BOZO:
        reason = _bozo_reason(exc)
        if not entries:
            raise SourceError(source.name, f"not a feed: {reason}")
        warnings.append(f"feed has errors, used what parsed: {reason}")
    elif not version:
        # Well-formed XML (or HTML) that is neither RSS nor Atom.
        raise SourceError(source.name, f"not a feed: {_what_is_it(data)}")

    feed_meta = parsed.get("feed") or {}
    feed_title = html_to_text(feed_meta.get("title")) or None
    feed_lang = clean_text(_str(feed_meta.get("language"))) or None
    result = ParsedFeed(
        warnings=warnings, title=feed_title, language=feed_lang, entries=len(entries)
    )
    result._rest = _articles(entries, source, feed_lang, result.warnings)
    return result


def _feedparse(data: bytes, source: Source, content_type: str | None) -> Any:
    import feedparser  # lazily: slow to import, and only the XML path needs it

    headers = {"content-type": content_type or "application/xml"}
    if source.url.startswith(("http://", "https://")):
        # Lets feedparser resolve relative links ("/story/1") against the feed's address.
        headers["content-location"] = source.url
    # BytesIO, not bytes or str: feedparser treats a string as a URL or file name to open.
    # sanitize_html=False: feedparser's sanitizer removes an <iframe> tag but keeps the text
    # inside it; html_to_text drops such elements whole, so it must see the raw markup.
    return feedparser.parse(io.BytesIO(data), response_headers=headers, sanitize_html=False)


# Friendlier names for what the detector reports (Python codec names).
_ENCODING_NAMES = {
    "koi8_r": "KOI8-R",
    "koi8_u": "KOI8-U",
    "iso8859_5": "ISO-8859-5",
    "mac_cyrillic": "mac-cyrillic",
    "cp866": "cp866",
}


def _redecode(data: bytes) -> tuple[bytes, str] | None:
    """(the document as UTF-8, the encoding's name) when a detector (charset-normalizer) reads
    the bytes as text in a non-Latin script; None to keep feedparser's windows-1252 reading.

    Latin-script guesses are left alone: windows-1252 already reads them nearly right, and a
    detector choosing between Latin code pages on a short text is often wrong."""
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None or best.encoding in ("utf_8", "ascii"):
        return None
    try:
        text = data.decode(best.encoding)
    except (UnicodeDecodeError, LookupError):
        return None
    letters = [ch for ch in text if ch.isalpha()]
    foreign = sum(1 for ch in letters if ord(ch) >= 0x0370)  # Greek and later: not Latin
    if not letters or foreign < 0.2 * len(letters):
        return None
    name = _ENCODING_NAMES.get(best.encoding) or best.encoding.replace("cp125", "windows-125")
    # The declaration still says whatever was wrong (or nothing); make it tell the truth.
    utf8 = text.encode("utf-8")
    return _XML_DECL.sub(rb"\1\2utf-8\2", utf8, count=1), name


def _utf8_type(content_type: str | None) -> str | None:
    """The Content-Type with any charset parameter dropped (the body is UTF-8 now)."""
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip() or None


def _bozo_reason(exc: BaseException) -> str:
    get_line = getattr(exc, "getLineNumber", None)
    get_msg = getattr(exc, "getMessage", None)
    if callable(get_line) and callable(get_msg):  # xml.sax.SAXParseException
        return f"XML syntax error at line {get_line()} ({get_msg()})"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def _is_html(data: bytes) -> bool:
    head = data[:2048].lstrip().lower()
    return head.startswith(b"<!doctype html") or b"<html" in head


def _what_is_it(data: bytes) -> str:
    head = data[:2048].lstrip().lower()
    if head.startswith(b"<"):
        return "XML but neither RSS nor Atom"
    return "no RSS, Atom or JSON Feed found"


def _struct_to_dt(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        # feedparser normalizes every date to a UTC struct_time.
        return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _entry_body(entry: Any) -> str:
    # Atom/RSS may carry both a summary and full content; the longest one is the article.
    candidates: list[str] = []
    for item in entry.get("content") or []:
        value = item.get("value") if isinstance(item, dict) else None
        if value:
            candidates.append(value)
    for key in ("summary", "description"):
        value = entry.get(key)
        if value:
            candidates.append(value)
    texts = [html_to_text(c) for c in candidates]
    return max(texts, key=len, default="")


def _article_from_entry(entry: Any, source: Source, feed_lang: str | None) -> Article | None:
    title = html_to_text(entry.get("title"))
    text = _entry_body(entry)[:MAX_TEXT_CHARS]
    if not title and not text:
        return None
    guid = clean_text(_str(entry.get("id"))).strip() or None
    url = clean_text(_str(entry.get("link"))).strip()
    if not url and guid and guid.startswith(("http://", "https://")):
        url = guid
    return _make_article(
        source=source,
        guid=guid,
        url=url,
        title=title,
        text=text,
        published=_struct_to_dt(entry.get("published_parsed") or entry.get("updated_parsed")),
        author=html_to_text(entry.get("author")) or None,
        declared_lang=clean_text(_str(entry.get("language"))) or feed_lang,
    )


class _UnusableItem(Exception):
    """One item that cannot become an article even after cleaning; the message names it."""


def _make_article(
    *,
    source: Source,
    guid: str | None,
    url: str,
    title: str,
    text: str,
    published: datetime | None,
    author: str | None,
    declared_lang: str | None,
) -> Article:
    """The article, checked to survive what comes next (JSON events, the store, a prompt).

    Raises ``_UnusableItem`` instead of failing the whole feed: one bad item must not cost its
    neighbours."""
    try:
        article = _build_article(
            source=source,
            guid=guid,
            url=url,
            title=title,
            text=text,
            published=published,
            author=author,
            declared_lang=declared_lang,
        )
        article.model_dump_json()  # what the store and the event stream will do with it
    except (ValueError, TypeError, UnicodeError, OverflowError) as exc:
        label = (title or guid or url or "?")[:60]
        raise _UnusableItem(
            f"skipped item {label!r}: unusable ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})"
        ) from None
    return article


def _build_article(
    *,
    source: Source,
    guid: str | None,
    url: str,
    title: str,
    text: str,
    published: datetime | None,
    author: str | None,
    declared_lang: str | None,
) -> Article:
    if not title:
        # Some feeds (micro-posts) have no titles; the text's start reads better than nothing.
        title = text
        if len(text) > _TITLE_FROM_TEXT_CHARS:
            title = text[:_TITLE_FROM_TEXT_CHARS].rsplit(" ", 1)[0] + "…"
    return Article(
        id=article_id(source=source.name, guid=guid, url=url, title=title),
        source=source.name,
        # The model's URL is the canonical one: tracking parameters (utm_*, fbclid…) removed.
        url=canonical_url(url) if url else url,
        title=title,
        text=text,
        published=published,
        author=author,
        language=guess_language(f"{title} {text}", declared_lang),
        guid=guid,
        content_hash=content_hash(title, text),
        sources=[source.name],
    )


# --- JSON Feed -------------------------------------------------------------------------------


def _looks_like_json(data: bytes, content_type: str | None) -> bool:
    # The body decides first: servers often label feeds wrongly ("application/json" on RSS).
    head = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"{"):
        return True
    if head.startswith(b"<"):
        return False
    return bool(content_type and "json" in content_type.lower())


def _parse_json_feed(data: bytes, source: Source) -> ParsedFeed:
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise SourceError(source.name, "not a feed: JSON that is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise SourceError(
            source.name, f"not a feed: JSON syntax error at line {exc.lineno} ({exc.msg})"
        ) from None
    if not isinstance(doc, dict) or not str(doc.get("version", "")).startswith(
        "https://jsonfeed.org/version/"
    ):
        raise SourceError(source.name, "not a feed: JSON without a JSON Feed version")
    items = doc.get("items")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise SourceError(source.name, "not a feed: JSON Feed 'items' is not a list")

    feed_lang = clean_text(_str(doc.get("language"))) or None
    result = ParsedFeed(title=html_to_text(_str(doc.get("title"))) or None, language=feed_lang)
    feed_author = _json_author(doc)
    skipped = bad = 0
    for item in items:
        if not isinstance(item, dict):
            bad += 1
            continue
        title = html_to_text(_str(item.get("title")))
        bodies = [
            html_to_text(_str(item.get(k))) for k in ("content_html", "content_text", "summary")
        ]
        text = max(bodies, key=len)[:MAX_TEXT_CHARS]
        if not title and not text:
            skipped += 1
            continue
        # JSON Feed 1.0 allowed numeric ids; 1.1 says string. Accept both.
        raw_id = item.get("id")
        guid = clean_text(str(raw_id)).strip() or None if isinstance(raw_id, (str, int)) else None
        url = clean_text(_str(item.get("url")) or _str(item.get("external_url"))).strip()
        published, date_ok = _iso_date(item.get("date_published") or item.get("date_modified"))
        if not date_ok:
            result.warnings.append(f"unreadable date in item {guid or url or title[:40]!r}")
        item_lang = clean_text(_str(item.get("language"))) or None
        try:
            article = _make_article(
                source=source,
                guid=guid,
                url=url,
                title=title,
                text=text,
                published=published,
                author=_json_author(item) or feed_author,
                declared_lang=item_lang or feed_lang,
            )
        except _UnusableItem as exc:
            result.warnings.append(str(exc))
            continue
        result.articles.append(article)
    if skipped:
        result.warnings.append(f"skipped {skipped} entries with neither title nor text")
    if bad:
        result.warnings.append(f"skipped {bad} items that are not JSON objects")
    return result


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _json_author(obj: dict[str, Any]) -> str | None:
    authors = obj.get("authors")  # 1.1
    if isinstance(authors, list):
        names = [html_to_text(_str(a.get("name"))) for a in authors if isinstance(a, dict)]
        names = [n for n in names if n]
        if names:
            return ", ".join(names)
    author = obj.get("author")  # 1.0
    if isinstance(author, dict):
        return html_to_text(_str(author.get("name"))) or None
    return None


def _iso_date(value: Any) -> tuple[datetime | None, bool]:
    """(date, ok): RFC 3339 as JSON Feed requires; naive times are taken as UTC."""
    if not value:
        return None, True
    if not isinstance(value, str):
        return None, False
    text = value.strip()
    if text.endswith(("Z", "z")):  # fromisoformat accepts "Z" only from Python 3.11
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None, False
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC), True
