"""Where an agent's async work runs.

smolagents is synchronous: ``agent.run`` steps in the calling thread and calls each tool's
``forward`` there (parallel tool calls each in a thread of its own pool). newsdesk runs the
agent in a worker thread and hands every coroutine a tool needs to an event loop:

* the loop of the ``arun`` caller, captured when the run starts and carried to the agent's
  thread (and smolagents' tool threads, which copy the context) in a ContextVar, so tools share
  that loop's clients, locks and caches; or
* when there is none (``agent.run`` called from plain sync code, or from the loop's own thread),
  newsdesk's background loop (``newsdesk._portal``).

The agent thread only ever *blocks on a future*; it never runs a loop. The caller's loop only
ever *awaits*; it never blocks on the agent. So neither can deadlock the other.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


class RunCancelled(RuntimeError):
    """The agent run this tool call belongs to was cancelled (deadline, cancel, consumer gone)."""


@dataclass
class RunScope:
    """One agent run: the loop its tools' coroutines go to, and those in flight (to cancel)."""

    loop: asyncio.AbstractEventLoop | None
    pending: set[concurrent.futures.Future[Any]] = field(default_factory=set)
    cancelled: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def cancel(self) -> None:
        """Stop every tool coroutine still running for this run; later calls fail at once."""
        with self.lock:
            self.cancelled = True
            pending = list(self.pending)
        for fut in pending:
            fut.cancel()


_scope: contextvars.ContextVar[RunScope | None] = contextvars.ContextVar(
    "newsdesk_agent_scope", default=None
)


def current_scope() -> RunScope | None:
    return _scope.get()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _usable(loop: asyncio.AbstractEventLoop | None) -> bool:
    return loop is not None and not loop.is_closed() and loop.is_running()


def run_coroutine(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine from synchronous code (an agent's thread) and return its result.

    ``make`` builds the coroutine only once the target loop is chosen, so nothing is left
    un-awaited if the run was already cancelled.
    """
    scope = _scope.get()
    if scope is not None and scope.cancelled:
        raise RunCancelled("the agent run was cancelled")
    here = _running_loop()
    loop = scope.loop if scope is not None else None
    if not _usable(loop) or loop is here:
        # No caller loop, or we *are* on it (a sync call from async code): blocking here on a
        # future of that same loop would deadlock, so use the background loop instead.
        from newsdesk import _portal

        loop = _portal._get_loop()
        if loop is here:
            raise RuntimeError(
                "an async tool was called synchronously from newsdesk's background loop"
            )
    assert loop is not None
    fut = asyncio.run_coroutine_threadsafe(_awaited(make), loop)
    if scope is not None:
        with scope.lock:
            if scope.cancelled:
                fut.cancel()
            scope.pending.add(fut)
    try:
        return fut.result()
    except concurrent.futures.CancelledError:
        raise RunCancelled("the agent run was cancelled") from None
    finally:
        if scope is not None:
            with scope.lock:
                scope.pending.discard(fut)


async def _awaited(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


async def in_thread(fn: Callable[[], T], *, name: str = "newsdesk-agent") -> T:
    """Run ``fn`` in a new daemon thread (with this context) and await its result.

    Not ``asyncio.to_thread``: agents hold their thread for minutes, and the default executor
    (a handful of threads) is also what tools' ``to_thread`` calls need — a few long agents
    would starve, or deadlock, the very tools they wait on. Cancelling the await does not stop
    the thread; the caller stops the agent (``agent.interrupt()``) and the thread ends at the
    agent's next step.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()
    ctx = contextvars.copy_context()

    def settle(ok: bool, value: Any) -> None:
        if done.done():
            return
        if ok:
            done.set_result(value)
        else:
            done.set_exception(value)

    def work() -> None:
        try:
            result = ctx.run(fn)
        except BaseException as exc:  # handed to the awaiting task
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
                loop.call_soon_threadsafe(settle, False, exc)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, True, result)

    threading.Thread(target=work, name=name, daemon=True).start()
    return await done


def enter_scope(scope: RunScope) -> contextvars.Token[RunScope | None]:
    return _scope.set(scope)


def exit_scope(token: contextvars.Token[RunScope | None]) -> None:
    _scope.reset(token)
