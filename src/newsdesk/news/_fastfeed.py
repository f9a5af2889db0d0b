"""A fast reader for plain, well-formed RSS 2.0 and Atom 1.0: the common case of a big feed.

feedparser costs about a millisecond of CPU per item (SAX callbacks in Python, HTML re-serialised
to resolve relative links), so a 20,000-item feed would take ~20 s before deduplication starts.
This reader builds the element tree with the stdlib's C parser (expat) and hands
``_parse_xml_feed`` the same entry fields feedparser would (``title``, ``link``, ``id``,
``summary``, ``content``, ``author``, ``published_parsed``, ``updated_parsed``), computed with
feedparser's own helpers for dates and links, so both readers yield the same articles.

It says "not mine" (``None``) for anything else, and feedparser reads the document as before:
any DOCTYPE (no entity is ever declared, so none is expanded and nothing external is loaded),
an encoding other than UTF-8, a syntax error, an element or attribute whose effect feedparser
models and this reader does not (``xml:base``, XHTML content, namespaced extensions...).
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

__all__ = ["fast_entries", "FastFeed"]

_ATOM = "{http://www.w3.org/2005/Atom}"
_CONTENT_ENCODED = "{http://purl.org/rss/1.0/modules/content/}encoded"
_DC = "{http://purl.org/dc/elements/1.1/}"
_XML_NS = "{http://www.w3.org/XML/1998/namespace}"
# RSS item children whose meaning here is the same as feedparser's; anything else is feedparser's.
_RSS_FIELDS = frozenset(
    {
        "title", "link", "guid", "pubDate", "description", "author", "category", "comments",
        "enclosure", _CONTENT_ENCODED, _DC + "creator", _DC + "date",
    }
)  # fmt: skip
_RSS_REPEATABLE = frozenset({"category", "enclosure"})
_ATOM_FIELDS = frozenset(
    _ATOM + name
    for name in ("title", "link", "id", "published", "updated", "summary", "content", "author")
) | {_ATOM + "category"}
_ATOM_REPEATABLE = frozenset({_ATOM + "link", _ATOM + "category"})
_ATOM_TEXT_TYPES = {None: "text", "text": "text", "html": "html"}
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_XML_DECL = re.compile(rb"^<\?xml[^>]*?\?>")
_DECL_ENCODING = re.compile(rb"encoding\s*=\s*[\"']([^\"']*)[\"']")
_LINK_ENTITY = re.compile("&([A-Za-z0-9_]+);")
_PIECE = 1 << 16


class FastFeed:
    """What the fast reader found: feed title and language, and entries as feedparser names them."""

    def __init__(
        self, title: str | None, language: str | None, entries: list[dict[str, Any]]
    ) -> None:
        self.title = title
        self.language = language
        self.entries = entries


class _NotMine(Exception):
    """The document needs feedparser."""


def fast_entries(data: bytes, base: str, content_type: str | None) -> FastFeed | None:
    """The feed's entries when ``data`` is plain RSS 2.0 or Atom 1.0 in UTF-8, else None.

    ``base`` is the address relative links resolve against (feedparser's Content-Location), or
    "" for none.
    """
    if not _plain_utf8(data, content_type):
        return None
    _fp.load()
    try:
        parser = ET.XMLParser()
        # fed in pieces: one call over a big feed would hold the GIL (and stall the event loop
        # of the thread that waits for this one) for as long as expat takes
        for start in range(0, len(data), _PIECE):
            parser.feed(data[start : start + _PIECE])
        root = parser.close()
    except (ET.ParseError, ValueError):
        return None  # feedparser reports (or works around) the error
    try:
        if root.tag == "rss":
            return _rss(root, base)
        if root.tag == _ATOM + "feed":
            return _atom(root, base)
    except _NotMine:
        return None
    return None


def _plain_utf8(data: bytes, content_type: str | None) -> bool:
    # Entity declarations live in a DOCTYPE: with none, only the five predefined entities and
    # character references exist, so nothing can expand or be fetched.
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data or data.startswith(b"\xef\xbb\xbf"):
        return False
    if content_type:
        mime, _, params = content_type.partition(";")
        charset = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", params, re.I)
        if charset is not None:
            if charset.group(1).lower() not in ("utf-8", "utf8", "us-ascii"):
                return False
        elif mime.strip().lower().startswith("text/") and not data.isascii():
            return False  # RFC 3023 says text/* without a charset is US-ASCII: feedparser's call
    head = _XML_DECL.match(data.lstrip())
    if head is not None:
        enc = _DECL_ENCODING.search(head.group(0))
        if enc is not None and enc.group(1).lower() not in (b"utf-8", b"utf8", b"us-ascii"):
            return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _text(el: ET.Element | None) -> str:
    """An element's text as feedparser's ``pop`` leaves it: stripped, mojibake and windows-1252
    code points fixed. Child elements (markup inside a text field) are feedparser's job."""
    if el is None:
        return ""
    if len(el):
        raise _NotMine
    return _fix(el.text or "")


def _fix(value: str) -> str:
    value = value.strip()
    if value.isascii():
        return value
    try:  # UTF-8 read as latin-1 somewhere upstream: feedparser undoes it, so do we
        value = value.encode("iso-8859-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        pass
    return value.translate(_fp.cp1252)


def _check_attrs(el: ET.Element, allowed: tuple[str, ...] = ()) -> None:
    """Only attributes whose effect is known here: ``xml:base``, ``src``, namespaced ones... may
    each change what feedparser makes of the element."""
    for key in el.attrib:
        if key not in allowed:
            raise _NotMine


def _root_language(root: ET.Element) -> str | None:
    lang = root.get(_XML_NS + "lang", root.get("lang"))
    return lang.replace("_", "-") if lang else None


# An absolute http(s) URL that urljoin would hand back unchanged (no empty query or params for
# urlunparse to drop, no brackets for urlsplit to check, nothing for feedparser's fixer to do).
_PLAIN_URL = re.compile(r"https?://[^/?#;\[\]\s\\]+(?:[/?][^#;\s\\]*)?")


def _join(base: str, uri: str) -> str:
    """feedparser's ``resolve_uri``: ``uri`` resolved against ``base``."""
    if _PLAIN_URL.fullmatch(uri) and uri.isascii() and not uri.endswith("?"):
        return uri  # what urljoin returns for it, at a tenth of the cost
    return str(_fp.urljoin(base or "", uri))


def _date(value: str) -> time.struct_time | None:
    parsed: time.struct_time | None = _fp.parse_date(value)
    return parsed


class _Feedparser:
    """feedparser's own helpers, imported on first use (feedparser is slow to import)."""

    def __init__(self) -> None:
        self.cp1252: dict[int, str] = {}
        self.urljoin: Any = None
        self.parse_date: Any = None

    def load(self) -> None:
        if self.urljoin is None:
            from feedparser.datetimes import _parse_date
            from feedparser.html import _cp1252
            from feedparser.urls import _urljoin

            self.cp1252, self.parse_date, self.urljoin = _cp1252, _parse_date, _urljoin


_fp = _Feedparser()


# --- RSS 2.0 -------------------------------------------------------------------------------


def _rss(root: ET.Element, base: str) -> FastFeed:
    _check_attrs(root, ("version", _XML_NS + "lang", "lang"))
    channels = root.findall("channel")
    if len(channels) != 1 or any(child.tag == "item" for child in root):
        raise _NotMine
    channel = channels[0]
    _check_attrs(channel)
    title_el = channel.find("title")
    lang_el = channel.find("language")
    language = _root_language(root)
    if lang_el is not None:
        language = _text(lang_el) or language
    items = [child for child in channel if child.tag == "item"]
    return FastFeed(
        title=_text(title_el) or None,
        language=language,
        entries=[_rss_item(item, base) for item in items],
    )


def _fields(
    item: ET.Element, known: frozenset[str], repeatable: frozenset[str]
) -> Iterator[tuple[str, ET.Element]]:
    """An item's (or entry's) child elements with their tags: only ``known`` ones, each once
    unless ``repeatable``; anything else is feedparser's business."""
    _check_attrs(item)
    seen: set[str] = set()
    for child in item:
        tag = child.tag
        if not isinstance(tag, str) or tag not in known:
            raise _NotMine
        if tag in seen and tag not in repeatable:
            raise _NotMine  # which copy wins is feedparser's business
        seen.add(tag)
        yield tag, child


def _rss_item(item: ET.Element, base: str) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    description: str | None = None
    for tag, child in _fields(item, _RSS_FIELDS, _RSS_REPEATABLE):
        if tag in _RSS_REPEATABLE or tag == "comments":
            continue
        if tag == "guid":
            _check_attrs(child, ("isPermaLink",))
            is_link = child.get("isPermaLink", "true") == "true"
            value = _text(child)
            if value and is_link:
                value = _join(base, value)
            entry["id"] = value
            if is_link:
                entry.setdefault("link", value)  # feedparser: the guid is the link, if none yet
            continue
        _check_attrs(child)
        value = _text(child)
        if tag == "title":
            entry["title"] = value
        elif tag == "link":
            if value:
                value = _join(base, value)
            if "&" in value:  # feedparser's repair of "?a=1&b;=2"
                value = _LINK_ENTITY.sub(r"&\g<1>", value.replace("&amp;", "&"))
            entry["link"] = value
        elif tag == "pubDate":
            entry["published_parsed"] = _date(value)
        elif tag == _DC + "date":
            entry["updated_parsed"] = _date(value)
        elif tag == "description":
            entry["summary"] = description = value
        elif tag == _CONTENT_ENCODED:
            entry["content"] = [{"value": value}]
            entry.setdefault("summary", value)
        else:  # author, dc:creator
            if "author" in entry:
                raise _NotMine
            entry["author"] = value
    if "content" in entry and description is not None:
        entry["summary"] = description  # the description is the summary whichever came first
    return entry


# --- Atom 1.0 ------------------------------------------------------------------------------


def _atom(root: ET.Element, base: str) -> FastFeed:
    _check_attrs(root, (_XML_NS + "lang", "lang"))
    title_el = root.find(_ATOM + "title")
    if title_el is not None:
        _atom_text_type(title_el)
    entries = [child for child in root if child.tag == _ATOM + "entry"]
    return FastFeed(
        title=_text(title_el) or None,
        language=_root_language(root),
        entries=[_atom_entry(entry, base) for entry in entries],
    )


def _atom_text_type(el: ET.Element) -> str:
    _check_attrs(el, ("type",))
    kind = _ATOM_TEXT_TYPES.get(el.get("type"))
    if kind is None:
        raise _NotMine  # XHTML or a media type: feedparser's job
    return kind


def _atom_entry(item: ET.Element, base: str) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    for tag, child in _fields(item, _ATOM_FIELDS, _ATOM_REPEATABLE):
        name = tag[len(_ATOM) :]
        if name == "category":
            continue
        if name == "link":
            _check_attrs(child, ("href", "rel", "type", "title", "hreflang", "length"))
            if len(child) or (child.text or "").strip() or "href" not in child.attrib:
                raise _NotMine
            rel = child.get("rel", "alternate")
            kind = child.get("type", "application/atom+xml" if rel == "self" else "text/html")
            if rel == "alternate" and kind in _HTML_TYPES:
                entry["link"] = _join(base, child.attrib["href"])
            continue
        if name == "author":
            if "author" in entry:
                raise _NotMine  # feedparser mixes several authors' details in its own way
            entry["author"] = _atom_person(child)
            continue
        if name in ("title", "summary", "content"):
            _atom_text_type(child)
        else:
            _check_attrs(child)
        value = _text(child)
        if name == "title":
            entry["title"] = value
        elif name == "id":
            if value:
                value = _join(base, value)
            entry["id"] = value
            entry.setdefault("link", value)
        elif name == "published":
            entry["published_parsed"] = _date(value)
        elif name == "updated":
            entry["updated_parsed"] = _date(value)
        elif name == "summary":
            entry["summary"] = value
        else:  # content
            entry["content"] = [{"value": value}]
            entry.setdefault("summary", value)
    return entry


def _atom_person(el: ET.Element) -> str:
    _check_attrs(el)
    if (el.text or "").strip():
        raise _NotMine
    parts: dict[str, str] = {}
    for child in el:
        if child.tag not in (_ATOM + "name", _ATOM + "email", _ATOM + "uri"):
            raise _NotMine
        if (child.tail or "").strip() or child.tag in parts:
            raise _NotMine
        _check_attrs(child)
        parts[child.tag] = _text(child)
    name, email = parts.get(_ATOM + "name"), parts.get(_ATOM + "email")
    if name and email:
        return f"{name} ({email})"
    return name or email or ""
