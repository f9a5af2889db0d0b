"""The news-analysis system built on the newsdesk core.

    from newsdesk.news import NewsDesk

    async with NewsDesk() as desk:
        async for event in desk.run(["https://example.org/feed.xml"], limit=10):
            print(event.to_json())
        for analysis, _score in desk.search(topic="business", since="7d"):
            print(analysis.title, analysis.analysis.summary)

``NewsDesk`` holds the gateway, the store and the defaults; ``run`` yields the typed ``Event``
union; the pipeline's parts (fetcher, store, ``AnalysisExecutor``) can be swapped in ``NewsRun``.
"""

from newsdesk.news._analyze import AnalysisResult
from newsdesk.news._desk import NewsDesk, SourceSpec
from newsdesk.news._events import (
    AnalysisDelta,
    AnalysisFailed,
    AnalysisReady,
    ArticleFound,
    DigestReady,
    Event,
    RunDone,
    RunStarted,
    SourceFailed,
    SourceOk,
)
from newsdesk.news._executor import AnalysisExecutor, AnalysisJob, LocalExecutor
from newsdesk.news._models import TOPICS, Article, ArticleAnalysis, Entities, Source
from newsdesk.news._pipeline import NewsRun, PipelineOptions, run_pipeline
from newsdesk.news._run_store import AsyncStore, RunStore
from newsdesk.news._search import parse_since
from newsdesk.news._sources import demo_sources, resolve_sources
from newsdesk.news._store import RunRecord, SourceHealth, Store, StoredAnalysis, StoredBatch

__all__ = [
    "TOPICS",
    "AnalysisDelta",
    "AnalysisExecutor",
    "AnalysisFailed",
    "AnalysisJob",
    "AnalysisReady",
    "AnalysisResult",
    "Article",
    "ArticleAnalysis",
    "ArticleFound",
    "AsyncStore",
    "DigestReady",
    "Entities",
    "Event",
    "LocalExecutor",
    "NewsDesk",
    "NewsRun",
    "PipelineOptions",
    "RunDone",
    "RunRecord",
    "RunStarted",
    "RunStore",
    "SourceFailed",
    "SourceHealth",
    "SourceOk",
    "SourceSpec",
    "Source",
    "Store",
    "StoredAnalysis",
    "StoredBatch",
    "demo_sources",
    "parse_since",
    "resolve_sources",
    "run_pipeline",
]
