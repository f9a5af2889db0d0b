"""How much of an article each embedding use needs: quality on lee50 against the text length.

    python bench/embed_length.py              # measure, print, write the "embed_length" section
    python bench/embed_length.py --no-write   # print only

The embedding step costs in proportion to the text embedded (e5 reads ~1 token per 4 characters),
so the question is how short the text can be before topic, tone, story grouping or search get
worse. Each length is the text ``article_text`` builds for a title-less feed item (what the
pipeline embeds for lee50), cut at a word boundary near ``max_chars``. Figures per length:

* topic accuracy (``TopicClassifier``, strict / lenient) and tone accuracy (``ToneClassifier``);
* story pairs precision / recall at ``STORY_THRESHOLD`` streamed through ``StoryIndex`` as the
  pipeline does, and the threshold-free pair average precision;
* search: each article of a labelled story is the target of a query made of another story
  member's first sentence (e5 ``query`` kind); mean reciprocal rank and hit@3 over the 49 others;
* cost: wall and CPU per article of one ``embed`` call over the 50 texts (best of 3), in the
  process as configured (``E5Embedder`` threads).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import bench._env  # noqa: E402, F401 - first: paths, environment, a private NEWSDESK_HOME
from bench.embeddings import (  # noqa: E402
    incremental_ids,
    load_data,
    pair_average_precision,
    pair_pr,
    story_pairs,
)
from newsdesk.news._embed import (  # noqa: E402
    STORY_THRESHOLD,
    StorySpace,
    TopicClassifier,
    article_text,
    default_embedder,
)
from newsdesk.news._feeds import parse_feed  # noqa: E402
from newsdesk.news._models import Source  # noqa: E402
from newsdesk.news._tone import ToneClassifier  # noqa: E402

LENGTHS = (150, 200, 300, 450, 600, 2000)


def pipeline_articles(texts: list[str]) -> list[tuple[str, str]]:
    """(title, text) as the feed parser makes them from a title-less JSON Feed (as bench/quality.py)."""
    import json

    items = [{"id": f"i{i}", "content_text": t} for i, t in enumerate(texts)]
    feed = json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": "e", "items": items})
    parsed = parse_feed(
        feed.encode(), Source(name="e", url="e.json"), content_type="application/json"
    )
    return [(a.title, a.text) for a in parsed.articles]


def first_sentence(text: str, limit: int = 160) -> str:
    m = re.match(r"(.{20,}?[.!?])\s", text)
    s = m.group(1) if m else text
    return s[:limit]


def search_figures(
    passages: np.ndarray, queries: np.ndarray, groups: list[list[int]]
) -> tuple[float, float]:
    """MRR and hit@3 of finding a story mate from another member's first sentence."""
    rr, hits = [], 0
    for group in groups:
        for q in group:
            sims = passages @ queries[q]
            sims[q] = -np.inf  # the query's own article is not an answer
            order = list(np.argsort(-sims))
            rank = min(order.index(m) for m in group if m != q) + 1
            rr.append(1 / rank)
            hits += rank <= 3
    return float(np.mean(rr)), hits / len(rr)


def measure(texts: list[str], labels: dict[str, Any]) -> list[dict[str, Any]]:
    emb = default_embedder().load()
    topics = TopicClassifier(emb)
    tones = ToneClassifier(emb)
    space = StorySpace(emb)
    topics.topic_vectors, tones.tone_vectors, space._get_basis()  # noqa: B018 - warm
    arts = pipeline_articles(texts)
    gold_topic = [a["topic"] for a in labels["articles"]]
    ok_topic = [{a["topic"], *a.get("alt_topics", [])} for a in labels["articles"]]
    gold_tone = [a["tone"] for a in labels["articles"]]
    pairs = story_pairs(labels)
    queries = emb.embed([first_sentence(t) for t in texts], kind="query")
    rows = []
    for n in LENGTHS:
        inputs = [article_text(title, text, max_chars=n) for title, text in arts]
        wall = cpu = float("inf")
        vecs = None
        for _ in range(3):
            t0, c0 = time.perf_counter(), time.process_time()
            vecs = emb.embed(inputs, kind="passage")
            wall = min(wall, time.perf_counter() - t0)
            cpu = min(cpu, time.process_time() - c0)
        assert vecs is not None
        topic = [t for t, _ in topics.classify_vectors(vecs)]
        tone = [t for t, _ in tones.classify_vectors(vecs)]
        p, r = pair_pr(incremental_ids(vecs, STORY_THRESHOLD, space), pairs)
        mrr, hit3 = search_figures(vecs, queries, labels["stories"])
        rows.append(
            {
                "chars": n,
                "mean_chars": float(np.mean([len(x) for x in inputs])),
                "wall": wall / len(texts),
                "cpu": cpu / len(texts),
                "topic": sum(a == b for a, b in zip(topic, gold_topic, strict=True)),
                "lenient": sum(a in b for a, b in zip(topic, ok_topic, strict=True)),
                "tone": sum(a == b for a, b in zip(tone, gold_tone, strict=True)),
                "story_p": p,
                "story_r": r,
                "story_ap": pair_average_precision(space.transform(vecs), pairs),
                "mrr": mrr,
                "hit3": hit3,
            }
        )
        print(rows[-1], file=sys.stderr)
    return rows


def render(rows: list[dict[str, Any]], n: int) -> str:
    out = [
        "| max chars (mean embedded) | wall / CPU per article (ms) | topic strict / lenient | tone "
        f"| stories P / R at {STORY_THRESHOLD} (streamed) | story pair AP | search MRR / hit@3 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        out.append(
            f"| {r['chars']} ({r['mean_chars']:.0f}) | {r['wall'] * 1e3:.0f} / {r['cpu'] * 1e3:.0f} "
            f"| {r['topic'] / n:.0%} / {r['lenient'] / n:.0%} | {r['tone'] / n:.0%} "
            f"| {r['story_p']:.2f} / {r['story_r']:.2f} | {r['story_ap']:.2f} "
            f"| {r['mrr']:.2f} / {r['hit3']:.0%} |"
        )
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    texts, labels = load_data()
    load = os.getloadavg()[0]
    rows = measure(texts, labels)
    table = render(rows, len(texts))
    print(table)
    if args.no_write:
        return 0
    from bench._report import write_section

    body = (
        f"{__doc__.split(chr(10) + chr(10), 2)[2].strip()}\n\n"
        f"Load average when the run started: {load:.1f} (timings are under contention when it is "
        "above 2; the quality columns are not affected).\n\n" + table
    )
    write_section(
        "embed_length",
        "Embeddings: how much text each use needs",
        "python bench/embed_length.py",
        body,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
