"""The fast RSS/Atom reader gives exactly the articles feedparser gives, and leaves to feedparser
every document it does not fully understand (DTDs and entities, other encodings, broken XML,
extensions)."""

from __future__ import annotations

from typing import Any

import pytest

from bench.bigfeed import rss, second_source, stories
from newsdesk.news import _feeds
from newsdesk.news._fastfeed import fast_entries
from newsdesk.news._feeds import open_feed, parse_feed
from newsdesk.news._models import Source
from newsdesk.news._sources import DEMO_DIR
from tests.servers.feed_server import (
    BAD_ENCODING,
    BAD_XML,
    EMPTY_RSS,
    NOT_A_FEED,
    SAMPLE_ATOM,
    SAMPLE_RDF,
    SAMPLE_RSS,
    XSS_RSS,
)

HTTP = Source(name="t", url="https://feeds.test/news/rss.xml")
FILE = Source(name="f", url="/tmp/feeds/rss.xml")
CT = "application/rss+xml; charset=utf-8"


def _rss(items: str, channel: str = "<title>T</title>", root: str = 'version="2.0"') -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss {root} '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/" '
        f'xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>{channel}{items}</channel></rss>'
    ).encode()


def _atom(entries: str, head: str = "<title>A</title>", lang: str = ' xml:lang="en-GB"') -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"{lang}>'
        f"{head}{entries}</feed>"
    ).encode()


# (name, document): every one of these must take the fast path.
FAST: list[tuple[str, bytes]] = [
    ("sample rss", SAMPLE_RSS),
    ("sample atom", SAMPLE_ATOM),
    ("empty rss", EMPTY_RSS),
    ("xss rss", XSS_RSS),
    ("bigfeed", rss(stories(300), "big")),
    ("bigfeed second source", rss(second_source(stories(600)), "other")),
    (
        "entities and double escaping",
        _rss(
            "<item><title>AT&amp;T &amp;amp; Q&amp;A &#169; &#x80;uro &lt;b&gt;bold&lt;/b&gt;</title>"
            "<link>https://x.test/a?b=1&amp;c=2&amp;utm_source=rss</link>"
            "<description>5 &lt; 6 &amp;&amp; 7 &gt; 3 &amp;nbsp;&amp;copy;&amp;#39; &#8212; "
            "&amp;lt;script&amp;gt;alert(1)&amp;lt;/script&amp;gt;</description></item>"
        ),
    ),
    (
        "cdata, scripts, styles, iframes",
        _rss(
            "<item><title><![CDATA[Hi <script>alert(1)</script><b>there</b>]]></title>"
            "<link>https://x.test/1</link><description><![CDATA[<p>One<br/>two</p>"
            "<script type='text/javascript'>var x = '</p>';</script><style>p{}</style>"
            "<iframe src='https://evil.test'>frame</iframe><img src=x onerror=alert(1)>"
            "<a href='javascript:alert(2)'>link</a>&nbsp;end]]></description>"
            "<content:encoded><![CDATA[<div><p>Full <em>text</em> of the story, longer than "
            "the description by a good margin.</p><noscript>no</noscript></div>]]></content:encoded>"
            "</item>"
        ),
    ),
    (
        "content before description",
        _rss(
            "<item><title>t</title><content:encoded>short</content:encoded>"
            "<description>a much longer description of the story</description></item>"
            "<item><title>u</title><description>d</description>"
            "<content:encoded>much longer full text of the story</content:encoded></item>"
        ),
    ),
    (
        "bad and odd dates",
        _rss(
            "<item><title>a</title><pubDate>yesterday-ish</pubDate></item>"
            "<item><title>b</title><pubDate>Mon, 32 Feb 2025 25:61:00 GMT</pubDate></item>"
            "<item><title>c</title><pubDate>2025-03-03T09:00:00+02:00</pubDate></item>"
            "<item><title>d</title><pubDate>Tue, 4 Mar 2025 10:30:00 +0530</pubDate></item>"
            "<item><title>e</title><dc:date>2025-03-06T21:00:00Z</dc:date></item>"
            "<item><title>f</title><pubDate></pubDate></item>"
            "<item><title>g</title><pubDate>Mon, 03 Mar 99999 09:00:00 GMT</pubDate></item>"
        ),
    ),
    (
        "missing fields, guids and relative links",
        _rss(
            "<item><description>Only a description, no title, no link, no guid at all here."
            "</description></item>"
            "<item><title>No body</title></item>"
            "<item></item>"
            "<item><title>   </title><description> </description></item>"
            "<item><title>guid only</title><guid>https://x.test/g?utm_medium=x</guid></item>"
            "<item><title>local guid</title><guid>42</guid></item>"
            "<item><title>not a link</title><guid isPermaLink='false'>43</guid></item>"
            "<item><title>guid then link</title><guid>https://x.test/g1</guid>"
            "<link>https://x.test/l1</link></item>"
            "<item><title>link then guid</title><link>https://x.test/l2</link>"
            "<guid>https://x.test/g2</guid></item>"
            "<item><title>relative</title><link>/story/7</link><guid>story-7</guid></item>"
            "<item><title>dots</title><link>../up/./x?</link></item>"
            "<item><title>js</title><link>javascript:alert(1)</link></item>"
            "<item><title>empty link</title><guid>https://x.test/e</guid><link></link></item>"
            "<item><title>spaces</title><link>  https://x.test/ sp  </link></item>"
            "<item><title>odd url</title><link>https://[bad/x</link></item>"
            "<item><title>ampersands</title><link>https://x.test/?a=1&amp;amp;b=2&amp;c;=3</link>"
            "</item>"
        ),
    ),
    (
        "authors, categories, enclosures, comments",
        _rss(
            "<item><title>a</title><author>jo@x.test (Jo Bloggs)</author>"
            "<category>World</category><category domain='d'>Europe</category>"
            "<enclosure url='https://x.test/a.mp3' length='1' type='audio/mpeg'/>"
            "<comments>https://x.test/c</comments></item>"
            "<item><title>b</title><dc:creator>&lt;b&gt;Ann&lt;/b&gt; Lee</dc:creator></item>"
        ),
    ),
    (
        "languages and scripts",
        _rss(
            "<item><title>Городской совет утвердил бюджет</title>"
            "<description>Депутаты проголосовали за бюджет на следующий год.</description></item>"
            "<item><title>Mixed Ελληνικά and English</title></item>",
            channel="<title>Вести &amp; News</title><language>uk</language>",
        ),
    ),
    ("root xml:lang", _rss("<item><title>x</title></item>", root='version="2.0" xml:lang="fr_CA"')),
    ("no version", _rss("<item><title>x</title></item>", root="")),
    (
        "mojibake, cp1252 code points, controls, surrogates",
        _rss(
            "<item><title>CafÃ© \u0093quoted\u0094 \u0085</title>"
            "<description>tab\there&#x9;nl&#10;&#xD800;&#0;&#x10FFFF; end &#x1F600;</description>"
            "</item>"
        ),
    ),
    (
        "comments and processing instructions",
        _rss(
            "<!-- c --><item><title>a<!-- hidden -->b</title><?pi x?>"
            "<description>c<!-- -->d</description></item>"
        ),
    ),
    (
        "whitespace",
        _rss(
            "<item>\n  <title>\n  Spaced   out \n title </title>\n"
            "  <link>\n https://x.test/w \n</link>\n  <description>\n\n body \n</description>\n</item>"
        ),
    ),
    (
        "long text",
        _rss("<item><title>long</title><description>" + "word " * 12000 + "</description></item>"),
    ),
    (
        "atom variants",
        _atom(
            "<entry><title>Plain &lt;b&gt;text&lt;/b&gt; title</title><id>urn:uuid:1</id>"
            "<updated>2025-03-05T12:00:00Z</updated><published>2025-03-04T12:00:00+01:00</published>"
            "<summary>s</summary><content type='html'>&lt;p&gt;Long &lt;script&gt;x&lt;/script&gt;"
            "body&lt;/p&gt;</content>"
            "<author><name>Ada</name><email>ada@x.test</email></author>"
            "<category term='t'/></entry>"
            "<entry><title type='text'>t2</title><id>/relative/2</id>"
            "<link rel='self' href='https://x.test/self'/><link rel='enclosure' href='/e.mp3'/>"
            "<link href='/alt/2'/><link href='https://x.test/alt/3' type='text/html'/>"
            "<content>text &lt;i&gt;content&lt;/i&gt;</content><summary type='html'>"
            "&lt;p&gt;html summary&lt;/p&gt;</summary></entry>"
            "<entry><id>tag:x.test,2025:3</id><link rel='alternate' type='application/pdf' "
            "href='https://x.test/p.pdf'/><summary>No title, pdf link only</summary>"
            "<author><email>e@x.test</email></author></entry>"
            "<entry><title></title><id>urn:x</id><updated>not a date</updated></entry>"
        ),
    ),
    ("atom without lang", _atom("<entry><title>x</title><id>urn:y</id></entry>", lang="")),
]

# (name, document): these must go to feedparser (and so trivially agree).
SLOW: list[tuple[str, bytes]] = [
    ("rdf", SAMPLE_RDF),
    ("bad xml", BAD_XML),
    ("html page", NOT_A_FEED),
    ("cp1251", BAD_ENCODING),
    (
        "entity declaration (billion laughs)",
        b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        b'<rss version="2.0"><channel><title>T</title><item><title>&b;</title></item></channel></rss>',
    ),
    (
        "external entity (XXE)",
        b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<rss version="2.0"><channel><title>T</title><item><title>&x;</title></item></channel></rss>',
    ),
    ("html entity", _rss("<item><title>a&nbsp;b</title></item>")),
    ("unescaped ampersand", _rss("<item><title>a & b</title></item>")),
    (
        "markup inside a field",
        _rss("<item><title>t</title><description><p>x</p></description></item>"),
    ),
    ("extension element", _rss("<item><title>t</title><dc:subject>s</dc:subject></item>")),
    ("xml:base", _rss('<item xml:base="https://base.test/"><title>t</title><link>x</link></item>')),
    ("two titles", _rss("<item><title>a</title><title>b</title></item>")),
    (
        "author and creator",
        _rss("<item><title>a</title><author>x</author><dc:creator>y</dc:creator></item>"),
    ),
    (
        "latin-1",
        _rss("<item><title>caf\xe9</title></item>")
        .replace(b"utf-8", b"iso-8859-1")
        .replace("é".encode(), b"\xe9"),
    ),
    ("bom", b"\xef\xbb\xbf" + _rss("<item><title>a</title></item>")),
    (
        "atom xhtml",
        _atom(
            "<entry><title type='xhtml'><div xmlns='http://www.w3.org/1999/xhtml'>x</div></title></entry>"
        ),
    ),
    (
        "two atom authors",
        _atom(
            "<entry><title>x</title><author><name>A</name></author><author><name>B</name></author></entry>"
        ),
    ),
    ("atom content src", _atom("<entry><title>x</title><content src='https://x.test/c'/></entry>")),
]


def _demo() -> list[tuple[str, bytes]]:
    return [
        (p.name, p.read_bytes())
        for p in sorted(DEMO_DIR.iterdir())
        if p.suffix in (".xml", ".atom", ".rdf")
    ]


def _by_feedparser(data: bytes, source: Source, content_type: str | None) -> Any:
    return _feeds._parse_with_feedparser(
        _feeds._fix_char_refs(data), source, content_type
    ).read_all()


def _same(data: bytes, source: Source, content_type: str | None) -> None:
    fast = parse_feed(data, source, content_type=content_type)
    slow = _by_feedparser(data, source, content_type)
    assert [a.model_dump() for a in fast.articles] == [a.model_dump() for a in slow.articles]
    assert (fast.title, fast.language, fast.warnings) == (slow.title, slow.language, slow.warnings)
    assert fast.entries == slow.entries


def _fast(data: bytes, source: Source, content_type: str | None) -> bool:
    return (
        fast_entries(_feeds._fix_char_refs(data), _feeds._base_uri(source), content_type)
        is not None
    )


@pytest.mark.parametrize("source", [HTTP, FILE], ids=["http", "file"])
@pytest.mark.parametrize(("name", "data"), FAST, ids=[n for n, _ in FAST])
def test_fast_path_gives_feedparsers_articles(name: str, data: bytes, source: Source) -> None:
    for content_type in (CT, None):
        assert _fast(data, source, content_type), name
        _same(data, source, content_type)


@pytest.mark.parametrize(("name", "data"), SLOW, ids=[n for n, _ in SLOW])
def test_anything_unusual_goes_to_feedparser(name: str, data: bytes) -> None:
    assert not _fast(data, HTTP, CT)
    try:
        _same(data, HTTP, CT)
    except _feeds.SourceError:
        pass  # not a feed either way


def test_demo_feeds_agree() -> None:
    taken = 0
    for _name, data in _demo():
        taken += _fast(data, HTTP, None)
        try:
            _same(data, HTTP, None)
        except _feeds.SourceError:
            assert not _fast(data, HTTP, None)  # the broken demo feed fails the same way
    assert taken >= 2  # the RSS and Atom demo feeds are plain enough for the fast path


def test_text_content_type_without_charset_is_ascii_for_feedparser() -> None:
    data = _rss("<item><title>Caf\u00e9</title></item>")
    assert not _fast(data, HTTP, "text/xml")
    assert _fast(data, HTTP, "application/xml")
    _same(data, HTTP, "text/xml")


def test_other_declared_charset_goes_to_feedparser() -> None:
    assert not _fast(SAMPLE_RSS, HTTP, "application/rss+xml; charset=windows-1251")


def test_articles_are_built_on_demand() -> None:
    data = rss(stories(2000), "big")
    parsed = open_feed(data, HTTP)
    assert parsed.entries == 2000 and parsed.articles == [] and not parsed.complete
    first = parsed.more(20)
    assert len(first) == 20 and len(parsed.articles) == 20 and not parsed.complete
    assert [a.id for a in first] == [a.id for a in parse_feed(data, HTTP).articles[:20]]
    rest = parsed.more(10_000)
    assert len(rest) == 1980 and parsed.complete and parsed.more(5) == []


def test_max_articles_applies_on_demand_too() -> None:
    data = rss(stories(100), "big")
    src = HTTP.model_copy(update={"max_articles": 7})
    parsed = open_feed(data, src)
    assert len(parsed.more(5)) == 5
    assert len(parsed.more(5)) == 2 and parsed.complete
