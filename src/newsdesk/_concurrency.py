"""Every bridge between tasks, threads and sync code that newsdesk needs, written once.

Async side (tasks):

``Completions(awaitables, deadline=, fill=)``
    Runs each awaitable as a task and gives ``(index, result)`` pairs in completion order. At the
    deadline the tasks still running are cancelled and each is reported once through
    ``fill(index, TimeoutError())`` (a task cancelled alone with ``.cancel(index)``: through
    ``fill(index, CancelledError())``). Leaving early (``async with``, ``aclose``) cancels and
    awaits every task, so none is left behind::

        async with Completions([fetch(u) for u in urls], deadline=30, fill=lambda i, e: None) as work:
            async for index, page in work:
                ...

``TaskBatch``
    The base of the batch runs (``Gateway.map``, ``run_agents``): one task per item, outcomes in
    completion order (``async for``) or input order (``gather()``); a subclass writes ``_one``
    (an item's run, which turns its errors into an outcome) and ``_missing`` (the outcome of a
    run stopped by the deadline or by ``cancel(index)``).

``Channel()``
    Fan-in: tasks ``spawn``-ed into it ``send`` items; ``async for`` yields them in the order sent
    and ends when every spawned task has finished (those tasks may spawn more). A task's error is
    raised to the reader after the items sent before it; leaving cancels the tasks still running.

``paced(stream, interval)``
    The items of an async stream in lists, at most one list per ``interval`` seconds (for UIs).

Threads (blocking code):

``iterate_in_thread(produce, stop=, wait=)``
    ``produce()`` (a blocking iterable: a llama.cpp token stream, a smolagents run) iterated in a
    thread of its own, as an async iterator. When the reader leaves early, the thread stops at
    its next item (``stop()`` is called too, to interrupt it sooner) and the iterable is closed
    in its thread (a generator's ``finally`` runs there).
``run_in_thread(fn)``
    One blocking call in a new daemon thread. Not ``asyncio.to_thread``: calls that hold a thread
    for minutes would starve the small default executor that short calls need.
``acquire(lock)``
    A ``threading.Lock`` taken by polling with backoff, so waiting for it parks no thread.

Sync code driving the async core (one background "portal" loop):

``run_sync(coro)``, ``iterate_sync(async_iterator)``, ``submit(make, loop=)``
    ``submit`` runs a coroutine on ``loop`` when that loop runs in another thread (an agent's
    tools on their caller's loop), else on the portal loop; the caller blocks on the future.

And ``aclose(obj)`` / ``aclosing(obj)``: close anything closable now (``aclose()``, else ``close()``),
not whenever it is garbage collected, so a stream's connection and slot are released at once.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import contextlib
import contextvars
import inspect
import threading
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
)
from typing import Any, Generic, TypeVar

T = TypeVar("T")
In = TypeVar("In")
Out = TypeVar("Out")

__all__ = [
    "Channel",
    "Completions",
    "TaskBatch",
    "aclose",
    "aclosing",
    "acquire",
    "iterate_in_thread",
    "iterate_sync",
    "paced",
    "portal_loop",
    "run_in_thread",
    "run_sync",
    "submit",
]


# ---------------------------------------------------------------- closing


async def aclose(obj: object) -> None:
    """Close ``obj`` now if it can be closed: ``await obj.aclose()``, else ``obj.close()``
    (awaited when that returns an awaitable). Anything else is left alone."""
    close = getattr(obj, "aclose", None) or getattr(obj, "close", None)
    if close is None:
        return
    result = close()
    if inspect.isawaitable(result):
        await result


@contextlib.asynccontextmanager
async def aclosing(obj: T) -> AsyncGenerator[T, None]:
    """``contextlib.aclosing`` for anything: leaving the block however (an ``async for`` left by
    break, an error, a cancellation) closes ``obj`` at once."""
    try:
        yield obj
    finally:
        await aclose(obj)


# ---------------------------------------------------------------- completion order


class Completions(Generic[T]):
    """``(index, result)`` of each awaitable in completion order; see the module docstring.

    An exception other than a cancellation or the deadline is raised from the iteration (the
    other tasks keep running until the iteration is closed).
    """

    def __init__(
        self,
        aws: Iterable[Awaitable[T]],
        *,
        deadline: float | None = None,
        fill: Callable[[int, BaseException], T] | None = None,
    ) -> None:
        self._aws = list(aws)
        self.deadline = deadline
        self._fill = fill
        self._tasks: list[asyncio.Future[T]] = []
        self._index: dict[asyncio.Future[T], int] = {}
        self._pending: set[asyncio.Future[T]] = set()  # not reported yet
        # Tasks as they finish (a done callback each: O(1) a task, where asyncio.wait over
        # the pending set would cost O(n) a completion).
        self._finished: collections.deque[asyncio.Future[T]] = collections.deque()
        self._wake = asyncio.Event()
        self._ready: collections.deque[tuple[int, T]] = collections.deque()
        self.started: float | None = None  # time.perf_counter() when the tasks started

    def _start(self) -> None:
        if self.started is None:
            self.started = time.perf_counter()
            self._tasks = [asyncio.ensure_future(aw) for aw in self._aws]
            self._index = {t: i for i, t in enumerate(self._tasks)}
            self._pending = set(self._tasks)
            for task in self._tasks:
                task.add_done_callback(self._on_done)

    def _on_done(self, task: asyncio.Future[T]) -> None:
        self._finished.append(task)
        self._wake.set()

    def cancel(self, index: int | None = None) -> None:
        """Cancel one task (by index), or all of them; each is reported through ``fill``."""
        for i, task in enumerate(self._tasks):
            if index is None or i == index:
                task.cancel()

    def _settle(self, task: asyncio.Future[T], late: bool) -> None:
        i = self._index[task]
        if task.cancelled():
            exc: BaseException = TimeoutError() if late else asyncio.CancelledError()
        else:
            error = task.exception()
            if error is None:
                self._ready.append((i, task.result()))
                return
            exc = error
        if self._fill is None or not isinstance(exc, TimeoutError | asyncio.CancelledError):
            raise exc
        self._ready.append((i, self._fill(i, exc)))

    async def _expire(self) -> None:
        late = sorted(self._pending, key=self._index.__getitem__)
        self._pending = set()
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        for task in late:
            self._settle(task, late=True)  # one that finished just in time: its own result

    def __aiter__(self) -> Completions[T]:
        return self

    async def __anext__(self) -> tuple[int, T]:
        self._start()
        while not self._ready:
            if self._finished:
                task = self._finished.popleft()
                if task in self._pending:  # (not already reported by the deadline)
                    self._pending.discard(task)
                    self._settle(task, late=False)
                continue
            if not self._pending:
                raise StopAsyncIteration
            timeout = None
            if self.deadline is not None and self.started is not None:
                timeout = self.deadline - (time.perf_counter() - self.started)
                if timeout <= 0:
                    await self._expire()
                    continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
        return self._ready.popleft()

    async def aclose(self) -> None:
        """Cancel every task still running and wait for them."""
        if self.started is None:
            for aw in self._aws:  # never started: don't leave "never awaited" coroutines
                if inspect.iscoroutine(aw):
                    aw.close()
            self._aws = []
            return
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._pending = set()

    async def __aenter__(self) -> Completions[T]:
        self._start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class TaskBatch(Generic[In, Out]):
    """Many runs at once over ``Completions``; see the module docstring. ``wall``: seconds since
    the runs started. Leaving the iteration early cancels every run still going."""

    def __init__(self, items: Iterable[In], *, deadline: float | None = None) -> None:
        self.items = list(items)
        self.deadline = deadline
        self.wall = 0.0
        self._work: Completions[Out] | None = None

    async def _one(self, index: int, item: In) -> Out:
        raise NotImplementedError

    def _missing(self, index: int, item: In, reason: BaseException) -> Out:
        """The outcome of a run that gave none: ``TimeoutError`` (the deadline passed) or
        ``CancelledError`` (``cancel(index)``)."""
        raise NotImplementedError

    def _record(self, outcome: Out) -> None:
        """Called with each outcome before it is given out (and after ``wall`` is updated)."""

    def _finish(self) -> None:
        """Called when the runs are over (all done, or the iteration left), ``wall`` final."""

    def _elapsed(self) -> float:
        started = self._work.started if self._work is not None else None
        return 0.0 if started is None else time.perf_counter() - started

    async def _pairs(self) -> AsyncGenerator[tuple[int, Out], None]:
        work = self._work = Completions(
            (self._one(i, item) for i, item in enumerate(self.items)),
            deadline=self.deadline,
            fill=lambda i, reason: self._missing(i, self.items[i], reason),
        )
        try:
            async with work:
                async for index, outcome in work:
                    self.wall = self._elapsed()
                    self._record(outcome)
                    yield index, outcome
        finally:
            self.wall = self._elapsed()
            self._finish()

    async def _outcomes(self) -> AsyncGenerator[Out, None]:
        async with aclosing(self._pairs()) as pairs:
            async for _, outcome in pairs:
                yield outcome

    def __aiter__(self) -> AsyncIterator[Out]:
        return self._outcomes()

    def cancel(self, index: int | None = None) -> None:
        """Stop one run (by index), or every run not finished yet; each is reported once."""
        if self._work is not None:
            self._work.cancel(index)

    async def gather(self) -> list[Out]:
        """Every outcome, in input order."""
        out: dict[int, Out] = {}
        async with aclosing(self._pairs()) as pairs:
            async for index, outcome in pairs:
                out[index] = outcome
        return [out[i] for i in sorted(out)]


# ---------------------------------------------------------------- fan-in


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Channel(Generic[T]):
    """Items sent by the tasks spawned into it, until all of them end; see the module docstring."""

    def __init__(self) -> None:
        self._items: collections.deque[Any] = collections.deque()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Future[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def send(self, item: T) -> None:
        self._items.append(item)
        self._wake.set()

    def _finished(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            error = task.exception()
            if error is not None:
                self._items.append(_Failure(error))
        self._wake.set()

    async def get(self) -> T:
        """The next item; ``StopAsyncIteration`` once every task has ended; a task's error once
        the items sent before it are read. Safe to cancel (``asyncio.timeout``): no item is lost."""
        while True:
            if self._items:
                item = self._items.popleft()
                if isinstance(item, _Failure):
                    raise item.exc
                return item  # type: ignore[no-any-return]
            if not self._tasks:
                raise StopAsyncIteration
            self._wake.clear()
            await self._wake.wait()

    def ready(self) -> list[T]:
        """The items already sent and not read yet, without waiting (up to an error, if any)."""
        out: list[T] = []
        while self._items and not isinstance(self._items[0], _Failure):
            out.append(self._items.popleft())
        return out

    def __aiter__(self) -> Channel[T]:
        return self

    async def __anext__(self) -> T:
        return await self.get()

    async def aclose(self) -> None:
        """Cancel the tasks still running and wait for them."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> Channel[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def paced(events: AsyncIterator[T], interval: float) -> AsyncGenerator[list[T], None]:
    """Lists of ``events``, at most one per ``interval`` seconds (the first at once, the last when
    the source ends), so a browser gets a few updates a second however fast events come — and a
    quiet spell still shows what arrived before it. The source is read in a task of its own;
    leaving this generator cancels that task, which closes the source. A failure of the source
    is raised after the list of what came before it."""
    channel: Channel[T] = Channel()

    async def pump() -> None:
        async with aclosing(events):
            async for ev in events:
                channel.send(ev)

    async with channel:
        channel.spawn(pump())
        batch: list[T] = []
        last = time.monotonic() - interval
        while True:
            timeout = None if not batch else max(0.0, last + interval - time.monotonic())
            try:
                async with asyncio.timeout(timeout):
                    batch.append(await channel.get())
                batch.extend(channel.ready())  # what is already there, in one go
            except TimeoutError:
                pass
            except StopAsyncIteration:
                if batch:
                    yield batch
                return
            except Exception:
                if batch:
                    yield batch
                raise
            if batch and time.monotonic() - last >= interval:
                yield batch
                batch = []
                last = time.monotonic()


# ---------------------------------------------------------------- threads


async def run_in_thread(fn: Callable[[], T], *, name: str = "newsdesk-worker") -> T:
    """Run ``fn`` in a new daemon thread (in this context) and await its result. Cancelling the
    await does not stop the thread: the caller stops the work its own way."""
    return await _start_thread(fn, name)


def _start_thread(fn: Callable[[], T], name: str) -> asyncio.Future[T]:
    """Start ``fn`` in a new daemon thread now; the future settles with its result."""
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
    return done


async def iterate_in_thread(
    produce: Callable[[], Iterable[T]],
    *,
    stop: Callable[[], None] | None = None,
    wait: bool = True,
    name: str = "newsdesk-worker",
) -> AsyncGenerator[T, None]:
    """Iterate ``produce()`` in a thread of its own; see the module docstring. ``wait``: when
    the reader leaves early, wait for the thread to finish (False: let it end on its own).
    Once the first item is asked for, ``produce()`` is called and iterated at least once."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue()
    stopped = threading.Event()

    def put(ok: bool, value: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
            loop.call_soon_threadsafe(queue.put_nowait, (ok, value))

    def work() -> None:
        try:
            it = iter(produce())
            try:
                # Checked after each item, not before the first: a generator's body always
                # starts, so its ``finally`` always runs (closing an unstarted one skips it).
                for item in it:
                    put(True, item)
                    if stopped.is_set():
                        break
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()  # a generator's finally (releasing a lock...) runs here, in its thread
        except BaseException as exc:
            put(False, exc)
        else:
            put(False, None)

    runner = _start_thread(work, name)  # now, not in a task that might never run
    try:
        while True:
            ok, value = await queue.get()
            if ok:
                yield value
            elif value is None:
                return
            else:
                raise value
    finally:
        if not runner.done():
            stopped.set()
            if stop is not None:
                stop()
            if wait:
                with contextlib.suppress(BaseException):
                    await asyncio.shield(runner)


async def acquire(lock: threading.Lock, *, first: float = 0.002, most: float = 0.05) -> None:
    """Take ``lock`` without parking a thread on it: try, then sleep ``first`` seconds, doubling
    up to ``most``. For locks held across a long blocking call (a generation): requests queued
    behind it must not use up the threads that other async work needs."""
    delay = first
    while not lock.acquire(blocking=False):
        await asyncio.sleep(delay)
        delay = min(delay * 2, most)


# ---------------------------------------------------------------- sync code over the async core

_portal: asyncio.AbstractEventLoop | None = None
_portal_lock = threading.Lock()


def portal_loop() -> asyncio.AbstractEventLoop:
    """The background event loop (a daemon thread) that sync callers hand their coroutines to."""
    global _portal
    with _portal_lock:
        if _portal is None or _portal.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="newsdesk-portal", daemon=True)
            thread.start()
            atexit.register(lambda: loop.call_soon_threadsafe(loop.stop))
            _portal = loop
        return _portal


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _awaited(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


def submit(
    make: Callable[[], Awaitable[T]], loop: asyncio.AbstractEventLoop | None = None
) -> concurrent.futures.Future[T]:
    """Start ``make()`` on ``loop`` — or on the portal loop when ``loop`` is None, not running,
    or the caller's own (blocking on a future of the loop you are on would deadlock). ``make``
    builds the coroutine only once the loop is chosen, so nothing is left un-awaited."""
    here = _running_loop()
    if loop is None or loop.is_closed() or not loop.is_running() or loop is here:
        loop = portal_loop()
        if loop is here:
            raise RuntimeError("newsdesk's background loop cannot wait for itself")
    return asyncio.run_coroutine_threadsafe(_awaited(make), loop)


def _wait(fut: concurrent.futures.Future[T]) -> T:
    try:
        return fut.result()
    except KeyboardInterrupt:
        fut.cancel()
        raise


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code (on the portal loop) and return its result."""
    try:
        fut = submit(lambda: coro)
    except BaseException:
        coro.close()  # not left "never awaited"
        raise
    return _wait(fut)


def iterate_sync(stream: AsyncIterator[T]) -> Iterator[T]:
    """Drive an async iterator from sync code; closing the sync iterator closes the async one."""
    it = stream.__aiter__()

    async def step() -> tuple[bool, Any]:
        try:
            return True, await it.__anext__()
        except StopAsyncIteration:
            return False, None

    try:
        while True:
            ok, value = _wait(submit(step))
            if not ok:
                return
            yield value
    finally:
        _wait(submit(lambda: aclose(it)))
