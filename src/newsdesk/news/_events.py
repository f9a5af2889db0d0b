"""The pipeline's event stream: every front end (rich live view, JSONL, web app, agents) consumes
these and nothing else. Each event is a pydantic model with an ``event`` name; ``to_json()`` is the
JSONL contract documented in the README."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from newsdesk.news._models import ArticleAnalysis


class _Event(BaseModel):
    source: str = ""

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=False)


class RunStarted(_Event):
    event: Literal["run_started"] = "run_started"
    run_id: str
    sources: list[str]
    model: str


class SourceOk(_Event):
    event: Literal["source_ok"] = "source_ok"
    url: str
    title: str | None = None  # the feed's own title, when it has one
    articles: int = 0
    new_articles: int = 0
    not_modified: bool = False
    warnings: list[str] = Field(default_factory=list)
    elapsed: float = 0.0


class SourceFailed(_Event):
    event: Literal["source_error"] = "source_error"
    url: str
    reason: str


class ArticleFound(_Event):
    event: Literal["article"] = "article"
    id: str
    url: str
    title: str
    published: datetime | None = None
    sources: list[str] = Field(default_factory=list)
    duplicate_of: str | None = None  # set when this source's copy merged into an earlier article


class AnalysisDelta(_Event):
    """Text of an in-flight analysis as the model writes it (live view and web app only)."""

    event: Literal["analysis_delta"] = "analysis_delta"
    id: str
    text: str


class AnalysisReady(_Event):
    event: Literal["analysis"] = "analysis"
    id: str
    url: str
    title: str
    analysis: ArticleAnalysis
    cached: bool = False
    story: str | None = None
    sources: list[str] = Field(default_factory=list)
    model: str = ""
    latency: float = 0.0
    topic_by: Literal["llm", "embedding"] = "llm"

    def to_json(self) -> str:
        # The analysis fields sit at the top level of the JSONL object, beside the event's own.
        data: dict[str, Any] = self.model_dump(mode="json", exclude={"analysis"})
        data.update(self.analysis.model_dump(mode="json"))
        import json

        return json.dumps(data, ensure_ascii=False)


class AnalysisFailed(_Event):
    event: Literal["analysis_error"] = "analysis_error"
    id: str
    url: str = ""
    title: str = ""
    reason: str


class DigestReady(_Event):
    event: Literal["digest"] = "digest"
    topic: str
    summary: str
    articles: int


class RunDone(_Event):
    event: Literal["done"] = "done"
    run_id: str
    sources_ok: int = 0
    sources_failed: int = 0
    articles: int = 0
    duplicates: int = 0
    analyzed: int = 0
    from_cache: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    wall: float = 0.0
    sum_latency: float = 0.0
    saved: float = 0.0
    failures: dict[str, str] = Field(default_factory=dict, description="source -> reason")


Event = Annotated[
    RunStarted
    | SourceOk
    | SourceFailed
    | ArticleFound
    | AnalysisDelta
    | AnalysisReady
    | AnalysisFailed
    | DigestReady
    | RunDone,
    Field(discriminator="event"),
]
