"""``newsdesk analyze --queue`` and ``NewsDesk(executor=QueueExecutor(...))``: the run fetches and
deduplicates, real worker processes analyze, and the run's events, JSONL and store are the same
as a local run's — each result under its article, each analysis stored once."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from newsdesk.news import AnalysisReady, NewsDesk, RunDone
from newsdesk.scale import QueueExecutor
from tests.helpers import run_cli
from tests.news.test_pipeline import answer, item, rss, unique, words
from tests.scale.conftest import MODEL, Workers
from tests.servers.feed_server import FeedServer
from tests.servers.plugin import OpenAIServerHandle
from tests.servers.redis_server import RedisProc

pytestmark = pytest.mark.timeout(600)


class QueueSetup:
    """What each test here starts from: the fake provider, the feed server, a private Redis,
    worker processes to start on it, and a directory of its own."""

    def __init__(
        self,
        llm: OpenAIServerHandle,
        feeds: FeedServer,
        redis: RedisProc,
        workers: Workers,
        tmp_path: Path,
    ) -> None:
        self.llm, self.feeds, self.redis, self.workers, self.tmp = (
            llm, feeds, redis, workers, tmp_path,
        )  # fmt: skip

    def start_workers(self, n: int = 1, concurrency: int = 2) -> None:
        for _ in range(n):
            self.workers.start(self.redis.url, concurrency=concurrency)
        self.workers.wait_ready(self.redis, n)

    def feed(self, items: list[str]) -> str:
        name = unique("q")
        self.feeds.set_feed(name, rss(items))
        return f"{self.feeds.url}/feeds/{name}"

    def answered(self, n: int, tag: str) -> list[str]:
        """``n`` items the provider answers with "TAG summary I"."""
        return [
            item(
                f"{tag} title {i}",
                f"{words(f'{tag}{i}')} {answer(f'{tag} summary {i}')}",
                f"https://q.test/{tag}/{i}",
            )
            for i in range(n)
        ]

    def analyze(self, feed: str, *args: str, timeout: float = 300) -> Any:
        """``newsdesk analyze FEED --queue URL --format jsonl`` on the fake provider, as a user
        runs it."""
        return run_cli(
            "analyze", feed, "--queue", self.redis.url, "--format", "jsonl", "--model", MODEL,
            "--api-base", self.llm.url, *args, timeout=timeout,
        )  # fmt: skip


@pytest.fixture
def q(
    openai_server: OpenAIServerHandle,
    feed_server: FeedServer,
    redis_proc: RedisProc,
    workers: Workers,
    tmp_path: Path,
) -> QueueSetup:
    return QueueSetup(openai_server, feed_server, redis_proc, workers, tmp_path)


def _events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def _stored(store: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(store) as db:
        return sorted(db.execute("SELECT article_id, model FROM analyses").fetchall())


def test_analyze_queue_cli_jsonl_and_store(q: QueueSetup) -> None:
    q.start_workers(2)
    q.llm.control(latency=0.3)
    store = q.tmp / "q.db"
    r = q.analyze(q.feed(q.answered(6, "cliq")), "--store", str(store))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    events = _events(r.stdout)
    articles = {e["id"]: e for e in events if e["event"] == "article"}
    analyses = [e for e in events if e["event"] == "analysis"]
    assert len(articles) == 6 and len(analyses) == 6
    for a in analyses:  # each result under the right article
        n = articles[a["id"]]["title"].rsplit(" ", 1)[1]
        assert a["summary"] == f"cliq summary {n}"
    assert events[-1]["event"] == "done" and events[-1]["analyzed"] == 6
    log = q.workers.all_logs()
    assert sum(log.count(aid[:12]) for aid in articles) == 6  # the workers did the analyses
    assert [aid for aid, _m in _stored(store)] == sorted(articles)  # stored once each


def test_analyze_queue_without_worker_says_so(q: QueueSetup) -> None:
    r = q.analyze(q.feed(q.answered(1, "nowq")), timeout=120)
    assert r.returncode != 0
    assert "no newsdesk worker" in r.stderr and "Traceback" not in r.stderr


async def test_news_desk_with_queue_executor(q: QueueSetup) -> None:
    q.start_workers(1)
    feed = q.feed(q.answered(3, "libq"))
    executor = QueueExecutor(q.redis.url)
    async with NewsDesk(
        store=q.tmp / "lib.db", executor=executor, model=MODEL, api_base=q.llm.url
    ) as desk:
        events = [ev async for ev in desk.run([feed])]
    await executor.aclose()
    ready = [e for e in events if isinstance(e, AnalysisReady)]
    assert sorted(e.analysis.summary for e in ready) == [f"libq summary {i}" for i in range(3)]
    assert isinstance(events[-1], RunDone) and events[-1].analyzed == 3
    assert len(_stored(q.tmp / "lib.db")) == 3


def test_analyze_queue_deadline_cancels_what_is_left(q: QueueSetup) -> None:
    # Six slots on the worker: every job starts at once; two answer, four hang.
    q.start_workers(1, concurrency=6)
    hangs = [
        item(f"dlq hangs {i}", f"{words(f'dlqh{i}')} [[hang]]", f"https://q.test/dlqh/{i}")
        for i in range(4)
    ]
    store = q.tmp / "dl.db"
    r = q.analyze(q.feed(q.answered(2, "dlq") + hangs), "--store", str(store), "--deadline", "20")
    assert r.returncode == 0, r.stderr  # some analyses finished: not a failed run
    assert "Traceback" not in r.stderr
    events = _events(r.stdout)
    done = events[-1]
    assert done["event"] == "done" and done["analyzed"] == 2 and done["failed"] == 4, (
        r.stdout,
        q.workers.all_logs(),
    )
    # The same report as a local run: each article once, the unfinished ones by the deadline.
    titles = {e["id"]: e["title"] for e in events if e["event"] == "article"}
    ended = {e["id"]: e for e in events if e["event"] in ("analysis", "analysis_error")}
    assert sorted(ended) == sorted(titles) and len(titles) == 6
    for aid, e in ended.items():
        if "hangs" not in titles[aid]:
            assert e["event"] == "analysis" and e["summary"].startswith("dlq summary")
        else:
            assert e["event"] == "analysis_error" and e["reason"] == "deadline reached (20 s)"
    assert done["wall"] < 20 + 30, done["wall"]  # bounded by the deadline, not the hangs
    # What finished is stored, once; the rest is not.
    with sqlite3.connect(store) as db:
        stored = db.execute("SELECT article_id FROM analyses").fetchall()
    assert sorted(a for (a,) in stored) == sorted(a for a in titles if "hangs" not in titles[a])
    # The hanging jobs were stopped on the worker: none is left running in the queue.
    client = q.redis.client()
    prefix = "streaq:newsdesk-analysis"
    deadline = time.monotonic() + 20
    while client.scard(f"{prefix}:index:running") or client.scard(f"{prefix}:aborted"):
        assert time.monotonic() < deadline, q.workers.all_logs()
        time.sleep(0.2)
    client.close()
