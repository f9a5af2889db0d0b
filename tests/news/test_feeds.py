from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from newsdesk._exceptions import SourceError
from newsdesk.news._feeds import MAX_TEXT_CHARS, parse_feed
from newsdesk.news._models import Source
from tests.servers.feed_server import (
    BAD_ENCODING,
    BAD_XML,
    EMPTY_RSS,
    NOT_A_FEED,
    SAMPLE_ATOM,
    SAMPLE_JSON,
    SAMPLE_RDF,
    SAMPLE_RSS,
    XSS_RSS,
)

SRC = Source(name="test", url="https://feeds.test/rss")


def test_rss20() -> None:
    parsed = parse_feed(SAMPLE_RSS, SRC)
    assert parsed.warnings == []
    assert parsed.title == "Test Gazette"
    assert [a.title for a in parsed.articles] == [
        "Harbour bridge reopens after repairs",
        "Library extends opening hours",
    ]
    first = parsed.articles[0]
    assert first.text == "The harbour bridge reopened on Monday after six weeks of repairs."
    assert first.url == "https://gazette.test/bridge"  # tracking parameters removed
    assert first.guid == "gazette-1"
    assert first.published == datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
    assert first.language == "en"
    assert first.source == "test"
    assert first.sources == ["test"]
    assert len(first.content_hash) == 64
    assert first.id != parsed.articles[1].id


def test_atom() -> None:
    (a,) = parse_feed(SAMPLE_ATOM, SRC, content_type="application/atom+xml").articles
    assert a.title == "Chip maker doubles output"
    assert a.text == "A chip maker doubled its output this quarter."
    assert a.author == "Ada Byte"
    assert a.guid == "tag:atom.test,2025:1"
    assert a.url == "https://atom.test/chips"
    assert a.published == datetime(2025, 3, 5, 12, 0, tzinfo=UTC)


def test_rss10_rdf() -> None:
    (a,) = parse_feed(SAMPLE_RDF, SRC).articles
    assert a.title == "Comet seen from the valley"
    assert a.url == "https://rdf.test/comet"
    assert a.published == datetime(2025, 3, 6, 21, 0, tzinfo=UTC)


def test_rss091() -> None:
    data = b"""<?xml version="1.0"?><rss version="0.91"><channel><title>Old</title>
    <link>https://old.test/</link><description>d</description><language>en</language>
    <item><title>Vintage item</title><link>https://old.test/1</link><description>From 1999.</description></item>
    </channel></rss>"""
    (a,) = parse_feed(data, SRC).articles
    assert (a.title, a.text, a.url) == ("Vintage item", "From 1999.", "https://old.test/1")


def test_json_feed() -> None:
    parsed = parse_feed(SAMPLE_JSON, SRC, content_type="application/feed+json")
    assert parsed.title == "Test JSON"
    (a,) = parsed.articles
    assert a.title == "Rain expected all week"
    assert a.text == "Forecasters expect rain every day this week."
    assert a.guid == "json-1"
    assert a.published == datetime(2025, 3, 7, 6, 0, tzinfo=UTC)


def test_json_feed_10_numeric_id_author_and_html() -> None:
    doc = {
        "version": "https://jsonfeed.org/version/1",
        "title": "v1",
        "author": {"name": "Feed Author"},
        "items": [
            {
                "id": 17,
                "external_url": "https://ex.test/17",
                "content_html": "<p>Hi <script>alert(1)</script>there</p>",
                "date_published": "2025-01-02T03:04:05+02:00",
            },
            {"id": "no-content"},
            "not an object",
        ],
    }
    parsed = parse_feed(json.dumps(doc).encode(), SRC)
    (a,) = parsed.articles
    assert a.guid == "17"
    assert a.url == "https://ex.test/17"
    assert a.text == "Hi there"
    assert a.title == "Hi there"  # untitled items borrow their text's start
    assert a.author == "Feed Author"
    assert a.published == datetime(2025, 1, 2, 1, 4, 5, tzinfo=UTC)
    assert any("neither title nor text" in w for w in parsed.warnings)
    assert any("not JSON objects" in w for w in parsed.warnings)


def test_json_feed_bad_date_is_a_warning() -> None:
    doc = {
        "version": "https://jsonfeed.org/version/1.1",
        "items": [{"id": "a", "title": "t", "content_text": "x", "date_published": "yesterday"}],
    }
    parsed = parse_feed(json.dumps(doc).encode(), SRC)
    assert parsed.articles[0].published is None
    assert any("unreadable date" in w for w in parsed.warnings)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"title": "no version"}', "not a feed: JSON without a JSON Feed version"),
        (
            b'{"version": "https://jsonfeed.org/version/1.1",\n "items": [}',
            "not a feed: JSON syntax error at line 2",
        ),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": {}}', "'items' is not a list"),
    ],
)
def test_json_feed_errors(data: bytes, reason: str) -> None:
    with pytest.raises(SourceError) as info:
        parse_feed(data, SRC)
    assert reason in info.value.reason
    assert info.value.source == "test"


def test_bad_xml_without_entries_raises_with_line() -> None:
    with pytest.raises(SourceError) as info:
        parse_feed(BAD_XML, SRC)
    assert info.value.reason.startswith("not a feed: XML syntax error at line 3")
    assert "\n" not in str(info.value)


def test_bozo_feed_with_entries_is_used_with_warning() -> None:
    data = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>x</title>
    <item><title>First story</title><link>https://b.test/1</link><description>ok</description></item>
    <item><title>Second story</title><link>https://b.test/2</link><description>broken & unescaped</description></item>
    </channel></rss>"""
    parsed = parse_feed(data, SRC)
    assert [a.title for a in parsed.articles][:1] == ["First story"]
    assert len(parsed.articles) >= 1
    assert any(
        w.startswith("feed has errors, used what parsed: XML syntax error") for w in parsed.warnings
    )


def test_bad_encoding_cp1251_declared_utf8_is_recovered() -> None:
    parsed = parse_feed(BAD_ENCODING, SRC)
    (a,) = parsed.articles
    assert a.title == "Городской совет утвердил новый бюджет"
    assert a.text.startswith("Депутаты городского совета")
    assert a.language == "ru"
    assert any("windows-1251" in w for w in parsed.warnings)


def test_bad_encoding_latin1_declared_utf8_still_yields_articles() -> None:
    data = (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>c</title>'
        "<item><title>Café crème à Genève</title><link>https://l.test/1</link>"
        "<description>Un été très chaud à Zürich.</description></item></channel></rss>"
    ).encode("latin-1")
    parsed = parse_feed(data, SRC)
    (a,) = parsed.articles
    # Must not be "re-read" as Cyrillic: Latin accents decoded as cp1251 give mixed words.
    assert a.title == "Café crème à Genève"
    assert parsed.warnings and "windows-1251" not in parsed.warnings[0]


def test_empty_feed_is_zero_articles() -> None:
    parsed = parse_feed(EMPTY_RSS, SRC)
    assert parsed.articles == []
    assert parsed.title == "Nothing yet"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty response"),
        (b"   \n", "empty response"),
        (NOT_A_FEED, "not a feed: got an HTML page"),
        (b"<html><body><p>unclosed</body></html>", "not a feed: got an HTML page"),
        (
            b"<?xml version='1.0'?><svg xmlns='http://www.w3.org/2000/svg'/>",
            "not a feed: XML but neither RSS nor Atom",
        ),
        (b"just some text", "not a feed"),
    ],
)
def test_not_a_feed(data: bytes, reason: str) -> None:
    with pytest.raises(SourceError) as info:
        parse_feed(data, SRC, content_type="text/html" if b"html" in data else None)
    assert info.value.reason.startswith(reason)


def test_xss_is_stripped_from_titles_and_text() -> None:
    parsed = parse_feed(XSS_RSS, SRC)
    assert [a.title for a in parsed.articles] == ["Breaking news", "Second story"]
    first, second = parsed.articles
    assert first.text == "Body text continues here."
    assert second.text == "Clean words only"
    for a in parsed.articles:
        for value in (a.title, a.text):
            assert "<" not in value and "alert" not in value and "onerror" not in value
            assert "cookie" not in value and "display:none" not in value
    assert parsed.title is not None and "alert" not in parsed.title


def test_relative_links_resolved_against_source_url() -> None:
    data = b"""<rss version="2.0"><channel><title>r</title>
    <item><title>Rel</title><link>/story/9</link><description>d</description></item></channel></rss>"""
    (a,) = parse_feed(data, Source(name="r", url="https://site.test/feeds/main.xml")).articles
    assert a.url == "https://site.test/story/9"


def test_content_preferred_over_summary_and_text_capped() -> None:
    body = "word " * (MAX_TEXT_CHARS // 4)
    data = f"""<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><id>urn:t</id>
    <entry><title>Long</title><id>urn:e1</id><summary>short summary</summary>
    <content type="text">{body}</content></entry></feed>""".encode()
    (a,) = parse_feed(data, SRC).articles
    assert a.text.startswith("word word")
    assert len(a.text) == MAX_TEXT_CHARS


def test_max_articles_keeps_first_n() -> None:
    src = Source(name="s", url="https://feeds.test/rss", max_articles=1)
    parsed = parse_feed(SAMPLE_RSS, src)
    assert [a.title for a in parsed.articles] == ["Harbour bridge reopens after repairs"]


def test_entries_without_title_or_text_are_skipped() -> None:
    data = b"""<rss version="2.0"><channel><title>s</title>
    <item><link>https://s.test/1</link></item>
    <item><title>Kept</title></item></channel></rss>"""
    parsed = parse_feed(data, SRC)
    assert [a.title for a in parsed.articles] == ["Kept"]
    assert parsed.warnings == ["skipped 1 entries with neither title nor text"]


def test_guid_used_as_url_when_no_link() -> None:
    data = b"""<rss version="2.0"><channel><title>s</title>
    <item><title>T</title><guid>https://s.test/p/5</guid></item></channel></rss>"""
    (a,) = parse_feed(data, SRC).articles
    assert a.url == "https://s.test/p/5"


def test_feedparser_never_fetches(tmp_path: Path) -> None:
    # Bytes that happen to be a path or URL must be parsed as a document, not opened.
    target = tmp_path / "feed.xml"
    target.write_bytes(SAMPLE_RSS)
    with pytest.raises(SourceError):
        parse_feed(str(target).encode(), SRC)
    with pytest.raises(SourceError):
        parse_feed(b"http://127.0.0.1:9/feed.xml", SRC)


def test_body_decides_format_over_wrong_content_type() -> None:
    assert parse_feed(SAMPLE_RSS, SRC, content_type="application/json").articles
    assert parse_feed(SAMPLE_JSON, SRC, content_type="text/xml").articles
    with pytest.raises(SourceError, match="JSON syntax error"):
        parse_feed(b"not json, not xml", SRC, content_type="application/feed+json")
