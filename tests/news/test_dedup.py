from __future__ import annotations

from newsdesk.news._dedup import Deduplicator, jaccard, shingles
from newsdesk.news._models import Article
from newsdesk.news._normalize import article_id, content_hash

STORY = (
    "Kestrel Motors will close its Bramford assembly plant next spring, putting about 1,200 jobs "
    "at risk, the carmaker announced on Friday. The company said falling demand for its petrol vans "
    "and the high cost of converting the old factory to electric models had made the site unviable. "
    "Union leaders called the decision a betrayal and said they would ask the regional government to step in."
)
# The same wire story, lightly rewritten by another outlet.
STORY_REWRITE = (
    "Kestrel Motors will shut its Bramford assembly plant next spring, putting about 1,200 jobs "
    "at risk, the carmaker said on Friday. The company said falling demand for its petrol vans "
    "and the high cost of converting the old factory to electric models had made the site unviable. "
    "Union leaders called the decision a betrayal and said they would ask the regional government to step in. "
    "Local shops fear a knock-on effect."
)
OTHER = (
    "The central bank kept its main interest rate unchanged on Tuesday, saying inflation was falling "
    "but wages were still rising quickly. Two committee members voted for a cut, and economists expect "
    "the first reduction in the summer after more data on prices arrives."
)


def make(source: str, title: str, text: str, *, url: str = "", guid: str | None = None) -> Article:
    return Article(
        id=article_id(source=source, guid=guid, url=url, title=title),
        source=source,
        url=url,
        title=title,
        text=text,
        guid=guid,
        content_hash=content_hash(title, text),
        sources=[source],
    )


def test_new_articles_are_returned_and_kept() -> None:
    d = Deduplicator()
    a = make("A", "Plant closes", STORY, url="https://a.test/1")
    b = make("A", "Rates held", OTHER, url="https://a.test/2")
    assert d.add(a) is a
    assert d.add(b) is b
    assert d.kept == [a, b]
    assert len(d) == 2


def test_exact_duplicate_by_canonical_url_merges_sources() -> None:
    d = Deduplicator()
    kept = make("A", "Plant closes", STORY, url="https://news.test/story?utm_source=a")
    dup = make("B", "Different headline", OTHER, url="https://NEWS.test/story#top")
    assert d.add(kept) is kept
    assert d.add(dup) is None
    assert kept.sources == ["A", "B"]
    assert d.find_duplicate(dup) is not None and d.find_duplicate(dup).kind == "url"  # type: ignore[union-attr]


def test_exact_duplicate_by_global_guid() -> None:
    d = Deduplicator()
    kept = make("A", "One", STORY, guid="urn:uuid:1234", url="https://a.test/x")
    dup = make("B", "Two", OTHER, guid="urn:uuid:1234", url="https://b.test/y")
    d.add(kept)
    assert d.add(dup) is None
    assert kept.sources == ["A", "B"]


def test_local_guids_only_match_within_their_source() -> None:
    d = Deduplicator()
    a1 = make("A", "First", STORY, guid="1")
    b1 = make("B", "Unrelated", OTHER, guid="1")
    assert d.add(a1) is a1
    assert d.add(b1) is b1
    assert d.add(make("A", "First again, edited", OTHER + " extra", guid="1")) is None


def test_exact_duplicate_by_content_hash() -> None:
    d = Deduplicator()
    kept = make("A", "Plant closes!", STORY.replace(" ", "  ").upper(), url="https://a.test/1")
    dup = make("B", "plant CLOSES", STORY, url="https://b.test/9")
    d.add(kept)
    # Spacing, case and punctuation differ; normalized title+text are identical.
    assert d.find_duplicate(dup).kind == "content"  # type: ignore[union-attr]
    assert d.add(dup) is None


def test_near_duplicate_across_sources() -> None:
    assert jaccard(shingles("Plant closes " + STORY), shingles("Jobs lost " + STORY_REWRITE)) > 0.5
    d = Deduplicator()
    kept = make("Herald", "Kestrel to close Bramford plant", STORY, url="https://herald.test/k")
    dup = make("Daily", "Bramford faces job losses", STORY_REWRITE, url="https://daily.test/b")
    assert d.add(kept) is kept
    match = d.find_duplicate(dup)
    assert match is not None and match.kind == "near" and match.kept is kept
    assert 0.5 <= match.similarity < 1.0
    assert d.add(dup) is None
    assert kept.sources == ["Herald", "Daily"]
    # A third source carrying it is listed once, and repeats do not duplicate names.
    assert (
        d.add(make("Wire", "Kestrel closure", STORY_REWRITE + " More.", url="https://w.test/1"))
        is None
    )
    assert (
        d.add(
            make("Daily", "Bramford again", STORY_REWRITE + " Again.", url="https://daily.test/c")
        )
        is None
    )
    assert kept.sources == ["Herald", "Daily", "Wire"]


def test_different_stories_are_not_near_duplicates() -> None:
    d = Deduplicator()
    assert d.add(make("A", "Plant", STORY, url="https://a.test/1")) is not None
    assert d.add(make("B", "Rates", OTHER, url="https://b.test/1")) is not None
    assert len(d) == 2


def test_near_duplicates_within_one_source_are_kept() -> None:
    # Templated items of one feed look alike but are separate news.
    d = Deduplicator()
    assert d.add(make("A", "Plant", STORY, url="https://a.test/1")) is not None
    assert d.add(make("A", "Plant update", STORY_REWRITE, url="https://a.test/2")) is not None


def test_short_texts_skip_near_matching() -> None:
    d = Deduplicator()
    assert (
        d.add(make("A", "Storm warning", "Heavy rain expected.", url="https://a.test/1"))
        is not None
    )
    assert (
        d.add(make("B", "Storm warning", "Heavy rain expected today.", url="https://b.test/1"))
        is not None
    )


def test_home_page_links_do_not_collapse_items() -> None:
    d = Deduplicator()
    assert d.add(make("A", "Plant", STORY, url="https://site.test/")) is not None
    assert d.add(make("A", "Rates", OTHER, url="https://site.test")) is not None


def test_seed_then_incremental() -> None:
    stored = make("Herald", "Kestrel to close Bramford plant", STORY, url="https://herald.test/k")
    d = Deduplicator()
    d.seed([stored, make("X", "Rates", OTHER, url="https://x.test/r")])
    assert len(d) == 2
    # Articles arriving later, source by source, are checked against the seeded ones.
    assert (
        d.add(make("Daily", "Bramford job losses", STORY_REWRITE, url="https://daily.test/b"))
        is None
    )
    assert (
        d.add(make("Herald", "Kestrel again", "x", url="https://herald.test/k?utm_medium=rss"))
        is None
    )
    fresh = make(
        "Daily", "New story", "A completely different event happened in another town today."
    )
    assert d.add(fresh) is fresh
    assert stored.sources == ["Herald", "Daily"]


def test_add_fills_missing_sources() -> None:
    art = make("A", "t", STORY)
    art.sources = []
    d = Deduplicator()
    assert d.add(art) is art
    assert art.sources == ["A"]


def test_threshold_is_respected() -> None:
    strict = Deduplicator(threshold=0.95)
    strict.add(make("A", "Plant", STORY, url="https://a.test/1"))
    assert strict.add(make("B", "Plant", STORY_REWRITE, url="https://b.test/1")) is not None


def test_add_many_says_what_each_article_repeats() -> None:
    from newsdesk.news._dedup import Duplicate

    d = Deduplicator()
    kept = make("A", "Plant closes", STORY, url="https://a.test/1")
    batch = [
        kept,
        make("B", "Plant to shut", STORY_REWRITE, url="https://b.test/9"),  # near, other source
        make("C", "Same link", OTHER, url="https://a.test/1"),  # exact, by URL
        make("A", "Rates held", OTHER, url="https://a.test/2"),  # new
    ]
    out = d.add_many(batch)
    assert out[0] is kept and out[3] is batch[3]
    assert isinstance(out[1], Duplicate) and out[1].kind == "near" and out[1].kept is kept
    assert out[1].similarity >= 0.5
    assert isinstance(out[2], Duplicate) and out[2].kind == "url"
    assert kept.sources == ["A", "B", "C"]
    # the same verdicts one at a time, in a fresh deduplicator
    d2 = Deduplicator()
    fresh = [make(a.source, a.title, a.text, url=a.url) for a in batch]
    assert [d2.add(a) is not None for a in fresh] == [True, False, False, True]


def test_templated_items_of_one_feed_are_all_kept_and_cost_linear_time() -> None:
    import time

    def templated(n: int, source: str = "A") -> list[Article]:
        return [
            make(
                source,
                f"Markets close higher on day {i}",
                f"The index rose {i % 90 + 1} points on day {i}. Traders said the gains were led by "
                "banks and energy companies, while technology shares were mixed and the currency "
                "was little changed against the dollar in quiet trading.",
                url=f"https://a.test/m{i}",
            )
            for i in range(n)
        ]

    def seconds(n: int) -> float:
        d = Deduplicator()
        items = templated(n)
        t0 = time.perf_counter()
        out = d.add_many(items)
        took = time.perf_counter() - t0
        assert all(isinstance(o, Article) for o in out)  # one feed's look-alikes are news
        return took

    seconds(200)  # warm-up
    small, big = seconds(500), seconds(4000)
    # every item lands in the same LSH buckets; same-source candidates must not be visited,
    # or 8x the items cost 64x the time
    assert big < small * 8 * 3, (small, big)
    # and another source's copy of one of them is still found
    d = Deduplicator()
    d.add_many(templated(300))
    original = templated(300)[123]
    copy = make(
        "B", original.title, original.text + " Officials confirmed.", url="https://b.test/c"
    )
    found = d.find_duplicate(copy)
    assert found is not None and found.kind == "near" and found.kept.id == original.id
