"""``newsdesk worker --queue redis://HOST:PORT/DB``: serve the analysis queue (see newsdesk.scale)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from newsdesk.cli._app import CacheOpt, app


@app.command()
def worker(
    queue: Annotated[
        str,
        typer.Option(
            "--queue",
            "-q",
            envvar="NEWSDESK_QUEUE",
            help="The queue's Redis: redis://[:password@]HOST:PORT/DB (or $NEWSDESK_QUEUE).",
        ),
    ],
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency", "-c", min=1, max=1000, help="Analyses this worker runs at once."
        ),
    ] = 4,
    cache: CacheOpt = None,
    rpm: Annotated[
        float | None,
        typer.Option("--rpm", min=1, help="Max requests per minute, for all workers together."),
    ] = None,
    tpm: Annotated[
        float | None,
        typer.Option("--tpm", min=1, help="Max tokens per minute, for all workers together."),
    ] = None,
    rate_window: Annotated[
        float,
        typer.Option(
            "--rate-window",
            min=1,
            hidden=True,
            help="Seconds the --rpm/--tpm budgets span (tests, benchmarks).",
        ),
    ] = 60.0,
    redeliver_after: Annotated[
        float,
        typer.Option(
            "--redeliver-after",
            min=1,
            help="Seconds after which a dead worker's jobs go to another.",
        ),
    ] = 15.0,
    grace: Annotated[
        int,
        typer.Option(
            "--grace",
            min=0,
            help="Seconds running jobs get to finish on SIGTERM before they are handed back.",
        ),
    ] = 30,
    embeddings: Annotated[
        bool,
        typer.Option(
            "--embeddings/--no-embeddings", help="Topic/tone/vector by the embedding model."
        ),
    ] = True,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="A line per finished job.")
    ] = False,
) -> None:
    """Run analyses from a Redis queue until stopped (SIGTERM/Ctrl-C finish or hand back running jobs).
    The cache (default: the queue's Redis), single-flight and --rpm/--tpm are shared by all workers."""
    from newsdesk.cli._news_run import err
    from newsdesk.scale import run_worker

    def log(line: str) -> None:
        err.print(line, markup=False, highlight=False)

    asyncio.run(
        run_worker(
            queue,
            concurrency,
            cache=cache,
            rpm=rpm,
            tpm=tpm,
            rate_window=rate_window,
            redeliver_after=redeliver_after,
            grace_period=grace,
            embeddings=embeddings,
            log=log,
            verbose=verbose,
        )
    )
