"""The SQLite store: every method, model round-trips, two processes' view, and a real SIGKILL."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from newsdesk._exceptions import StoreError
from newsdesk.news._models import Article, ArticleAnalysis, Entities, Source
from newsdesk.news._store import (
    SCHEMA_VERSION,
    RunRecord,
    SourceHealth,
    Store,
    StoredAnalysis,
)

pytestmark = pytest.mark.timeout(30)

MODEL = "local/test"
PROMPT = "p1"


@pytest.fixture
def store() -> Iterator[Store]:
    with Store() as s:
        yield s


def art(
    n: int | str,
    *,
    source: str = "Meridian",
    title: str | None = None,
    sources: list[str] | None = None,
    published: datetime | None = None,
    text: str = "body",
) -> Article:
    return Article(
        id=f"id-{n}",
        source=source,
        url=f"https://example.test/{n}",
        title=title or f"Title {n}",
        text=text,
        published=published,
        content_hash=f"hash-{n}-{text}",
        sources=sources if sources is not None else [source],
    )


def analysis(topic: str = "business", summary: str = "Something happened.") -> ArticleAnalysis:
    return ArticleAnalysis.model_validate(
        {"summary": summary, "topic": topic, "tone": "neutral", "sentiment": 0.0}
    )


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid no longer names a process
    return proc.pid


# ---- opening -------------------------------------------------------------------------------


def test_default_path_is_under_newsdesk_home_with_the_right_pragmas(home: Path) -> None:
    with Store() as s:
        assert s.path == home / "data" / "newsdesk.db"
        assert s.path.is_file()
        conn = s._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 1


def test_explicit_path_creates_parent_dirs(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "news.db"
    with Store(str(path)) as s:
        assert s.path == path
    assert path.is_file()


def test_reopen_keeps_data_and_does_not_remigrate(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Store(path) as s:
        s.upsert_article(art(1))
    with Store(path) as s:
        assert s.get_article("id-1") == art(1)


def test_unwritable_path_under_a_regular_file_is_a_clear_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "plain-file"
    blocker.write_text("not a directory")
    for path in (blocker / "newsdesk.db", blocker / "sub" / "newsdesk.db"):
        with pytest.raises(StoreError) as err:
            Store(path)
        message = str(err.value)
        assert "\n" not in message
        assert str(blocker) in message and "store directory" in message


def test_corrupt_file_is_a_clear_store_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.db"
    path.write_bytes(b"this is definitely not sqlite " * 200)
    with pytest.raises(StoreError, match="corrupt or not a newsdesk database") as err:
        Store(path)
    assert str(path) in str(err.value)


def test_store_from_a_newer_newsdesk_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        Store(path)


def test_closed_store_raises_store_error(tmp_path: Path) -> None:
    with Store(tmp_path / "c.db") as s:
        pass
    s.close()  # closing twice is harmless
    with pytest.raises(StoreError):
        s.get_article("id-1")


# ---- articles ------------------------------------------------------------------------------


def test_article_round_trip(store: Store) -> None:
    full = Article(
        id="abc",
        source="Meridian",
        url="https://example.test/a",
        title="Ünïcode title",
        text="Long text.\nSecond line.",
        published=datetime(2026, 3, 1, 14, 30, tzinfo=timezone(timedelta(hours=2))),
        author="A. Writer",
        language="en",
        guid="guid-1",
        content_hash="h",
        sources=["Meridian", "Harbor"],
    )
    store.upsert_article(full)
    got = store.get_article("abc")
    assert got == full
    assert got is not None and got.published == datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    assert store.get_article("missing") is None


def test_upsert_updates_fields_and_merges_sources(store: Store) -> None:
    store.upsert_article(art(1, source="A", sources=["A"]))
    store.upsert_article(art(1, source="B", sources=["B", "C"], title="New title"))
    store.upsert_article(art(1, source="A", sources=["A"]))  # seen again: nothing duplicated
    got = store.get_article("id-1")
    assert got is not None
    assert got.sources == ["A", "B", "C"]
    store.upsert_article(art(1, source="B", sources=[], title="Newest"))
    got = store.get_article("id-1")
    assert got is not None and got.title == "Newest" and got.source == "B"
    assert got.sources == ["A", "B", "C"]


def test_an_article_always_lists_its_own_source(store: Store) -> None:
    store.upsert_article(art(2, source="Solo", sources=[]))
    got = store.get_article("id-2")
    assert got is not None and got.sources == ["Solo"]


def test_recent_articles_only_returns_recently_seen(store: Store) -> None:
    store.upsert_article(art(1))
    store.upsert_article(art(2))
    old = (datetime.now(UTC) - timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    store._conn.execute(
        "UPDATE articles SET first_seen = ?, last_seen = ? WHERE id = 'id-1'", (old, old)
    )
    assert [a.id for a in store.recent_articles()] == ["id-2"]
    assert [a.id for a in store.recent_articles(days=30)] == ["id-1", "id-2"]
    assert all(isinstance(a, Article) for a in store.recent_articles(days=30))


# ---- analyses ------------------------------------------------------------------------------


def test_analysis_round_trip(store: Store) -> None:
    article = art(1, sources=["Meridian", "Harbor"], published=datetime(2026, 1, 2, tzinfo=UTC))
    result = ArticleAnalysis(
        summary="The plant will close.",
        topic="business",
        tone="negative",
        sentiment=-0.6,
        key_facts=["1,200 jobs", "next spring"],
        entities=Entities(people=["Ann"], organizations=["Kestrel Motors"], places=["Bramford"]),
    )
    vec = bytes(range(16))
    before = datetime.now(UTC)
    store.save_analysis(
        article,
        result,
        model=MODEL,
        prompt_version=PROMPT,
        run_id="r1",
        story="story-1",
        topic_by="embedding",
        vector=vec,
        latency=1.5,
    )
    got = store.get_analysis(article.content_hash, MODEL, PROMPT)
    assert isinstance(got, StoredAnalysis)
    assert got.analysis == result
    assert (got.article_id, got.title, got.url, got.source) == (
        article.id,
        article.title,
        article.url,
        article.source,
    )
    assert got.sources == ["Meridian", "Harbor"]
    assert got.published == article.published
    assert (got.model, got.prompt_version, got.content_hash) == (
        MODEL,
        PROMPT,
        article.content_hash,
    )
    assert (got.story, got.topic_by, got.run_id, got.latency) == ("story-1", "embedding", "r1", 1.5)
    assert got.vector == vec
    assert before <= got.created_at <= datetime.now(UTC)
    # the article came along in the same transaction
    assert store.get_article(article.id) == article

    # JSON leaves the vector out, and the rest round-trips
    dumped = got.model_dump(mode="json")
    assert "vector" not in dumped
    assert "vector" not in json.loads(got.model_dump_json())
    again = StoredAnalysis.model_validate_json(got.model_dump_json())
    assert again == got.model_copy(update={"vector": None})


def test_analysis_is_keyed_by_hash_model_and_prompt(store: Store) -> None:
    article = art(1)
    store.save_analysis(article, analysis(), model=MODEL, prompt_version=PROMPT, run_id=None)
    assert store.get_analysis(article.content_hash, MODEL, PROMPT) is not None
    assert store.get_analysis(article.content_hash, "other-model", PROMPT) is None
    assert store.get_analysis(article.content_hash, MODEL, "p2") is None
    assert store.get_analysis("other-hash", MODEL, PROMPT) is None
    # saving again under the same key replaces
    store.save_analysis(
        article, analysis("science"), model=MODEL, prompt_version=PROMPT, run_id=None
    )
    got = store.get_analysis(article.content_hash, MODEL, PROMPT)
    assert got is not None and got.analysis.topic == "science"
    assert len(store.query()) == 1


def test_an_analysis_that_no_longer_validates_is_a_miss(store: Store) -> None:
    article = art(1)
    store.save_analysis(article, analysis(), model=MODEL, prompt_version=PROMPT, run_id=None)
    store._conn.execute("UPDATE analyses SET analysis = json_set(analysis, '$.sentiment', 7)")
    assert store.get_analysis(article.content_hash, MODEL, PROMPT) is None
    assert store.query() == []


@pytest.fixture
def filled(store: Store) -> Store:
    day = datetime(2026, 5, 1, tzinfo=UTC)
    rows = [
        # (n, source, sources, topic, summary, title, days after `day`, story)
        (1, "A", ["A"], "business", "Plant closes.", "Kestrel shuts plant", 0, "s-kestrel"),
        (2, "B", ["B", "A"], "business", "Rates unchanged.", "Bank holds rates", 1, None),
        (3, "C", ["C"], "science", "Comet found 100% by chance.", "New comet", 2, None),
        (4, "C", ["C"], "sports", "Team wins.", "Final score", 3, "s-kestrel"),
    ]
    for n, source, sources, topic, summary, title, days, story in rows:
        store.save_analysis(
            art(
                n, source=source, sources=sources, title=title, published=day + timedelta(days=days)
            ),
            analysis(topic, summary),
            model=MODEL,
            prompt_version=PROMPT,
            run_id=None,
            story=story,
        )
    return store


def ids(results: list[StoredAnalysis]) -> list[str]:
    return [r.article_id for r in results]


def test_query_newest_first_and_limit(filled: Store) -> None:
    assert ids(filled.query()) == ["id-4", "id-3", "id-2", "id-1"]
    assert ids(filled.query(limit=2)) == ["id-4", "id-3"]


def test_query_filters(filled: Store) -> None:
    assert ids(filled.query(topic="business")) == ["id-2", "id-1"]
    assert ids(filled.query(topic="health")) == []
    # "A" carried id-2 too, though B was first
    assert ids(filled.query(source="A")) == ["id-2", "id-1"]
    assert ids(filled.query(source="C")) == ["id-4", "id-3"]
    assert ids(filled.query(since=datetime(2026, 5, 3, tzinfo=UTC))) == ["id-4", "id-3"]
    # a zone-aware `since` compares as the same instant
    since = datetime(2026, 5, 3, 1, tzinfo=timezone(timedelta(hours=2)))
    assert ids(filled.query(since=since)) == ["id-4", "id-3"]
    assert ids(filled.query(story="s-kestrel")) == ["id-4", "id-1"]
    # text: case-insensitive substring of title or summary; % is literal
    assert ids(filled.query(text="kestrel")) == ["id-1"]
    assert ids(filled.query(text="RATES")) == ["id-2"]
    assert ids(filled.query(text="100%")) == ["id-3"]
    assert ids(filled.query(text="0%")) == ["id-3"]
    assert ids(filled.query(text="%")) == ["id-3"]
    assert ids(filled.query(topic="business", source="B")) == ["id-2"]
    assert ids(filled.query(topic="business", text="plant", source="B")) == []


def test_query_shows_each_article_once_with_its_newest_analysis(filled: Store) -> None:
    filled.save_analysis(
        art(1, source="A", title="Kestrel shuts plant", published=datetime(2026, 5, 1, tzinfo=UTC)),
        analysis("politics", "Reanalyzed."),
        model="other-model",
        prompt_version=PROMPT,
        run_id=None,
    )
    got = filled.query()
    assert ids(got) == ["id-4", "id-3", "id-2", "id-1"]
    assert got[-1].analysis.topic == "politics" and got[-1].model == "other-model"
    assert ids(filled.query(topic="business")) == ["id-2"]


def test_articles_without_a_date_sort_by_analysis_time(store: Store) -> None:
    store.save_analysis(
        art(1, published=datetime(2000, 1, 1, tzinfo=UTC)),
        analysis(),
        model=MODEL,
        prompt_version=PROMPT,
        run_id=None,
    )
    store.save_analysis(art(2), analysis(), model=MODEL, prompt_version=PROMPT, run_id=None)
    assert ids(store.query()) == ["id-2", "id-1"]
    assert ids(store.query(since=datetime.now(UTC) - timedelta(hours=1))) == ["id-2"]


def test_vectors(store: Store) -> None:
    assert store.vectors() == ([], [])
    for n, vec in [(1, b"\x01" * 8), (2, None), (3, b"\x03" * 8)]:
        store.save_analysis(
            art(n), analysis(), model=MODEL, prompt_version=PROMPT, run_id=None, vector=vec
        )
    assert store.vectors() == (["id-1", "id-3"], [b"\x01" * 8, b"\x03" * 8])


def test_set_story(filled: Store) -> None:
    filled.set_story("id-2", "s-kestrel")
    assert ids(filled.query(story="s-kestrel")) == ["id-4", "id-2", "id-1"]
    filled.set_story("id-1", None)
    assert ids(filled.query(story="s-kestrel")) == ["id-4", "id-2"]
    got = filled.get_analysis(art(2).content_hash, MODEL, PROMPT)
    assert got is not None and got.story == "s-kestrel"


# ---- sources -------------------------------------------------------------------------------

SRC = Source(name="Meridian", url="https://meridian.test/feed.json")


def test_unknown_source_has_no_validators_or_articles(store: Store) -> None:
    assert store.source_validators(SRC.url) == (None, None)
    assert store.last_articles(SRC.url) == []
    assert store.source_health() == []


def test_source_health_counters(store: Store) -> None:
    t0 = datetime.now(UTC)
    store.record_source_error(SRC, "HTTP 503")
    store.record_source_error(SRC, "timed out after 10s")
    [health] = store.source_health()
    assert isinstance(health, SourceHealth)
    assert (health.name, health.url) == (SRC.name, SRC.url)
    assert health.consecutive_failures == 2
    assert health.last_error == "timed out after 10s"
    assert health.last_error_at is not None and health.last_error_at >= t0
    assert health.last_success is None

    store.record_source_ok(
        SRC, etag='"v1"', last_modified="Wed, 01 May 2026 10:00:00 GMT", article_ids=[]
    )
    [health] = store.source_health()
    assert health.consecutive_failures == 0
    assert health.last_success is not None and health.last_error_at is not None
    assert health.last_success >= health.last_error_at
    assert health.last_error == "timed out after 10s"  # kept as history
    assert (health.etag, health.last_modified) == ('"v1"', "Wed, 01 May 2026 10:00:00 GMT")
    assert store.source_validators(SRC.url) == ('"v1"', "Wed, 01 May 2026 10:00:00 GMT")

    # a failure after success keeps the validators for the next conditional GET
    store.record_source_error(SRC, "HTTP 500")
    [health] = store.source_health()
    assert health.consecutive_failures == 1
    assert store.source_validators(SRC.url) == ('"v1"', "Wed, 01 May 2026 10:00:00 GMT")

    # a new 200 without validators clears them (the server stopped sending them)
    store.record_source_ok(SRC, etag=None, last_modified=None, article_ids=[])
    assert store.source_validators(SRC.url) == (None, None)
    # renamed in sources.toml: same url, new name
    store.record_source_ok(
        Source(name="Meridian Daily", url=SRC.url), etag=None, last_modified=None, article_ids=[]
    )
    other = Source(name="Another", url="https://another.test/rss")
    store.record_source_error(other, "DNS")
    assert [(h.name, h.consecutive_failures) for h in store.source_health()] == [
        ("Another", 1),
        ("Meridian Daily", 0),
    ]


def test_last_articles_for_a_304(store: Store) -> None:
    a1, a2, a3 = art(1), art(2), art(3)
    for a in (a1, a2, a3):
        store.upsert_article(a)
    store.record_source_ok(
        SRC, etag='"e"', last_modified=None, article_ids=[a3.id, "never-saved", a1.id]
    )
    # the next run gets the validators, the server answers 304, the store gives last time's articles
    assert store.source_validators(SRC.url) == ('"e"', None)
    assert store.last_articles(SRC.url) == [a3, a1]
    store.record_source_ok(SRC, etag='"f"', last_modified=None, article_ids=[a2.id])
    assert store.last_articles(SRC.url) == [a2]
    # a failure does not forget them
    store.record_source_error(SRC, "HTTP 502")
    assert store.last_articles(SRC.url) == [a2]


# ---- runs ----------------------------------------------------------------------------------


def test_runs_lifecycle(store: Store) -> None:
    first = store.start_run(model=MODEL, sources=["A", "B"])
    assert re.fullmatch(r"\d{8}T\d{6}-[0-9a-f]{6}", first)
    second = store.start_run(model="other", sources=[])
    assert second != first

    runs = store.list_runs()
    assert [r.id for r in runs] == [second, first]  # newest first
    by_id = {r.id: r for r in runs}
    assert isinstance(by_id[first], RunRecord)
    assert by_id[first].status == "running"  # this process is alive
    assert by_id[first].finished_at is None and by_id[first].pid == os.getpid()
    assert by_id[first].sources == ["A", "B"] and by_id[first].model == MODEL

    stats = {"analyzed": 3, "cost": 0.25, "failures": {"B": "HTTP 500"}}
    store.finish_run(first, stats)
    done = {r.id: r for r in store.list_runs()}[first]
    assert done.status == "finished" and done.stats == stats
    assert done.finished_at is not None and done.finished_at >= done.started_at
    assert RunRecord.model_validate_json(done.model_dump_json()) == done

    assert len(store.list_runs(limit=1)) == 1
    with pytest.raises(StoreError, match="no run"):
        store.finish_run("nope", {})


def test_run_ids_sort_by_start_time(store: Store) -> None:
    run = store.start_run(model=MODEL, sources=[])
    earlier = "20000101T000000-000000"
    store._conn.execute(
        "INSERT INTO runs (id, started_at, model) VALUES (?, '2000-01-01T00:00:00.000000Z', 'm')",
        (earlier,),
    )
    assert earlier < run
    assert [r.id for r in store.list_runs()] == [run, earlier]


def test_unfinished_run_of_a_dead_process_is_interrupted(store: Store) -> None:
    dead = store.start_run(model=MODEL, sources=[])
    alive = store.start_run(model=MODEL, sources=[])
    store._conn.execute("UPDATE runs SET pid = ? WHERE id = ?", (_dead_pid(), dead))
    store._conn.execute("UPDATE runs SET pid = ? WHERE id = ?", (os.getppid(), alive))
    status = {r.id: r.status for r in store.list_runs()}
    assert status == {dead: "interrupted", alive: "running"}


# ---- several users of one file -------------------------------------------------------------


def test_two_stores_on_one_file_see_each_others_writes(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    with Store(path) as one, Store(path) as two:
        one.upsert_article(art(1, source="A"))
        assert two.get_article("id-1") == art(1, source="A")
        two.upsert_article(art(1, source="B"))
        got = one.get_article("id-1")
        assert got is not None and got.sources == ["A", "B"]

        run = one.start_run(model=MODEL, sources=["A"])
        two.save_analysis(art(2), analysis(), model=MODEL, prompt_version=PROMPT, run_id=run)
        assert one.get_analysis(art(2).content_hash, MODEL, PROMPT) is not None
        two.finish_run(run, {"analyzed": 1})
        assert one.list_runs()[0].status == "finished"

        # both writing at once from threads: busy timeout + IMMEDIATE, no "database is locked"
        errors: list[BaseException] = []

        def writer(s: Store, prefix: str) -> None:
            try:
                for i in range(40):
                    s.save_analysis(
                        art(f"{prefix}{i}"),
                        analysis(),
                        model=MODEL,
                        prompt_version=PROMPT,
                        run_id=run,
                    )
                    s.upsert_article(art("shared", source=prefix, sources=[prefix]))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [
            threading.Thread(target=writer, args=(s, p))
            for s, p in [(one, "x"), (two, "y"), (one, "z"), (two, "w")]
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(one.query(limit=None)) == 1 + 4 * 40
        shared = two.get_article("id-shared")
        assert shared is not None and sorted(shared.sources) == ["w", "x", "y", "z"]


# ---- crash safety --------------------------------------------------------------------------

CRASH_SCRIPT = """
import os, signal, sys, threading
from newsdesk.news._models import Article, ArticleAnalysis
from newsdesk.news._store import Store

n = int(sys.argv[1])
store = Store()
run = store.start_run(model="m", sources=["S"])

def churn():
    # keep a writer busy so the kill can land in the middle of a transaction
    i = 0
    while True:
        store.upsert_article(Article(id=f"churn-{i}", source="S", url="u", title="t"))
        i += 1

threading.Thread(target=churn, daemon=True).start()
analysis = ArticleAnalysis(summary="s", topic="science", tone="neutral", sentiment=0.1)
for i in range(n):
    article = Article(id=f"a{i}", source="S", url=f"u{i}", title=f"t{i}", content_hash=f"h{i}", sources=["S"])
    store.save_analysis(article, analysis, model="m", prompt_version="p", run_id=run, vector=b"v" * 16)
print(run, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
print("unreachable", flush=True)
"""


def test_sigkill_mid_run_loses_no_finished_analysis(home: Path) -> None:
    n = 25
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(n)],
        env={**os.environ, "NEWSDESK_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    run_id = proc.stdout.strip()
    assert "unreachable" not in run_id and run_id

    with Store() as s:
        assert s._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        for i in range(n):
            got = s.get_analysis(f"h{i}", "m", "p")
            assert got is not None, f"analysis {i} lost"
            assert got.run_id == run_id and got.vector == b"v" * 16
        assert len(s.query(source="S", limit=None)) == n
        [run] = s.list_runs()
        assert run.id == run_id
        assert run.finished_at is None
        assert run.status == "interrupted"
