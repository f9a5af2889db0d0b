"""``newsdesk.news``'s public face: ``NewsDesk`` (options, runs, stopping, search, history), the
analysis-executor seam, and the rule that front ends use nothing else of the news package."""

from __future__ import annotations

import ast
import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import newsdesk.news
from newsdesk import ConfigError, Gateway, NewsdeskError, UnknownModelError
from newsdesk.news import (
    AnalysisJob,
    AnalysisResult,
    ArticleAnalysis,
    LocalExecutor,
    NewsDesk,
    RunDone,
    Source,
)
from tests.news.test_pipeline import answer, item, serve, words
from tests.servers.feed_server import FeedServer
from tests.servers.plugin import OpenAIServerHandle

pytestmark = pytest.mark.timeout(60)

MODEL = "openai/test-model"
SRC = Path(newsdesk.news.__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")


def desk(llm: OpenAIServerHandle, tmp_path: Path, **kw: Any) -> NewsDesk:
    return NewsDesk(
        gateway=Gateway(cache="off"),
        store=tmp_path / "news.db",
        model=MODEL,
        api_base=llm.url,
        **kw,
    )


def feed(feed_server: FeedServer, n: int, prefix: str, text: str = "") -> list[Source]:
    items = [
        item(f"{prefix} story {i}", f"{words(f'{prefix}{i}')} {text}", f"https://{prefix}.test/{i}")
        for i in range(n)
    ]
    return [Source(name=prefix, url=serve(feed_server, items))]


# --- the public surface ----------------------------------------------------------------------


def test_all_names_exist() -> None:
    for name in newsdesk.news.__all__:
        assert hasattr(newsdesk.news, name), name
    assert len(newsdesk.news.__all__) == len(set(newsdesk.news.__all__))


def test_front_ends_use_only_the_public_news_api() -> None:
    """No module of cli/, web/ or agents/ imports a private news module, nor the CLI (the CLI
    its own modules aside)."""
    bad: list[str] = []
    for part in ("cli", "web", "agents"):
        for path in sorted((SRC / part).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names: list[str] = []
                if isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                for name in names:
                    private_news = name.startswith("newsdesk.news._")
                    cli = name.startswith("newsdesk.cli") and part != "cli"
                    if private_news or cli:
                        bad.append(f"{path.relative_to(SRC)}: {name}")
    assert not bad, bad


# --- options ---------------------------------------------------------------------------------


def test_prepare_checks_options_and_model_with_one_clear_error(
    openai_server: OpenAIServerHandle, tmp_path: Path
) -> None:
    d = desk(openai_server, tmp_path)
    opts = d.prepare(["https://example.org/feed.xml"], limit=3, topic_mode="llm")
    assert opts.model == MODEL and opts.api_base == openai_server.url and opts.limit == 3
    assert [s.name for s in opts.sources] == ["example.org"]
    assert len(d.prepare().sources) == 5  # nothing named: the demo feeds
    with pytest.raises(TypeError, match="unknown run option"):
        d.prepare(limt=3)
    with pytest.raises(ConfigError, match="topic_mode must be one of auto, llm, embedding"):
        d.prepare(topic_mode="magic")
    with pytest.raises(ConfigError, match="limit must be"):
        d.prepare(limit=0)
    with pytest.raises(ConfigError, match="concurrency must be"):
        d.prepare(concurrency=0)
    with pytest.raises(UnknownModelError):
        d.prepare(model="nosuchprovider/nosuchmodel")
    with pytest.raises(ConfigError, match="source not found"):
        d.prepare(["/no/such/feed.xml"])


def test_search_wording_is_not_the_clis(tmp_path: Path) -> None:
    with NewsDesk(store=tmp_path / "s.db") as d:
        with pytest.raises(ConfigError) as exc:
            d.search(since="last tuesday")
        assert str(exc.value).startswith("since takes a date") and "--" not in str(exc.value)
        with pytest.raises(ConfigError, match="unknown topic 'weather'"):
            d.search(topic="weather")
        assert d.search(since="7d") == [] and d.history() == []


# --- runs ------------------------------------------------------------------------------------


async def test_run_streams_typed_events_and_records_the_run(
    openai_server: OpenAIServerHandle, feed_server: FeedServer, tmp_path: Path
) -> None:
    d = desk(openai_server, tmp_path)
    events = [ev async for ev in d.run(feed(feed_server, 3, "typed"), embeddings=False)]
    assert [e.event for e in events][:2] == ["run_started", "source_ok"]
    done = events[-1]
    assert isinstance(done, RunDone) and done.analyzed == 3
    (run,) = d.history()
    assert run.id == done.run_id and run.status == "finished" and run.stats["analyzed"] == 3
    found = d.search(source="typed")
    assert sorted(r.title for r, _score in found) == [f"typed story {i}" for i in range(3)]
    d.close()


async def test_leaving_the_stream_early_records_the_run_cancelled(
    openai_server: OpenAIServerHandle, feed_server: FeedServer, tmp_path: Path
) -> None:
    openai_server.control(latency=5)
    d = desk(openai_server, tmp_path)
    async with contextlib.aclosing(
        d.run(feed(feed_server, 3, "early"), embeddings=False)
    ) as stream:
        async for ev in stream:
            if ev.event == "article":
                break  # closing the stream stops the run
    (run,) = d.history()
    assert run.status == "cancelled" and run.stats["cancelled"] is True
    assert openai_server.stats()["calls"] <= 3
    d.close()


async def test_cancel_stops_the_run_keeps_what_finished_and_sends_no_done(
    openai_server: OpenAIServerHandle, feed_server: FeedServer, tmp_path: Path
) -> None:
    d = desk(openai_server, tmp_path)
    quick = feed(feed_server, 2, "quick", "[[latency:0.05]]")
    slow = feed(feed_server, 2, "slow", "[[latency:30]]")
    seen: list[Any] = []
    async for ev in d.run(quick + slow, embeddings=False, concurrency=8):
        seen.append(ev)
        if sum(e.event == "analysis" for e in seen) == 2:
            d.cancel()
    assert "done" not in [e.event for e in seen]
    assert sorted(e.source for e in seen if e.event == "analysis") == ["quick", "quick"]
    (run,) = d.history()
    assert run.status == "cancelled" and run.stats["analyzed"] == 2
    assert len(d.search()) == 2  # what finished stays
    d.close()


# --- the executor seam -----------------------------------------------------------------------


class FunctionExecutor:
    """An ``AnalysisExecutor`` backed by a function (what a queue of workers looks like to a run)."""

    def __init__(self, fn: Callable[[AnalysisJob], AnalysisResult]) -> None:
        self.fn = fn
        self.jobs: list[AnalysisJob] = []
        self.slots: list[object] = []  # the llm_slot each job came with

    async def analyze(
        self,
        job: AnalysisJob,
        on_delta: Callable[[str], None] | None = None,
        *,
        llm_slot: contextlib.AbstractAsyncContextManager[Any] | None = None,
    ) -> AnalysisResult:
        self.jobs.append(job)
        self.slots.append(llm_slot)
        if on_delta is not None:
            on_delta("thinking")
        return await self.work(job, llm_slot)

    async def work(
        self, job: AnalysisJob, llm_slot: contextlib.AbstractAsyncContextManager[Any] | None
    ) -> AnalysisResult:
        return self.fn(job)

    async def aclose(self) -> None:
        pass


def canned(job: AnalysisJob) -> AnalysisResult:
    if "refuse" in job.article.title:
        raise NewsdeskError("worker says no")
    analysis = ArticleAnalysis(
        summary=f"Remote summary of {job.article.title}",
        topic="science",
        tone="neutral",
        sentiment=0,
    )
    return AnalysisResult(
        article_id=job.article.id, analysis=analysis, model=job.model, latency=0.5
    )


async def test_an_injected_executor_does_the_analyses_and_the_run_does_the_rest(
    openai_server: OpenAIServerHandle, feed_server: FeedServer, tmp_path: Path
) -> None:
    executor = FunctionExecutor(canned)
    d = desk(openai_server, tmp_path, executor=executor)
    sources = feed(feed_server, 2, "remote") + [
        Source(
            name="no",
            url=serve(feed_server, [item("please refuse", words("refuse"), "https://no.test/1")]),
        )
    ]
    events = [ev async for ev in d.run(sources, embeddings=False, reanalyze=True)]
    assert openai_server.stats()["calls"] == 0  # nothing went to the gateway's provider
    assert {j.article.title for j in executor.jobs} == {
        "remote story 0",
        "remote story 1",
        "please refuse",
    }
    job = executor.jobs[0]
    assert job.model == MODEL and job.cache == "refresh" and job.llm_topic
    assert "sk-test" not in job.model_dump_json()  # a job never carries a key
    ready = [e for e in events if e.event == "analysis"]
    assert sorted(e.analysis.summary for e in ready) == [
        "Remote summary of remote story 0",
        "Remote summary of remote story 1",
    ]
    (failed,) = [e for e in events if e.event == "analysis_error"]
    assert failed.title == "please refuse" and failed.reason == "worker says no"
    assert [e.text for e in events if e.event == "analysis_delta"] == ["thinking"] * 3
    done = events[-1]
    assert done.analyzed == 2 and done.failed == 1 and done.sum_latency == 1.0
    assert len(d.search()) == 2  # saved by the run
    d.close()


class SlotExecutor(FunctionExecutor):
    """An executor of its own (not ``LocalExecutor``) that does its "provider" work inside the
    run's provider slot, and counts how much of it runs at once."""

    def __init__(self) -> None:
        super().__init__(canned)
        self.in_flight = self.most = 0

    async def work(
        self, job: AnalysisJob, llm_slot: contextlib.AbstractAsyncContextManager[Any] | None
    ) -> AnalysisResult:
        assert llm_slot is not None
        async with llm_slot:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            await asyncio.sleep(0.05)
            self.in_flight -= 1
        return self.fn(job)


async def test_any_executor_gets_the_runs_provider_slot(
    openai_server: OpenAIServerHandle, feed_server: FeedServer, tmp_path: Path
) -> None:
    executor = SlotExecutor()
    d = desk(openai_server, tmp_path, executor=executor)
    # The run does not hold the slot around the executor itself: if it did, the executor's own
    # ``async with`` would wait forever for the slots the run holds (the timeout would fail it).
    async with asyncio.timeout(30):
        events = [
            ev
            async for ev in d.run(
                feed(feed_server, 6, "slot"), embeddings=False, reanalyze=True, concurrency=2
            )
        ]
    assert events[-1].analyzed == 6
    assert len(executor.slots) == 6 and len({id(s) for s in executor.slots}) == 1  # the run's one
    assert executor.most == 2  # the run's concurrency bounds the executor's provider work
    d.close()


async def test_local_executor_analyzes_a_job(openai_server: OpenAIServerHandle) -> None:
    from newsdesk.news import Article

    article = Article(
        id="a1",
        source="s",
        url="https://x.test/1",
        title="Local job",
        text=f"{words('local')} {answer('Done locally', topic='health')}",
        content_hash="h1",
    )
    executor = LocalExecutor(Gateway(cache="off"))
    job = AnalysisJob(article=article, model=MODEL, api_base=openai_server.url, llm_topic=False)
    result = await executor.analyze(job)  # no embedding step: the LLM names the topic after all
    assert result.analysis.summary == "Done locally" and result.analysis.topic == "health"
    assert result.topic_by == "llm" and result.vector is None
    with pytest.raises(ConfigError, match="prompt"):
        await executor.analyze(job.model_copy(update={"prompt_version": "old"}))
    await executor.aclose()
