"""The News tab: pick sources, run the pipeline, watch results, charts and statuses fill in live.

``NewsRunView`` folds the pipeline's events into what the tab shows (pure Python + pandas, easy
to test); ``build_news_tab`` wires it to Gradio. The run handler is an async generator that
consumes ``NewsDesk.run`` through ``paced`` so the browser gets a few updates a second however
fast events arrive, and cancelling the handler (Stop, a closed tab) cancels the whole run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from newsdesk._exceptions import ConfigError, NewsdeskError
from newsdesk.news import ArticleAnalysis, Source, demo_sources, resolve_sources
from newsdesk.web._aio import closing, paced
from newsdesk.web._context import WebContext
from newsdesk.web._text import clip, md_link, md_text

if TYPE_CHECKING:
    import pandas as pd

UPDATE_INTERVAL = 0.3  # seconds between UI updates while a run streams
WAIT_HINT_AFTER = 2.0  # seconds without model output before "waiting for the model" shows
TABLE_COLUMNS = ["#", "title", "source(s)", "topic", "tone", "sentiment", "story", "summary"]
CellType = Literal["str", "number", "bool", "date", "markdown", "html"]
# Plain "str"/"number" cells only: they render as text, never as Markdown or HTML.
TABLE_TYPES: list[CellType] = ["number", "str", "str", "str", "str", "number", "str", "str"]
_STATUS_ICON = {"pending": "…", "ok": "**ok**", "failed": "**failed**"}


# ---------------------------------------------------------------- sources


def web_sources(
    demo_names: list[str] | None, urls_text: str | None, files: list[Any] | None
) -> list[Source]:
    """The sources a web user asked for: checked demo feeds, http(s) URLs (one per line, ``#``
    comments allowed) and uploaded files (a feed, OPML or sources.toml).

    Local paths are refused except the uploaded files themselves and the bundled demo feeds: a
    web user must not make the server read its own files (an uploaded sources.toml pointing at
    ``/etc/...`` included)."""
    chosen = set(demo_names or [])
    sources = [s for s in demo_sources() if s.name in chosen]
    specs: list[str | Path] = []
    for raw in (urls_text or "").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if urlsplit(line).scheme.lower() not in ("http", "https"):
            raise ConfigError(f"not an http(s) URL: {line!r} (upload a file to use a local feed)")
        specs.append(line)
    uploaded: set[Path] = set()
    for f in files or []:
        path = Path(
            str(f if isinstance(f, str) else getattr(f, "path", None) or getattr(f, "name", ""))
        )
        uploaded.add(path.resolve())
        specs.append(path)
    own = resolve_sources(specs) if specs else []
    for s in own:
        if urlsplit(s.url).scheme.lower() in ("http", "https"):
            continue
        if Path(s.url).resolve() not in uploaded:
            raise ConfigError(
                f"source {s.name!r} points at a local path ({s.url}); the web app reads only "
                "http(s) feeds and uploaded files"
            )
    return resolve_sources([*sources, *own])  # names made unique across both


# ---------------------------------------------------------------- the run's view


@dataclass
class Row:
    """One analyzed article as the results table shows it."""

    n: int
    id: str
    title: str
    url: str
    source: str
    sources: list[str]
    analysis: ArticleAnalysis
    story: str | None = None
    published: datetime | None = None
    cached: bool = False
    model: str = ""
    latency: float = 0.0
    topic_by: str = "llm"


@dataclass
class NewsRunView:
    """Everything the News tab shows about one run, folded from the pipeline's events."""

    source_names: list[str]
    urls: dict[str, str] = field(default_factory=dict)  # source name -> its URL
    labels: dict[str, str] = field(default_factory=dict)  # source name -> what the user sees
    status: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (state, text)
    rows: list[Row] = field(default_factory=list)
    by_id: dict[str, Row] = field(default_factory=dict)
    published: dict[str, datetime | None] = field(default_factory=dict)
    carried_by: dict[str, list[str]] = field(default_factory=dict)  # article id -> sources
    titles: dict[str, str] = field(default_factory=dict)
    inflight: dict[str, str] = field(default_factory=dict)  # article id -> analysis text so far
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (title, source, reason)
    digests: list[Any] = field(default_factory=list)
    run_id: str | None = None
    model: str = ""
    done: Any = None
    error: str | None = None
    cancelled: bool = False
    waiting: bool = False  # articles are queued but the (shared, embedded) model is busy elsewhere
    # Monotonic times seen while folding: when each analysis began streaming and ended, so the
    # summary can tell time in the model from time waiting for it.
    stream_start: dict[str, float] = field(default_factory=dict)
    spans: list[tuple[float, float]] = field(default_factory=list)
    found_by_source: dict[str, int] = field(default_factory=dict)
    # What changed since the last render, so unchanged components are skipped.
    dirty: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        for name in self.source_names:
            self.status.setdefault(name, ("pending", "fetching…"))

    # -- events ------------------------------------------------------------------------------

    def apply(self, ev: Any, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        kind = ev.event
        if kind == "source_ok" and ev.title:
            self._relabel(ev.source, ev.url, ev.title)
        if kind == "run_started":
            self.run_id, self.model = ev.run_id, ev.model
            self.dirty.add("status")
        elif kind == "source_ok":
            text = f"{ev.articles} articles"
            if ev.not_modified:
                text += " (not modified since last run)"
            if ev.warnings:
                text += " · warning: " + "; ".join(ev.warnings[:2])
            self.status[ev.source] = ("ok", text)
            self.dirty.add("status")
        elif kind == "source_error":
            self.status[ev.source] = ("failed", ev.reason)
            self.dirty.add("status")
        elif kind == "article":
            self.published.setdefault(ev.id, ev.published)
            key = ev.duplicate_of or ev.id
            merged = _merge(self.carried_by.get(key, []), ev.sources)
            self.carried_by[key] = merged
            if ev.duplicate_of is None:
                self.titles[ev.id] = ev.title
                self.found_by_source[ev.source] = self.found_by_source.get(ev.source, 0) + 1
            row = self.by_id.get(key)
            if row is not None:
                row.sources = _merge(row.sources, merged)
                if row.published is None and ev.duplicate_of is None:
                    row.published = ev.published
                self.dirty.update(("table", "charts"))
            self.dirty.add("status")
        elif kind == "analysis_delta":
            self.inflight[ev.id] = self.inflight.get(ev.id, "") + ev.text
            self.stream_start.setdefault(ev.id, now)
            if self.waiting:
                self.waiting = False
                self.dirty.add("status")
            self.dirty.add("inflight")
        elif kind == "analysis":
            self.inflight.pop(ev.id, None)
            if ev.id in self.stream_start:
                self.spans.append((self.stream_start.pop(ev.id), now))
            row = Row(
                n=len(self.rows) + 1,
                id=ev.id,
                title=ev.title,
                url=ev.url,
                source=ev.source,
                sources=_merge(ev.sources or [ev.source], self.carried_by.get(ev.id, [])),
                analysis=ev.analysis,
                story=ev.story,
                published=self.published.get(ev.id),
                cached=ev.cached,
                model=ev.model,
                latency=ev.latency,
                topic_by=ev.topic_by,
            )
            self.rows.append(row)
            self.by_id[ev.id] = row
            self.dirty.update(("table", "charts", "inflight", "status"))
        elif kind == "analysis_error":
            self.inflight.pop(ev.id, None)
            self.stream_start.pop(ev.id, None)
            self.failures.append((ev.title or ev.id, ev.source, ev.reason))
            self.dirty.update(("inflight", "status"))
        elif kind == "digest":
            self.digests.append(ev)
            self.dirty.add("summary")
        elif kind == "done":
            self.done = ev
            self.waiting = False
            self.inflight.clear()
            self.dirty.update(("status", "inflight", "summary"))

    def add_stored(self, stored: Any, keep: int | None = None) -> None:
        """An analysis read from the store (following a watch, see ``_follow``): a new row, or
        the article's row replaced in place when it was analyzed again. ``keep``: the most rows
        to hold; the oldest go first (a watch can run all day)."""
        old = self.by_id.get(stored.article_id)
        row = Row(
            n=old.n if old is not None else (self.rows[-1].n + 1 if self.rows else 1),
            id=stored.article_id,
            title=stored.title,
            url=stored.url,
            source=stored.source,
            sources=_merge(stored.sources or [stored.source]),
            analysis=stored.analysis,
            story=stored.story,
            published=stored.published,
            model=stored.model,
            latency=stored.latency,
            topic_by=stored.topic_by,
        )
        if old is not None:
            self.rows[self.rows.index(old)] = row
        else:
            self.rows.append(row)
        self.by_id[row.id] = row
        self.model = stored.model
        if keep is not None and len(self.rows) > keep:
            for gone in self.rows[: len(self.rows) - keep]:
                del self.by_id[gone.id]
            del self.rows[: len(self.rows) - keep]
        self.dirty.update(("table", "charts"))

    def label(self, name: str) -> str:
        return self.labels.get(name, name)

    def _relabel(self, name: str, url: str, title: str) -> None:
        """A URL source is named after its host ("127.0.0.1 (2)"); the feed's own title says
        more. Names the user chose (demo feeds, sources.toml) stay."""
        host = urlsplit(url).hostname or ""
        if not host or not (name == host or name.startswith(f"{host} (")):
            return
        label, k = " ".join(title.split())[:60], 2
        taken = {v for n, v in self.labels.items() if n != name} | set(self.source_names)
        while label in taken:
            label, k = f"{' '.join(title.split())[:60]} ({k})", k + 1
        self.labels[name] = label
        self.dirty.update(("status", "table", "charts"))

    def fail(self, message: str) -> None:
        self.error = message
        self.dirty.update(("status", "summary"))

    def stop(self) -> None:
        """The user stopped the run: nothing is in flight any more, and that is not an error."""
        self.cancelled = True
        self.waiting = False
        self.inflight.clear()
        self.stream_start.clear()
        self.dirty.update(("status", "inflight", "summary"))

    def set_waiting(self, waiting: bool) -> None:
        """Whether this run's articles wait for a model another session is using."""
        if waiting != self.waiting:
            self.waiting = waiting
            self.dirty.add("status")

    def pending(self) -> int:
        """Articles found but neither analyzed nor failed yet."""
        return max(0, len(self.titles) - len(self.rows) - len(self.failures))

    def source_counts(self, name: str) -> tuple[int, int]:
        """(analyzed now by the model, remembered from the store) for one source's articles."""
        fresh = remembered = 0
        for r in self.rows:
            if r.source == name:
                if r.cached:
                    remembered += 1
                else:
                    fresh += 1
        return fresh, remembered

    def timing(self) -> dict[str, float]:
        """Time in the model vs. waiting for it, from when analyses streamed (see ``apply``).

        ``model``: summed time analyses spent streaming; ``busy``: time at least one streamed;
        ``at_once``: the most that streamed at the same moment; ``queued``: summed latency
        beyond time in the model (waiting for a slot, the model lock or the provider)."""
        spans = sorted(self.spans)
        model = sum(b - a for a, b in spans)
        busy = 0.0
        at_once = 0
        end = float("-inf")
        for a, b in spans:
            if a >= end:
                busy += b - a
            elif b > end:
                busy += b - end
            end = max(end, b)
        points = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
        current = 0
        for _t, step in points:
            current += step
            at_once = max(at_once, current)
        fresh = [r for r in self.rows if not r.cached]
        latency = sum(r.latency for r in fresh)
        return {
            "model": model,
            "busy": busy,
            "at_once": float(at_once),
            "queued": max(0.0, latency - model) if spans else 0.0,
            "latency": latency,
            "fresh": float(len(fresh)),
        }

    # -- rendering ---------------------------------------------------------------------------

    def status_markdown(self) -> str:
        lines: list[str] = []
        if self.error:
            lines.append(f"**Error:** {md_text(self.error)}\n")
        analyzed = len(self.rows)
        expected = len(self.titles)
        progress = f"**{'Stopped: analyzed' if self.cancelled else 'Analyzed'} {analyzed}"
        if expected:
            progress += f" of {expected}"
        progress += "**"
        if self.failures:
            progress += f" · {len(self.failures)} failed"
        if self.inflight:
            progress += f" · {len(self.inflight)} in flight"
        if self.done is not None:
            progress += f" · finished in {self.done.wall:.1f} s"
        if self.model:
            progress += f" · model {md_text(self.model)}"
        lines.append(progress + "\n")
        if self.waiting and self.done is None and not self.cancelled:
            lines.append(
                f"_Waiting for the model: {self.pending()} articles are queued while another "
                "run or chat (perhaps in another browser session) is using it. The embedded "
                "model analyzes one article at a time._\n"
            )
        lines.append("| source | status |\n|---|---|")

        def cell(name: str) -> str:
            url = self.urls.get(name, "")
            shown = md_text(self.label(name))
            if url.startswith(("http://", "https://")) and self.label(name) != url:
                shown += f"<br><small>{md_text(url)}</small>"
            return shown

        for name, (state, text) in self.status.items():
            icon = _STATUS_ICON.get(state, "")
            if state == "ok":
                fresh, remembered = self.source_counts(name)
                if fresh or remembered:
                    text += f" · {fresh} analyzed now, {remembered} remembered from earlier runs"
            elif state == "pending" and self.cancelled:
                icon, text = "", "stopped before it was read"
            lines.append(f"| {cell(name)} | {icon} {md_text(text)} |")
        if self.failures:
            lines.append("\n**Analyses that failed**\n")
            for title, source, reason in self.failures[-20:]:
                lines.append(f"- {md_text(title)} ({md_text(source)}): {md_text(reason)}")
        return "\n".join(lines)

    def inflight_text(self, limit: int = 3, tail: int = 400) -> str:
        parts = []
        for art_id, text in list(self.inflight.items())[-limit:]:
            title = self.titles.get(art_id, art_id)
            snippet = " ".join(text.split())[-tail:]
            parts.append(f"▸ {title}\n{snippet}")
        return "\n\n".join(parts)

    def story_labels(self) -> dict[str, str]:
        """The story column: the story's own id (the one the detail view, ``newsdesk show`` and
        the store use, so a reader can search for it), with how many rows of this run share it."""
        counts: dict[str, int] = {}
        for row in self.rows:
            if row.story:
                counts[row.story] = counts.get(row.story, 0) + 1
        return {s: s + (f" ×{n}" if n > 1 else "") for s, n in counts.items()}

    def table(self) -> pd.DataFrame:
        import pandas as pd

        labels = self.story_labels()
        data = [
            [
                r.n,
                r.title,
                ", ".join(self.label(s) for s in r.sources or [r.source]),
                r.analysis.topic,
                r.analysis.tone,
                round(r.analysis.sentiment, 2),
                labels.get(r.story or "", ""),
                clip(r.analysis.summary),
            ]
            for r in self.rows
        ]
        return pd.DataFrame(data, columns=TABLE_COLUMNS)

    def count_top(self) -> int:
        """The articles-per-topic axis top: the largest count, at least 5 (see the plot)."""
        counts: dict[str, int] = {}
        for r in self.rows:
            counts[r.analysis.topic] = counts.get(r.analysis.topic, 0) + 1
        return max([5, *counts.values()])

    def topic_frame(self) -> pd.DataFrame:
        import pandas as pd

        counts: dict[str, int] = {}
        for r in self.rows:
            counts[r.analysis.topic] = counts.get(r.analysis.topic, 0) + 1
        return pd.DataFrame(
            {
                "topic": pd.Series(list(counts), dtype=str),
                "articles": pd.Series(list(counts.values()), dtype=int),
            }
        )

    def source_frame(self) -> pd.DataFrame:
        import pandas as pd

        sums: dict[str, list[float]] = {}
        for r in self.rows:
            for s in r.sources or [r.source]:
                sums.setdefault(self.label(s), []).append(r.analysis.sentiment)
        names = list(sums)
        return pd.DataFrame(
            {
                "source": pd.Series(names, dtype=str),
                "sentiment": pd.Series(
                    [round(sum(v) / len(v), 3) for v in sums.values()], dtype=float
                ),
                "articles": pd.Series([len(v) for v in sums.values()], dtype=int),
            }
        )

    def time_frame(self) -> pd.DataFrame:
        return sentiment_by_day([(r.published, r.analysis.sentiment) for r in self.rows])

    def summary_markdown(self) -> str:
        lines: list[str] = []
        if self.error and self.done is None and self.run_id:  # before a run: the status says it
            lines.append(f"**The run stopped:** {md_text(self.error)}")
        if self.cancelled and self.done is None:
            lines.append(
                f"**Stopped.** {len(self.rows)} analyses finished before the stop and are kept "
                "(see History)."
            )
        d = self.done
        if d is not None:
            lines.append("### Run summary")
            remembered = sum(1 for r in self.rows if r.cached)
            lines.append(
                f"- sources: {d.sources_ok} ok, {d.sources_failed} failed\n"
                f"- articles: {len(self.titles)} found, {d.duplicates} duplicates merged\n"
                f"- analyzed: {d.analyzed} — {d.analyzed - remembered} by the model now, "
                f"{remembered} remembered from earlier runs; {d.failed} failed\n"
                f"- tokens: {d.prompt_tokens} prompt + {d.completion_tokens} completion"
                + (f" · cost ${d.cost:.6f}" if d.cost else "")
                + "\n"
                + self._timing_line(d.wall)
            )
            for name, reason in d.failures.items():
                lines.append(f"- failed source {md_text(name)}: {md_text(reason)}")
        if self.digests:
            lines.append("### Digest by topic")
            for dg in self.digests:
                lines.append(
                    f"**{md_text(dg.topic)}** ({dg.articles} articles): {md_text(dg.summary)}"
                )
        return "\n\n".join(lines)

    def _timing_line(self, wall: float) -> str:
        t = self.timing()
        line = f"- wall time {wall:.1f} s"
        if not t["fresh"]:
            return line + " (nothing needed the model)"
        if not self.spans:  # no streamed text to time: say only what is known
            return line + f" · {t['latency']:.1f} s summed over analyses (waiting included)"
        n = int(t["fresh"])
        line += (
            f" · in the model {t['model']:.1f} s ({t['model'] / n:.1f} s per analysis)"
            f" · waiting in the queue {t['queued']:.1f} s summed over analyses"
        )
        if t["at_once"] > 1 and t["model"] - t["busy"] > 0.5:
            line += (
                f" · up to {int(t['at_once'])} ran at once, "
                f"saving {t['model'] - t['busy']:.1f} s of model time"
            )
        else:
            line += " · analyses ran one at a time"
        return line


def _merge(*lists: list[str]) -> list[str]:
    out: list[str] = []
    for items in lists:
        for x in items:
            if x not in out:
                out.append(x)
    return out


def sentiment_by_day(points: list[tuple[datetime | None, float]]) -> pd.DataFrame:
    import pandas as pd

    by_day: dict[Any, list[float]] = {}
    for when, sentiment in points:
        if when is None:
            continue
        by_day.setdefault(when.date(), []).append(sentiment)
    days = sorted(by_day)
    return pd.DataFrame(
        {
            # One label per day as text: a time axis over two days labels "06 AM", "12 PM"…
            "day": pd.Series([d.isoformat() for d in days], dtype=str),
            "sentiment": pd.Series(
                [round(sum(by_day[d]) / len(by_day[d]), 3) for d in days], dtype=float
            ),
            "articles": pd.Series([len(by_day[d]) for d in days], dtype=int),
        }
    )


def analysis_markdown(
    *,
    title: str,
    url: str,
    analysis: ArticleAnalysis,
    sources: list[str],
    published: datetime | None,
    story: str | None,
    story_mates: list[tuple[str, list[str]]],
    model: str = "",
    cached: bool = False,
    topic_by: str = "",
) -> str:
    """The full analysis of one article, every source that carried it, and the other articles
    of its story (escaped: all of it may come from a hostile feed)."""
    a = analysis
    lines = [f"### {md_link(title, url)}"]
    meta = [
        f"**topic** {md_text(a.topic)}" + (f" (by {md_text(topic_by)})" if topic_by else ""),
        f"**tone** {md_text(a.tone)}",
        f"**sentiment** {a.sentiment:+.2f}",
    ]
    if published is not None:
        meta.append(f"**published** {md_text(published.strftime('%Y-%m-%d %H:%M'))}")
    if model:
        meta.append(f"**model** {md_text(model)}" + (" (cached)" if cached else ""))
    lines.append(" · ".join(meta))
    lines.append(f"**Summary:** {md_text(a.summary)}")
    if a.key_facts:
        lines.append("**Key facts**\n\n" + "\n".join(f"- {md_text(f)}" for f in a.key_facts))
    ents = a.entities
    for label, items in (
        ("People", ents.people),
        ("Organizations", ents.organizations),
        ("Places", ents.places),
    ):
        if items:
            lines.append(f"**{label}:** " + ", ".join(md_text(x) for x in items))
    lines.append(
        f"**Sources that carried the story ({len(sources)}):** "
        + ", ".join(md_text(s) for s in sources)
    )
    if story:
        lines.append(f"**Story** {md_text(story)}")
        if story_mates:
            lines.append(
                "**Same story elsewhere**\n\n"
                + "\n".join(
                    f"- {md_text(t)} — {', '.join(md_text(s) for s in srcs)}"
                    for t, srcs in story_mates
                )
            )
    return "\n\n".join(lines)


def row_detail(view_rows: list[Row], n: int) -> str:
    row = next((r for r in view_rows if r.n == n), None)
    if row is None:
        return ""
    mates = [
        (r.title, r.sources)
        for r in view_rows
        if row.story and r.story == row.story and r.n != row.n
    ]
    all_sources = _merge(row.sources, *(s for _t, s in mates))
    return analysis_markdown(
        title=row.title,
        url=row.url,
        analysis=row.analysis,
        sources=all_sources,
        published=row.published,
        story=row.story,
        story_mates=mates,
        model=row.model,
        cached=row.cached,
        topic_by=row.topic_by,
    )


def selected_number(evt: Any) -> int | None:
    """The ``#`` of the row a Dataframe select event points at (robust to sorting: read the row)."""
    row_value = getattr(evt, "row_value", None)
    if row_value:
        with contextlib.suppress(TypeError, ValueError):
            return int(float(row_value[0]))
    index = getattr(evt, "index", None)
    if isinstance(index, (list, tuple)) and index:
        with contextlib.suppress(TypeError, ValueError):
            return int(index[0]) + 1
    return None


# ---------------------------------------------------------------- the tab


def _plots_empty() -> tuple[Any, Any, Any]:
    view = NewsRunView([])
    return view.topic_frame(), view.source_frame(), view.time_frame()


def build_news_tab(ctx: WebContext) -> None:
    import gradio as gr

    demo_names = [s.name for s in demo_sources()]
    topics0, sources0, times0 = _plots_empty()

    with gr.Tab("News", id="news", elem_id="tab-news"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=2):
                demo_pick = gr.CheckboxGroup(
                    demo_names,
                    value=demo_names,
                    label="Demo feeds (fictional, bundled)",
                    info="Combined with your own sources below; uncheck them to analyze only yours.",
                    elem_id="news-demo",
                )
                urls = gr.Textbox(
                    "",
                    label="Feed URLs (one per line)",
                    lines=3,
                    max_lines=12,
                    placeholder="https://example.com/rss.xml",
                    elem_id="news-urls",
                )
                files = gr.File(
                    label="…or upload feeds, OPML or sources.toml",
                    file_count="multiple",
                    file_types=[".opml", ".xml", ".toml", ".rss", ".atom", ".rdf", ".json"],
                    type="filepath",
                    elem_id="news-files",
                    # No fixed height: at 90 px the "Click to Upload" prompt was cut off.
                )
            with gr.Column(scale=1):
                limit = gr.Number(label="Max articles (0: all)", value=0, precision=0, minimum=0)
                concurrency = gr.Slider(
                    1,
                    16,
                    value=4,
                    step=1,
                    label="Analyses at once",
                    info="For remote providers; the embedded model analyzes one at a time.",
                    elem_id="news-concurrency",
                )
                with gr.Row():
                    digest = gr.Checkbox(label="Digest per topic", value=False)
                    reanalyze = gr.Checkbox(label="Re-analyze (ignore stored)", value=False)
                embeddings = gr.Checkbox(
                    label="Stories + embedding topics",
                    value=True,
                    elem_id="news-embeddings",
                    info="Groups articles into stories; loads a small embedding model.",
                )
                with gr.Row():
                    run_btn = gr.Button("Run", variant="primary", elem_id="news-run")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="news-stop")
                with gr.Row():
                    # A `newsdesk watch` on this app's store, seen from here (see _follow).
                    follow_btn = gr.Button(
                        "Follow the running watch", size="sm", elem_id="news-follow"
                    )
                    unfollow_btn = gr.Button("Stop following", size="sm", elem_id="news-unfollow")
        with gr.Row(equal_height=False):
            with gr.Column(scale=1):
                status = gr.Markdown("Choose sources and press **Run**.", elem_id="news-status")
            with gr.Column(scale=1):
                inflight = gr.Textbox(
                    label="Analyses in flight (model output as it streams)",
                    lines=7,
                    max_lines=7,
                    interactive=False,
                    elem_id="news-inflight",
                    autoscroll=True,
                )
        results = gr.Dataframe(
            headers=TABLE_COLUMNS,
            datatype=TABLE_TYPES,
            value=NewsRunView([]).table(),
            label="Results (select a row for its full analysis)",
            interactive=False,
            wrap=True,
            max_height=420,
            elem_id="news-results",
            column_widths=["4%", "22%", "12%", "9%", "8%", "8%", "6%", "31%"],
        )
        with gr.Row():
            topic_plot = gr.BarPlot(
                topics0,
                x="topic",
                y="articles",
                title="Articles per topic",
                height=260,
                elem_id="news-topics",
                sort="-y",
                # Counts: whole-number ticks. With a top of at least 5 the axis steps by whole
                # numbers (a top of 2 stepped by 0.2); "d" formats what it picks as integers.
                y_lim=[0, 5],
                y_axis_format="d",
                x_label_angle=-30,
            )
            source_plot = gr.BarPlot(
                sources0,
                x="source",
                y="sentiment",
                title="Mean sentiment by source",
                height=260,
                y_lim=[-1, 1],
                x_label_angle=-30,
                elem_id="news-sources",
            )
            time_plot = gr.LinePlot(
                times0,
                x="day",
                y="sentiment",
                title="Sentiment over time (by publication day)",
                height=260,
                y_lim=[-1, 1],
                elem_id="news-time",
            )
        with gr.Row(equal_height=False):
            detail = gr.Markdown(elem_id="news-detail", label="Selected article")
            summary = gr.Markdown(elem_id="news-summary")
        rows_state = gr.State([])
        stops: dict[str, asyncio.Event] = {}  # session -> its run's Stop

        async def run_news(
            demo_sel: list[str] | None,
            urls_text: str | None,
            uploaded: list[Any] | None,
            model: str | None,
            api_base: str | None,
            max_articles: float | None,
            conc: float,
            want_digest: bool,
            want_reanalyze: bool,
            want_embeddings: bool,
            request: Any = None,
        ) -> AsyncIterator[tuple[Any, ...]]:
            # Stop is cooperative: the run ends and says "Stopped", it is not cancelled (a
            # cancelled event shows as an error in the page).
            session = getattr(request, "session_hash", None) or ""
            stop = stops[session] = asyncio.Event()
            try:
                async for update in _run(
                    ctx,
                    demo_sel,
                    urls_text,
                    uploaded,
                    model,
                    api_base,
                    max_articles,
                    conc,
                    want_digest,
                    want_reanalyze,
                    want_embeddings,
                    stop=stop,
                ):
                    yield update
            finally:
                if stops.get(session) is stop:
                    del stops[session]

        run_news.__annotations__["request"] = gr.Request

        run_outputs = [
            status,
            inflight,
            results,
            topic_plot,
            source_plot,
            time_plot,
            summary,
            rows_state,
        ]
        run_event = run_btn.click(
            run_news,
            inputs=[
                demo_pick,
                urls,
                files,
                ctx.model,
                ctx.api_base,
                limit,
                concurrency,
                digest,
                reanalyze,
                embeddings,
            ],
            outputs=run_outputs,
            api_name="news_run",
            show_progress="minimal",
            show_progress_on=[status],
        )

        def stop_news(request: Any = None) -> None:
            event = stops.get(getattr(request, "session_hash", None) or "")
            if event is not None:
                event.set()

        stop_news.__annotations__["request"] = gr.Request
        stop_btn.click(stop_news, None, None, api_visibility="private", queue=False)
        _ = run_event

        from newsdesk.web._follow import wire_follow

        wire_follow(
            ctx,
            follow_btn=follow_btn,
            unfollow_btn=unfollow_btn,
            run_btn=run_btn,
            outputs=run_outputs,
        )

        def show_detail(rows: list[Row], evt: gr.SelectData) -> str:
            n = selected_number(evt)
            return row_detail(rows, n) if n is not None else ""

        # Annotations are strings here (postponed); Gradio needs the real class to pass the event.
        show_detail.__annotations__["evt"] = gr.SelectData
        results.select(show_detail, inputs=[rows_state], outputs=[detail], api_visibility="private")


async def _run(
    ctx: WebContext,
    demo_sel: list[str] | None,
    urls_text: str | None,
    uploaded: list[Any] | None,
    model: str | None,
    api_base: str | None,
    max_articles: float | None,
    conc: float,
    want_digest: bool,
    want_reanalyze: bool,
    want_embeddings: bool,
    *,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[tuple[Any, ...]]:
    import gradio as gr

    skip = gr.skip
    name, base = ctx.chosen_model(model, api_base)
    try:
        sources = web_sources(demo_sel, urls_text, uploaded)
        if not sources:
            raise ConfigError("no sources: check a demo feed, enter a URL or upload a file")
        options = await asyncio.to_thread(
            ctx.desk.prepare,
            sources,
            model=name,
            api_base=base,
            concurrency=max(1, int(conc or 4)),
            digest=bool(want_digest),
            limit=int(max_articles) if max_articles and max_articles > 0 else None,
            reanalyze=bool(want_reanalyze),
            embeddings=bool(want_embeddings),
            deltas=True,
        )
    except NewsdeskError as exc:
        view = NewsRunView([])
        view.fail(str(exc))
        yield (
            view.status_markdown(),
            "",
            view.table(),
            *_plots_empty(),
            view.summary_markdown(),
            [],
        )
        return

    view = NewsRunView([s.name for s in sources], urls={s.name: s.url for s in sources})
    # First paint: every source "fetching…", empty table and charts.
    yield (view.status_markdown(), "", view.table(), *_plots_empty(), "", view.rows)
    try:
        # Closing this stream (Stop, a closed tab) stops the run, which records itself cancelled.
        events = ctx.desk.run(options)
        stop = stop or asyncio.Event()
        local = name.startswith("local/")
        last_output = time.monotonic()
        async with closing(paced(events, UPDATE_INTERVAL)) as batches:
            async for batch in _until(batches, stop, tick=1.0):
                now = time.monotonic()
                for ev in batch:
                    view.apply(ev, now)
                    if ev.event in ("analysis_delta", "analysis", "analysis_error"):
                        last_output = now
                view.set_waiting(
                    local
                    and view.pending() > 0
                    and not view.inflight
                    and now - last_output > WAIT_HINT_AFTER
                    and _model_busy()
                )
                yield _render(view, skip)
        if stop.is_set() and view.done is None:
            view.stop()  # leaving the block above closed the stream: the run is recorded stopped
            yield _render(view, skip)
    except NewsdeskError as exc:
        view.fail(str(exc))
        yield _render(view, skip)
    except (asyncio.CancelledError, GeneratorExit):
        view.cancelled = True
        raise
    except Exception as exc:  # never a traceback in the page
        view.fail(f"unexpected {type(exc).__name__}: {exc}")
        yield _render(view, skip)


async def _until(
    batches: AsyncIterator[list[Any]], stop: asyncio.Event, tick: float
) -> AsyncIterator[list[Any]]:
    """``batches`` until ``stop`` is set, with an empty batch every ``tick`` seconds of quiet (so
    a "waiting" hint can show while nothing arrives)."""
    stopped = asyncio.ensure_future(stop.wait())
    nxt: asyncio.Future[list[Any]] | None = None
    try:
        while not stop.is_set():
            nxt = asyncio.ensure_future(anext(batches))
            while True:
                done, _ = await asyncio.wait(
                    {nxt, stopped}, timeout=tick, return_when="FIRST_COMPLETED"
                )
                if done:
                    break
                yield []  # quiet: tick, and keep waiting for the same batch
            if nxt not in done:
                return  # stopped
            try:
                batch = nxt.result()
            except StopAsyncIteration:
                return
            nxt = None
            yield batch
    finally:
        stopped.cancel()
        if nxt is not None and not nxt.done():
            nxt.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                await nxt


def _model_busy() -> bool:
    from newsdesk._local import busy

    return busy()


def _topic_plot(view: NewsRunView) -> Any:
    import gradio as gr

    return gr.BarPlot(view.topic_frame(), y_lim=[0, view.count_top()])


def _render(view: NewsRunView, skip: Any) -> tuple[Any, ...]:
    d = view.dirty
    charts = "charts" in d
    out = (
        view.status_markdown() if "status" in d else skip(),
        view.inflight_text() if "inflight" in d else skip(),
        view.table() if "table" in d else skip(),
        _topic_plot(view) if charts else skip(),
        view.source_frame() if charts else skip(),
        view.time_frame() if charts else skip(),
        view.summary_markdown() if "summary" in d else skip(),
        view.rows if "table" in d else skip(),
    )
    view.dirty = set()
    return out
