"""Hostile inputs for the news layer (issue #12): private addresses (SSRF), full text from
non-web links, lone surrogates, undeclared encodings, hostile OPML entries.

Everything runs against the real feed server on 127.0.0.1; see docs/SECURITY.md for the table.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from pathlib import Path

import pytest

from newsdesk._exceptions import ConfigError, SourceError
from newsdesk.news._feeds import parse_feed
from newsdesk.news._fetch import (
    REFUSED_PRIVATE,
    Fetcher,
    is_public_address,
)
from newsdesk.news._models import Source
from newsdesk.news._sources import load_opml, resolve_sources
from tests.servers.feed_server import FeedServer

pytestmark = pytest.mark.timeout(30)

FAST = {"backoff_base": 0.01, "backoff_max": 0.05, "timeout": 8.0}


async def fetch_error(url: str, **kw: object) -> str:
    async with Fetcher(**{**FAST, **kw}) as f:  # type: ignore[arg-type]
        with pytest.raises(SourceError) as info:
            await f.fetch(Source(name="src", url=url))
    return info.value.reason


# ---------------------------------------------------------------- private addresses (SSRF)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata (AWS, GCP, Azure)
        ("100.64.0.1", False),  # shared address space (CGNAT)
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fd00:ec2::254", False),  # AWS metadata over IPv6
        ("fe80::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("2002:7f00:1::1", False),  # 6to4 wrapping 127.0.0.1
        ("93.184.216.34", True),
        ("2606:4700:4700::1111", True),
    ],
)
def test_public_address_table(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


async def test_cli_fetcher_still_reads_loopback(feed_server: FeedServer) -> None:
    async with Fetcher(**FAST) as f:  # type: ignore[arg-type]
        result = await f.fetch(Source(name="src", url=f"{feed_server.url}/feeds/rss"))
    assert result.status == 200 and result.body


async def test_private_addresses_refused_with_one_message(
    feed_server: FeedServer, closed_port_url: str
) -> None:
    before = feed_server.hits("/feeds/rss?k=ssrf")
    open_port = await fetch_error(f"{feed_server.url}/feeds/rss?k=ssrf", allow_private=False)
    closed_port = await fetch_error(closed_port_url, allow_private=False)
    by_name = await fetch_error(
        f"http://localhost:{feed_server.url.rsplit(':', 1)[1]}/feeds/rss", allow_private=False
    )
    # The same words whether the port is open or not: a refusal must not map the network.
    assert open_port == closed_port == by_name == REFUSED_PRIVATE
    assert feed_server.hits("/feeds/rss?k=ssrf") == before  # never connected


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/latest/meta-data/"]
)
async def test_metadata_addresses_refused_without_connecting(url: str) -> None:
    started = time.monotonic()
    assert await fetch_error(url, allow_private=False) == REFUSED_PRIVATE
    assert time.monotonic() - started < 2.0  # refused before any connect attempt


async def test_redirect_to_a_private_address_is_refused(feed_server: FeedServer) -> None:
    # The feed server stands in for a public host (its address passes the check); it redirects
    # to loopback under another name, which must be checked again on that hop.
    port = feed_server.url.rsplit(":", 1)[1]
    only_first = ipaddress.ip_address("127.0.0.1")

    def allowed(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return ip == only_first

    target = f"http://127.0.0.2:{port}/feeds/rss"
    reason = await fetch_error(f"{feed_server.url}/redirect-to?url={target}", address_check=allowed)
    assert reason == REFUSED_PRIVATE
    # ... while a redirect that stays on the allowed address is followed.
    async with Fetcher(address_check=allowed, **FAST) as f:  # type: ignore[arg-type]
        result = await f.fetch(Source(name="src", url=f"{feed_server.url}/redirect-once"))
    assert result.status == 200 and result.final_url and result.final_url.endswith("/feeds/rss")


async def test_desk_refuses_private_sources_by_injection(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    """``NewsDesk(private_sources=False)`` (the web app's) makes its runs' fetchers refuse;
    another desk in the same process is unaffected (no process-wide setting)."""
    from newsdesk.news import NewsDesk

    url = f"{feed_server.url}/feeds/rss"
    with NewsDesk(private_sources=False, store=tmp_path / "s.db") as guarded:
        prepared = guarded.prepare([url], model="local/smollm2", embeddings=False)
        evs = [e async for e in guarded.run(prepared)]
    assert [(e.event, getattr(e, "reason", "")) for e in evs if e.event.startswith("source")] == [
        ("source_error", REFUSED_PRIVATE)
    ]
    async with Fetcher(**FAST) as f:  # type: ignore[arg-type]
        assert (await f.fetch(Source(name="s", url=url))).body


# ---------------------------------------------------------------- full text only from the web


@pytest.mark.parametrize(
    "link",
    ["http/../../x.html", "/etc/passwd", "file:///etc/passwd", "ftp://example.com/a", "x.html"],
)
async def test_full_text_only_from_absolute_http_links(
    link: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("trafilatura")
    # A file that a relative "http/../../x.html" would reach from the working directory.
    (tmp_path / "http").mkdir()
    (tmp_path / "x.html").write_text("<html><body><p>SECRET local file</p></body></html>")
    monkeypatch.chdir(tmp_path / "http")
    async with Fetcher(**FAST) as f:  # type: ignore[arg-type]
        with pytest.raises(SourceError) as info:
            await f.fetch_article_text(link)
    assert "not an absolute http(s) URL" in info.value.reason
    assert "SECRET" not in str(info.value)


# ---------------------------------------------------------------- lone surrogates


def _json_feed_with_surrogate() -> bytes:
    doc = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "Surrogates",
        "items": [
            {
                "id": "1",
                "url": "https://s.test/1",
                "title": "Good one",
                "content_text": "Fine body.",
            },
            {
                "id": "2",
                "url": "https://s.test/2",
                "title": "Bad \ud800 title",
                "content_text": "x",
            },
            {"id": "3\udfff", "url": "https://s.test/3", "title": "Bad id", "content_text": "y"},
        ],
    }
    # ensure_ascii writes the lone surrogate as the \ud800 escape a hostile feed would send.
    return json.dumps(doc, ensure_ascii=True).encode()


XML_SURROGATE = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>X</title>
<item><title>Good one</title><link>https://x.test/1</link><description>Fine.</description></item>
<item><title>Bad &#xD800; title</title><link>https://x.test/2</link><description>b &#xDFFF;</description></item>
</channel></rss>"""


@pytest.mark.parametrize(
    ("name", "body", "content_type"),
    [
        ("surrogate-json", _json_feed_with_surrogate(), "application/feed+json"),
        ("surrogate-xml", XML_SURROGATE, "application/rss+xml; charset=utf-8"),
    ],
)
async def test_lone_surrogates_do_not_cost_the_feed(
    feed_server: FeedServer, name: str, body: bytes, content_type: str
) -> None:
    feed_server.set_feed(name, body, content_type)
    async with Fetcher(**FAST) as f:  # type: ignore[arg-type]
        result = await f.fetch(Source(name="src", url=f"{feed_server.url}/feeds/{name}"))
    parsed = parse_feed(result.body, result.source, content_type=result.content_type)
    titles = [a.title for a in parsed.articles]
    assert "Good one" in titles and len(titles) == (3 if name.endswith("json") else 2)
    assert any("\ufffd" in t for t in titles)
    for article in parsed.articles:
        # What the store and the event stream do with an article: must not raise.
        article.model_dump_json().encode("utf-8")
        json.dumps(article.model_dump(mode="json")).encode("utf-8")


def test_an_item_that_cannot_be_used_is_skipped_and_named() -> None:
    # A date far outside what datetime can hold still fails validation after cleaning.
    doc = {
        "version": "https://jsonfeed.org/version/1.1",
        "items": [
            {"id": "1", "url": "https://s.test/1", "title": "Kept", "content_text": "ok"},
            {"id": "2", "url": "https://s.test/2", "title": "Doomed", "content_text": "x"},
        ],
    }
    import newsdesk.news._feeds as feeds

    real = feeds._build_article

    def flaky(**kw: object) -> object:
        if kw["title"] == "Doomed":
            raise ValueError("cannot be stored")
        return real(**kw)  # type: ignore[arg-type]

    feeds._build_article = flaky  # type: ignore[assignment]
    try:
        parsed = parse_feed(json.dumps(doc).encode(), Source(name="s", url="https://s.test/f"))
    finally:
        feeds._build_article = real
    assert [a.title for a in parsed.articles] == ["Kept"]
    assert any("skipped item 'Doomed'" in w for w in parsed.warnings)


# ---------------------------------------------------------------- undeclared encodings

RUSSIAN_TITLE = "Городской совет утвердил новый бюджет на следующий год"
RUSSIAN_TEXT = (
    "Депутаты городского совета проголосовали за бюджет. Расходы на школы и больницы "
    "вырастут, а на ремонт дорог выделено больше денег, чем в прошлом году."
)


def _russian_rss(declaration: str) -> bytes:
    return (
        f'{declaration}<rss version="2.0"><channel><title>Вести</title>'
        "<link>https://enc.test/</link><description>Новости города</description>"
        f"<item><title>{RUSSIAN_TITLE}</title><link>https://enc.test/1</link>"
        f"<description>{RUSSIAN_TEXT}</description></item></channel></rss>"
    ).encode("koi8-r")


@pytest.mark.parametrize("declaration", ["", '<?xml version="1.0"?>\n'])
async def test_undeclared_koi8r_is_detected(feed_server: FeedServer, declaration: str) -> None:
    name = f"koi8-{len(declaration)}"
    feed_server.set_feed(name, _russian_rss(declaration), "application/rss+xml")  # no charset
    async with Fetcher(**FAST) as f:  # type: ignore[arg-type]
        result = await f.fetch(Source(name="src", url=f"{feed_server.url}/feeds/{name}"))
    parsed = parse_feed(result.body, result.source, content_type=result.content_type)
    (article,) = parsed.articles
    assert article.title == RUSSIAN_TITLE
    assert article.text == RUSSIAN_TEXT
    assert article.language == "ru"
    assert any("KOI8-R" in w for w in parsed.warnings)


# ---------------------------------------------------------------- OPML

OPML = """<?xml version="1.0"?>
<opml version="2.0"><head><title>t</title></head><body>
  <outline text="Web" xmlUrl="https://web.test/feed"/>
  <outline text="Ftp" xmlUrl="ftp://files.test/feed.xml"/>
  <outline text="Gopher" xmlUrl="gopher://hole.test/1/feed"/>
  <outline text="Near" xmlUrl="feeds/near.xml"/>
</body></opml>"""


def test_opml_refuses_other_schemes_per_entry_and_resolves_relative_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "lists"
    (folder / "feeds").mkdir(parents=True)
    (folder / "feeds" / "near.xml").write_text("<rss/>")
    opml = folder / "subs.opml"
    opml.write_text(OPML)
    monkeypatch.chdir(tmp_path)  # not the OPML's folder

    warnings: list[str] = []
    sources = load_opml(opml, warnings=warnings)
    assert [s.name for s in sources] == ["Web", "Near"]
    assert sources[1].url == str((folder / "feeds" / "near.xml").resolve())
    assert len(warnings) == 2
    assert "'Ftp'" in warnings[0] and "unsupported URL scheme 'ftp'" in warnings[0]
    assert "'Gopher'" in warnings[1] and "'gopher'" in warnings[1]

    # Through resolve_sources (what the CLI calls) the warnings go to the log, one line each.
    with caplog.at_level(logging.WARNING, logger="newsdesk.sources"):
        assert [s.name for s in resolve_sources([str(opml)])] == ["Web", "Near"]
    assert sum("unsupported URL scheme" in r.getMessage() for r in caplog.records) == 2


def test_opml_with_only_refused_entries_is_a_clear_error(tmp_path: Path) -> None:
    opml = tmp_path / "bad.opml"
    opml.write_text(
        '<opml version="2.0"><body><outline text="F" xmlUrl="ftp://f.test/x"/></body></opml>'
    )
    with pytest.raises(ConfigError, match="no usable feeds.*unsupported URL scheme 'ftp'"):
        load_opml(opml, warnings=[])
