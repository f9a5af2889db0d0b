"""Where an agent's async work runs.

smolagents is synchronous: ``agent.run`` steps in the calling thread and calls each tool's
``forward`` there (parallel tool calls each in a thread of its own pool). newsdesk runs the
agent in a worker thread and hands every coroutine a tool needs to an event loop:

* the loop of the ``arun`` caller, captured when the run starts and carried to the agent's
  thread (and smolagents' tool threads, which copy the context) in a ContextVar, so tools share
  that loop's clients, locks and caches; or
* when there is none (``agent.run`` called from plain sync code, or from the loop's own thread),
  newsdesk's background loop (``newsdesk._concurrency.submit``).

The agent thread only ever *blocks on a future*; it never runs a loop. The caller's loop only
ever *awaits*; it never blocks on the agent. So neither can deadlock the other.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from newsdesk._concurrency import submit

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


def run_coroutine(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine from synchronous code (an agent's thread) and return its result.

    ``make`` builds the coroutine only once the target loop is chosen, so nothing is left
    un-awaited if the run was already cancelled.
    """
    scope = _scope.get()
    if scope is not None and scope.cancelled:
        raise RunCancelled("the agent run was cancelled")
    # The run's loop, unless there is none or we are on it (a sync call from async code, where
    # blocking on a future of that same loop would deadlock): then newsdesk's background loop.
    fut = submit(make, scope.loop if scope is not None else None)
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


def enter_scope(scope: RunScope) -> contextvars.Token[RunScope | None]:
    return _scope.set(scope)


def exit_scope(token: contextvars.Token[RunScope | None]) -> None:
    _scope.reset(token)
