"""Searching stored analyses: by topic, source, date and story, and ranked by meaning."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from newsdesk._exceptions import ConfigError
from newsdesk.news._models import TOPICS
from newsdesk.news._store import Store, StoredAnalysis

Found = tuple[StoredAnalysis, float | None]
"""A stored analysis and its similarity to the query (None when no query ranked it)."""


def parse_since(value: str | datetime | None) -> datetime | None:
    """A point in time from a date ("2025-03-01"), a number of days back ("7d", "7") or a
    datetime; naive ones are UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    else:
        m = re.fullmatch(r"(\d+)\s*d?", value.strip())
        if m:
            return datetime.now(UTC) - timedelta(days=int(m.group(1)))
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ConfigError(
                f"since takes a date (YYYY-MM-DD) or a number of days (7d), not {value!r}"
            ) from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def check_topic(topic: str | None) -> None:
    if topic is not None and topic not in TOPICS:
        raise ConfigError(f"unknown topic {topic!r}: one of {', '.join(TOPICS)}")


def search_store(
    store: Store,
    *,
    topic: str | None = None,
    source: str | None = None,
    since: datetime | None = None,
    story: str | None = None,
    query: str | None = None,
    limit: int = 30,
) -> list[Found]:
    """Filtered analyses, newest first; with ``query``, ranked by meaning (embedding search)
    within the filters, or matched as text when no stored analysis has a vector. Blocking."""
    check_topic(topic)

    def matching(limit: int | None, text: str | None = None) -> list[StoredAnalysis]:
        return store.query(
            topic=topic, source=source, since=since, story=story, text=text, limit=limit
        )

    if not query:
        return [(r, None) for r in matching(limit)]
    from newsdesk.news import _embed

    with_vec = [r for r in matching(100000) if r.vector]
    if not with_vec:
        return [(r, None) for r in matching(limit, text=query)]
    import numpy as np

    emb = _embed.default_embedder()
    qv = emb.embed([query], kind="query")[0]
    mat = np.stack([_embed.vector_from_bytes(r.vector) for r in with_vec if r.vector])
    return [(with_vec[i], score) for i, score in _embed.semantic_search(qv, mat, limit)]
