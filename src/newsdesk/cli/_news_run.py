"""What the news commands do: build the pipeline, consume its events (rich live view or JSONL)."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Coroutine

    from newsdesk.news import Event, NewsDesk, PipelineOptions, RunDone

err = Console(stderr=True)
_TONE = {"positive": "green", "neutral": "yellow", "negative": "red"}


def _desk(store_path: Path | None, **kw: Any) -> NewsDesk:
    from newsdesk.news import NewsDesk

    return NewsDesk(store=store_path, **kw)


def run_analyze(
    specs: list[str],
    *,
    model: str | None,
    api_base: str | None,
    concurrency: int,
    fetch_concurrency: int,
    timeout: float | None,
    cache: str | None,
    fmt: str,
    full_text: bool,
    digest: bool,
    limit: int | None,
    lang: str | None,
    topic_by: str,
    reanalyze: bool,
    store_path: Path | None,
    deltas: bool,
    deadline: float | None = None,
    request_timeout: float | None = None,
    retries: int = 2,
    rpm: float | None = None,
    tpm: float | None = None,
    queue: str | None = None,
    embeddings: bool = True,
) -> int:
    from newsdesk import Gateway, Limits
    from newsdesk.cli._queue import queue_executor, queued

    if request_timeout is None and not (model or "").startswith("local/") and (model or api_base):
        request_timeout = REMOTE_REQUEST_TIMEOUT  # a hung provider costs a minute, not two
    executor = queue_executor(queue)
    gateway = Gateway(
        cache=cache if cache is not None else "disk",
        limits=Limits(concurrency=concurrency, rpm=rpm, tpm=tpm),
    )
    desk = _desk(store_path, gateway=gateway, model=model, api_base=api_base, executor=executor)
    try:
        options = desk.prepare(
            specs,
            concurrency=concurrency,
            fetch_concurrency=fetch_concurrency,
            fetch_timeout=timeout,
            full_text=full_text,
            digest=digest,
            limit=limit,
            lang=lang,
            topic_mode=topic_by,
            embeddings=embeddings,
            deltas=(fmt == "live") or deltas,
            reanalyze=reanalyze,
            deadline=deadline,
            request_timeout=request_timeout,
            retries=retries,
        )
        tally = _Tally()
        if fmt == "jsonl":
            done = _run_interruptible(
                queued(executor, lambda: _jsonl(desk, options, deltas, tally)), tally
            )
        else:
            done = _run_interruptible(queued(executor, lambda: _live(desk, options, tally)), tally)
    finally:
        desk.close()
        gateway.close()
    return exit_code(done)


REMOTE_REQUEST_TIMEOUT = 60.0
EXIT_ALL_ANALYSES_FAILED = 3
EXIT_INTERRUPTED = 130


def exit_code(done: RunDone | None) -> int:
    """0: the run completed (some failures allowed); 1: no source could be fetched; 3: there
    was something to analyze and every analysis failed; 130: interrupted."""
    if done is None:
        return 1
    if done.sources_ok == 0 and done.sources_failed > 0:
        return 1
    if done.failed > 0 and done.analyzed == 0:
        return EXIT_ALL_ANALYSES_FAILED
    return 0


def _run_interruptible(
    consumer: Coroutine[Any, Any, RunDone | None], tally: _Tally
) -> RunDone | None:
    """Run the consumer of the event stream. On Ctrl-C asyncio.run cancels it: the run stops
    (and records itself cancelled), the consumer reports what was done from its tally, and
    the command exits 130 here, not in typer (which would skip all of that)."""
    import typer

    try:
        done = asyncio.run(consumer)
    except KeyboardInterrupt:
        tally.stopped = True
    if tally.stopped:
        err.print(f"interrupted: {tally.line()}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    return done


async def _tallied(events: AsyncIterator[Event], tally: _Tally) -> AsyncIterator[Event]:
    """The run's events, counted; on Ctrl-C (asyncio.run cancels the task) the run stops and
    the stream ends with a ``done`` made from the count, so the consumer reports as usual
    (asyncio.run raises KeyboardInterrupt once the consumer returns)."""
    try:
        async for ev in events:
            tally.add(ev)
            yield ev
    except asyncio.CancelledError:
        tally.stopped = True
        yield tally.interrupted()


class _Tally:
    """What the events said so far: the ``done`` of a run that was interrupted (the run's own
    counters end with it; token counts are not in the events and stay 0)."""

    def __init__(self) -> None:
        from newsdesk.news import RunDone

        self.started = time.perf_counter()
        self.done = RunDone(run_id="")
        self.left: set[str] = set()  # articles found, not analyzed yet
        self.stopped = False  # by Ctrl-C

    def add(self, ev: Any) -> None:
        d = self.done
        match ev.event:
            case "run_started":
                d.run_id = ev.run_id
            case "source_ok":
                d.sources_ok += 1
            case "source_error":
                d.sources_failed += 1
                d.failures[ev.source] = ev.reason
            case "article":
                if ev.duplicate_of is None:
                    d.articles += 1
                    self.left.add(ev.id)
                else:
                    d.duplicates += 1
            case "analysis":
                d.analyzed += 1
                d.from_cache += int(ev.cached)
                d.sum_latency += ev.latency or 0.0
                self.left.discard(ev.id)
            case "analysis_error":
                d.failed += 1
                self.left.discard(ev.id)

    def interrupted(self) -> RunDone:
        self.done.wall = time.perf_counter() - self.started
        self.done.saved = max(0.0, self.done.sum_latency - self.done.wall)
        return self.done

    def line(self) -> str:
        d = self.done
        return (
            f"{d.analyzed} analyzed ({d.from_cache} from cache), {d.failed} failed, "
            f"{len(self.left)} not analyzed; sources {d.sources_ok} ok, {d.sources_failed} failed"
            + (f"; run {d.run_id} recorded as cancelled" if d.run_id else "")
        )


async def _jsonl(
    desk: NewsDesk, options: PipelineOptions, deltas: bool, tally: _Tally
) -> RunDone | None:
    from newsdesk.news import RunDone

    out = sys.stdout
    done = None
    async for ev in _tallied(desk.run(options), tally):
        if ev.event == "run_started" or (ev.event == "analysis_delta" and not deltas):
            continue
        out.write(ev.to_json() + "\n")
        out.flush()
        if isinstance(ev, RunDone):
            done = ev
    return done


class _LiveView:
    """The terminal view: sources with status, a progress bar, in-flight analyses streaming."""

    def __init__(self, sources: list[str], model: str) -> None:
        self.model = model
        self.status: dict[str, str] = {s: "[dim]fetching…[/dim]" for s in sources}
        self.inflight: dict[str, tuple[str, str]] = {}  # id -> (title, text so far)
        self.titles: dict[str, str] = {}
        self.progress = Progress(
            TextColumn("[bold]analysis"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            expand=False,
        )
        self.task = self.progress.add_task("analysis", total=0)

    def render(self) -> Group:
        table = Table(show_header=True, header_style="bold", expand=False, box=None, padding=(0, 1))
        table.add_column("source")
        table.add_column("status")
        for name, status in self.status.items():
            table.add_row(escape(name), status)
        parts: list[Any] = [table, self.progress]
        for _id, (title, text) in list(self.inflight.items())[:4]:
            tail = text.replace("\n", " ")[-110:]
            parts.append(Text.assemble(("  ▸ ", "cyan"), (title[:60], "bold"), "  ", (tail, "dim")))
        return Group(*parts)


async def _live(desk: NewsDesk, options: PipelineOptions, tally: _Tally) -> RunDone | None:
    from newsdesk.news import (
        AnalysisDelta,
        AnalysisFailed,
        AnalysisReady,
        ArticleFound,
        DigestReady,
        RunDone,
        SourceFailed,
        SourceOk,
    )

    console = Console()
    view = _LiveView([s.name for s in options.sources], options.model)
    done = None
    stories: dict[str, list[str]] = {}
    digests: list[DigestReady] = []
    with Live(view.render(), console=console, refresh_per_second=8, transient=True) as live:
        last = 0.0
        async for ev in _tallied(desk.run(options), tally):
            match ev:
                case SourceOk():
                    note = " (not modified)" if ev.not_modified else ""
                    warn = f" [yellow]⚠ {escape(ev.warnings[0])}[/yellow]" if ev.warnings else ""
                    view.status[ev.source] = (
                        f"[green]ok[/green] {ev.articles} articles, {ev.new_articles} new{note}{warn}"
                    )
                case SourceFailed():
                    view.status[ev.source] = f"[red]failed:[/red] {escape(ev.reason)}"
                case ArticleFound() if ev.duplicate_of is None:
                    view.titles[ev.id] = ev.title
                    view.progress.update(view.task, total=len(view.titles))
                case AnalysisDelta():
                    title, text = view.inflight.get(ev.id, (view.titles.get(ev.id, ev.id), ""))
                    view.inflight[ev.id] = (title, text + ev.text)
                case AnalysisReady():
                    view.inflight.pop(ev.id, None)
                    view.progress.advance(view.task)
                    live.console.print(_analysis_block(ev))
                    if ev.story:
                        stories.setdefault(ev.story, []).append(ev.title)
                case AnalysisFailed():
                    view.inflight.pop(ev.id, None)
                    view.progress.advance(view.task)
                    live.console.print(
                        f"[red]✗[/red] [bold]{escape(ev.title)}[/bold] [dim]({escape(ev.source)})[/dim]"
                        f" — analysis failed: {escape(ev.reason)}"
                    )
                case DigestReady():
                    digests.append(ev)
                case RunDone():
                    done = ev
            now = time.monotonic()
            delta = isinstance(ev, AnalysisDelta)
            if now - last > 0.05 or not delta:
                # anything but a delta is drawn at once, so no frame shows a finished analysis in flight
                live.update(view.render(), refresh=not delta)
                last = now
    for name, status in view.status.items():
        console.print(f"  {escape(name)}: {status}")
    multi = {k: v for k, v in stories.items() if len(v) > 1}
    if multi:
        console.print("\n[bold]Stories carried by several articles[/bold]")
        for titles in multi.values():
            console.print("  • " + " | ".join(escape(t) for t in titles))
    for d in digests:
        console.print(
            f"\n[bold magenta]{d.topic}[/bold magenta] ({d.articles} articles): {escape(d.summary)}"
        )
    if done is not None:
        console.print(_summary_table(done))
    return done


def _analysis_block(ev: Any) -> Any:
    a = ev.analysis
    color = _TONE.get(a.tone, "white")
    head = Text.assemble(
        ("✓ ", "green"),
        (ev.title, "bold"),
        "  ",
        (f"[{ev.source}", "dim"),
        (f" +{len(ev.sources) - 1} more" if len(ev.sources) > 1 else "", "dim"),
        ("]", "dim"),
        ("  (cache)" if ev.cached else "", "dim"),
    )
    meta = Text.assemble(
        "   ",
        (a.topic, "magenta"),
        " · ",
        (f"{a.tone} {a.sentiment:+.2f}", color),
        f" · {ev.latency:.1f} s" if ev.latency else "",
    )
    lines: list[Any] = [head, meta, Text("   " + a.summary)]
    for fact in [f for f in a.key_facts if is_sentence(f)][:3]:
        lines.append(Text("   - " + fact, style="dim"))
    ents = [*a.entities.people, *a.entities.organizations, *a.entities.places]
    if ents:
        lines.append(Text("   entities: " + ", ".join(ents[:8]), style="cyan"))
    return Group(*lines)


def _summary_table(done: Any) -> Table:
    t = Table(title="Run summary", show_header=False)
    t.add_row("sources", f"{done.sources_ok} ok, {done.sources_failed} failed")
    for name, reason in done.failures.items():
        t.add_row(f"  failed: {escape(name)}", escape(reason))
    t.add_row("articles (new, after dedup)", str(done.articles))
    t.add_row("duplicates merged", str(done.duplicates))
    t.add_row("analyzed", f"{done.analyzed} ({done.from_cache} from cache)")
    t.add_row("analysis failures", str(done.failed))
    t.add_row("tokens (prompt + completion)", f"{done.prompt_tokens} + {done.completion_tokens}")
    if done.cost:
        t.add_row("cost", f"${done.cost:.6f}")
    t.add_row("wall time", f"{done.wall:.1f} s")
    t.add_row("sum of analysis times", f"{done.sum_latency:.1f} s")
    t.add_row("time saved vs sequential", f"{done.saved:.1f} s")
    return t


def run_history(*, limit: int, store_path: Path | None, sources: bool) -> None:
    console = Console()
    desk = _desk(store_path)
    try:
        if sources:
            t = Table(title="Sources")
            for col in ("source", "url", "last success", "last error", "failures in a row"):
                t.add_column(col)
            for h in desk.source_health():
                t.add_row(
                    escape(h.name),
                    escape(h.url),
                    _when(h.last_success),
                    escape(h.last_error or ""),
                    str(h.consecutive_failures),
                )
            console.print(t)
            return
        runs = desk.history(limit=limit)
        if not runs:
            console.print("no runs yet: try [bold]newsdesk analyze[/bold]")
            return
        # The run id and status are what a user reads here (to find an interrupted run): never
        # cut them; the model name folds instead when the terminal is narrow.
        t = Table(title="Runs", box=None, padding=(0, 1), header_style="bold")
        t.add_column("run", no_wrap=True, min_width=22)
        t.add_column("started", no_wrap=True)
        t.add_column("status", no_wrap=True, min_width=11)
        for col in ("analyzed", "failed", "wall"):
            t.add_column(col, justify="right", no_wrap=True)
        t.add_column("sources", justify="right")
        t.add_column("model", overflow="fold")
        for r in runs:
            s = r.stats or {}
            t.add_row(
                r.id,
                _when(r.started_at),
                r.status,
                str(s.get("analyzed", "")),
                str(s.get("failed", "")),
                f"{s['wall']:.1f} s" if "wall" in s else "",
                str(len(r.sources)),
                escape(r.model),
            )
        console.print(t)
    finally:
        desk.close()


def _when(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)[:16]


def run_show(
    *,
    topic: str | None,
    source: str | None,
    since: str | None,
    story: str | None,
    query: str | None,
    limit: int,
    fmt: str,
    store_path: Path | None,
) -> None:
    from newsdesk._exceptions import ConfigError
    from newsdesk.news import parse_since

    if fmt not in ("table", "jsonl"):
        raise ConfigError("--format must be table or jsonl")
    try:
        since_dt = parse_since(since)
    except ConfigError as exc:
        raise ConfigError(f"--{exc}") from None  # "--since takes a date …": name the flag
    desk = _desk(store_path)
    try:
        rows = desk.search(
            topic=topic, source=source, since=since_dt, story=story, query=query, limit=limit
        )
    finally:
        desk.close()
    if fmt == "jsonl":
        for r, score in rows:
            data = r.model_dump(mode="json", exclude={"vector"})
            if score is not None:
                data["score"] = round(score, 4)
            sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
        return
    console = Console()
    if not rows:
        console.print("no analyses match")
        return
    t = Table(title="Analyses")
    for col in ("published", "source", "title", "topic", "tone", "story", "summary"):
        t.add_column(col, overflow="fold")
    for r, _score in rows:
        a = r.analysis
        t.add_row(
            _when(r.published),
            escape(", ".join(r.sources or [r.source])),
            escape(r.title),
            a.topic,
            f"[{_TONE.get(a.tone, 'white')}]{a.tone}[/]",
            r.story or "",
            escape(a.summary),
        )
    console.print(t)


# A fact that starts mid-sentence: punctuation, a lowercase word, or a bare number followed by a
# comma ("2.5, Kestrel Motors will…": the tail of a broken list the small model wrote).
_FRAGMENT = re.compile(r"^(?:[^\w\"'“‘(]|[a-z]|\d++(?:[.,]\d+)*+\s*[,;:)\]])")


def is_sentence(fact: str) -> bool:
    """Whether a key fact reads as a statement of its own (three words or more, starting like a
    sentence), so the live view does not show the model's broken fragments as facts."""
    text = fact.strip()
    return len(text.split()) >= 3 and not _FRAGMENT.match(text)
