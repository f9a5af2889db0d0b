"""Following a running ``newsdesk watch`` from the News tab.

The watch is another process writing to the same SQLite store; the tab cannot hear its events.
So a ``gr.Timer`` asks the store every few seconds for the analyses stored after a cursor
(``NewsDesk.stored_after``) and folds them into the same ``NewsRunView`` a run fills, so the table,
charts and detail view work as for a run. The cursor is the store's commit order, so nothing
stored between two checks is missed, whatever the watch's pace. Each browser session follows on
its own (its ``Follow`` lives in a ``gr.State``; the timer's active flag is per session too).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from newsdesk._exceptions import NewsdeskError
from newsdesk.news import NewsDesk, RunRecord
from newsdesk.web._news import NewsRunView, _render
from newsdesk.web._text import md_text

if TYPE_CHECKING:
    from newsdesk.web._context import WebContext

FOLLOW_EVERY = 3.0  # seconds between two looks at the store
BATCH = 200  # analyses read per query
MAX_PER_CHECK = 2000  # a long backlog fills in over a few checks instead of one slow one
MAX_ROWS = 1000  # rows a session holds: a watch runs all day, the oldest rows go first
RECENT_RUNS = 5


@dataclass
class Follow:
    """One session's follow: where it is in the store and what it has shown."""

    cursor: int
    started: datetime
    view: NewsRunView = field(default_factory=lambda: NewsRunView([]))
    checked: datetime | None = None
    received: int = 0
    run_ids: list[str] = field(default_factory=list)  # runs the analyses came from, oldest first
    runs: list[RunRecord] = field(default_factory=list)  # the store's latest runs, last check
    backlog: bool = False  # more was stored than one check reads
    error: str | None = None
    stopped: bool = False  # the user stopped following (a check in flight then stops too)


def _now() -> datetime:
    return datetime.now(UTC)


def start_follow(desk: NewsDesk) -> Follow:
    """Follow from the store's current end: what the watch stores from now on. Blocking."""
    now = _now()
    return Follow(
        cursor=desk.stored_after().cursor,
        started=now,
        checked=now,
        runs=desk.history(limit=RECENT_RUNS),
    )


def poll_follow(desk: NewsDesk, follow: Follow) -> Follow:
    """Read what was stored since the last check into ``follow`` (in place, also returned).
    A store error is shown and the next check tries again. Blocking."""
    try:
        read = 0
        while True:
            batch = desk.stored_after(follow.cursor, limit=BATCH)
            for stored in batch.analyses:
                follow.view.add_stored(stored, keep=MAX_ROWS)
                if stored.run_id and stored.run_id not in follow.run_ids:
                    follow.run_ids.append(stored.run_id)
            follow.cursor = batch.cursor  # only after the rows are in: a failure re-reads them
            read += len(batch.analyses)
            if not batch.more or read >= MAX_PER_CHECK:
                break
        follow.received += read
        follow.backlog = batch.more
        follow.runs = desk.history(limit=RECENT_RUNS)
        follow.error = None
    except NewsdeskError as exc:
        follow.error = str(exc)
    except Exception as exc:  # never a traceback in the page; keep trying
        follow.error = f"unexpected {type(exc).__name__}: {exc}"
    follow.checked = _now()
    return follow


def _clock(when: datetime | None) -> str:
    return when.astimezone(UTC).strftime("%H:%M:%S UTC") if when is not None else "never"


def _run_line(run: RunRecord) -> str:
    who = f"run {md_text(run.id)}" + (f" (process {run.pid})" if run.pid else "")
    if run.status == "running":
        return f"{who}: running since {_clock(run.started_at)}"
    if run.finished_at is not None:
        return f"{who}: {md_text(run.status)} at {_clock(run.finished_at)}"
    return f"{who}: {md_text(run.status)}"


def follow_markdown(follow: Follow, *, stopped: bool = False) -> str:
    """What the tab says about a follow (escaped: run ids and errors are data)."""
    head = "**Stopped following**" if stopped else "**Following the running watch**"
    lines = [
        f"{head} · last checked {_clock(follow.checked)}"
        + ("" if stopped else f" (every {FOLLOW_EVERY:g} s)")
        + f" · **{follow.received}** new {'analysis' if follow.received == 1 else 'analyses'}"
        + f" since {_clock(follow.started)}"
    ]
    if follow.error:
        lines.append(f"**Error reading the store:** {md_text(follow.error)} (trying again)")
    if follow.backlog:
        lines.append("_More analyses are waiting: they come in on the next checks._")
    running = [r for r in follow.runs if r.status == "running"]
    if running:
        lines += ["Now running:", *(f"- {_run_line(r)}" for r in running)]
    elif follow.runs:
        lines.append(
            f"No run in progress; the latest is {_run_line(follow.runs[0])} "
            "(a watch between two polls looks like this)."
        )
    else:
        lines.append("No run in this store yet: start one with `newsdesk watch … --store FILE`.")
    if follow.run_ids:
        shown = follow.run_ids[-5:]
        lines.append(
            "Analyses shown come from run(s) "
            + ", ".join(md_text(r) for r in shown)
            + (
                f" and {len(follow.run_ids) - len(shown)} earlier"
                if len(follow.run_ids) > 5
                else ""
            )
        )
    if len(follow.view.rows) >= MAX_ROWS:
        lines.append(f"_The table keeps the newest {MAX_ROWS} articles._")
    return "\n\n".join(lines)


def follow_outputs(follow: Follow, skip: Any, *, first: bool = False) -> tuple[Any, ...]:
    """The News tab's run outputs (status, in flight, table, three charts, summary, rows) for
    a follow; ``first`` repaints everything (the previous run's results go)."""
    if first:
        follow.view.dirty.update(("table", "charts"))
    out = list(_render(follow.view, skip))
    out[0] = follow_markdown(follow)
    out[1] = "" if first else skip()
    out[6] = "" if first else skip()
    return tuple(out)


def wire_follow(
    ctx: WebContext, *, follow_btn: Any, unfollow_btn: Any, run_btn: Any, outputs: list[Any]
) -> None:
    """Hook Follow / Stop following (and a timer) to the News tab's run outputs."""
    import gradio as gr

    timer = gr.Timer(FOLLOW_EVERY, active=False)
    state = gr.State(None)
    skips = tuple(gr.skip() for _ in outputs)

    async def follow_watch() -> tuple[Any, ...]:
        try:
            follow = await asyncio.to_thread(start_follow, ctx.desk)
        except Exception as exc:
            reason = str(exc) if isinstance(exc, NewsdeskError) else f"{type(exc).__name__}: {exc}"
            message = f"**Cannot follow:** {md_text(reason)}"
            return (None, gr.Timer(active=False), message, *skips[1:])
        return (follow, gr.Timer(active=True), *follow_outputs(follow, gr.skip, first=True))

    async def follow_check(follow: Follow | None) -> tuple[Any, ...]:
        if follow is None:  # a tick after Stop following: stop the timer too
            return (None, gr.Timer(active=False), *skips)
        await asyncio.to_thread(poll_follow, ctx.desk, follow)
        if follow.stopped:  # Stop following (or Run) was pressed while this check ran
            return (None, gr.Timer(active=False), *skips)
        return (follow, gr.skip(), *follow_outputs(follow, gr.skip))

    def unfollow(follow: Follow | None) -> tuple[Any, ...]:
        if follow is None:
            return (None, gr.Timer(active=False), *skips)
        follow.stopped = True
        return (None, gr.Timer(active=False), follow_markdown(follow, stopped=True), *skips[1:])

    state_outputs = [state, timer, *outputs]
    follow_btn.click(follow_watch, None, state_outputs, api_name="news_follow")
    timer.tick(
        follow_check,
        [state],
        state_outputs,
        api_name="news_follow_check",
        show_progress="hidden",
        trigger_mode="once",  # a slow check is not queued up behind by more ticks
    )
    unfollow_btn.click(unfollow, [state], state_outputs, api_name="news_unfollow")

    def stop_for_run(follow: Follow | None) -> tuple[Any, ...]:
        if follow is not None:
            follow.stopped = True  # a check in flight must not repaint the run's table
        return (None, gr.Timer(active=False))

    # A run takes over the table: following stops (quietly, the run's own status shows).
    run_btn.click(stop_for_run, [state], [state, timer], api_visibility="private", queue=False)
