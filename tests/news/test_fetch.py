"""Fetcher against a real local HTTP server: every fault a source can have.

Timeouts are small and margins wide: asserting "took at least ~1 s" and "well under 5 s"
proves the behaviour without flaking on a busy machine.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from newsdesk._exceptions import SourceError
from newsdesk.news._feeds import parse_feed
from newsdesk.news._fetch import USER_AGENT, Fetcher, FetchResult, Validators, parse_retry_after
from newsdesk.news._models import Source
from tests.servers.feed_server import SAMPLE_RSS, FeedServer

pytestmark = pytest.mark.timeout(30)

# Fast retries for tests; production defaults are slower and politer.
FAST: dict[str, Any] = {"backoff_base": 0.01, "backoff_max": 0.05, "timeout": 8.0}


def uniq() -> str:
    """A fresh query key: the server counts per path+query, and is shared by the session."""
    return uuid.uuid4().hex[:8]


async def get(url: str, validators: Validators | None = None, **kw: Any) -> FetchResult:
    async with Fetcher(**{**FAST, **kw}) as f:
        return await f.fetch(Source(name="src", url=url), validators)


async def fails(url: str, **kw: Any) -> tuple[SourceError, float]:
    started = time.monotonic()
    with pytest.raises(SourceError) as info:
        await get(url, **kw)
    err = info.value
    assert err.source == "src"
    assert "\n" not in str(err) and "Traceback" not in str(err)
    return err, time.monotonic() - started


@pytest.mark.parametrize(
    ("name", "title"),
    [
        ("rss", "Harbour bridge reopens after repairs"),
        ("atom", "Chip maker doubles output"),
        ("rdf", "Comet seen from the valley"),
        ("json", "Rain expected all week"),
    ],
)
async def test_fetch_and_parse_each_format(feed_server: FeedServer, name: str, title: str) -> None:
    result = await get(f"{feed_server.url}/feeds/{name}")
    assert result.status == 200 and not result.not_modified
    assert result.attempts == 1
    assert result.etag and result.last_modified
    assert result.content_type
    articles = parse_feed(result.body, result.source, content_type=result.content_type).articles
    assert articles[0].title == title


async def test_user_agent_and_accept(feed_server: FeedServer) -> None:
    await get(f"{feed_server.url}/feeds/rss?k={uniq()}")
    headers = feed_server.last_headers("/feeds/rss")
    assert headers["user-agent"] == USER_AGENT
    assert (
        USER_AGENT.startswith("newsdesk/") and "(+https://pypi.org/project/newsdesk)" in USER_AGENT
    )
    assert "application/rss+xml" in headers["accept"]


async def test_conditional_get_etag(feed_server: FeedServer) -> None:
    first = await get(f"{feed_server.url}/feeds/rss")
    again = await get(f"{feed_server.url}/feeds/rss", Validators(etag=first.etag))
    assert again.not_modified and again.status == 304 and again.body == b""
    assert feed_server.last_headers("/feeds/rss")["if-none-match"] == first.etag
    stale = await get(f"{feed_server.url}/feeds/rss", Validators(etag='"stale"'))
    assert not stale.not_modified and stale.body == SAMPLE_RSS


async def test_conditional_get_last_modified(feed_server: FeedServer) -> None:
    first = await get(f"{feed_server.url}/feeds/atom")
    again = await get(
        f"{feed_server.url}/feeds/atom", Validators(last_modified=first.last_modified)
    )
    assert again.not_modified
    assert "if-none-match" not in feed_server.last_headers("/feeds/atom")
    old = await get(
        f"{feed_server.url}/feeds/atom", Validators(last_modified="Mon, 01 Jan 2001 00:00:00 GMT")
    )
    assert not old.not_modified and old.body


async def test_hang_hits_total_deadline(feed_server: FeedServer) -> None:
    err, took = await fails(f"{feed_server.url}/hang?k={uniq()}", timeout=1.0, read_timeout=30)
    assert err.reason == "timed out after 1 s"
    assert 0.9 <= took < 5


async def test_hang_read_timeout_is_retried(feed_server: FeedServer) -> None:
    k = uniq()
    err, took = await fails(
        f"{feed_server.url}/hang?k={k}", read_timeout=0.3, attempts=2, timeout=8
    )
    assert err.reason == "no data for 0.3 s (read timeout) after 2 attempts"
    assert feed_server.hits(f"/hang?k={k}") == 2
    assert took < 5


async def test_slow_body_defeats_read_timeout_but_not_deadline(feed_server: FeedServer) -> None:
    # One byte a second never trips a 5 s read timeout; only the total deadline stops it.
    err, took = await fails(f"{feed_server.url}/slow-body?k={uniq()}", read_timeout=5, timeout=1.5)
    assert err.reason == "timed out after 1.5 s"
    assert 1.4 <= took < 5


async def test_source_timeout_overrides_default(feed_server: FeedServer) -> None:
    async with Fetcher(timeout=30) as f:
        started = time.monotonic()
        with pytest.raises(SourceError, match="timed out after 0.5 s"):
            await f.fetch(Source(name="s", url=f"{feed_server.url}/hang?k={uniq()}", timeout=0.5))
        assert time.monotonic() - started < 4


async def test_429_retry_after_seconds_is_honoured(feed_server: FeedServer) -> None:
    k = uniq()
    started = time.monotonic()
    result = await get(f"{feed_server.url}/429?retry_after=1&k={k}")
    took = time.monotonic() - started
    assert result.status == 200 and result.attempts == 2
    assert feed_server.hits(f"/429?retry_after=1&k={k}") == 2
    assert 0.9 <= took < 5  # backoff alone would be ~0.01 s


async def test_429_retry_after_http_date(feed_server: FeedServer) -> None:
    started = time.monotonic()
    result = await get(f"{feed_server.url}/429?retry_after=2&date=1&k={uniq()}")
    assert result.attempts == 2
    # HTTP-dates have one-second resolution: the wait is between 1 and 2 s.
    assert 0.9 <= time.monotonic() - started < 6


async def test_429_retry_after_is_capped(feed_server: FeedServer) -> None:
    started = time.monotonic()
    result = await get(f"{feed_server.url}/429?retry_after=120&k={uniq()}", retry_after_max=0.2)
    assert result.attempts == 2
    assert time.monotonic() - started < 4


async def test_429_retry_after_beyond_deadline_fails_fast(feed_server: FeedServer) -> None:
    err, took = await fails(f"{feed_server.url}/429?retry_after=30&k={uniq()}", timeout=2.0)
    assert err.reason == "HTTP 429 after 1 attempt; no time left to retry"
    assert took < 1.5


async def test_429_every_time_gives_up(feed_server: FeedServer) -> None:
    k = uniq()
    err, _ = await fails(f"{feed_server.url}/429?retry_after=0&times=99&k={k}", attempts=3)
    assert err.reason == "HTTP 429 after 3 attempts"
    assert feed_server.hits(f"/429?retry_after=0&times=99&k={k}") == 3


async def test_flaky_500_recovers(feed_server: FeedServer) -> None:
    k = uniq()
    result = await get(f"{feed_server.url}/flaky500?k={k}", attempts=3)
    assert result.status == 200 and result.attempts == 3
    assert feed_server.hits(f"/flaky500?k={k}") == 3


async def test_flaky_500_with_too_few_attempts_fails(feed_server: FeedServer) -> None:
    err, _ = await fails(f"{feed_server.url}/flaky500?k={uniq()}", attempts=2)
    assert err.reason == "HTTP 500 after 2 attempts"


async def test_always_500(feed_server: FeedServer) -> None:
    k = uniq()
    err, _ = await fails(f"{feed_server.url}/always500?k={k}", attempts=3)
    assert err.reason == "HTTP 500 after 3 attempts"
    assert str(err) == "src: HTTP 500 after 3 attempts"
    assert feed_server.hits(f"/always500?k={k}") == 3


async def test_backoff_grows_between_attempts(feed_server: FeedServer) -> None:
    # base 0.2 s, jitter 0.5-1.5x: waits of >= 0.1 s then >= 0.2 s.
    started = time.monotonic()
    await fails(
        f"{feed_server.url}/always500?k={uniq()}", attempts=3, backoff_base=0.2, backoff_max=5
    )
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize("code", [404, 403, 410])
async def test_client_errors_are_not_retried(feed_server: FeedServer, code: int) -> None:
    k = uniq()
    err, _ = await fails(f"{feed_server.url}/status/{code}?k={k}")
    assert err.reason.startswith(f"HTTP {code}")
    assert feed_server.hits(f"/status/{code}?k={k}") == 1


async def test_connection_refused(closed_port_url: str) -> None:
    err, took = await fails(closed_port_url, attempts=2)
    assert err.reason == "connection refused after 2 attempts"
    assert took < 5


@pytest.mark.parametrize("query", ["", "?chunked=1"])
async def test_huge_body_is_cut(feed_server: FeedServer, query: str) -> None:
    err, took = await fails(f"{feed_server.url}/huge{query}")
    assert err.reason == "body larger than 5 MB"
    assert took < 5


async def test_custom_size_limit(feed_server: FeedServer) -> None:
    err, _ = await fails(f"{feed_server.url}/huge?chunked=1&k={uniq()}", max_bytes=1024 * 1024)
    assert err.reason == "body larger than 1 MB"
    small = await get(f"{feed_server.url}/feeds/rss", max_bytes=len(SAMPLE_RSS))
    assert small.body == SAMPLE_RSS


async def test_redirect_loop(feed_server: FeedServer) -> None:
    err, _ = await fails(f"{feed_server.url}/redirect-loop", max_redirects=3)
    assert err.reason == "too many redirects (more than 3)"


async def test_redirect_once(feed_server: FeedServer) -> None:
    result = await get(f"{feed_server.url}/redirect-once")
    assert result.final_url == f"{feed_server.url}/feeds/rss"
    assert result.body == SAMPLE_RSS


async def test_bad_xml_fetches_then_fails_to_parse(feed_server: FeedServer) -> None:
    result = await get(f"{feed_server.url}/bad-xml")
    with pytest.raises(SourceError, match=r"not a feed: XML syntax error at line 3"):
        parse_feed(result.body, result.source, content_type=result.content_type)


async def test_bad_encoding_still_yields_articles(feed_server: FeedServer) -> None:
    result = await get(f"{feed_server.url}/bad-encoding")
    parsed = parse_feed(result.body, result.source, content_type=result.content_type)
    assert parsed.articles[0].title == "Городской совет утвердил новый бюджет"


async def test_empty_feed(feed_server: FeedServer) -> None:
    result = await get(f"{feed_server.url}/empty")
    assert parse_feed(result.body, result.source, content_type=result.content_type).articles == []


async def test_not_a_feed(feed_server: FeedServer) -> None:
    result = await get(f"{feed_server.url}/not-a-feed")
    with pytest.raises(SourceError, match="not a feed: got an HTML page"):
        parse_feed(result.body, result.source, content_type=result.content_type)


async def test_xss_feed_is_defused(feed_server: FeedServer) -> None:
    result = await get(f"{feed_server.url}/xss")
    articles = parse_feed(result.body, result.source, content_type=result.content_type).articles
    assert len(articles) == 2
    for a in articles:
        assert "<" not in a.title + a.text
        assert "alert" not in a.title + a.text and "onerror" not in a.text


async def test_per_host_limit(feed_server: FeedServer) -> None:
    group = uniq()
    async with Fetcher(concurrency=50, per_host=2, **FAST) as f:
        await asyncio.gather(
            *(
                f.fetch(
                    Source(
                        name=f"s{i}", url=f"{feed_server.url}/slow?delay=0.3&group={group}&i={i}"
                    )
                )
                for i in range(6)
            )
        )
    assert feed_server.max_inflight(group) == 2


async def test_global_limit(feed_server: FeedServer) -> None:
    group = uniq()
    async with Fetcher(concurrency=3, per_host=50, **FAST) as f:
        await asyncio.gather(
            *(
                f.fetch(
                    Source(
                        name=f"s{i}", url=f"{feed_server.url}/slow?delay=0.3&group={group}&i={i}"
                    )
                )
                for i in range(7)
            )
        )
    assert feed_server.max_inflight(group) == 3


async def test_local_file_path_and_file_url(tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_bytes(SAMPLE_RSS)
    by_path = await get(str(feed))
    by_url = await get(feed.as_uri())
    assert by_path.body == by_url.body == SAMPLE_RSS
    assert by_path.status == 200 and by_path.last_modified
    # An unchanged file is "not modified" against its own Last-Modified.
    again = await get(str(feed), Validators(last_modified=by_path.last_modified))
    assert again.not_modified and again.body == b""
    os.utime(feed, (time.time() + 10, time.time() + 10))
    changed = await get(str(feed), Validators(last_modified=by_path.last_modified))
    assert not changed.not_modified and changed.body == SAMPLE_RSS


async def test_local_file_errors(tmp_path: Path) -> None:
    err, _ = await fails(str(tmp_path / "missing.xml"))
    assert err.reason.startswith("file not found: ")
    big = tmp_path / "big.xml"
    big.write_bytes(b"x" * 2048)
    err, _ = await fails(str(big), max_bytes=1024)
    assert err.reason == "file larger than 1 KB"
    err, _ = await fails(str(tmp_path))
    assert err.reason.startswith("not a regular file")


async def test_fetch_article_text(feed_server: FeedServer) -> None:
    pytest.importorskip("trafilatura")
    async with Fetcher(**FAST) as f:
        text = await f.fetch_article_text(f"{feed_server.url}/article")
        assert "two hundred corroded bolts" in text
        assert "should never be extracted" not in text
        with pytest.raises(SourceError, match="HTTP 404"):
            await f.fetch_article_text(f"{feed_server.url}/status/404")
        with pytest.raises(SourceError, match="body larger than"):
            await f.fetch_article_text(f"{feed_server.url}/huge")


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0


async def test_time_queued_for_a_slot_is_not_the_sources_timeout(feed_server: FeedServer) -> None:
    # Two hanging feeds fill the host's two slots; a healthy feed queued behind them must not be
    # reported "timed out" before it was even requested.
    from newsdesk.news._fetch import Fetcher
    from newsdesk.news._models import Source

    async with Fetcher(per_host=2, timeout=1.5, attempts=1) as fetcher:
        hangs = [
            fetcher.fetch(Source(name=f"h{i}", url=f"{feed_server.url}/hang?k={uniq()}"))
            for i in range(2)
        ]
        good = fetcher.fetch(Source(name="good", url=f"{feed_server.url}/feeds/rss?k={uniq()}"))
        results = await asyncio.gather(*hangs, good, return_exceptions=True)
    assert all(isinstance(r, SourceError) for r in results[:2])
    assert not isinstance(results[2], BaseException), results[2]
    assert results[2].status == 200
