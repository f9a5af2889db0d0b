"""One article's analysis: the self-contained, idempotent unit of work.

``analyze_article(article, ...)`` takes a serialisable ``Article`` and returns a serialisable
``AnalysisResult``; it needs nothing but a ``Gateway`` (cache, limits, retries) and optionally
the embedding step, so a job queue worker on another machine could run it as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import re
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal

from pydantic import BaseModel, SecretStr

from newsdesk._client import Gateway
from newsdesk._exceptions import NewsdeskError
from newsdesk._request import CachePolicy, Request
from newsdesk._response import Response
from newsdesk.news._faithful import repair
from newsdesk.news._models import Article, ArticleAnalysis, Entities
from newsdesk.news._prompt import (
    PROMPT_VERSION,
    answer_model_for,
    build_messages,
    to_analysis,
)


class AnalysisResult(BaseModel):
    article_id: str
    analysis: ArticleAnalysis
    model: str
    prompt_version: str = PROMPT_VERSION
    cached: bool = False
    latency: float = 0.0
    topic_by: Literal["llm", "embedding"] = "llm"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    vector: bytes | None = None


_WORD = re.compile(r"[\w'’]+", re.U)
_STOP = frozenset(
    "a an the of to in on at for and or but is are was were be been by with from that this it its as "
    "has have had will would said says not no".split()
)


def _words(text: str) -> list[str]:
    """Lower-case words; possessives reduced ("Apple's" -> "apple") and hyphenated compounds split
    ("well-known" -> "well", "known"), the same way for the article and the model's phrases."""
    out = []
    for w in _WORD.findall(text):
        w = w.lower().strip("'’")
        if w.endswith(("'s", "’s")):
            w = w[:-2]
        if w:
            out.append(w)
    return out


def grounded(phrase: str, source_words: set[str], *, need: float) -> bool:
    """Whether enough of a phrase's content words occur in the article (guards against invention)."""
    words = [w for w in _words(phrase) if w not in _STOP]
    if not words:
        return False
    hits = sum(1 for w in words if w in source_words)
    return hits / len(words) >= need


def normalize_sentiment(value: float, tone: str) -> float:
    """Sentiment in [-1, 1] that agrees with the tone. Small models answer 7 for "fairly positive"
    or 0.8 beside "negative"; a score that contradicts the tone it came with is not trusted."""
    if math.isnan(value):  # says nothing: let the tone decide
        value = 0.0
    if abs(value) > 1:
        value = value / 10 if abs(value) <= 10 else (1.0 if value > 0 else -1.0)
    value = max(-1.0, min(1.0, value))
    if tone == "negative" and value >= 0:
        value = -max(abs(value), 0.5)
    elif tone == "positive" and value <= 0:
        value = max(abs(value), 0.5)
    elif tone == "neutral" and abs(value) > 0.3:
        value = 0.3 if value > 0 else -0.3
    return round(value, 2)


def ground(
    analysis: dict[str, Any], entities: Entities, article: Article
) -> tuple[dict[str, Any], Entities]:
    """Drop entities not found in the article and key facts mostly made of words it doesn't contain."""
    source_words = set(_words(f"{article.title} {article.text}"))
    facts = [f.strip() for f in analysis.get("key_facts", []) if f and f.strip()]
    analysis["key_facts"] = [f for f in facts if grounded(f, source_words, need=0.75)][:5]
    seen: set[str] = set()

    def keep(names: list[str]) -> list[str]:
        out = []
        for n in names:
            n = n.strip()
            key = n.lower()
            if n and key not in seen and grounded(n, source_words, need=1.0):
                seen.add(key)
                out.append(n)
        return out[:8]

    ents = Entities(
        people=keep(entities.people),
        organizations=keep(entities.organizations),
        places=keep(entities.places),
    )
    return analysis, ents


def analysis_request(
    article: Article,
    *,
    model: str,
    with_topic: bool,
    lang: str | None = None,
    api_base: str | None = None,
    extra: dict[str, Any] | None = None,
    cache: CachePolicy = "use",
    timeout: float | None = None,
    retries: int | None = None,
    api_key: SecretStr | None = None,
) -> Request:
    """The LLM request for one article. ``cache="refresh"`` asks the model again (and replaces
    the cached answer): what ``--reanalyze`` means. ``timeout`` (one attempt) and ``retries``:
    None keeps ``Request``'s defaults. ``api_key``: the caller's own key for this request."""
    bounds: dict[str, Any] = {}
    if timeout is not None:
        bounds["timeout"] = timeout
    if retries is not None:
        bounds["retries"] = retries
    return Request(
        model=model,
        messages=build_messages(article, with_topic=with_topic, lang=lang),
        answer_model=answer_model_for(model, with_topic=with_topic),
        temperature=0.0,
        max_tokens=360,
        api_base=api_base,
        extra=extra or {},
        cache=cache,
        api_key=api_key,
        **bounds,
    )


TopicFn = Callable[[Article], tuple[Any, ...] | Awaitable[tuple[Any, ...]]]
"""Embedding step: article -> (topic, vector bytes) or (topic, vector bytes, (tone, sentiment)).
Either a coroutine function (``EmbeddingService.topic_and_vector``: awaited beside the LLM call)
or a blocking function (run in a thread). The tone, when given, replaces the LLM's wherever the
embedding's topic does (``llm_topic=False``): measured on lee50, the embedded LLM's tone is worse
than it."""


def _start_embedding(topic_fn: TopicFn, article: Article) -> asyncio.Future[Any]:
    if inspect.iscoroutinefunction(topic_fn):
        return asyncio.ensure_future(topic_fn(article))
    return asyncio.ensure_future(asyncio.to_thread(topic_fn, article))


async def analyze_article(
    article: Article,
    gateway: Gateway,
    *,
    model: str,
    topic_fn: TopicFn | None = None,
    llm_topic: bool = True,
    lang: str | None = None,
    api_base: str | None = None,
    on_delta: Callable[[str], None] | None = None,
    cache: CachePolicy = "use",
    request_timeout: float | None = None,
    retries: int | None = None,
    api_key: SecretStr | None = None,
    llm_slot: AbstractAsyncContextManager[Any] | None = None,
) -> AnalysisResult:
    """Analyze one article. With ``topic_fn`` the embedding classifier runs beside the LLM call
    (concurrently, in a thread) and its topic is used when ``llm_topic`` is False.

    ``llm_slot`` (e.g. a run's semaphore) is held around the provider call only, not while the
    embedding is still working: the embedding is our own CPU, and holding a provider slot
    while waiting for it would hold the provider back to the embedding's pace."""
    if not llm_topic and topic_fn is None:
        raise ValueError("without an embedding step the LLM must pick the topic (llm_topic=True)")
    started = time.perf_counter()
    request = analysis_request(
        article,
        model=model,
        with_topic=llm_topic,
        lang=lang,
        api_base=api_base,
        cache=cache,
        timeout=request_timeout,
        retries=retries,
        api_key=api_key,
    )
    embed_task = _start_embedding(topic_fn, article) if topic_fn else None
    final: Response | None = None
    try:
        async with llm_slot if llm_slot is not None else contextlib.nullcontext():
            if on_delta is None:
                # Nobody watches the deltas: one whole completion. A stream costs CPU per chunk
                # (LiteLLM's chunk parsing, and a partial JSON parse of the answer so far).
                final = await gateway.complete(request)
            else:
                async for chunk in gateway.stream(request):
                    if chunk.content:
                        on_delta(chunk.content)
                    elif chunk.restart:
                        on_delta(" ↻ ")  # the answer so far was invalid; asked again
                    if chunk.done:
                        final = chunk.response
    except BaseException:
        if embed_task is not None:
            embed_task.cancel()
            await asyncio.gather(embed_task, return_exceptions=True)
        raise
    if final is None:
        raise NewsdeskError(f"{model}: the stream ended without an answer")
    vector: bytes | None = None
    topic_by: Literal["llm", "embedding"] = "llm"
    raw: BaseModel = final.value
    topic = getattr(raw, "topic", None)
    emb_tone: tuple[str, float] | None = None
    if embed_task is not None:
        try:
            emb_topic, vector, *more = await embed_task
            emb_tone = more[0] if more else None
        except Exception as exc:
            # The embedding step is an extra: when it breaks, the LLM's topic still stands.
            if topic is None:
                raise NewsdeskError(
                    f"no topic: the embedding step failed ({type(exc).__name__}: {exc})"
                ) from exc
            emb_topic = None
        if emb_topic is not None and (topic is None or not llm_topic):
            topic, topic_by = emb_topic, "embedding"
    mapped, ents = to_analysis(raw, topic, article=article, lang=lang)  # type: ignore[arg-type]
    fields: dict[str, Any] = dict(mapped)
    fields, ents = ground(fields, ents, article)
    # every number, date and name must come from the article (news/_faithful.py): unfaithful or
    # fragmentary facts are dropped, an unfaithful or looping summary gives way to the lead
    fields["summary"], fields["key_facts"], _ = repair(
        str(fields.get("summary") or ""),
        fields.get("key_facts") or [],
        article.text,
        title=article.title,
        translated=bool(lang),
    )
    if emb_tone is not None and topic_by == "embedding" and not llm_topic:
        fields["tone"], fields["sentiment"] = emb_tone
    fields["sentiment"] = normalize_sentiment(
        float(fields.get("sentiment", 0.0)), str(fields.get("tone"))
    )
    analysis = ArticleAnalysis.model_validate({**fields, "entities": ents})
    return AnalysisResult(
        article_id=article.id,
        analysis=analysis,
        model=final.model,
        cached=final.cached,
        latency=time.perf_counter() - started,
        topic_by=topic_by,
        prompt_tokens=0 if final.cached else final.usage.prompt_tokens,
        completion_tokens=0 if final.cached else final.usage.completion_tokens,
        cost=0.0 if final.cached else (final.cost or 0.0),
        vector=vector,
    )
