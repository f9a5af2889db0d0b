"""The one bridge from sync code to the async core: a background event loop thread.

Sync wrappers (``LiteLLMClient.response()``, ``stream_response()``) submit coroutines here,
so they work the same from plain scripts, threads and inside frameworks that own a loop.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def _get_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="newsdesk-portal", daemon=True)
            thread.start()
            atexit.register(lambda: loop.call_soon_threadsafe(loop.stop))
            _loop = loop
        return _loop


def run(coro: Coroutine[Any, Any, T]) -> T:
    fut = asyncio.run_coroutine_threadsafe(coro, _get_loop())
    try:
        return fut.result()
    except KeyboardInterrupt:
        fut.cancel()
        raise


def iterate(agen: AsyncIterator[T]) -> Iterator[T]:
    """Drive an async iterator from sync code; closing the sync iterator closes the async one."""
    loop = _get_loop()
    it = agen.__aiter__()

    async def step() -> tuple[bool, Any]:
        try:
            return True, await it.__anext__()
        except StopAsyncIteration:
            return False, None

    try:
        while True:
            fut = asyncio.run_coroutine_threadsafe(step(), loop)
            try:
                ok, value = fut.result()
            except KeyboardInterrupt:
                fut.cancel()
                raise
            if not ok:
                return
            yield value
    finally:
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            asyncio.run_coroutine_threadsafe(aclose(), loop).result()
