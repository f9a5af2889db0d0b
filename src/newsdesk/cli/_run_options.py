"""Options of the commands that run the news pipeline (``analyze``, ``watch``): defined once, so
the two commands spell, check and document them alike."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

SourcesArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Feed URLs, feed files, OPML or sources.toml files. None: the bundled demo feeds."
    ),
]
SourcesFileOpt = Annotated[
    Path | None, typer.Option("--sources", help="A sources file (TOML) or OPML.")
]
AnalysisConcurrencyOpt = Annotated[
    int, typer.Option("--concurrency", "-c", min=1, max=200, help="Analyses in flight.")
]
FormatOpt = Annotated[
    str | None,
    typer.Option("--format", help="live (default on a terminal) or jsonl (default otherwise)."),
]
LangOpt = Annotated[
    str | None,
    typer.Option("--lang", help="Language code for summaries (default: the article's)."),
]
TopicByOpt = Annotated[str, typer.Option("--topic-by", help="auto, llm or embedding.")]
EmbeddingsOpt = Annotated[
    bool,
    typer.Option(
        "--embeddings/--no-embeddings",
        help="Embed each article: topic and tone for the embedded model, stories, search by "
        "meaning. Off: the LLM names topic and tone, no stories; ~0.3 s less CPU per article.",
    ),
]
StoreOpt = Annotated[
    Path | None, typer.Option("--store", help="SQLite store file (default: user data dir).")
]


def source_specs(sources: list[str] | None, sources_file: Path | None) -> list[str]:
    """The SOURCE arguments and ``--sources FILE`` as one list of specs."""
    return list(sources or []) + ([str(sources_file)] if sources_file else [])


def check_run_options(fmt: str | None, topic_by: str, embeddings: bool) -> str:
    """Refuse contradictory or unknown choices before anything runs; return the output format
    (``--format`` or, by default, live on a terminal and jsonl otherwise)."""
    from newsdesk._exceptions import ConfigError

    if fmt not in (None, "live", "jsonl"):
        raise ConfigError(f"--format must be live or jsonl, not {fmt!r}")
    if topic_by not in ("auto", "llm", "embedding"):
        raise ConfigError(f"--topic-by must be auto, llm or embedding, not {topic_by!r}")
    if topic_by == "embedding" and not embeddings:
        raise ConfigError("--topic-by embedding needs the embedding step: drop --no-embeddings")
    return fmt or ("live" if sys.stdout.isatty() else "jsonl")
