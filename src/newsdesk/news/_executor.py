"""Who analyzes an article: the seam between a run and the work it hands out.

A run turns each new article into an ``AnalysisJob`` (serialisable, never carrying an API key)
and awaits an ``AnalysisExecutor`` for the ``AnalysisResult``. ``LocalExecutor`` does the work in
this process (a ``Gateway`` plus the embedding step and, when asked, the article page's full
text); a queue of remote workers implements the same two methods by enqueueing the job and
awaiting its result, each worker running a ``LocalExecutor`` with its own ``Gateway``. The run
itself keeps store look-ups, story grouping, saving and events.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol

from pydantic import BaseModel, SecretStr

from newsdesk._client import Gateway
from newsdesk._exceptions import ConfigError, SourceError
from newsdesk.news._analyze import AnalysisResult, analyze_article
from newsdesk.news._embedding import Embedding
from newsdesk.news._fetch import Fetcher
from newsdesk.news._models import Article
from newsdesk.news._prompt import PROMPT_VERSION

__all__ = ["AnalysisExecutor", "AnalysisJob", "LocalExecutor"]


class AnalysisJob(BaseModel):
    """One article to analyze and how. Serialisable; never carries an API key (a worker uses
    its own environment's)."""

    article: Article
    model: str
    api_base: str | None = None
    llm_topic: bool = True  # ask the LLM for the topic (else the embedding classifier)
    lang: str | None = None
    cache: Literal["use", "refresh"] = "use"
    full_text: bool = False  # fetch the article's page and analyze its text
    prompt_version: str = PROMPT_VERSION
    timeout: float | None = None  # seconds for one provider attempt (None: Request's default)
    retries: int | None = None  # provider retries (None: Request's default)


class AnalysisExecutor(Protocol):
    """Analyzes jobs. Failures raise ``NewsdeskError`` subclasses whose str is the reason.

    ``llm_slot``: the run's provider slot (its concurrency semaphore; None outside a run). The
    executor holds it while the provider works on the job and only then: a local executor
    around the provider call (not while embedding or fetching the page), a remote one while
    the job is out. So a run's ``concurrency`` bounds its provider requests whoever makes them.
    """

    async def analyze(
        self,
        job: AnalysisJob,
        on_delta: Callable[[str], None] | None = None,
        *,
        llm_slot: AbstractAsyncContextManager[Any] | None = None,
    ) -> AnalysisResult: ...

    async def aclose(self) -> None: ...


class LocalExecutor:
    """Analyzes in this process. ``embedding``: the topic/tone/vector step (None: the LLM picks
    the topic, no vector). ``fetcher``: for full-text jobs (None: one is made when first needed,
    and closed by ``aclose``). ``api_key``: a key of the caller's own for every request (never
    part of a job, the cache key or the store). A run's ``llm_slot`` is held around each
    provider call only, so articles waiting for the embedding step do not hold the provider
    back."""

    def __init__(
        self,
        gateway: Gateway,
        *,
        embedding: Embedding | None = None,
        fetcher: Fetcher | None = None,
        api_key: SecretStr | None = None,
    ) -> None:
        self.gateway = gateway
        self._api_key = api_key
        self.embedding = embedding
        self._fetcher = fetcher
        self._own_fetcher: Fetcher | None = None

    async def analyze(
        self,
        job: AnalysisJob,
        on_delta: Callable[[str], None] | None = None,
        *,
        llm_slot: AbstractAsyncContextManager[Any] | None = None,
    ) -> AnalysisResult:
        if job.prompt_version != PROMPT_VERSION:
            # its result would be stored under a prompt this code does not write
            raise ConfigError(
                f"job for prompt {job.prompt_version!r}; this worker writes {PROMPT_VERSION!r}"
            )
        article = await self._full_text(job.article) if job.full_text else job.article
        embedding = self.embedding
        return await analyze_article(
            article,
            self.gateway,
            model=job.model,
            topic_fn=embedding.topic_and_vector if embedding is not None else None,
            # without the embedding step only the LLM can name the topic
            llm_topic=job.llm_topic or embedding is None,
            lang=job.lang,
            api_base=job.api_base,
            on_delta=on_delta,
            cache=job.cache,
            request_timeout=job.timeout,
            retries=job.retries,
            api_key=self._api_key,
            llm_slot=llm_slot,
        )

    async def _full_text(self, article: Article) -> Article:
        """The article with its page's text, or as it is when the page cannot be read."""
        if not article.url.startswith("http"):
            return article
        with contextlib.suppress(SourceError):
            text = await self._page_fetcher().fetch_article_text(article.url)
            return article.model_copy(update={"text": text or article.text})
        return article

    def _page_fetcher(self) -> Fetcher:
        if self._fetcher is None:
            self._fetcher = self._own_fetcher = Fetcher()
        return self._fetcher

    async def aclose(self) -> None:
        if self._own_fetcher is not None:
            await self._own_fetcher.aclose()
            self._own_fetcher = self._fetcher = None
