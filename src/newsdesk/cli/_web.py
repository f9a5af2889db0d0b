"""``newsdesk web``: serve the Gradio app (Chat, News, History)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer

from newsdesk.cli._app import ApiBaseOpt, CacheOpt, ModelOpt, app
from newsdesk.cli._queue import QueueOpt


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """``USER:PASS`` -> ``(user, pass)``; the password may contain ':'."""
    from newsdesk._exceptions import ConfigError

    if value is None:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user.strip() or not password:
        raise ConfigError("--auth takes USER:PASS (a user name, a colon, a non-empty password)")
    return user.strip(), password


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@app.command()
def web(
    host: Annotated[
        str, typer.Option("--host", help="Address to bind. 0.0.0.0 opens the app to the network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 7860,
    auth: Annotated[
        str | None,
        typer.Option(
            "--auth",
            envvar="NEWSDESK_WEB_AUTH",
            help="USER:PASS required to log in (or $NEWSDESK_WEB_AUTH).",
        ),
    ] = None,
    model: ModelOpt = None,
    api_base: ApiBaseOpt = None,
    cache: CacheOpt = None,
    store_path: Annotated[
        Path | None, typer.Option("--store", help="SQLite store file (default: user data dir).")
    ] = None,
    allow_api_base: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-api-base",
            help="Another API base that may receive this server's API keys (repeatable). "
            "Bases web users type get no server key.",
        ),
    ] = None,
    allow_private_sources: Annotated[
        bool,
        typer.Option(
            "--allow-private-sources",
            help="Let web users fetch feeds from loopback/private/link-local addresses "
            "(refused by default: they would reach this server's own network).",
        ),
    ] = False,
    queue: QueueOpt = None,
) -> None:
    """Serve the web app: chat with streaming replies, live news analysis with charts, history."""
    from newsdesk.cli._news_run import err
    from newsdesk.cli._queue import queue_executor

    executor = queue_executor(queue)
    credentials = parse_auth(auth)
    if not is_loopback(host) and credentials is None:
        err.print(
            f"[yellow]warning:[/yellow] serving on {host} without --auth: anyone who can reach this "
            "address can use the app (and your API keys). Add --auth USER:PASS."
        )
    from newsdesk.web import serve

    shown = "localhost" if host in ("0.0.0.0", "::") else (f"[{host}]" if ":" in host else host)
    err.print(f"newsdesk web: http://{shown}:{port}  (Ctrl-C to stop)")
    serve(
        host=host,
        port=port,
        auth=credentials,
        model=model,
        api_base=api_base,
        store_path=store_path,
        cache=cache,
        quiet=True,
        allow_api_bases=allow_api_base or (),
        allow_private_sources=allow_private_sources,
        executor=executor,
    )
