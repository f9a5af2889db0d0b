"""Async plumbing for the event handlers: closing streams for sure, and pacing UI updates."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, TypeVar

T = TypeVar("T")


@contextlib.asynccontextmanager
async def closing(stream: AsyncIterator[T]) -> AsyncGenerator[AsyncIterator[T], None]:
    """Like ``contextlib.aclosing`` for any async iterator: leaving the block — normally, by an
    exception, by cancellation or by ``GeneratorExit`` — closes the stream at once (an ``async
    for`` left early does not), so a model stream or a pipeline run stops with its consumer."""
    try:
        yield stream
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


async def paced(events: AsyncIterator[Any], interval: float) -> AsyncGenerator[list[Any], None]:
    """Batches of ``events``, at most one batch per ``interval`` seconds (the first at once, the
    last when the source ends), so a browser gets a few updates a second however fast events
    come — and a quiet spell still shows what arrived before it. The source runs in its own
    task; leaving this generator (finished, closed or cancelled) cancels that task, which closes
    the source."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    end = object()

    async def pump() -> None:
        try:
            async with closing(events) as it:
                async for ev in it:
                    queue.put_nowait(ev)
        except Exception as exc:
            queue.put_nowait(_Failure(exc))
        else:
            queue.put_nowait(end)

    task = asyncio.create_task(pump())
    try:
        batch: list[Any] = []
        last = time.monotonic() - interval
        while True:
            timeout = None if not batch else max(0.0, last + interval - time.monotonic())
            try:
                item = await asyncio.wait_for(queue.get(), timeout)
            except TimeoutError:
                item = None
            finished = False
            while item is not None:
                if item is end:
                    finished = True
                    break
                if isinstance(item, _Failure):
                    if batch:
                        yield batch
                    raise item.exc
                batch.append(item)
                item = queue.get_nowait() if not queue.empty() else None
            if finished:
                if batch:
                    yield batch
                return
            if batch and time.monotonic() - last >= interval:
                yield batch
                batch = []
                last = time.monotonic()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
