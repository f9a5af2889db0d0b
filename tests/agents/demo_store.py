"""A small store of fixed analyses for agent tests (no model call needed to build it)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

from newsdesk.news._models import Article, ArticleAnalysis
from newsdesk.news._store import Store

ARTICLES = [
    (
        "Harbor City floods after record rain",
        "Harbor City Herald",
        "disaster",
        "negative",
        "Record rain flooded Harbor City's lower districts and 300 people were evacuated.",
        ["300 people evacuated", "Rail services suspended"],
        ["Harbor City"],
    ),
    (
        "Meridian central bank holds rates",
        "Meridian Daily",
        "business",
        "neutral",
        "The Meridian central bank kept its interest rate at 3.5 percent for a third month.",
        ["Rate unchanged at 3.5%"],
        ["Meridian Central Bank"],
    ),
    (
        "Northwind launches open-source chip design",
        "Northwind Tech Wire",
        "technology",
        "positive",
        "Northwind released the design of its low-power RISC-V chip under an open licence.",
        ["Chip targets sensors"],
        ["Northwind"],
    ),
    (
        "Harbor City Mariners win the coastal cup",
        "Harbor City Herald",
        "sports",
        "positive",
        "The Harbor City Mariners beat Port Ellis 3-1 to win the coastal cup final.",
        ["Final score 3-1"],
        ["Harbor City Mariners", "Port Ellis"],
    ),
]


def article_id(title: str) -> str:
    return hashlib.sha256(title.encode()).hexdigest()[:24]


def populate(path: Path | None = None, *, vectors: bool = False) -> list[str]:
    """Save the fixed analyses into the store at ``path`` (default: the NEWSDESK_HOME store);
    returns the article ids. ``vectors``: embed them too (loads the embedding model)."""
    embed = None
    if vectors:
        from newsdesk.news import _embed

        embed = _embed
    ids = []
    with Store(path) as store:
        for n, (title, source, topic, tone, summary, facts, places) in enumerate(ARTICLES):
            aid = article_id(title)
            article = Article(
                id=aid,
                source=source,
                url=f"https://example.test/{aid}",
                title=title,
                text=summary,
                published=datetime(2026, 3, 1 + n, tzinfo=UTC),
                content_hash=f"hash-{aid}",
                sources=[source],
            )
            analysis = ArticleAnalysis.model_validate(
                {
                    "summary": summary,
                    "topic": topic,
                    "tone": tone,
                    "sentiment": 0.0,
                    "key_facts": facts,
                    "entities": {"places": places},
                }
            )
            vec = None
            if embed is not None:
                vec = embed.vector_to_bytes(
                    embed.default_embedder().embed(
                        [embed.article_text(title, summary)], kind="passage"
                    )[0]
                )
            store.save_analysis(
                article, analysis, model="local/test", prompt_version="p1", run_id=None, vector=vec
            )
            ids.append(aid)
    return ids
