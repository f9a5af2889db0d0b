"""The History tab: past runs, source health, and stored analyses filtered by topic, source,
date and meaning (the same ``NewsDesk.search`` the ``newsdesk show`` command uses)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING, Any

from newsdesk._exceptions import ConfigError, NewsdeskError
from newsdesk.news import TOPICS, NewsDesk, Store, StoredAnalysis, parse_since
from newsdesk.web._context import WebContext
from newsdesk.web._news import CellType, analysis_markdown, selected_number
from newsdesk.web._text import clip, md_text

if TYPE_CHECKING:
    import pandas as pd

ANY = "(any)"
RESULT_COLUMNS = [
    "#",
    "published",
    "source(s)",
    "title",
    "topic",
    "tone",
    "sentiment",
    "story",
    "summary",
    "score",
]
RESULT_TYPES: list[CellType] = [
    "number",
    "str",
    "str",
    "str",
    "str",
    "str",
    "number",
    "str",
    "str",
    "str",
]
RUN_COLUMNS = ["run", "started", "status", "model", "sources", "analyzed", "failed", "wall"]
SOURCE_COLUMNS = ["source", "url", "last success", "last error", "failures in a row"]
# A meaning search shows the best matches only: e5 similarities of unrelated texts sit near
# 0.72-0.76 and of related ones above ~0.8 (measured on the demo feeds), so a match must reach
# MIN_SCORE and stay within SCORE_BAND of the best one.
MIN_SCORE = 0.78
SCORE_BAND = 0.06
MAX_MATCHES = 20


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else ""


def runs_frame(desk: NewsDesk, limit: int = 50) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for r in desk.history(limit=limit):
        s = r.stats or {}
        wall = f"{s['wall']:.1f} s" if isinstance(s.get("wall"), (int, float)) else ""
        rows.append(
            [
                r.id,
                _when(r.started_at),
                r.status,
                r.model,
                ", ".join(r.sources),
                str(s.get("analyzed", "")),
                str(s.get("failed", "")),
                wall,
            ]
        )
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def sources_frame(desk: NewsDesk) -> pd.DataFrame:
    import pandas as pd

    rows = [
        [
            h.name,
            _public_url(h.url),
            _when(h.last_success),
            h.last_error or "",
            h.consecutive_failures,
        ]
        for h in desk.source_health()
    ]
    return pd.DataFrame(rows, columns=SOURCE_COLUMNS)


def _public_url(url: str) -> str:
    """What a web user may see of a source's address: never a path on the server."""
    if url.lower().startswith(("http://", "https://")):
        return url
    return "(bundled demo feed)" if "/news/demo/" in url.replace("\\", "/") else "(a file)"


def since_of(text: str | None) -> str | None:
    """The "Since" box, checked, in the web's own words."""
    value = (text or "").strip() or None
    try:
        parse_since(value)
    except ConfigError:
        raise ConfigError(
            f"“Since” takes a date like 2025-03-01 (YYYY-MM-DD) or a number of days like 7d; "
            f"{value!r} is neither."
        ) from None
    return value


def best_matches(found: list[Any]) -> tuple[list[Any], int]:
    """The matches close enough to the best one (see MIN_SCORE), and how many were left out."""
    scores = [score for _r, score in found if score is not None]
    if not scores:
        return found, 0
    floor = max(MIN_SCORE, max(scores) - SCORE_BAND)
    kept = [(r, s) for r, s in found if s is not None and s >= floor][:MAX_MATCHES]
    return kept, len(found) - len(kept)


def search(
    desk: NewsDesk,
    *,
    topic: str | None,
    source: str | None,
    since: str | None,
    query: str | None,
    limit: int = 100,
) -> tuple[pd.DataFrame, list[StoredAnalysis]]:
    """Stored analyses matching the filters (ranked by meaning when ``query`` is given)."""
    import pandas as pd

    found = desk.search(
        topic=None if topic in (None, "", ANY) else topic,
        source=None if source in (None, "", ANY) else source,
        since=since_of(since),
        query=(query or "").strip() or None,
        limit=limit,
    )
    found, hidden = best_matches(found)
    data = []
    items = []
    for i, (r, score) in enumerate(found, start=1):
        a = r.analysis
        data.append(
            [
                i,
                _when(r.published),
                ", ".join(r.sources or [r.source]),
                r.title,
                a.topic,
                a.tone,
                round(a.sentiment, 2),
                r.story or "",
                clip(a.summary),
                "" if score is None else f"{score:.3f}",
            ]
        )
        items.append(r)
    frame = pd.DataFrame(data, columns=RESULT_COLUMNS)
    frame.attrs["hidden"] = hidden
    return frame, items


def _empty_results() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame([], columns=RESULT_COLUMNS)


def stored_detail(items: list[StoredAnalysis], n: int, store: Store) -> str:
    if not 1 <= n <= len(items):
        return ""
    r = items[n - 1]
    mates: list[tuple[str, list[str]]] = []
    sources = list(r.sources or [r.source])
    if r.story:
        for other in store.query(story=r.story, limit=50):
            if other.article_id != r.article_id:
                mates.append((other.title, list(other.sources or [other.source])))
                sources += [s for s in other.sources or [other.source] if s not in sources]
    return analysis_markdown(
        title=r.title,
        url=r.url,
        analysis=r.analysis,
        sources=sources,
        published=r.published,
        story=r.story,
        story_mates=mates,
        model=r.model,
        topic_by=r.topic_by,
    )


def build_history_tab(ctx: WebContext) -> None:
    import gradio as gr

    with gr.Tab("History", id="history", elem_id="tab-history") as tab:
        with gr.Row():
            topic = gr.Dropdown([ANY, *TOPICS], value=ANY, label="Topic", elem_id="history-topic")
            source = gr.Dropdown(
                [ANY], value=ANY, label="Source", allow_custom_value=True, elem_id="history-source"
            )
            since = gr.Textbox(
                "", label="Since", placeholder="7d or 2025-03-01", elem_id="history-since"
            )
            query = gr.Textbox(
                "",
                label="Search by meaning",
                placeholder="e.g. interest rates",
                elem_id="history-query",
                scale=2,
            )
            search_btn = gr.Button("Search", variant="primary", elem_id="history-search", scale=0)
        message = gr.Markdown(elem_id="history-message")
        results = gr.Dataframe(
            headers=RESULT_COLUMNS,
            datatype=RESULT_TYPES,
            interactive=False,
            wrap=True,
            max_height=420,
            label="Stored analyses (select a row for its full analysis)",
            elem_id="history-results",
            # Fits the page: long text columns wrap instead of pushing "topic" off the side.
            column_widths=["4%", "10%", "11%", "21%", "9%", "8%", "7%", "7%", "17%", "6%"],
        )
        detail = gr.Markdown(elem_id="history-detail")
        items_state = gr.State([])
        with gr.Accordion("Runs and source health", open=True):
            refresh_btn = gr.Button("Refresh", size="sm", elem_id="history-refresh")
            runs = gr.Dataframe(
                headers=RUN_COLUMNS,
                interactive=False,
                label="Runs",
                max_height=300,
                elem_id="history-runs",
            )
            health = gr.Dataframe(
                headers=SOURCE_COLUMNS,
                interactive=False,
                label="Sources",
                max_height=300,
                elem_id="history-sources",
            )

        async def do_search(t: str, s: str, since_text: str, q: str) -> tuple[Any, ...]:
            try:
                frame, items = await asyncio.to_thread(
                    search, ctx.desk, topic=t, source=s, since=since_text, query=q
                )
            except NewsdeskError as exc:  # old results go: they answered another question
                return _empty_results(), [], f"**Error:** {md_text(exc)}", ""
            except Exception as exc:
                return (
                    _empty_results(),
                    [],
                    f"**Error:** unexpected {md_text(type(exc).__name__)}: {md_text(exc)}",
                    "",
                )
            hidden = frame.attrs.get("hidden", 0)
            if q and q.strip():
                note = (
                    f"{len(items)} best matches for {md_text(q.strip())!s}"
                    if items
                    else f"No stored analysis is close in meaning to {md_text(q.strip())!s}."
                )
                if hidden:
                    note += f" ({hidden} weaker matches not shown)"
            else:
                note = f"{len(items)} analyses" if items else "No stored analyses match."
            return frame, items, note, ""

        async def refresh() -> tuple[Any, ...]:
            try:
                run_df = await asyncio.to_thread(runs_frame, ctx.desk)
                src_df = await asyncio.to_thread(sources_frame, ctx.desk)
            except Exception as exc:
                return gr.skip(), gr.skip(), gr.skip(), f"**Error:** {md_text(exc)}"
            names = sorted(set(src_df["source"].tolist()))
            return run_df, src_df, gr.update(choices=[ANY, *names]), gr.skip()

        async def show_detail(items: list[Any], evt: gr.SelectData) -> str:
            n = selected_number(evt)
            if n is None:
                return ""
            return await asyncio.to_thread(stored_detail, items, n, ctx.store)

        search_inputs = [topic, source, since, query]
        search_outputs = [results, items_state, message, detail]
        gr.on(
            [search_btn.click, query.submit, since.submit],
            do_search,
            search_inputs,
            search_outputs,
            api_name="history_search",
        )
        refresh_outputs = [runs, health, source, message]
        refresh_btn.click(refresh, None, refresh_outputs, api_name="history_refresh")
        tab.select(refresh, None, refresh_outputs, api_visibility="private")
        tab.select(do_search, search_inputs, search_outputs, api_visibility="private")
        # Annotations are strings here (postponed); Gradio needs the real class to pass the event.
        show_detail.__annotations__["evt"] = gr.SelectData
        results.select(show_detail, [items_state], [detail], api_visibility="private")
