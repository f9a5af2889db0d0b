"""The news domain's data: serialisable pydantic models, shared by every step.

One article's analysis is a self-contained unit of work: ``Article`` in, ``ArticleAnalysis`` out,
both JSON-serialisable, so a job queue can carry them between machines later.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

# The fixed topic taxonomy. The one-line descriptions feed the prompt and the embedding classifier.
TOPICS: dict[str, str] = {
    "politics": "government, elections, parliament, political parties, diplomacy and foreign policy",
    "conflict": "war, armed conflict, terrorism, military action and security threats",
    "business": "economy, companies, markets, finance, trade, jobs and industry",
    "technology": "computers, software, the internet, gadgets, telecommunications and tech companies",
    "science": "scientific research, discoveries, space exploration and academic studies",
    "health": "medicine, diseases, hospitals, public health and healthcare",
    "sports": "sport, athletes, matches, tournaments and competitions",
    "entertainment": "film, music, television, celebrities, arts and culture",
    "crime": "crime, police, courts, trials, law and justice",
    "disaster": "natural disasters, bushfires, floods, storms, accidents and emergencies",
    "environment": "climate, pollution, conservation, wildlife and energy policy",
}
Topic = Literal[
    "politics",
    "conflict",
    "business",
    "technology",
    "science",
    "health",
    "sports",
    "entertainment",
    "crime",
    "disaster",
    "environment",
]
Tone = Literal["positive", "neutral", "negative"]


class Source(BaseModel):
    """A news source: a feed URL or a local file path."""

    name: str
    url: str
    category: str | None = None
    # per-source settings (all optional): timeout seconds, max_articles, headers
    timeout: float | None = None
    max_articles: int | None = None


class Article(BaseModel):
    """One normalized article. ``id`` is stable across runs (derived from canonical URL or GUID)."""

    id: str
    source: str
    url: str
    title: str
    text: str = ""
    published: datetime | None = None
    author: str | None = None
    language: str | None = None
    guid: str | None = None
    content_hash: str = ""
    # every source that carried this story (filled by deduplication; starts as [source])
    sources: list[str] = Field(default_factory=list)


class Entities(BaseModel):
    people: list[str] = Field(default_factory=list, max_length=8)
    organizations: list[str] = Field(default_factory=list, max_length=8)
    places: list[str] = Field(default_factory=list, max_length=8)


class ArticleAnalysis(BaseModel):
    """What the LLM says about one article (validated)."""

    summary: str = Field(description="One sentence saying what happened.", max_length=400)
    topic: Topic = Field(description="The article's main topic.")
    tone: Tone = Field(description="The overall tone of the news for the people involved.")
    sentiment: float = Field(
        description="Sentiment from -1 (very negative) to 1 (very positive).", ge=-1, le=1
    )
    key_facts: list[str] = Field(
        default_factory=list, max_length=5, description="Up to 5 key facts."
    )
    entities: Entities = Field(default_factory=Entities)
