"""``newsdesk._concurrency``: completion order with a deadline, fan-in, pacing, blocking iterators
in threads, polling acquisition, closing, and the sync bridge."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from newsdesk._concurrency import (
    Channel,
    Completions,
    TaskBatch,
    aclose,
    aclosing,
    acquire,
    iterate_in_thread,
    iterate_sync,
    paced,
    run_in_thread,
    run_sync,
    submit,
)


async def _after(delay: float, value: str) -> str:
    await asyncio.sleep(delay)
    return value


def _ours() -> set[asyncio.Task[object]]:
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not current}


# ---------------------------------------------------------------- Completions


async def test_completions_come_in_completion_order_with_their_index() -> None:
    work = Completions([_after(0.15, "slow"), _after(0.0, "now"), _after(0.05, "soon")])
    async with work:
        got = [pair async for pair in work]
    assert got == [(1, "now"), (2, "soon"), (0, "slow")]


async def test_deadline_reports_each_late_task_once_and_cancels_it() -> None:
    cancelled: list[str] = []

    async def slow(name: str) -> str:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(name)
            raise
        return name  # pragma: no cover

    before = _ours()
    t0 = time.perf_counter()
    work = Completions(
        [slow("a"), _after(0.0, "b"), slow("c")],
        deadline=0.2,
        fill=lambda i, reason: f"late {i} {type(reason).__name__}",
    )
    async with work:
        got = [pair async for pair in work]
    assert time.perf_counter() - t0 < 2
    assert got == [(1, "b"), (0, "late 0 TimeoutError"), (2, "late 2 TimeoutError")]
    assert sorted(cancelled) == ["a", "c"]
    assert _ours() <= before  # no task left behind


async def test_deadline_without_fill_raises_timeout() -> None:
    work = Completions([_after(5, "x")], deadline=0.05)
    with pytest.raises(TimeoutError):
        async with work:
            async for _ in work:
                pass


async def test_a_task_finishing_while_cancelled_keeps_its_result() -> None:
    async def stubborn() -> str:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            return "finished anyway"
        return "never"  # pragma: no cover

    work = Completions([stubborn()], deadline=0.05, fill=lambda i, r: "late")
    async with work:
        assert [pair async for pair in work] == [(0, "finished anyway")]


async def test_cancel_one_reports_it_through_fill() -> None:
    work = Completions([_after(5, "a"), _after(0.1, "b")], fill=lambda i, r: type(r).__name__)
    async with work:
        work.cancel(0)
        got = [pair async for pair in work]
    assert got == [(0, "CancelledError"), (1, "b")]


async def test_an_error_in_a_task_is_raised_and_leaving_cancels_the_rest() -> None:
    async def broken() -> str:
        raise KeyError("bug")

    before = _ours()
    with pytest.raises(KeyError):
        async with Completions([broken(), _after(5, "x")]) as work:
            async for _ in work:
                pass
    assert _ours() <= before


async def test_leaving_early_cancels_and_never_started_is_closed_cleanly() -> None:
    before = _ours()
    async with Completions([_after(0.0, "a"), _after(5, "b")]) as work:
        async for _ in work:
            break
    assert _ours() <= before
    unstarted = Completions([_after(0.0, "never")])
    await unstarted.aclose()  # no "coroutine was never awaited" warning (pytest would show it)


class _Squares(TaskBatch[int, str]):
    async def _one(self, index: int, item: int) -> str:
        await asyncio.sleep(item / 100)
        return f"{item}²={item * item}"

    def _missing(self, index: int, item: int, reason: BaseException) -> str:
        return f"{item}: {type(reason).__name__}"


async def test_task_batch_orders_and_deadline() -> None:
    batch = _Squares([30, 1, 500, 2], deadline=0.5)
    assert [o async for o in batch] == ["1²=1", "2²=4", "30²=900", "500: TimeoutError"]
    assert 0.4 < batch.wall < 2
    assert await _Squares([3, 1, 2]).gather() == ["3²=9", "1²=1", "2²=4"]


# ---------------------------------------------------------------- Channel and paced


async def test_channel_fans_in_until_every_task_ends_even_those_spawned_later() -> None:
    async with Channel[str]() as channel:

        async def child(name: str) -> None:
            await asyncio.sleep(0.05)
            channel.send(name)

        async def parent() -> None:
            channel.send("parent")
            channel.spawn(child("child"))  # spawned by a task: the channel waits for it too

        channel.spawn(parent())
        got = [item async for item in channel]
    assert got == ["parent", "child"]


async def test_channel_raises_a_task_error_after_what_it_sent() -> None:
    channel: Channel[int] = Channel()

    async def failing() -> None:
        channel.send(1)
        channel.send(2)
        raise ValueError("source broke")

    got: list[int] = []
    async with channel:
        channel.spawn(failing())
        with pytest.raises(ValueError, match="source broke"):
            async for item in channel:
                got.append(item)
    assert got == [1, 2]


async def test_channel_get_can_time_out_and_leaving_cancels_tasks() -> None:
    before = _ours()
    async with Channel[str]() as channel:
        channel.spawn(_after(5, "x"))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await channel.get()
    assert _ours() <= before


async def test_paced_batches_a_fast_stream_and_closes_the_source() -> None:
    closed = asyncio.Event()

    async def events() -> AsyncIterator[int]:
        try:
            for i in range(50):
                yield i
                await asyncio.sleep(0.005)
        finally:
            closed.set()

    batches = [b async for b in paced(events(), 0.1)]
    assert [x for b in batches for x in b] == list(range(50))
    assert 2 <= len(batches) < 20  # far fewer updates than events
    assert batches[0] == [0]  # the first at once
    assert closed.is_set()


async def test_paced_shows_what_came_before_a_failure() -> None:
    async def events() -> AsyncIterator[int]:
        yield 1
        yield 2
        raise RuntimeError("feed died")

    got: list[list[int]] = []
    with pytest.raises(RuntimeError, match="feed died"):
        async for batch in paced(events(), 0.05):
            got.append(batch)
    assert [x for b in got for x in b] == [1, 2]


# ---------------------------------------------------------------- threads


async def test_iterate_in_thread_streams_without_blocking_the_loop() -> None:
    loop_thread = threading.get_ident()
    seen_threads: set[int] = set()

    def produce() -> Iterator[int]:
        for i in range(5):
            seen_threads.add(threading.get_ident())
            time.sleep(0.02)  # blocking, but not the loop
            yield i

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    tick = asyncio.create_task(ticker())
    got = [i async for i in iterate_in_thread(produce)]
    tick.cancel()
    assert got == [0, 1, 2, 3, 4]
    assert loop_thread not in seen_threads
    assert ticks >= 3  # the loop kept running meanwhile


async def test_iterate_in_thread_raises_what_the_iterator_raised() -> None:
    def produce() -> Iterator[int]:
        yield 1
        raise OSError("disk gone")

    got: list[int] = []
    with pytest.raises(OSError, match="disk gone"):
        async for i in iterate_in_thread(produce):
            got.append(i)
    assert got == [1]


async def test_leaving_iterate_in_thread_stops_the_thread_and_runs_its_finally() -> None:
    finished = threading.Event()
    stop_called = threading.Event()
    produced: list[int] = []

    def produce() -> Iterator[int]:
        try:
            for i in range(1000):
                produced.append(i)
                time.sleep(0.01)
                yield i
        finally:
            finished.set()

    async with aclosing(iterate_in_thread(produce, stop=stop_called.set)) as items:
        async for i in items:
            if i == 2:
                break
    # wait=True (the default): the thread is done when the loop is left
    assert finished.is_set() and stop_called.is_set()
    assert len(produced) < 10


async def test_run_in_thread_uses_a_thread_of_its_own_and_copies_the_context() -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("from the caller")
    name, value = await run_in_thread(
        lambda: (threading.current_thread().name, var.get()), name="nd-test"
    )
    assert name == "nd-test" and value == "from the caller"
    with pytest.raises(ZeroDivisionError):
        await run_in_thread(lambda: 1 / 0)


async def test_acquire_waits_for_a_thread_lock_without_blocking() -> None:
    lock = threading.Lock()
    lock.acquire()
    threading.Timer(0.1, lock.release).start()
    t0 = time.perf_counter()
    await acquire(lock)
    assert 0.08 < time.perf_counter() - t0 < 1
    assert lock.locked()
    lock.release()


# ---------------------------------------------------------------- closing and the sync bridge


async def test_aclose_closes_whatever_is_closable() -> None:
    class Async:
        closed = False

        async def aclose(self) -> None:
            self.closed = True

    class Sync:
        closed = False

        def close(self) -> None:
            self.closed = True

    a, s = Async(), Sync()
    await aclose(a)
    await aclose(s)
    await aclose(object())  # nothing to close: nothing happens
    assert a.closed and s.closed


def test_run_sync_and_iterate_sync_from_plain_code() -> None:
    closed = threading.Event()

    async def numbers() -> AsyncIterator[int]:
        try:
            for i in range(100):
                yield i
        finally:
            closed.set()

    assert run_sync(_after(0.01, "done")) == "done"
    it = iterate_sync(numbers())
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()  # type: ignore[attr-defined]
    assert closed.is_set()


async def test_submit_from_another_thread_runs_on_the_given_loop() -> None:
    loop = asyncio.get_running_loop()

    async def where() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    on_ours = await asyncio.to_thread(lambda: submit(where, loop).result(5))
    assert on_ours is loop
    # from the loop's own thread, blocking on that loop would deadlock: the portal takes it
    assert submit(where, loop).result(5) is not loop
