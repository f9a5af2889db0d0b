"""``newsdesk ask`` and ``newsdesk chat``."""

from __future__ import annotations

import asyncio
import sys

from rich.console import Console
from rich.table import Table

from newsdesk._exceptions import NewsdeskError

err = Console(stderr=True)


def _gateway(
    cache: str | None, concurrency: int = 4, rpm: float | None = None, tpm: float | None = None
):
    from newsdesk import Gateway, Limits

    return Gateway(
        cache=cache if cache is not None else _DEFAULT_CACHE,
        limits=Limits(concurrency=concurrency, rpm=rpm, tpm=tpm),
    )


_DEFAULT_CACHE = "disk"


def _model(model: str | None, api_base: str | None) -> str:
    from newsdesk._backend import check_model
    from newsdesk._config import default_model

    name = model or default_model()
    check_model(name, api_base=api_base)
    return name


def run_ask(
    prompts: list[str],
    *,
    model: str | None,
    api_base: str | None,
    concurrency: int,
    cache: str | None,
    system: str | None,
    max_tokens: int | None,
    temperature: float | None,
    timeout: float,
    retries: int,
    rpm: float | None,
    tpm: float | None,
    deadline: float | None,
) -> None:
    from newsdesk import Message, Request

    name = _model(model, api_base)
    gateway = _gateway(cache, concurrency, rpm, tpm)

    def req(text: str) -> Request:
        msgs = ([Message(role="system", content=system)] if system else []) + [
            Message(role="user", content=text)
        ]
        return Request(
            model=name,
            messages=msgs,
            max_tokens=max_tokens,
            temperature=temperature,
            timeout=timeout,
            retries=retries,
            api_base=api_base,
        )

    requests = [req(p) for p in prompts]
    if len(requests) == 1:
        asyncio.run(_stream_one(gateway, requests[0]))
    else:
        failed = asyncio.run(_many(gateway, requests, prompts, deadline))
        if failed == len(requests):
            raise SystemExit(1)


async def _stream_one(gateway, request) -> None:
    out = sys.stdout
    async for chunk in gateway.stream(request):
        if chunk.content:
            out.write(chunk.content)
            out.flush()
        if chunk.done and chunk.response is not None:
            out.write("\n")
            out.flush()
            r = chunk.response
            note = " (from cache)" if r.cached else ""
            err.print(
                f"[dim]{r.model} · {r.usage.completion_tokens} tokens · {r.latency:.2f} s{note}[/dim]"
            )


async def _many(gateway, requests, prompts, deadline) -> int:
    batch = gateway.map(requests, deadline=deadline)
    console = Console()
    async for o in batch:
        title = prompts[o.index] if len(prompts[o.index]) <= 60 else prompts[o.index][:57] + "…"
        if o.ok:
            r = o.response
            tag = " [dim](cache)[/dim]" if r.cached else ""
            console.print(
                f"[bold cyan]#{o.index + 1}[/bold cyan] [bold]{title}[/bold] [dim]{o.latency:.2f} s[/dim]{tag}"
            )
            console.print(r.text.strip(), markup=False, highlight=False)
        else:
            console.print(
                f"[bold red]#{o.index + 1} {title} failed:[/bold red] {o.error}", highlight=False
            )
        console.print()
    s = batch.stats
    table = Table(title="Timing", show_header=False)
    table.add_row("requests", f"{s.count} ({s.ok} ok, {s.failed} failed)")
    table.add_row("total (wall)", f"{s.wall:.2f} s")
    table.add_row("average per request", f"{s.average:.2f} s")
    table.add_row("sum of individual times", f"{s.sum_latency:.2f} s")
    table.add_row("time saved by concurrency", f"{s.saved:.2f} s")
    table.add_row("cache hits / misses", f"{s.cache_hits} / {s.cache_misses}")
    table.add_row("retries", str(s.retries))
    table.add_row("tokens (prompt + completion)", f"{s.prompt_tokens} + {s.completion_tokens}")
    if s.cost:
        table.add_row("cost", f"${s.cost:.6f}")
    err.print(table)
    return s.failed


def run_chat(
    *,
    model: str | None,
    api_base: str | None,
    cache: str | None,
    system: str | None,
    max_tokens: int | None,
) -> None:
    from newsdesk import Message, Request

    name = _model(model, api_base)
    gateway = _gateway(cache)
    history: list[Message] = [Message(role="system", content=system)] if system else []
    err.print(
        f"[dim]chatting with {name} — /reset clears history, /exit or Ctrl-D leaves, Ctrl-C stops a reply[/dim]"
    )
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                text = input("you> ").strip() if sys.stdin.isatty() else sys.stdin.readline()
            except EOFError:
                break
            if text == "":
                if not sys.stdin.isatty():
                    break
                continue
            text = text.strip()
            if not text:
                continue
            if text in ("/exit", "/quit"):
                break
            if text == "/reset":
                history = history[:1] if system else []
                err.print("[dim]history cleared[/dim]")
                continue
            history.append(Message(role="user", content=text))
            request = Request(
                model=name, messages=history, max_tokens=max_tokens, api_base=api_base
            )
            sys.stdout.write("bot> ")
            sys.stdout.flush()
            reply = ""
            task = loop.create_task(_collect(gateway, request))
            try:
                reply = loop.run_until_complete(task)
            except KeyboardInterrupt:
                task.cancel()
                loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
                sys.stdout.write("\n")
                err.print("[dim](stopped)[/dim]")
                history.pop()
                continue
            except NewsdeskError as exc:
                sys.stdout.write("\n")
                err.print(f"[red]error:[/red] {exc}", highlight=False)
                history.pop()
                continue
            history.append(Message(role="assistant", content=reply))
    finally:
        loop.close()


async def _collect(gateway, request) -> str:
    parts: list[str] = []
    async for chunk in gateway.stream(request):
        if chunk.content:
            parts.append(chunk.content)
            sys.stdout.write(chunk.content)
            sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()
    return "".join(parts)
