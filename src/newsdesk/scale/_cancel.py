"""Stopping tasks whose awaits go through redis-py, on Python 3.11.

redis-py sends every command under ``asyncio.wait_for`` (the socket timeout). On Python 3.11,
``wait_for`` drops a cancel that lands just as the command finishes: it returns the command's
result instead of raising ``CancelledError`` (CPython gh-86296; 3.12 rewrote ``wait_for``). A
loop that relies on the cancel alone (a lock renewer, a heartbeat, a poll) then runs on forever,
and whoever awaits its end waits with it. Python still counts the request
(``Task.cancelling()``), so these loops check it, and their owners wait for them with a bound.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_requested", "raise_if_cancelled", "stop_task"]


def cancel_requested() -> bool:
    """This task was asked to stop, even if the ``CancelledError`` was lost on the way."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def raise_if_cancelled() -> None:
    """Raise the ``CancelledError`` that a redis-py command may have swallowed."""
    if cancel_requested():
        raise asyncio.CancelledError


async def stop_task(task: asyncio.Task[Any], within: float) -> None:
    """Cancel ``task`` and wait at most ``within`` seconds for it to end (it also stops by
    itself at its next check of ``cancel_requested``)."""
    task.cancel()
    await asyncio.wait({task}, timeout=within)
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: a stopped helper's error is not news
