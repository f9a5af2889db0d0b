"""Vectors of the fixed texts the classifiers compare articles with, shipped precomputed.

Topic descriptions and examples, and tone examples, are the same for every run: embedding them
(about 90 short texts) took ~5 s of a cold start before the first article could be classified
(issue #15: first result within 1 s). ``prototypes.npz`` beside this module holds their vectors,
keyed by (embedder name, kind, text), so a run reads them instead. A text that is not in the
file (an edited example, another embedder) is embedded as before and kept in memory: the file
only ever saves time, it never decides a result. ``tests/news/test_prototypes.py`` checks that
the file matches what the embedder computes today, so it cannot go stale unnoticed.

Regenerate after changing an example:  ``python -m newsdesk.news._prototypes``
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from newsdesk.news._embed import Embedder, Kind

FILE = Path(__file__).with_name("prototypes.npz")

_LOCK = threading.Lock()
_VECTORS: dict[str, np.ndarray] | None = None


def key(embedder_name: str, kind: str, text: str) -> str:
    return hashlib.sha256(f"{embedder_name}\0{kind}\0{text}".encode()).hexdigest()[:32]


def _bundled() -> dict[str, np.ndarray]:
    global _VECTORS
    if _VECTORS is None:
        vectors: dict[str, np.ndarray] = {}
        try:
            with np.load(FILE, allow_pickle=False) as data:
                for k, v in zip(data["keys"].tolist(), data["vectors"], strict=True):
                    vectors[str(k)] = np.asarray(v, dtype=np.float32)
        except (OSError, KeyError, ValueError):
            vectors = {}  # missing or unreadable: every text is embedded, as without the file
        _VECTORS = vectors
    return _VECTORS


def embed_fixed(embedder: Embedder, texts: Sequence[str], *, kind: Kind) -> np.ndarray:
    """``embedder.embed(texts, kind=kind)`` for fixed texts, read from the bundled vectors
    where they are there; the others are embedded (in one call) and remembered."""
    with _LOCK:
        known = _bundled()
        keys = [key(embedder.name, kind, t) for t in texts]
        missing = [i for i, k in enumerate(keys) if k not in known]
        if missing:
            fresh = embedder.embed([texts[i] for i in missing], kind=kind)
            for i, vec in zip(missing, fresh, strict=True):
                known[keys[i]] = np.asarray(vec, dtype=np.float32)
        if not keys:
            return np.zeros((0, embedder.dim), dtype=np.float32)
        return np.stack([known[k] for k in keys])


def fixed_texts() -> list[tuple[str, str]]:
    """(kind, text) of every fixed text the default classifiers embed."""
    from newsdesk.news._embed import TOPIC_EXAMPLES, TOPICS
    from newsdesk.news._tone import TONE_EXAMPLES

    topic_texts = [t for name in TOPICS for t in [TOPICS[name], *TOPIC_EXAMPLES.get(name, ())]]
    # topics as queries (TopicClassifier) and as passages (StorySpace's basis); tone as passages
    out = [("query", t) for t in topic_texts] + [("passage", t) for t in topic_texts]
    out += [("passage", t) for texts in TONE_EXAMPLES.values() for t in texts]
    return list(dict.fromkeys(out))


def build(path: Path = FILE) -> int:
    """Embed every fixed text with the default embedder and write them to ``path``."""
    from newsdesk.news._embed import default_embedder

    embedder = default_embedder()
    keys: list[str] = []
    rows: list[np.ndarray] = []
    for kind in ("query", "passage"):
        texts = [t for k, t in fixed_texts() if k == kind]
        vecs = embedder.embed(texts, kind=kind)
        keys += [key(embedder.name, kind, t) for t in texts]
        rows += list(vecs)
    np.savez_compressed(path, keys=np.array(keys), vectors=np.stack(rows).astype(np.float32))
    return len(keys)


if __name__ == "__main__":
    print(f"{build()} vectors written to {FILE}")
