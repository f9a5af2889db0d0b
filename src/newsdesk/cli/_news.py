"""``newsdesk analyze``, ``history`` and ``show``: thin consumers of the pipeline's event stream."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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


@app.command()
def analyze(
    sources: SourcesArg = None,
    sources_file: SourcesFileOpt = None,
    model: ModelOpt = None,
    api_base: ApiBaseOpt = None,
    concurrency: AnalysisConcurrencyOpt = 4,
    fetch_concurrency: Annotated[
        int, typer.Option("--fetch-concurrency", min=1, max=200, help="Sources fetched at once.")
    ] = 8,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=0.1, help="Seconds to fetch one source, retries included."),
    ] = None,
    cache: CacheOpt = None,
    fmt: FormatOpt = None,
    full_text: Annotated[
        bool,
        typer.Option("--full-text", help="Fetch each article's page and analyze its full text."),
    ] = False,
    digest: Annotated[
        bool, typer.Option("--digest", help="After the articles, one summary per topic.")
    ] = False,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Analyze at most N articles.")
    ] = None,
    lang: LangOpt = None,
    topic_by: TopicByOpt = "auto",
    embeddings: EmbeddingsOpt = True,
    reanalyze: Annotated[
        bool, typer.Option("--reanalyze", help="Ignore analyses already in the store.")
    ] = False,
    store_path: StoreOpt = None,
    deltas: Annotated[
        bool, typer.Option("--deltas", help="jsonl: also emit analysis_delta events.")
    ] = False,
    deadline: Annotated[
        float | None,
        typer.Option(
            "--deadline", min=0.1, help="Seconds for the whole run; then what is left is reported."
        ),
    ] = None,
    request_timeout: Annotated[
        float | None,
        typer.Option(
            "--request-timeout",
            min=0.1,
            help="Seconds for one model request attempt (default: 60 for remote models).",
        ),
    ] = None,
    retries: Annotated[
        int, typer.Option("--retries", min=0, max=10, help="Retries of a failed model request.")
    ] = 2,
    rpm: Annotated[
        float | None, typer.Option("--rpm", min=0.001, help="Max model requests per minute.")
    ] = None,
    tpm: Annotated[
        float | None, typer.Option("--tpm", min=1, help="Max model tokens per minute.")
    ] = None,
    queue: QueueOpt = None,
) -> None:
    """Fetch news sources concurrently, analyze every article with an LLM, show each result as it is ready."""
    from newsdesk.cli._news_run import run_analyze

    fmt = check_run_options(fmt, topic_by, embeddings)
    code = run_analyze(
        source_specs(sources, sources_file),
        model=model,
        api_base=api_base,
        concurrency=concurrency,
        fetch_concurrency=fetch_concurrency,
        timeout=timeout,
        cache=cache,
        fmt=fmt,
        full_text=full_text,
        digest=digest,
        limit=limit,
        lang=lang,
        topic_by=topic_by,
        embeddings=embeddings,
        reanalyze=reanalyze,
        store_path=store_path,
        deltas=deltas,
        deadline=deadline,
        request_timeout=request_timeout,
        retries=retries,
        rpm=rpm,
        tpm=tpm,
        queue=queue,
    )
    raise typer.Exit(code)


@app.command()
def history(
    limit: Annotated[int, typer.Option("--limit", min=1)] = 20,
    store_path: Annotated[Path | None, typer.Option("--store", help="SQLite store file.")] = None,
    sources: Annotated[
        bool, typer.Option("--sources", help="Show source health instead of runs.")
    ] = False,
) -> None:
    """List past runs (or, with --sources, each source's health)."""
    from newsdesk.cli._news_run import run_history

    run_history(limit=limit, store_path=store_path, sources=sources)


@app.command()
def show(
    topic: Annotated[str | None, typer.Option("--topic")] = None,
    source: Annotated[str | None, typer.Option("--source")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="YYYY-MM-DD or a number of days, e.g. 7d.")
    ] = None,
    story: Annotated[str | None, typer.Option("--story")] = None,
    query: Annotated[
        str | None, typer.Option("--query", "-q", help="Semantic search over stored analyses.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 30,
    fmt: Annotated[str, typer.Option("--format", help="table or jsonl.")] = "table",
    store_path: Annotated[Path | None, typer.Option("--store", help="SQLite store file.")] = None,
) -> None:
    """Query stored analyses by topic, source, date, story, or meaning (--query)."""
    from newsdesk.cli._news_run import run_show

    run_show(
        topic=topic,
        source=source,
        since=since,
        story=story,
        query=query,
        limit=limit,
        fmt=fmt,
        store_path=store_path,
    )
