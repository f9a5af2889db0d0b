"""``newsdesk watch SOURCES… --every 15m``: poll the sources until stopped, analyze what is new.

Each poll is one run of the pipeline: feeds are fetched with conditional GET (the store keeps
each source's ETag/Last-Modified, so an unchanged feed answers 304 and costs no parsing), and an
article already analyzed is replayed from the store, not sent to the model again. The watch shows
each article once: later polls report only articles it has not shown yet. SIGINT/SIGTERM stop it
cleanly: the poll in progress is cancelled (what finished is stored) and a summary is printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from newsdesk.cli._app import ApiBaseOpt, CacheOpt, ModelOpt, app
from newsdesk.cli._queue import QueueOpt
from newsdesk.cli._run_options import (
    AnalysisConcurrencyOpt,
    EmbeddingsOpt,
    FormatOpt,
    LangOpt,
    SourcesArg,
    SourcesFileOpt,
    StoreOpt,
    TopicByOpt,
    check_run_options,
    source_specs,
)

if TYPE_CHECKING:
    from newsdesk.news import NewsDesk, PipelineOptions

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_every(text: str) -> float:
    """``"15m"``, ``"1h"``, ``"30s"``, ``"1.5h"`` or plain seconds (``"90"``) -> seconds."""
    from newsdesk._exceptions import ConfigError

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text.lower())
    if m is None or float(m.group(1)) <= 0:
        raise ConfigError(f"--every takes a positive interval such as 30s, 15m or 1h, not {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


@dataclass
class WatchTotals:
    """What a watch did, for its closing summary."""

    polls: int = 0
    not_modified: int = 0  # source fetches answered 304
    source_errors: int = 0
    new_articles: int = 0  # articles shown for the first time, analyzed
    failed: int = 0  # analysis failures (an article that fails is tried again next poll)
    started: float = field(default_factory=time.monotonic)

    def summary(self) -> str:
        return (
            f"watch stopped after {self.polls} poll(s) in {time.monotonic() - self.started:.0f} s: "
            f"{self.new_articles} new article(s) analyzed, {self.failed} analysis failure(s), "
            f"{self.not_modified} unchanged feed(s) (304), {self.source_errors} source error(s)"
        )


class _Watch:
    def __init__(self, desk: NewsDesk, options: PipelineOptions, every: float, fmt: str) -> None:
        self.desk, self.options, self.every, self.fmt = desk, options, every, fmt
        self.totals = WatchTotals()
        self.shown: set[str] = set()  # articles whose analysis has been shown
        self.console = Console()
        self.stop = asyncio.Event()

    async def run(self, max_polls: int | None = None) -> WatchTotals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
        try:
            while not self.stop.is_set():
                await self._until_stopped(self._poll())
                if self.stop.is_set() or (max_polls is not None and self.totals.polls >= max_polls):
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), self.every)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        return self.totals

    async def _until_stopped(self, work: Any) -> None:
        """Run one poll; a stop request cancels it (the run records itself as stopped)."""
        task = asyncio.ensure_future(work)
        stopper = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (task, stopper):
                t.cancel()
            await asyncio.gather(task, stopper, return_exceptions=True)
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()

    async def _poll(self) -> None:
        from newsdesk.news import (
            AnalysisFailed,
            AnalysisReady,
            ArticleFound,
            RunDone,
            SourceFailed,
            SourceOk,
        )

        self.totals.polls += 1
        new = unchanged = 0
        from newsdesk._concurrency import aclosing

        async with aclosing(self.desk.run(self.options)) as events:
            async for ev in events:
                show = True
                match ev:
                    case SourceOk():
                        unchanged += int(ev.not_modified)
                    case SourceFailed():
                        self.totals.source_errors += 1
                        if self.fmt == "live":
                            self.console.print(
                                f"[red]✗ {escape(ev.source)}:[/red] {escape(ev.reason)}"
                            )
                    case ArticleFound():
                        show = ev.id not in self.shown
                    case AnalysisReady():
                        show = ev.id not in self.shown
                        if show:
                            self.shown.add(ev.id)
                            new += 1
                            if self.fmt == "live":
                                from newsdesk.cli._news_run import _analysis_block

                                self.console.print(_analysis_block(ev))
                    case AnalysisFailed():
                        self.totals.failed += 1
                        if self.fmt == "live":
                            self.console.print(
                                f"[red]✗[/red] [bold]{escape(ev.title)}[/bold] — analysis failed: "
                                f"{escape(ev.reason)}"
                            )
                    case RunDone():
                        pass
                    case _:
                        show = ev.event != "run_started" and ev.event != "analysis_delta"
                if self.fmt == "jsonl" and show:
                    sys.stdout.write(ev.to_json() + "\n")
                    sys.stdout.flush()
        self.totals.new_articles += new
        self.totals.not_modified += unchanged
        if self.fmt == "live":
            self.console.print(
                f"[dim]{time.strftime('%H:%M:%S')} poll {self.totals.polls}: {new} new, "
                f"{unchanged} of {len(self.options.sources)} feed(s) unchanged; next in "
                f"{_human(self.every)} (Ctrl-C to stop)[/dim]"
            )


def _human(seconds: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


@app.command()
def watch(
    sources: SourcesArg = None,
    sources_file: SourcesFileOpt = None,
    every: Annotated[
        str,
        typer.Option("--every", help="Time between polls: 30s, 15m, 1h (plain number: seconds)."),
    ] = "15m",
    model: ModelOpt = None,
    api_base: ApiBaseOpt = None,
    concurrency: AnalysisConcurrencyOpt = 4,
    cache: CacheOpt = None,
    fmt: FormatOpt = None,
    lang: LangOpt = None,
    topic_by: TopicByOpt = "auto",
    embeddings: EmbeddingsOpt = True,
    store_path: StoreOpt = None,
    queue: QueueOpt = None,
    polls: Annotated[
        int | None,
        typer.Option("--polls", min=1, help="Stop after N polls (default: run until stopped)."),
    ] = None,
) -> None:
    """Poll the sources every --every (conditional GET), analyze only new articles, until stopped
    (Ctrl-C / SIGTERM print a summary). Each poll is a run in `newsdesk history`."""
    fmt = check_run_options(fmt, topic_by, embeddings)
    run_watch(
        source_specs(sources, sources_file),
        every=parse_every(every),
        model=model,
        api_base=api_base,
        concurrency=concurrency,
        cache=cache,
        fmt=fmt,
        lang=lang,
        topic_by=topic_by,
        embeddings=embeddings,
        store_path=store_path,
        queue=queue,
        polls=polls,
    )


def run_watch(
    specs: list[str],
    *,
    every: float,
    model: str | None,
    api_base: str | None,
    concurrency: int,
    cache: str | None,
    fmt: str,
    lang: str | None,
    topic_by: str,
    store_path: Path | None,
    queue: str | None,
    polls: int | None,
    embeddings: bool = True,
) -> WatchTotals:
    from newsdesk import Gateway, Limits
    from newsdesk.cli._news_run import err
    from newsdesk.cli._queue import queue_executor, queued
    from newsdesk.news import NewsDesk

    executor = queue_executor(queue)
    gateway = Gateway(
        cache=cache if cache is not None else "disk", limits=Limits(concurrency=concurrency)
    )
    desk = NewsDesk(
        store=store_path, gateway=gateway, model=model, api_base=api_base, executor=executor
    )
    try:
        options = desk.prepare(
            specs,
            concurrency=concurrency,
            lang=lang,
            topic_mode=topic_by,
            embeddings=embeddings,
            deltas=False,
        )
        watcher = _Watch(desk, options, every, fmt)
        err.print(
            f"watching {len(options.sources)} source(s) every {_human(every)}"
            + (" on the queue's workers" if executor is not None else "")
            + " (Ctrl-C to stop)",
            highlight=False,
        )
        totals = asyncio.run(queued(executor, lambda: watcher.run(polls)))
    finally:
        desk.close()
        gateway.close()
    err.print(totals.summary(), highlight=False)
    return totals
