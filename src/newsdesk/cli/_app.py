"""Typer application: options shared by the commands, and the commands themselves (thin)."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    name="newsdesk",
    help="Stream, batch and cache LLM calls through LiteLLM — and analyze the news with them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)

ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Any LiteLLM model string; default: the embedded local/smollm2 "
        "(or $NEWSDESK_MODEL). 'fast'/'strong' use $NEWSDESK_FAST_MODEL/$NEWSDESK_STRONG_MODEL.",
    ),
]
ApiBaseOpt = Annotated[
    str | None,
    typer.Option("--api-base", help="Provider base URL (OpenAI-compatible server, Ollama, vLLM…)."),
]
CacheOpt = Annotated[
    str | None,
    typer.Option(
        "--cache",
        help="Cache: a directory, redis://host:port/db, 'memory' or 'off' (default: disk in the user cache dir).",
    ),
]
ConcurrencyOpt = Annotated[
    int, typer.Option("--concurrency", "-c", min=1, max=1000, help="Max LLM requests in flight.")
]


@app.command()
def ask(
    prompts: Annotated[
        list[str], typer.Argument(help="One prompt streams; several run concurrently.")
    ],
    model: ModelOpt = None,
    api_base: ApiBaseOpt = None,
    concurrency: ConcurrencyOpt = 4,
    cache: CacheOpt = None,
    system: Annotated[str | None, typer.Option("--system", help="A system prompt.")] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", min=1)] = None,
    temperature: Annotated[float | None, typer.Option("--temperature", min=0, max=2)] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds for one attempt.")
    ] = 120.0,
    retries: Annotated[int, typer.Option("--retries", min=0, max=10)] = 2,
    rpm: Annotated[float | None, typer.Option("--rpm", help="Max requests per minute.")] = None,
    tpm: Annotated[float | None, typer.Option("--tpm", help="Max tokens per minute.")] = None,
    deadline: Annotated[
        float | None, typer.Option("--deadline", help="Seconds for the whole batch.")
    ] = None,
) -> None:
    """Ask one or more prompts. One streams token by token; several run at once, each printed as it completes."""
    from newsdesk.cli._ask import run_ask

    run_ask(
        prompts,
        model=model,
        api_base=api_base,
        concurrency=concurrency,
        cache=cache,
        system=system,
        max_tokens=max_tokens,
        temperature=temperature,
        timeout=timeout,
        retries=retries,
        rpm=rpm,
        tpm=tpm,
        deadline=deadline,
    )


@app.command()
def chat(
    model: ModelOpt = None,
    api_base: ApiBaseOpt = None,
    cache: CacheOpt = "off",
    system: Annotated[str | None, typer.Option("--system", help="A system prompt.")] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", min=1)] = 512,
) -> None:
    """Chat in the terminal with streaming replies. /reset clears the history, /exit or Ctrl-D leaves."""
    from newsdesk.cli._ask import run_chat

    run_chat(model=model, api_base=api_base, cache=cache, system=system, max_tokens=max_tokens)


def _register_optional() -> None:
    # The news, web and agent commands live in their own modules; each registers itself here.
    import importlib

    for mod in (
        "newsdesk.cli._news",
        "newsdesk.cli._web",
        "newsdesk.cli._agent",
        "newsdesk.cli._worker",
        "newsdesk.cli._watch",
    ):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


_register_optional()
