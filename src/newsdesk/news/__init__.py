"""The news-analysis system built on the newsdesk core."""

from newsdesk.news._models import TOPICS, Article, ArticleAnalysis, Entities, Source

__all__ = ["TOPICS", "Article", "ArticleAnalysis", "Entities", "Source"]
