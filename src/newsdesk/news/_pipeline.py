"""The news pipeline: sources in, one async stream of typed events out.

Fetching and analysis overlap: each source is fetched in its own task, and each of its new
articles is handed to the analysis queue the moment the source is parsed — no waiting for the
other sources. Results are emitted in completion order, each carrying its own article's id,
title and URL (never matched up by position). A failed source or analysis is reported once, with
its reason, and the run goes on. Every finished analysis is committed to the store at once, so a
killed run loses nothing and the next run reuses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

from newsdesk._client import Gateway
from newsdesk._exceptions import NewsdeskError, SourceError
from newsdesk.news._analyze import AnalysisResult, TopicFn, analyze_article
from newsdesk.news._dedup import Deduplicator
from newsdesk.news._events import (
    AnalysisDelta,
    AnalysisFailed,
    AnalysisReady,
    ArticleFound,
    DigestReady,
    RunDone,
    RunStarted,
    SourceFailed,
    SourceOk,
)
from newsdesk.news._feeds import parse_feed
from newsdesk.news._fetch import Fetcher, Validators
from newsdesk.news._models import Article, ArticleAnalysis, Source
from newsdesk.news._prompt import PROMPT_VERSION

TopicMode = Literal["auto", "llm", "embedding"]


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


class _Embedding:
    """The embedding step (topic, story, search vector), loaded lazily; absent when the extra isn't installed."""

    def __init__(self) -> None:
        from newsdesk.news import _embed, _tone

        self._embed = _embed
        self.embedder = _embed.default_embedder()
        self.classifier = _embed.TopicClassifier(self.embedder)
        self.tone = _tone.ToneClassifier(self.embedder)
        self.stories = _embed.StoryIndex()
        self._story_names: dict[int, str] = {}

    def topic_and_vector(self, article: Article) -> tuple[str, bytes | None, tuple[str, float]]:
        text = self._embed.article_text(article.title, article.text)
        vec = self.embedder.embed([text], kind="passage")[0]
        # topic and tone from the stored vector: one embedding, then two small dot products
        topic, _conf = self.classifier.classify_vectors(vec)[0]
        tone = self.tone.classify_vectors(vec)[0]
        return topic, self._embed.vector_to_bytes(vec), tone

    def story_for(self, article_id: str, vector: bytes | None) -> str | None:
        if vector is None:
            return None
        sid = self.stories.add(self._embed.vector_from_bytes(vector))
        # A story is named after its first article, so the id is stable wherever it is computed.
        return self._story_names.setdefault(sid, f"story-{article_id[:12]}")


def _load_embedding(enabled: bool) -> _Embedding | None:
    if not enabled:
        return None
    try:
        return _Embedding()
    except (NewsdeskError, ImportError):
        return None


async def run_pipeline(
    options: PipelineOptions, *, gateway: Gateway, store: Any | None = None
) -> AsyncIterator[Any]:
    """Yield pipeline events until every source is fetched and every article analyzed."""
    started = time.perf_counter()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    dedup = Deduplicator()
    source_names = [s.name for s in options.sources]
    run_id = (
        await _call(store, "start_run", model=options.model, sources=source_names)
        if store
        else None
    )
    run_id = run_id or time.strftime("%Y%m%dT%H%M%S")
    counters = RunDone(run_id=run_id)  # filled in as the run goes; the last event
    yield RunStarted(run_id=run_id, sources=source_names, model=options.model)

    embedding = await asyncio.to_thread(_load_embedding, options.embeddings)
    llm_topic = options.topic_mode == "llm" or (
        options.topic_mode == "auto"
        and (embedding is None or not options.model.startswith("local/"))
    )
    if options.topic_mode == "embedding" and embedding is None:
        llm_topic = True
    topic_fn: TopicFn | None = embedding.topic_and_vector if embedding is not None else None

    analysis_sem = asyncio.Semaphore(options.concurrency)
    analysis_tasks: set[asyncio.Task[None]] = set()
    budget = [options.limit if options.limit is not None else 10**9]
    finished: list[tuple[Article, ArticleAnalysis]] = []

    def emit(event: Any) -> None:
        queue.put_nowait(event)

    async def analyze(article: Article) -> None:
        try:
            async with analysis_sem:
                stored = None
                if store is not None and not options.reanalyze:
                    stored = await _call(
                        store, "get_analysis", article.content_hash, options.model, PROMPT_VERSION
                    )
                if stored is not None:
                    counters.analyzed += 1
                    counters.from_cache += 1
                    finished.append((article, stored.analysis))
                    topic_by = stored.topic_by if stored.topic_by in ("llm", "embedding") else "llm"
                    emit(
                        _ready(
                            article,
                            stored.analysis,
                            cached=True,
                            story=stored.story,
                            model=options.model,
                            topic_by=topic_by,
                        )
                    )
                    return

                def on_delta(text: str, _id: str = article.id, _src: str = article.source) -> None:
                    if options.deltas:
                        emit(AnalysisDelta(source=_src, id=_id, text=text))

                if options.full_text and article.url.startswith("http"):
                    with contextlib.suppress(SourceError):
                        article = article.model_copy(
                            update={
                                "text": await fetcher.fetch_article_text(article.url)
                                or article.text
                            }
                        )
                result: AnalysisResult = await analyze_article(
                    article,
                    gateway,
                    model=options.model,
                    topic_fn=topic_fn,
                    llm_topic=llm_topic,
                    lang=options.lang,
                    api_base=options.api_base,
                    on_delta=on_delta,
                    cache="refresh" if options.reanalyze else "use",
                )
            story = (
                await asyncio.to_thread(embedding.story_for, article.id, result.vector)
                if embedding
                else None
            )
            if store is not None:
                await _call(
                    store,
                    "save_analysis",
                    article,
                    result.analysis,
                    model=options.model,
                    prompt_version=PROMPT_VERSION,
                    run_id=run_id,
                    story=story,
                    topic_by=result.topic_by,
                    vector=result.vector,
                    latency=result.latency,
                )
            counters.analyzed += 1
            if result.cached:
                counters.from_cache += 1
            counters.prompt_tokens += result.prompt_tokens
            counters.completion_tokens += result.completion_tokens
            counters.cost += result.cost
            counters.sum_latency += result.latency
            finished.append((article, result.analysis))
            emit(
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
        except NewsdeskError as exc:
            counters.failed += 1
            emit(
                AnalysisFailed(
                    source=article.source,
                    id=article.id,
                    url=article.url,
                    title=article.title,
                    reason=str(exc),
                )
            )
        except Exception as exc:  # one article's bug must not end the run
            counters.failed += 1
            emit(
                AnalysisFailed(
                    source=article.source,
                    id=article.id,
                    url=article.url,
                    title=article.title,
                    reason=f"unexpected {type(exc).__name__}: {exc}",
                )
            )

    def schedule(article: Article) -> None:
        task = asyncio.create_task(analyze(article))
        analysis_tasks.add(task)
        task.add_done_callback(analysis_tasks.discard)

    async def take_source(source: Source) -> None:
        t0 = time.perf_counter()
        try:
            validators = None
            if store is not None:
                etag, modified = await _call(store, "source_validators", source.url)
                if etag or modified:
                    validators = Validators(etag=etag, last_modified=modified)
            result = await fetcher.fetch(source, validators)
            warnings: list[str] = []
            if result.not_modified:
                # 304: no parsing, no analysis; the articles it carried last time come from the store.
                articles = (
                    await _call(store, "last_articles", source.url) if store is not None else []
                )
            else:
                parsed = await asyncio.to_thread(
                    parse_feed, result.body, source, content_type=result.content_type
                )
                articles, warnings = parsed.articles, parsed.warnings
            if source.max_articles is not None:
                articles = articles[: source.max_articles]
            if store is not None:
                # Every article the source carried is stored (duplicates and those past --limit
                # too), so a later 304 can hand back all of them; a 304 is a success as well,
                # and keeps the validators when the server did not repeat them.
                old = validators or Validators()
                await asyncio.to_thread(
                    _record_fetch,
                    store,
                    source,
                    list(articles),
                    etag=result.etag or old.etag,
                    last_modified=result.last_modified or old.last_modified,
                )
            counters.sources_ok += 1
            # Dedup and budget are decided without awaiting, then the events go out in order
            # (source_ok, its articles) and only then are the analyses started: an analysis
            # event can never overtake the article event it belongs to.
            new = 0
            events: list[Any] = []
            to_analyze: list[Article] = []
            merged: list[Article] = []
            for article in articles:
                kept = dedup.add(article)
                if kept is None:
                    counters.duplicates += 1
                    dup = dedup.find_duplicate(article)
                    events.append(
                        ArticleFound(
                            source=source.name,
                            id=article.id,
                            url=article.url,
                            title=article.title,
                            published=article.published,
                            sources=list(dup.kept.sources) if dup else [source.name],
                            duplicate_of=dup.kept.id if dup else None,
                        )
                    )
                    if dup is not None:
                        merged.append(dup.kept)
                    continue
                if budget[0] <= 0:
                    continue
                budget[0] -= 1
                new += 1
                counters.articles += 1
                events.append(
                    ArticleFound(
                        source=source.name,
                        id=kept.id,
                        url=kept.url,
                        title=kept.title,
                        published=kept.published,
                        sources=list(kept.sources),
                    )
                )
                to_analyze.append(kept)
            emit(
                SourceOk(
                    source=source.name,
                    url=source.url,
                    articles=len(articles),
                    new_articles=new,
                    not_modified=result.not_modified,
                    warnings=warnings,
                    elapsed=time.perf_counter() - t0,
                )
            )
            for ev in events:
                emit(ev)
            for article in to_analyze:
                schedule(article)
            if merged and store is not None:
                # the kept copies now list this source too
                await asyncio.to_thread(_upsert_all, store, merged)
        except SourceError as exc:
            counters.sources_failed += 1
            counters.failures[source.name] = exc.reason
            if store is not None:
                await _call(store, "record_source_error", source, exc.reason)
            emit(SourceFailed(source=source.name, url=source.url, reason=exc.reason))
        except Exception as exc:
            counters.sources_failed += 1
            reason = f"unexpected {type(exc).__name__}: {exc}"
            counters.failures[source.name] = reason
            emit(SourceFailed(source=source.name, url=source.url, reason=reason))

    fetch_kw: dict[str, Any] = {"concurrency": options.fetch_concurrency}
    if options.fetch_timeout is not None:
        fetch_kw["timeout"] = options.fetch_timeout
    fetcher = Fetcher(**fetch_kw)
    source_tasks = [asyncio.create_task(take_source(s)) for s in options.sources]
    sentinel = object()

    async def watcher() -> None:
        await asyncio.gather(*source_tasks, return_exceptions=True)
        while analysis_tasks:
            await asyncio.gather(*list(analysis_tasks), return_exceptions=True)
        queue.put_nowait(sentinel)

    watch = asyncio.create_task(watcher())
    try:
        while True:
            item = await queue.get()
            if item is sentinel:
                break
            yield item
        if options.digest and finished:
            async for ev in _digests(finished, gateway, options):
                yield ev
    finally:
        for t in [*source_tasks, *analysis_tasks, watch]:
            t.cancel()
        await asyncio.gather(*source_tasks, *analysis_tasks, watch, return_exceptions=True)
        await fetcher.aclose()

    wall = time.perf_counter() - started
    done = counters
    done.wall = wall
    done.saved = max(0.0, done.sum_latency - wall)
    if store is not None:
        await _call(store, "finish_run", run_id, done.model_dump(mode="json"))
    yield done


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


def _record_fetch(
    store: Any,
    source: Source,
    articles: list[Article],
    *,
    etag: str | None,
    last_modified: str | None,
) -> None:
    """One successful fetch, in one worker-thread hop: its articles, then the source's state."""
    _upsert_all(store, articles)
    store.record_source_ok(
        source, etag=etag, last_modified=last_modified, article_ids=[a.id for a in articles]
    )


def _upsert_all(store: Any, articles: list[Article]) -> None:
    for article in articles:
        store.upsert_article(article)


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


async def _call(store: Any, method: str, *args: Any, **kwargs: Any) -> Any:
    """Store calls are short SQLite transactions; run them off the event loop all the same."""
    fn: Callable[..., Any] = getattr(store, method)
    return await asyncio.to_thread(fn, *args, **kwargs)
