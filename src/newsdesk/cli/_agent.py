"""``newsdesk agent``: ask the news agent a question and watch its steps as they happen."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from newsdesk.cli._app import ApiBaseOpt, ModelOpt, app


@app.command()
def agent(
    question: Annotated[
        str, typer.Argument(help='What to ask, e.g. "What happened with the floods?"')
    ],
    model: ModelOpt = None,
    api_base: ApiBaseOpt = None,
    max_steps: Annotated[
        int | None,
        typer.Option(
            "--max-steps",
            min=1,
            max=50,
            help="Steps before it must answer (default: 3 for the embedded model, 6 otherwise).",
        ),
    ] = None,
    max_tokens: Annotated[
        int | None, typer.Option("--max-tokens", min=16, help="Tokens per model reply.")
    ] = None,
    store_path: Annotated[
        Path | None, typer.Option("--store", help="SQLite store file (default: user data dir).")
    ] = None,
    jsonl: Annotated[
        bool, typer.Option("--jsonl", help="Print the events as JSON lines instead.")
    ] = False,
) -> None:
    """Answer a question about the stored news with an agent (search, read, digest, analyze a feed), printing each step and tool call as it happens."""
    code = run_agent(
        question,
        model=model,
        api_base=api_base,
        max_steps=max_steps,
        max_tokens=max_tokens,
        store_path=store_path,
        jsonl=jsonl,
    )
    if code:
        raise typer.Exit(code)


def run_agent(
    question: str,
    *,
    model: str | None,
    api_base: str | None,
    max_steps: int | None,
    max_tokens: int | None,
    store_path: Path | None,
    jsonl: bool,
) -> int:
    from newsdesk._backend import check_model
    from newsdesk._config import default_model
    from newsdesk.agents import astream_agent, news_agent

    name = model or default_model()
    check_model(name, api_base=api_base)
    built = news_agent(
        name, api_base=api_base, store=store_path, max_steps=max_steps, max_tokens=max_tokens
    )
    return asyncio.run(_show(astream_agent(built, question), jsonl=jsonl, model=name))


async def _show(events: Any, *, jsonl: bool, model: str) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.padding import Padding
    from rich.text import Text

    out = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    code = 0
    if not jsonl:
        err.print(f"[dim]agent on {escape(model)} — steps as they happen[/dim]")
    async for ev in events:
        if jsonl:
            sys.stdout.write(json.dumps(ev.to_dict(), ensure_ascii=False, default=str) + "\n")
            sys.stdout.flush()
            if ev.kind == "error":
                code = 1
            continue
        if ev.kind == "delta":
            err.print(Text(ev.text, style="dim"), end="")
        elif ev.kind == "tool_call":
            if ev.tool == "final_answer":
                continue
            err.print(
                Text.assemble(
                    ("  → ", "cyan"), (f"{ev.tool}", "bold cyan"), f"({_args(ev.arguments)})"
                )
            )
        elif ev.kind == "tool_result":
            if ev.tool == "final_answer":
                continue
            lines = ev.text.splitlines()
            shown = "\n".join(line[:160] for line in lines[:6]) + (
                f"\n… {len(lines) - 6} more lines" if len(lines) > 6 else ""
            )
            err.print(Padding(Text(shown, style="dim"), (0, 0, 0, 4)))
        elif ev.kind == "step":
            meta = [f"step {ev.step}"]
            if ev.duration is not None:
                meta.append(f"{ev.duration:.1f} s")
            if ev.input_tokens is not None:
                meta.append(f"{ev.input_tokens}+{ev.output_tokens} tokens")
            err.print(Text(" · ".join(meta), style="bold"))
            if ev.error:
                err.print(
                    Padding(Text(ev.error.splitlines()[0][:300], style="yellow"), (0, 0, 0, 4))
                )
        elif ev.kind == "planning":
            err.print(Text("plan: " + ev.text[:500], style="magenta"))
        elif ev.kind == "final":
            err.print(Text("answer:", style="bold green"))
            out.print(ev.text, markup=False)
        elif ev.kind == "error":
            err.print(f"[red]error:[/red] {escape(ev.error or 'the agent failed')}")
            code = 1
    return code


def _args(arguments: Any) -> str:
    if isinstance(arguments, dict):
        text = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
    else:
        text = repr(arguments)
    return text if len(text) <= 200 else text[:199] + "…"
