"""``newsdesk analyze --queue`` and ``NewsDesk(executor=QueueExecutor(...))``: the run fetches and
deduplicates, real worker processes analyze, and the run's events, JSONL and store are the same
as a local run's — each result under its article, each analysis stored once."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from newsdesk.news import AnalysisReady, NewsDesk, RunDone
from newsdesk.scale import QueueExecutor
from tests.helpers import run_cli
from tests.news.test_pipeline import answer, item, rss, unique, words
from tests.scale.conftest import MODEL, RedisProc, Workers
from tests.servers.feed_server import FeedServer
from tests.servers.plugin import OpenAIServerHandle

pytestmark = pytest.mark.timeout(600)


def _feed(feed_server: FeedServer, n: int, tag: str) -> str:
    name = unique(tag)
    items = [
        item(
            f"{tag} title {i}",
            f"{words(f'{tag}{i}')} {answer(f'{tag} summary {i}')}",
            f"https://q.test/{tag}/{i}",
        )
        for i in range(n)
    ]
    feed_server.set_feed(name, rss(items))
    return f"{feed_server.url}/feeds/{name}"


def _stored(store: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(store) as db:
        return sorted(db.execute("SELECT article_id, model FROM analyses").fetchall())


def test_analyze_queue_cli_jsonl_and_store(
    openai_server: OpenAIServerHandle,
    feed_server: FeedServer,
    redis_proc: RedisProc,
    workers: Workers,
    tmp_path: Path,
) -> None:
    workers.start(redis_proc.url)
    workers.start(redis_proc.url)
    workers.wait_ready(redis_proc, 2)
    openai_server.control(latency=0.3)
    feed = _feed(feed_server, 6, "cliq")
    store = tmp_path / "q.db"
    r = run_cli(
        "analyze",
        feed,
        "--queue",
        redis_proc.url,
        "--format",
        "jsonl",
        "--model",
        MODEL,
        "--api-base",
        openai_server.url,
        "--store",
        str(store),
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    articles = {e["id"]: e for e in events if e["event"] == "article"}
    analyses = [e for e in events if e["event"] == "analysis"]
    assert len(articles) == 6 and len(analyses) == 6
    for a in analyses:  # each result under the right article
        n = articles[a["id"]]["title"].rsplit(" ", 1)[1]
        assert a["summary"] == f"cliq summary {n}"
    assert events[-1]["event"] == "done" and events[-1]["analyzed"] == 6
    log = workers.all_logs()
    assert sum(log.count(aid[:12]) for aid in articles) == 6  # the workers did the analyses
    assert [aid for aid, _m in _stored(store)] == sorted(articles)  # stored once each


def test_analyze_queue_without_worker_says_so(
    redis_proc: RedisProc, feed_server: FeedServer, openai_server: OpenAIServerHandle
) -> None:
    feed = _feed(feed_server, 1, "nowq")
    r = run_cli(
        "analyze",
        feed,
        "--queue",
        redis_proc.url,
        "--format",
        "jsonl",
        "--model",
        MODEL,
        "--api-base",
        openai_server.url,
        timeout=120,
    )
    assert r.returncode != 0
    assert "no newsdesk worker" in r.stderr and "Traceback" not in r.stderr


async def test_news_desk_with_queue_executor(
    openai_server: OpenAIServerHandle,
    feed_server: FeedServer,
    redis_proc: RedisProc,
    workers: Workers,
    tmp_path: Path,
) -> None:
    workers.start(redis_proc.url)
    workers.wait_ready(redis_proc, 1)
    feed = _feed(feed_server, 3, "libq")
    executor = QueueExecutor(redis_proc.url)
    async with NewsDesk(
        store=tmp_path / "lib.db", executor=executor, model=MODEL, api_base=openai_server.url
    ) as desk:
        events = [ev async for ev in desk.run([feed])]
    await executor.aclose()
    ready = [e for e in events if isinstance(e, AnalysisReady)]
    assert sorted(e.analysis.summary for e in ready) == [f"libq summary {i}" for i in range(3)]
    assert isinstance(events[-1], RunDone) and events[-1].analyzed == 3
    assert len(_stored(tmp_path / "lib.db")) == 3


def test_analyze_queue_deadline_cancels_what_is_left(
    openai_server: OpenAIServerHandle,
    feed_server: FeedServer,
    redis_proc: RedisProc,
    workers: Workers,
    tmp_path: Path,
) -> None:
    # Six slots on the worker: every job starts at once; two answer, four hang.
    workers.start(redis_proc.url, concurrency=6)
    workers.wait_ready(redis_proc, 1)
    name = unique("dlq")
    items = [
        item(
            f"dlq quick {i}",
            f"{words(f'dlq{i}')} {answer(f'dlq summary {i}')}",
            f"https://q.test/dlq/{i}",
        )
        for i in range(2)
    ] + [
        item(f"dlq hangs {i}", f"{words(f'dlqh{i}')} [[hang]]", f"https://q.test/dlqh/{i}")
        for i in range(4)
    ]
    feed_server.set_feed(name, rss(items))
    store = tmp_path / "dl.db"
    r = run_cli(
        "analyze",
        f"{feed_server.url}/feeds/{name}",
        "--queue",
        redis_proc.url,
        "--format",
        "jsonl",
        "--model",
        MODEL,
        "--api-base",
        openai_server.url,
        "--store",
        str(store),
        "--deadline",
        "20",
        timeout=300,
    )
    assert r.returncode == 0, r.stderr  # some analyses finished: not a failed run
    assert "Traceback" not in r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    done = events[-1]
    assert done["event"] == "done" and done["analyzed"] == 2 and done["failed"] == 4, (
        r.stdout,
        workers.all_logs(),
    )
    # The same report as a local run: each article once, the unfinished ones by the deadline.
    titles = {e["id"]: e["title"] for e in events if e["event"] == "article"}
    ended = {e["id"]: e for e in events if e["event"] in ("analysis", "analysis_error")}
    assert sorted(ended) == sorted(titles) and len(titles) == 6
    for aid, e in ended.items():
        if "quick" in titles[aid]:
            assert e["event"] == "analysis" and e["summary"].startswith("dlq summary")
        else:
            assert e["event"] == "analysis_error" and e["reason"] == "deadline reached (20 s)"
    assert done["wall"] < 20 + 30, done["wall"]  # bounded by the deadline, not the hangs
    # What finished is stored, once; the rest is not.
    with sqlite3.connect(store) as db:
        stored = db.execute("SELECT article_id FROM analyses").fetchall()
    assert sorted(a for (a,) in stored) == sorted(a for a in titles if "quick" in titles[a])
    # The hanging jobs were stopped on the worker: none is left running in the queue.
    client = redis_proc.client()
    prefix = "streaq:newsdesk-analysis"
    deadline = time.monotonic() + 20
    while client.scard(f"{prefix}:index:running") or client.scard(f"{prefix}:aborted"):
        assert time.monotonic() < deadline, workers.all_logs()
        time.sleep(0.2)
    client.close()
