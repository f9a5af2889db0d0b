"""``--queue URL`` for the commands that run analyses (analyze, watch, web): the run's articles
are analyzed by ``newsdesk worker`` processes through Redis instead of in this process."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

if TYPE_CHECKING:
    from newsdesk.scale import QueueExecutor

T = TypeVar("T")

QueueOpt = Annotated[
    str | None,
    typer.Option(
        "--queue",
        "-q",
        envvar="NEWSDESK_QUEUE",
        help="Analyze on the workers serving this Redis queue: redis://[:password@]HOST:PORT/DB "
        "(start them with `newsdesk worker --queue URL`; or $NEWSDESK_QUEUE).",
    ),
]


def queue_executor(url: str | None) -> QueueExecutor | None:
    """The executor for ``--queue URL`` (None: analyze in this process). Checks the URL now, so
    a typo is an error before anything is fetched."""
    if not url:
        return None
    try:
        from newsdesk.scale import QueueExecutor
    except ImportError:
        from newsdesk._exceptions import ConfigError

        raise ConfigError("--queue needs the queue extra: pip install 'newsdesk[queue]'") from None
    return QueueExecutor(url)


async def queued(executor: QueueExecutor | None, work: Callable[[], Awaitable[T]]) -> T:
    """Await ``work()`` with the queue: a worker must be there first (one clear error, not one
    per article), and the executor is closed on the same event loop, whatever happens (jobs
    still out are aborted: Ctrl-C or a deadline leaves nothing running on the workers)."""
    if executor is None:
        return await work()
    try:
        await executor.ready()
        return await work()
    finally:
        await executor.aclose()
