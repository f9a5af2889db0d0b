"""What a run needs from its store, awaited: the ``RunStore`` protocol, and ``AsyncStore``,
which runs the SQLite ``Store``'s short transactions in a worker thread (off the event loop)."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from newsdesk.news._models import Article, ArticleAnalysis, Source
from newsdesk.news._store import Store, StoredAnalysis

__all__ = ["AsyncStore", "RunStore"]


class RunStore(Protocol):
    async def start_run(self, *, model: str, sources: list[str]) -> str: ...

    async def finish_run(self, run_id: str, stats: dict[str, Any]) -> None: ...

    async def source_validators(self, url: str) -> tuple[str | None, str | None]: ...

    async def last_articles(self, url: str) -> list[Article]:
        """What the source carried at its last successful fetch (a 304 hands these back)."""
        ...

    async def record_fetch(
        self,
        source: Source,
        articles: list[Article],
        *,
        etag: str | None,
        last_modified: str | None,
    ) -> None:
        """A successful fetch (a 304 too): every article it carried, then the source's state."""
        ...

    async def record_source_error(self, source: Source, reason: str) -> None: ...

    async def upsert_articles(self, articles: list[Article]) -> None: ...

    async def get_analysis(
        self, content_hash: str, model: str, prompt_version: str
    ) -> StoredAnalysis | None: ...

    async def save_analysis(
        self,
        article: Article,
        analysis: ArticleAnalysis,
        *,
        model: str,
        prompt_version: str,
        run_id: str | None,
        story: str | None,
        topic_by: str,
        vector: bytes | None,
        latency: float,
    ) -> None:
        """Committed before it returns: a killed run keeps every analysis it reported."""
        ...


class AsyncStore:
    """A ``RunStore`` over the SQLite ``Store``: each call one worker-thread hop."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def start_run(self, *, model: str, sources: list[str]) -> str:
        return await asyncio.to_thread(self.store.start_run, model=model, sources=sources)

    async def finish_run(self, run_id: str, stats: dict[str, Any]) -> None:
        await asyncio.to_thread(self.store.finish_run, run_id, stats)

    async def source_validators(self, url: str) -> tuple[str | None, str | None]:
        return await asyncio.to_thread(self.store.source_validators, url)

    async def last_articles(self, url: str) -> list[Article]:
        return await asyncio.to_thread(self.store.last_articles, url)

    async def record_fetch(
        self,
        source: Source,
        articles: list[Article],
        *,
        etag: str | None,
        last_modified: str | None,
    ) -> None:
        def record() -> None:
            self.store.upsert_articles(articles)  # one transaction, not one commit per item
            self.store.record_source_ok(
                source,
                etag=etag,
                last_modified=last_modified,
                article_ids=[a.id for a in articles],
            )

        await asyncio.to_thread(record)

    async def record_source_error(self, source: Source, reason: str) -> None:
        await asyncio.to_thread(self.store.record_source_error, source, reason)

    async def upsert_articles(self, articles: list[Article]) -> None:
        await asyncio.to_thread(self.store.upsert_articles, articles)

    async def get_analysis(
        self, content_hash: str, model: str, prompt_version: str
    ) -> StoredAnalysis | None:
        return await asyncio.to_thread(self.store.get_analysis, content_hash, model, prompt_version)

    async def save_analysis(
        self,
        article: Article,
        analysis: ArticleAnalysis,
        *,
        model: str,
        prompt_version: str,
        run_id: str | None,
        story: str | None,
        topic_by: str,
        vector: bytes | None,
        latency: float,
    ) -> None:
        await asyncio.to_thread(
            lambda: self.store.save_analysis(
                article,
                analysis,
                model=model,
                prompt_version=prompt_version,
                run_id=run_id,
                story=story,
                topic_by=topic_by,
                vector=vector,
                latency=latency,
            )
        )
