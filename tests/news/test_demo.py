"""The bundled demo: loads, parses, covers the topics, and exercises dedup and failure paths."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from newsdesk._exceptions import SourceError
from newsdesk.news._dedup import Deduplicator
from newsdesk.news._feeds import ParsedFeed, parse_feed
from newsdesk.news._fetch import Fetcher
from newsdesk.news._models import Article, Source
from newsdesk.news._sources import DEMO_DIR, demo_sources

pytestmark = pytest.mark.timeout(30)
MARK = "Sample data for newsdesk demos — fictional"


async def _fetch_all() -> dict[str, ParsedFeed | SourceError]:
    async with Fetcher(timeout=10) as fetcher:

        async def one(src: Source) -> ParsedFeed | SourceError:
            try:
                result = await fetcher.fetch(src)
                return parse_feed(result.body, src, content_type=result.content_type)
            except SourceError as exc:
                return exc

        sources = demo_sources()
        outcomes = await asyncio.gather(*(one(s) for s in sources))
    return {s.name: o for s, o in zip(sources, outcomes, strict=True)}


@pytest.fixture(scope="module")
def outcomes() -> dict[str, ParsedFeed | SourceError]:
    return asyncio.run(_fetch_all())


def _articles(outcomes: dict[str, ParsedFeed | SourceError]) -> list[Article]:
    return [a for o in outcomes.values() if isinstance(o, ParsedFeed) for a in o.articles]


def test_demo_has_four_working_sources_in_different_formats(
    outcomes: dict[str, ParsedFeed | SourceError],
) -> None:
    working = {name for name, o in outcomes.items() if isinstance(o, ParsedFeed) and o.articles}
    assert len(working) >= 4
    suffixes = {Path(s.url).suffix for s in demo_sources() if s.name in working}
    assert {".xml", ".atom", ".rdf", ".json"} <= suffixes
    for name in working:
        o = outcomes[name]
        assert isinstance(o, ParsedFeed) and o.warnings == [], (name, o)


def test_demo_article_count_and_length(outcomes: dict[str, ParsedFeed | SourceError]) -> None:
    articles = _articles(outcomes)
    assert len(articles) >= 20
    for a in articles:
        words = len(a.text.split())
        assert 60 <= words <= 150, (a.title, words)
        assert a.title and a.url.startswith("https://") and a.published is not None


def test_demo_feeds_are_marked_fictional() -> None:
    for src in demo_sources():
        assert MARK in Path(src.url).read_text(encoding="utf-8"), src.url
    assert MARK in (DEMO_DIR / "sources.toml").read_text(encoding="utf-8")


def test_demo_covers_varied_topics(outcomes: dict[str, ParsedFeed | SourceError]) -> None:
    # Categories in the files are authoring hints; check they span the whole taxonomy.
    text = "".join(Path(s.url).read_text(encoding="utf-8") for s in demo_sources())
    for topic in (
        "politics", "business", "technology", "science", "health", "sports",
        "entertainment", "crime", "disaster", "environment", "conflict",
    ):  # fmt: skip
        assert topic in text, topic


def test_demo_near_duplicate_story_is_caught(outcomes: dict[str, ParsedFeed | SourceError]) -> None:
    articles = _articles(outcomes)
    dedup = Deduplicator()
    dropped = [a for a in articles if dedup.add(a) is None]
    assert [a.title for a in dropped] == [
        "Bramford faces 1,200 job losses as Kestrel Motors shuts factory"
    ]
    (kept,) = [a for a in dedup.kept if len(a.sources) > 1]
    assert kept.title == "Kestrel Motors to close Bramford plant, putting 1,200 jobs at risk"
    assert kept.sources == ["Harbor City Herald", "Meridian Daily"]
    # They are different wordings, not an exact copy: only the MinHash path can catch them.
    dup = dropped[0]
    assert dup.content_hash != kept.content_hash and dup.url != kept.url and dup.title != kept.title


def test_demo_broken_source_fails_clearly(outcomes: dict[str, ParsedFeed | SourceError]) -> None:
    err = outcomes["Broken Wire"]
    assert isinstance(err, SourceError)
    assert err.source == "Broken Wire"
    assert err.reason.startswith("not a feed: XML syntax error at line ")


def test_demo_security_articles(outcomes: dict[str, ParsedFeed | SourceError]) -> None:
    articles = _articles(outcomes)
    injected = [a for a in articles if "Ignore previous instructions" in a.text]
    assert len(injected) == 1
    xss = [a for a in articles if a.title.startswith("Library launches free coding nights")]
    assert len(xss) == 1
    # The raw file carries the script tag; the parsed title must not.
    assert (
        "&lt;script&gt;alert(1)&lt;/script&gt;" in (DEMO_DIR / "harbor_city_herald.xml").read_text()
    )
    assert xss[0].title == "Library launches free coding nights for teens"
    for a in articles:
        assert "<script" not in a.title and "<script" not in a.text


def test_demo_has_russian_article(outcomes: dict[str, ParsedFeed | SourceError]) -> None:
    ru = [a for a in _articles(outcomes) if a.language == "ru"]
    assert len(ru) == 1
    assert ru[0].title.startswith("В Северогорске")
    others = [a for a in _articles(outcomes) if a.language != "ru"]
    assert all(a.language == "en" for a in others)
