"""The news pipeline: sources in, one async stream of typed events out.

Fetching and analysis overlap: each source is fetched in its own task, and each of its new
articles is handed to analysis the moment the source is parsed — no waiting for the other
sources. Results are emitted in completion order, each carrying its own article's id, title and
URL (never matched up by position). A failed source or analysis is reported once, with its
reason, and the run goes on. Every finished analysis is committed to the store before its event
goes out, so a killed run loses nothing and the next run reuses it.

``NewsRun`` is one run, in named steps; its parts can be swapped: the ``Fetcher``, the store (a
``RunStore``; a SQLite ``Store`` is wrapped in ``AsyncStore``) and the ``AnalysisExecutor``
(in-process by default; a queue of remote workers implements the same protocol).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import SecretStr

from newsdesk._client import Gateway
from newsdesk._exceptions import NewsdeskError, SourceError
from newsdesk.news._analyze import AnalysisResult
from newsdesk.news._dedup import Deduplicator, Duplicate
from newsdesk.news._embedding import Embedding, load_embedding
from newsdesk.news._events import (
    AnalysisDelta,
    AnalysisFailed,
    AnalysisReady,
    ArticleFound,
    DigestReady,
    Event,
    RunDone,
    RunStarted,
    SourceFailed,
    SourceOk,
)
from newsdesk.news._executor import AnalysisExecutor, AnalysisJob, LocalExecutor
from newsdesk.news._feeds import ParsedFeed, open_feed
from newsdesk.news._fetch import Fetcher, FetchResult, Validators
from newsdesk.news._models import Article, ArticleAnalysis, Source
from newsdesk.news._prompt import PROMPT_VERSION
from newsdesk.news._run_store import AsyncStore, RunStore
from newsdesk.news._store import Store

TopicMode = Literal["auto", "llm", "embedding"]

# Articles deduplicated per worker-thread call: big enough for numpy to batch the MinHash work,
# small enough that a run stops soon after ``limit`` new articles are found.
DEDUP_CHUNK = 512


@dataclass
class PipelineOptions:
    sources: list[Source]
    model: str
    api_base: str | None = None
    concurrency: int = 4
    fetch_concurrency: int = 8
    fetch_timeout: float | None = None
    full_text: bool = False
    digest: bool = False
    limit: int | None = None
    lang: str | None = None
    topic_mode: TopicMode = "auto"
    deltas: bool = True
    reanalyze: bool = False
    embeddings: bool = True
    deadline: float | None = None  # seconds for the whole run; then what is left is reported
    request_timeout: float | None = None  # seconds for one provider attempt (None: Request's)
    retries: int | None = None  # provider retries per analysis (None: Request's default)


def wants_llm_topic(mode: TopicMode, model: str, have_embedding: bool) -> bool:
    """Who names the topic. "auto": the embedding classifier for the embedded model (its topics
    are barely above chance), the LLM for any other; without the embedding step, the LLM."""
    if mode == "llm" or not have_embedding:
        return True
    if mode == "embedding":
        return False
    return not model.startswith("local/")


class NewsRun:
    """One pipeline run. ``events()`` yields its typed events; ``cancel()`` stops it (from any
    thread), and the stream then ends without ``done``; the run record is closed either way."""

    def __init__(
        self,
        options: PipelineOptions,
        *,
        gateway: Gateway,
        store: RunStore | Store | None = None,
        fetcher: Fetcher | None = None,
        executor: AnalysisExecutor | None = None,
        allow_private: bool = True,
        api_key: SecretStr | None = None,
    ) -> None:
        self.options = options
        self._allow_private = allow_private  # False: the fetcher refuses private addresses
        self._api_key = api_key
        self.gateway = gateway
        self.store: RunStore | None = AsyncStore(store) if isinstance(store, Store) else store
        self._fetcher = fetcher
        self._executor = executor
        self._owned: list[Callable[[], Coroutine[Any, Any, None]]] = []  # closed by the run
        # None on the queue: every task of the run has finished, or the run was stopped
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dedup = Deduplicator()
        self._embedding: Embedding | None = None
        self._parts: asyncio.Task[None] | None = None  # the embedding step and the executor
        self._warm: asyncio.Task[Any] | None = None  # LiteLLM's import, off the event loop
        self._llm_topic = True
        self._budget = options.limit  # new articles still to analyze (None: no limit)
        self._slots = asyncio.Semaphore(options.concurrency)
        # Articles wait here, per source, until one of at most ``_max_analyzing`` analysis tasks
        # takes them: a 10,000-article run keeps a bounded number of tasks (and their requests)
        # alive, not one per article. Taken round-robin across sources, so a source that
        # answers late is not queued behind another's backlog.
        self._backlog: dict[str, collections.deque[Article]] = {}
        self._analyzing = 0
        self._max_analyzing = max(64, 4 * options.concurrency)
        # kept for the digest only: a long run without one must not grow with its articles
        self._finished: list[tuple[Article, ArticleAnalysis]] = []
        self._stopped = False
        self._pending: dict[str, Article] = {}  # handed to analysis, not reported yet
        self._fetching: dict[str, Source] = {}  # sources not reported yet
        self._deadline_hit = False
        self._feed_titles: dict[str, str] = {}  # source name -> the feed's own title
        self.run_id = ""
        self.done = RunDone(run_id="")  # the counters, filled in as the run goes; the last event

    # ---- the stream -----------------------------------------------------------------------

    async def events(self) -> AsyncGenerator[Event, None]:
        """Every event of the run, in completion order, ``run_started`` first and ``done`` last."""
        started = time.perf_counter()
        self._loop = asyncio.get_running_loop()
        await self._start()
        completed = False
        try:
            yield RunStarted(
                run_id=self.run_id, sources=self._source_names(), model=self.options.model
            )
            await self._prepare()
            async for event in self._stream():
                yield event
            completed = not self._stopped
        finally:
            await self._close()
            if not completed:
                await self._record_stopped(started)
        if completed:
            yield await self._finish(started)

    def cancel(self) -> None:
        """Stop the run: what is in flight is cancelled, what finished stays stored."""
        if self._loop is None or self._loop.is_closed():
            self._stopped = True
            return
        self._loop.call_soon_threadsafe(self._stop)

    def _stop(self) -> None:
        self._stopped = True
        self._queue.put_nowait(None)

    async def _stream(self) -> AsyncIterator[Event]:
        if self._stopped:
            return
        await self._seed_stored()
        for source in self.options.sources:
            self._spawn(self.take_source(source))
        if not self._tasks:
            return
        loop = asyncio.get_running_loop()
        deadline = self.options.deadline
        # counted from the first fetch: loading the embedding step is start-up, not the run's work
        end = None if deadline is None else loop.time() + deadline
        while True:
            try:
                left = None if end is None else max(0.0, end - loop.time())
                event = await asyncio.wait_for(self._queue.get(), left)
            except TimeoutError:
                async for late in self._at_deadline():
                    yield late
                return
            if event is None:
                break
            yield event
        if self.options.digest and self._finished and not self._stopped:
            async for digest in _digests(self._finished, self.gateway, self.options):
                yield digest

    async def _seed_stored(self) -> None:
        """The copies these sources' stories were analyzed under last time, so a syndicated
        story keeps the copy that was analyzed whichever source is parsed first (#12 item 9)."""
        if self.store is None or self.options.reanalyze:
            return
        stored: list[Article] = []
        for source in self.options.sources:
            for article in await self.store.last_articles(source.url):
                if await self.store.get_analysis(
                    article.content_hash, self.options.model, PROMPT_VERSION
                ):
                    stored.append(article)
        self._dedup.seed_stored(stored)

    async def _at_deadline(self) -> AsyncIterator[Event]:
        """Stop the work in flight; what finished stays, and each source and article left
        unfinished is reported once (``deadline reached``), so ``done`` counts them."""
        self._deadline_hit = True
        sources, articles = list(self._fetching.values()), list(self._pending.values())
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        while not self._queue.empty():  # what finished just before the deadline goes out first
            event = self._queue.get_nowait()
            if event is not None:
                yield event
        reason = f"deadline reached ({self.options.deadline:g} s)"
        for source in sources:
            self._source_failed(source, reason)
        for article in articles:
            self._analysis_failed(article, reason)
        while not self._queue.empty():
            event = self._queue.get_nowait()
            if event is not None:
                yield event

    def _emit(self, event: Event) -> None:
        self._queue.put_nowait(event)

    def _feed_analyses(self) -> None:
        while self._backlog and self._analyzing < self._max_analyzing:
            if self._deadline_hit or self._stopped:
                return  # what is left is reported by the deadline / stop, not analyzed
            name = next(iter(self._backlog))
            articles = self._backlog.pop(name)
            article = articles.popleft()
            if articles:
                self._backlog[name] = articles  # to the back: the next source goes next
            self._analyzing += 1
            self._spawn(self._analyze_next(article))

    async def _analyze_next(self, article: Article) -> None:
        try:
            await self.analyze(article)
        finally:
            self._analyzing -= 1
            # the next task is spawned before this one ends, so the task set never empties
            # while articles wait
            self._feed_analyses()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        # A source spawns its analyses before it finishes, so the set empties only at the end.
        if not self._tasks:
            self._queue.put_nowait(None)

    # ---- start and finish -----------------------------------------------------------------

    def _source_names(self) -> list[str]:
        return [s.name for s in self.options.sources]

    async def _start(self) -> None:
        run_id = None
        if self.store is not None:
            run_id = await self.store.start_run(
                model=self.options.model, sources=self._source_names()
            )
        self.run_id = run_id or time.strftime("%Y%m%dT%H%M%S")
        self.done = RunDone(run_id=self.run_id)

    async def _prepare(self) -> None:
        """The fetcher, unless given; the embedding step and the executor load beside fetching
        (the model and LiteLLM's import take seconds; the first analysis waits for them, the
        sources do not)."""
        if self._executor is None:
            self._warm = asyncio.create_task(_import_litellm_and_freeze())
        self._parts = asyncio.create_task(self._prepare_analysis())
        if self._fetcher is None:
            kw: dict[str, Any] = {"concurrency": self.options.fetch_concurrency}
            if self.options.fetch_timeout is not None:
                kw["timeout"] = self.options.fetch_timeout
            self._fetcher = Fetcher(allow_private=self._allow_private, **kw)
            self._owned.append(self._fetcher.aclose)

    async def _prepare_analysis(self) -> None:
        embedding = await asyncio.to_thread(load_embedding, self.options.embeddings)
        if embedding is not None:
            self._embedding = embedding
            self._owned.append(embedding.aclose)
        self._llm_topic = wants_llm_topic(
            self.options.topic_mode, self.options.model, embedding is not None
        )
        if self._executor is None:
            local = LocalExecutor(
                self.gateway, embedding=embedding, fetcher=self._fetcher, api_key=self._api_key
            )
            self._executor = local
            self._owned.append(local.aclose)

    async def _close(self) -> None:
        tasks = [*self._tasks, *(t for t in (self._parts, self._warm) if t is not None)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for aclose in reversed(self._owned):
            with contextlib.suppress(Exception):
                await aclose()
        self._owned.clear()

    async def _finish(self, started: float) -> RunDone:
        done = self.done
        done.wall = time.perf_counter() - started
        done.saved = max(0.0, done.sum_latency - done.wall)
        if self.store is not None:
            await self.store.finish_run(self.run_id, done.model_dump(mode="json"))
        return done

    async def _record_stopped(self, started: float) -> None:
        """A stopped or broken run is recorded as ended (``cancelled``), not left "running"."""
        if self.store is None or not self.run_id:
            return
        self.done.wall = time.perf_counter() - started
        stats = {**self.done.model_dump(mode="json"), "cancelled": True}
        with contextlib.suppress(Exception):  # never hide why the run ended
            await self.store.finish_run(self.run_id, stats)

    # ---- a source -------------------------------------------------------------------------

    async def take_source(self, source: Source) -> None:
        """Fetch and parse one source, report it and its articles, hand the new ones to analysis."""
        t0 = time.perf_counter()
        self._fetching[source.name] = source
        try:
            result, feed, validators = await self._fetch(source)
            # Articles are built, deduplicated and budgeted chunk by chunk in a worker thread;
            # once ``limit`` new articles are found the rest of a big feed is never built.
            found, to_analyze, merged = await self._sort(source, feed)
            await self._record(source, result, feed, validators)
            del self._fetching[source.name]
            self.done.sources_ok += 1
            # The events go out in order (source_ok, its articles) and only then are the
            # analyses started: an analysis event can never overtake its article's event.
            self._emit(
                SourceOk(
                    source=source.name,
                    url=source.url,
                    title=self._feed_titles.get(source.name),
                    articles=len(feed.articles) if feed.complete else feed.entries,
                    new_articles=len(to_analyze),
                    not_modified=result.not_modified,
                    warnings=feed.warnings,
                    elapsed=time.perf_counter() - t0,
                )
            )
            for event in found:
                self._emit(event)
            for article in to_analyze:
                self._pending[article.id] = article
            if to_analyze:
                self._backlog.setdefault(source.name, collections.deque()).extend(to_analyze)
                self._feed_analyses()
            if merged and self.store is not None:
                await self.store.upsert_articles(merged)  # the kept copies now list this source too
        except SourceError as exc:
            self._fetching.pop(source.name, None)
            self._source_failed(source, exc.reason)
            if self.store is not None:
                with contextlib.suppress(NewsdeskError):  # the failure is reported all the same
                    await self.store.record_source_error(source, exc.reason)
        except Exception as exc:
            self._fetching.pop(source.name, None)
            self._source_failed(source, f"unexpected {type(exc).__name__}: {exc}")

    async def _fetch(self, source: Source) -> tuple[FetchResult, ParsedFeed, Validators]:
        """The source's feed, from the network (its articles built on demand, see ``_sort``), or
        from the store when it answers 304; and the validators the request was sent with."""
        assert self._fetcher is not None
        validators = None
        if self.store is not None:
            etag, modified = await self.store.source_validators(source.url)
            if etag or modified:
                validators = Validators(etag=etag, last_modified=modified)
        result = await self._fetcher.fetch(source, validators)
        if result.not_modified:
            # 304: no parsing, no analysis; the articles it carried last time come from the store.
            articles = await self.store.last_articles(source.url) if self.store is not None else []
            if source.max_articles is not None:
                articles = articles[: source.max_articles]
            feed = ParsedFeed(articles=articles, entries=len(articles))
        else:
            # a thread: a big feed's XML takes a while, and other sources' events keep flowing
            feed = await asyncio.to_thread(
                open_feed, result.body, source, content_type=result.content_type
            )
            if feed.title:
                self._feed_titles[source.name] = feed.title
        return result, feed, validators or Validators()

    async def _record(
        self, source: Source, result: FetchResult, feed: ParsedFeed, old: Validators
    ) -> None:
        """Store the articles the source carried and its state (a 304 is a success as well, and
        keeps the validators when the server did not repeat them).

        Every article read is stored (duplicates and those past the limit too), so a later 304
        can hand back all of them. A feed whose reading stopped early at the limit is stored
        without validators: the next run fetches and reads it whole."""
        if self.store is None:
            return
        etag, modified = result.etag or old.etag, result.last_modified or old.last_modified
        if not feed.complete:
            etag = modified = None
        await self.store.record_fetch(
            source, list(feed.articles), etag=etag, last_modified=modified
        )

    async def _sort(
        self, source: Source, feed: ParsedFeed
    ) -> tuple[list[ArticleFound], list[Article], list[Article]]:
        """(article events, the new articles to analyze, kept copies that gained this source).

        Built and deduplicated in chunks off the event loop; once ``limit`` new articles are
        found the rest are neither built, deduplicated, reported nor stored."""
        found: list[ArticleFound] = []
        to_analyze: list[Article] = []
        merged: list[Article] = []
        done = 0
        while self._budget is None or self._budget > 0:
            ready = len(feed.articles) - done
            if ready <= 0 and feed.complete:
                break
            if feed.complete and ready <= 32:
                # small feeds (the usual case) are cheaper to deduplicate than a thread hop
                chunk, verdicts = self._take(feed, done)
            else:
                chunk, verdicts = await asyncio.to_thread(self._take, feed, done)
            done += len(chunk)
            for article, verdict in zip(chunk, verdicts, strict=True):
                if isinstance(verdict, Duplicate):
                    self.done.duplicates += 1
                    found.append(
                        _found(
                            article,
                            source.name,
                            sources=list(verdict.kept.sources),
                            duplicate_of=verdict.kept.id,
                        )
                    )
                    merged.append(verdict.kept)
                    continue
                if self._budget is not None:
                    if self._budget <= 0:
                        continue
                    self._budget -= 1
                self.done.articles += 1
                found.append(_found(verdict, source.name, sources=list(verdict.sources)))
                to_analyze.append(verdict)
        return found, to_analyze, merged

    def _take(self, feed: ParsedFeed, done: int) -> tuple[list[Article], list[Article | Duplicate]]:
        """The next chunk of the feed's articles (built now if need be) and their verdicts."""
        chunk = feed.articles[done : done + DEDUP_CHUNK]
        if len(chunk) < DEDUP_CHUNK and not feed.complete:
            chunk += feed.more(DEDUP_CHUNK - len(chunk))
        return chunk, self._dedup.add_many(chunk)

    def _source_failed(self, source: Source, reason: str) -> None:
        self.done.sources_failed += 1
        self.done.failures[source.name] = reason
        self._emit(SourceFailed(source=source.name, url=source.url, reason=reason))

    # ---- an article -----------------------------------------------------------------------

    async def analyze(self, article: Article) -> None:
        """Analyze one article (or replay its stored analysis), save it, report it."""
        try:
            async with self._slots:
                if await self._replay_stored(article):
                    return
                assert self._parts is not None
                await asyncio.shield(self._parts)  # the embedding step and executor are ready
            executor = self._executor
            assert executor is not None
            # the executor holds a slot while the provider works on the job, not around the
            # rest (a local one's embedding step, a full-text fetch)
            result = await executor.analyze(
                self._job(article), self._deltas(article), llm_slot=self._slots
            )
            await self._save(article, result)
        except NewsdeskError as exc:
            self._analysis_failed(article, str(exc))
        except Exception as exc:  # one article's bug must not end the run
            self._analysis_failed(article, f"unexpected {type(exc).__name__}: {exc}")
        finally:
            if not self._deadline_hit:
                self._pending.pop(article.id, None)

    def _job(self, article: Article) -> AnalysisJob:
        o = self.options
        return AnalysisJob(
            article=article,
            model=o.model,
            api_base=o.api_base,
            llm_topic=self._llm_topic,
            lang=o.lang,
            cache="refresh" if o.reanalyze else "use",
            full_text=o.full_text,
            timeout=o.request_timeout,
            retries=o.retries,
        )

    def _deltas(self, article: Article) -> Callable[[str], None] | None:
        if not self.options.deltas:
            return None

        def on_delta(text: str) -> None:
            self._emit(AnalysisDelta(source=article.source, id=article.id, text=text))

        return on_delta

    async def _replay_stored(self, article: Article) -> bool:
        """Report the stored analysis of this content by this model and prompt, if there is one."""
        if self.store is None or self.options.reanalyze:
            return False
        stored = await self.store.get_analysis(
            article.content_hash, self.options.model, PROMPT_VERSION
        )
        if stored is None:
            return False
        self.done.analyzed += 1
        self.done.from_cache += 1
        if self.options.digest:
            self._finished.append((article, stored.analysis))
        topic_by = stored.topic_by if stored.topic_by in ("llm", "embedding") else "llm"
        self._emit(
            _ready(
                article,
                stored.analysis,
                cached=True,
                story=stored.story,
                model=self.options.model,
                topic_by=topic_by,
            )
        )
        return True

    async def _save(self, article: Article, result: AnalysisResult) -> None:
        """Story, store (committed), counters, then the event: in that order."""
        story = None
        if self._embedding is not None:
            story = await self._embedding.story_for(article.id, result.vector)
        if self.store is not None:
            await self.store.save_analysis(
                article,
                result.analysis,
                model=self.options.model,
                prompt_version=PROMPT_VERSION,
                run_id=self.run_id,
                story=story,
                topic_by=result.topic_by,
                vector=result.vector,
                latency=result.latency,
            )
        done = self.done
        done.analyzed += 1
        done.from_cache += int(result.cached)
        done.prompt_tokens += result.prompt_tokens
        done.completion_tokens += result.completion_tokens
        done.cost += result.cost
        done.sum_latency += result.latency
        if self.options.digest:
            self._finished.append((article, result.analysis))
        self._emit(
            _ready(
                article,
                result.analysis,
                cached=result.cached,
                story=story,
                model=result.model,
                latency=result.latency,
                topic_by=result.topic_by,
            )
        )

    def _analysis_failed(self, article: Article, reason: str) -> None:
        self.done.failed += 1
        self._emit(
            AnalysisFailed(
                source=article.source,
                id=article.id,
                url=article.url,
                title=article.title,
                reason=reason,
            )
        )


_frozen = False


async def _import_litellm_and_freeze() -> None:
    """LiteLLM's import, then, once per process, ``gc.freeze()``: the import leaves about a
    million long-lived objects, and every full garbage collection would walk all of them again,
    holding the GIL (~0.5 s here) - a stall of the event loop each time a big feed's articles
    pile up. Frozen, they are left out of collections; whatever garbage exists at that moment
    is kept, once."""
    global _frozen
    from newsdesk._backend import aimport_litellm

    await aimport_litellm()
    if not _frozen:
        _frozen = True
        gc.freeze()


def run_pipeline(
    options: PipelineOptions,
    *,
    gateway: Gateway,
    store: RunStore | Store | None = None,
    fetcher: Fetcher | None = None,
    executor: AnalysisExecutor | None = None,
) -> AsyncIterator[Event]:
    """Yield pipeline events until every source is fetched and every article analyzed."""
    return NewsRun(
        options, gateway=gateway, store=store, fetcher=fetcher, executor=executor
    ).events()


async def _digests(
    finished: list[tuple[Article, ArticleAnalysis]], gateway: Gateway, options: PipelineOptions
) -> AsyncIterator[DigestReady]:
    """One short summary per topic, from the analyses' own summaries (not the raw articles)."""
    from newsdesk._request import Message, Request

    by_topic: dict[str, list[str]] = {}
    for _article, analysis in finished:
        by_topic.setdefault(analysis.topic, []).append(analysis.summary)
    requests = []
    topics = sorted(by_topic)
    for topic in topics:
        bullet = "\n".join(f"- {s}" for s in by_topic[topic][:12])
        requests.append(
            Request(
                model=options.model,
                api_base=options.api_base,
                max_tokens=160,
                temperature=0.0,
                messages=[
                    Message(
                        role="system",
                        content="Summarize these news summaries in two "
                        "sentences. Use only what they say.",
                    ),
                    Message(role="user", content=bullet),
                ],
            )
        )
    async for outcome in gateway.map(requests):
        topic = topics[outcome.index]
        text = (
            outcome.response.text.strip()
            if outcome.ok and outcome.response
            else f"(digest failed: {outcome.error})"
        )
        yield DigestReady(topic=topic, summary=text, articles=len(by_topic[topic]))


def _found(article: Article, source: str, **fields: Any) -> ArticleFound:
    return ArticleFound(
        source=source,
        id=article.id,
        url=article.url,
        title=article.title,
        published=article.published,
        **fields,
    )


def _ready(article: Article, analysis: ArticleAnalysis, **fields: Any) -> AnalysisReady:
    """The ``analysis`` event, labelled from the article it was made for (never by position)."""
    return AnalysisReady(
        source=article.source,
        id=article.id,
        url=article.url,
        title=article.title,
        analysis=analysis,
        sources=list(article.sources),
        **fields,
    )
