"""Built-in news tools over the store and the pipeline, as async smolagents tools.

Every output is compact plain text (one line per article, ids shortened to 8 characters, a hard
cap on length): the embedded model has a 2048-token window for the whole conversation.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from newsdesk._exceptions import NewsdeskError
from newsdesk.agents._tools import AsyncTool, async_tool
from newsdesk.news import TOPICS, NewsDesk, StoredAnalysis

T = TypeVar("T")

ID_CHARS = 8
MAX_OUTPUT = 1200  # characters per tool output (~350 tokens)
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "a an and any are about as at be by did do does for from has have how in is it its latest me news of "
    "on or recent show tell the there this to today was were what whats when where which who why with "
    "world".split()
)


_TOPICS_QUESTION = re.compile(r"\btopics\b|\bwhat (?:is|was) in the news\b", re.IGNORECASE)


def topics_overview(desk: NewsDesk, question: str = "", now: datetime | None = None) -> str:
    """Which topics the stored news covers on the day a question means ("today" unless it says
    "yesterday"), with counts and a title each; says so when that day has nothing, and names the
    latest day that has news instead of passing older news off as today's."""
    now = now or datetime.now(UTC)
    day = now.date() - timedelta(days=1 if "yesterday" in question.lower() else 0)
    word = "yesterday" if day != now.date() else "today"
    rows = desk.store.query(limit=5000)

    def when(r: Any) -> date:
        return (r.published or r.created_at).astimezone(UTC).date()

    on_day = [r for r in rows if when(r) == day]
    head = f"Topics in the stored news from {word} ({day.isoformat()})"
    if not on_day:
        if not rows:
            return "There is no stored news yet: analyze some feeds first."
        latest = max(when(r) for r in rows)
        on_day = [r for r in rows if when(r) == latest]
        head = (
            f"Nothing stored is from {word} ({day.isoformat()}). "
            f"The latest stored news is from {latest.isoformat()}; its topics"
        )
    counts: dict[str, list[Any]] = {}
    for r in on_day:
        counts.setdefault(r.analysis.topic, []).append(r)
    lines = [
        f"{head}: "
        + ", ".join(
            f"{t} ({len(v)})" for t, v in sorted(counts.items(), key=lambda kv: -len(kv[1]))
        )
    ]
    lines += [f"- {t}: e.g. {v[0].title}" for t, v in counts.items()]
    return _cap("\n".join(lines))


def _cap(text: str, limit: int = MAX_OUTPUT) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 2].rstrip() + " …"


def _line(r: Any) -> str:
    a = r.analysis
    when = f", {r.published:%Y-%m-%d}" if r.published else ""
    return f"[{r.article_id[:ID_CHARS]}] {r.title} — {a.summary} ({a.topic}, {r.source}{when})"


def _keywords(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if len(w) > 2 and w not in _STOP]


def _keyword_search(rows: list[Any], query: str, limit: int) -> list[Any]:
    """Rank by how many of the query's words appear in title, summary, topic and entities."""
    words = _keywords(query)
    if not words:
        return []
    scored = []
    for i, r in enumerate(rows):
        a = r.analysis
        ents = [*a.entities.people, *a.entities.organizations, *a.entities.places]
        hay = " ".join([r.title, a.summary, a.topic, *a.key_facts, *ents]).lower()
        found = set(_WORD.findall(hay))
        stems = {f[:5] for f in found if len(f) >= 5}
        # A crude stem (the first five letters) so "flooding" finds "floods" and "flooded".
        score = sum(1 for w in words if w in found or (len(w) >= 5 and w[:5] in stems))
        if score:
            scored.append((-score, i, r))
    scored.sort(key=lambda t: (t[0], t[1]))
    return [r for _, _, r in scored[:limit]]


def match_topic(text: str) -> str | None:
    """The taxonomy topic ``text`` names ("tech" -> technology, "Sports" -> sports), if any."""
    t = text.strip().lower()
    if t in TOPICS:
        return t
    for name in TOPICS:
        if name.startswith(t) and len(t) >= 3:
            return name
    words = set(_keywords(t))
    best, score = None, 0
    for name, desc in TOPICS.items():
        s = len(words & set(_WORD.findall(f"{name} {desc}")))
        if s > score:
            best, score = name, s
    return best


class NewsToolbox:
    """The store and pipeline settings the news tools work with.

    ``store``: a ``Store``, a path to one, or None for the default store. ``model`` /
    ``api_base``: the model ``analyze_feed`` analyzes with (default: newsdesk's default model).
    ``feed_limit``: at most this many new articles analyzed per ``analyze_feed`` call.
    ``private_sources=False`` (the web app): ``analyze_feed`` takes only http(s) URLs and its
    fetcher refuses loopback, private, link-local and metadata addresses.
    """

    def __init__(
        self,
        *,
        store: Any = None,
        model: str | None = None,
        api_base: str | None = None,
        gateway: Any = None,
        search_limit: int = 5,
        feed_limit: int = 5,
        private_sources: bool = True,
    ) -> None:
        self.private_sources = private_sources
        self._store = store
        self.model = model
        self.api_base = api_base
        self.gateway = gateway
        self.search_limit = search_limit
        self.feed_limit = feed_limit

    # ---- plumbing (sync: runs in a worker thread) ----------------------------------------

    def _desk(self) -> NewsDesk:
        """A desk over the toolbox's store: one given is shared, one named by path (or the
        default one) is opened for the call and closed after it."""
        return NewsDesk(
            store=self._store,
            gateway=self.gateway,
            model=self.model,
            api_base=self.api_base,
            private_sources=self.private_sources,
        )

    def _with_desk(self, fn: Callable[[NewsDesk], T]) -> T:
        desk = self._desk()
        try:
            return fn(desk)
        finally:
            desk.close()

    def _search(self, query: str) -> list[StoredAnalysis]:
        def run(desk: NewsDesk) -> list[StoredAnalysis]:
            rows: list[StoredAnalysis] = []
            try:
                rows = [r for r, _ in desk.search(query=query, limit=self.search_limit)]
            except (NewsdeskError, ImportError):
                rows = []  # no embedding model: the keyword search below still works
            if not rows:
                rows = _keyword_search(desk.store.query(limit=2000), query, self.search_limit)
            return rows

        return self._with_desk(run)

    def _find(self, article_id: str) -> StoredAnalysis | list[StoredAnalysis]:
        key = article_id.strip().strip("[]").lower()

        def run(desk: NewsDesk) -> StoredAnalysis | list[StoredAnalysis]:
            rows = desk.store.query(limit=None)
            matches = [r for r in rows if r.article_id.lower().startswith(key)]
            return matches[0] if len(matches) == 1 else matches

        return self._with_desk(run)

    # ---- the tools' work (async) ----------------------------------------------------------

    async def search_news(self, query: str) -> str:
        if _TOPICS_QUESTION.search(query):  # "which topics are in today's news?": an overview
            return await asyncio.to_thread(self._with_desk, lambda d: topics_overview(d, query))
        rows = await asyncio.to_thread(self._search, query)
        if not rows:
            return f"No stored articles match {query!r}."
        return _cap("\n".join(_line(r) for r in rows))

    async def get_analysis(self, article_id: str) -> str:
        found = await asyncio.to_thread(self._find, article_id)
        if isinstance(found, list):
            if not found:
                return f"No stored article has the id {article_id!r}. Ids come from search_news, e.g. [1a2b3c4d]."
            ids = ", ".join(r.article_id[: ID_CHARS + 4] for r in found[:5])
            return f"The id {article_id!r} matches several articles: {ids}. Give more of the id."
        r = found
        a = r.analysis
        lines = [
            f"[{r.article_id[:ID_CHARS]}] {r.title}",
            f"source: {', '.join(r.sources or [r.source])}"
            + (f"; published {r.published:%Y-%m-%d}" if r.published else ""),
            f"topic: {a.topic}; tone: {a.tone} ({a.sentiment:+.2f})",
            f"summary: {a.summary}",
        ]
        lines += [f"- {fact}" for fact in a.key_facts[:3]]
        ents = [*a.entities.people, *a.entities.organizations, *a.entities.places]
        if ents:
            lines.append("entities: " + ", ".join(ents[:8]))
        lines.append(f"url: {r.url}")
        return _cap("\n".join(lines))

    async def analyze_feed(self, url: str) -> str:
        if not self.private_sources and not url.strip().lower().startswith(("http://", "https://")):
            return f"Cannot use {url!r}: only http(s) feed URLs can be analyzed here."
        desk = self._desk()
        try:
            try:
                sources = desk.sources([url])
            except NewsdeskError as exc:
                return f"Cannot use {url!r}: {exc}"
            return await self._analyze(desk, url, sources)
        finally:
            await asyncio.to_thread(desk.close)

    async def _analyze(self, desk: NewsDesk, url: str, sources: list[Any]) -> str:
        done: list[str] = []
        failed: list[str] = []
        summary = ""
        try:
            async for ev in desk.run(sources, limit=self.feed_limit, deltas=False):
                if ev.event == "analysis":
                    a = ev.analysis
                    done.append(f"[{ev.id[:ID_CHARS]}] {ev.title} — {a.summary} ({a.topic})")
                elif ev.event == "analysis_error":
                    failed.append(ev.title)
                elif ev.event == "source_error":
                    failed.append(f"{ev.source}: {ev.reason}")
                elif ev.event == "done":
                    summary = (
                        f"{ev.sources_ok} source(s) read, {ev.analyzed} article(s) analyzed"
                        f"{f', {ev.failed} failed' if ev.failed else ''}."
                    )
        except NewsdeskError as exc:  # the model: unknown, or no key for it
            return f"Cannot analyze {url!r}: {exc}"
        if not done and failed:
            return _cap(f"Nothing analyzed from {url}: " + "; ".join(failed[:3]))
        return _cap("\n".join([summary or f"{len(done)} article(s) analyzed.", *done]))

    async def topic_digest(self, topic: str) -> str:
        name = match_topic(topic)
        if name is None:
            return f"Unknown topic {topic!r}. Topics: {', '.join(TOPICS)}."
        rows = await asyncio.to_thread(
            self._with_desk, lambda desk: desk.store.query(topic=name, limit=8)
        )
        if not rows:
            return f"No stored analyses on {name}."
        head = f"{len(rows)} latest stored analyses on {name}:"
        return _cap("\n".join([head, *(f"- {r.title}: {r.analysis.summary}" for r in rows)]))

    # ---- as smolagents tools --------------------------------------------------------------

    def tools(self, names: list[str] | tuple[str, ...] | None = None) -> list[AsyncTool]:
        """The tools (all four by default), bound to this toolbox."""
        box = self

        @async_tool
        async def search_news(query: str) -> str:
            """Search the analyzed news articles by meaning. Returns one line per article: [id] title — summary (topic, source, date); a question about topics gets the day's topics with counts.

            Args:
                query: What to look for, e.g. "floods in the north" or "central bank rates".
            """
            return await box.search_news(query)

        @async_tool
        async def get_analysis(article_id: str) -> str:
            """The full stored analysis of one article: summary, topic, tone, key facts, entities, url.

            Args:
                article_id: The article id from search_news, e.g. "1a2b3c4d".
            """
            return await box.get_analysis(article_id)

        @async_tool
        async def analyze_feed(url: str) -> str:
            """Fetch a news feed now, analyze its new articles and store them. Returns a short summary per article.

            Args:
                url: The feed's URL (RSS, Atom or JSON Feed) or a local feed file path.
            """
            return await box.analyze_feed(url)

        @async_tool
        async def topic_digest(topic: str) -> str:
            """Summaries of the latest stored analyses on one topic.

            Args:
                topic: One of politics, conflict, business, technology, science, health, sports, entertainment, crime, disaster, environment.
            """
            return await box.topic_digest(topic)

        every = {t.name: t for t in (search_news, get_analysis, analyze_feed, topic_digest)}
        wanted = list(every) if names is None else list(names)
        unknown = [n for n in wanted if n not in every]
        if unknown:
            raise ValueError(f"unknown news tool(s) {unknown}; choose from {list(every)}")
        return [every[n] for n in wanted]


def news_tools(
    *,
    store: Any = None,
    model: str | None = None,
    api_base: str | None = None,
    gateway: Any = None,
    names: list[str] | tuple[str, ...] | None = None,
) -> list[AsyncTool]:
    """``search_news``, ``get_analysis``, ``analyze_feed`` and ``topic_digest`` as async tools
    over ``store`` (a ``Store``, a path, or None for the default one). ``names`` picks some."""
    return NewsToolbox(store=store, model=model, api_base=api_base, gateway=gateway).tools(names)
