"""Batches: completion order, isolation of failures, limits, deadlines, early exit, stats.

Every test here runs with the blocking-call detector (``no_blocking``): asyncio debug mode with
``slow_callback_duration = 0.1``; a callback that holds the loop longer fails the test.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from newsdesk import Gateway, Limits, ProviderTimeout, ProviderUnavailable, Request, RetryPolicy
from newsdesk.testing import FunctionBackend
from tests.servers.plugin import OpenAIServerHandle

pytestmark = pytest.mark.usefixtures("no_blocking")


def _ours(tasks: set[asyncio.Task[object]]) -> set[asyncio.Task[object]]:
    """Tasks that belong to the code under test (LiteLLM keeps a logging worker task per loop)."""
    return {t for t in tasks if "LoggingWorker" not in repr(t.get_coro())}


async def _idle(server: OpenAIServerHandle) -> dict[str, object]:
    return await asyncio.to_thread(server.wait_idle, 5.0)


async def test_outcomes_arrive_in_completion_order(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    latencies = [0.9, 0.3, 0.6, 0.0]
    reqs = [make_request(f"[[latency:{lat}]] job {i}") for i, lat in enumerate(latencies)]
    outcomes = [o async for o in gateway.map(reqs)]
    assert [o.index for o in outcomes] == [3, 1, 2, 0]
    for o in outcomes:
        assert o.ok and o.request is reqs[o.index]
        assert o.value == f"Echo: job {o.index}"


async def test_one_failure_does_not_stop_the_others(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    reqs = [make_request(f"fine {i}") for i in range(5)]
    reqs[2] = make_request("[[status:500]] broken", retries=0)
    outcomes = await gateway.gather(reqs)
    assert [o.index for o in outcomes] == list(range(5))  # gather: input order
    assert [o.ok for o in outcomes] == [True, True, False, True, True]
    assert isinstance(outcomes[2].error, ProviderUnavailable)
    with pytest.raises(ProviderUnavailable):
        _ = outcomes[2].value
    assert outcomes[4].value == "Echo: fine 4"


async def test_a_bug_below_is_an_outcome_not_a_crash() -> None:
    def broken(request: Request) -> str:
        raise KeyError("oops")

    gw = Gateway(cache="off", backend=FunctionBackend(broken), retry=RetryPolicy(base_delay=0))
    reqs = [
        Request(model="openai/x", messages=[{"role": "user", "content": str(i)}]) for i in range(3)
    ]
    outcomes = await gw.gather(reqs)
    assert len(outcomes) == 3 and not any(o.ok for o in outcomes)
    assert all("KeyError" in str(o.error) for o in outcomes)


async def test_concurrency_limit_is_respected(
    openai_server: OpenAIServerHandle, make_request
) -> None:  # type: ignore[no-untyped-def]
    gw = Gateway(cache="off", limits=Limits(concurrency=3))
    reqs = [make_request(f"[[latency:0.2]] n{i}") for i in range(12)]
    t0 = time.perf_counter()
    outcomes = await gw.gather(reqs)
    wall = time.perf_counter() - t0
    assert all(o.ok for o in outcomes)
    stats = openai_server.stats()
    assert stats["max_in_flight"] <= 3
    assert stats["max_in_flight"] == 3  # and it was used
    assert gw.limiter.max_in_flight == 3
    assert wall >= 4 * 0.2 * 0.95, wall  # 12 requests, 3 at a time, 0.2 s each


async def test_concurrency_pays_off(openai_server: OpenAIServerHandle, make_request) -> None:  # type: ignore[no-untyped-def]
    gw = Gateway(cache="off", limits=Limits(concurrency=20))
    batch = gw.map([make_request(f"[[latency:0.5]] p{i}") for i in range(20)])
    async for _ in batch:
        pass
    assert batch.stats.wall < 3.0, batch.stats.wall  # sequentially it would be >= 10 s
    assert batch.stats.sum_latency >= 20 * 0.5
    assert batch.stats.saved >= 5.0


async def test_rpm_limit_slows_a_burst() -> None:
    calls: list[float] = []

    def instant(request: Request) -> str:
        calls.append(time.perf_counter())
        return "ok"

    # a leaky bucket of 60/min: a burst of 60 passes, then one a second
    gw = Gateway(
        cache="off", limits=Limits(concurrency=100, rpm=60), backend=FunctionBackend(instant)
    )
    reqs = [
        Request(model="openai/x", messages=[{"role": "user", "content": str(i)}]) for i in range(62)
    ]
    t0 = time.perf_counter()
    outcomes = await gw.gather(reqs)
    wall = time.perf_counter() - t0
    assert all(o.ok for o in outcomes)
    assert wall >= 1.5, wall  # the last two waited for the bucket to drain
    assert sum(1 for c in calls if c - t0 < 0.5) <= 60


async def test_deadline_reports_the_rest_once_and_leaves_no_task(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    before = _ours(asyncio.all_tasks())
    latencies = [0.0, 0.1, 5, 5, 5, 0.2]
    reqs = [make_request(f"[[latency:{lat}]] d{i}") for i, lat in enumerate(latencies)]
    batch = gateway.map(reqs, deadline=1.0)
    t0 = time.perf_counter()
    outcomes = [o async for o in batch]
    wall = time.perf_counter() - t0
    assert 0.9 <= wall < 3.0, wall
    assert sorted(o.index for o in outcomes) == list(range(6))  # each exactly once
    late = {o.index for o in outcomes if not o.ok}
    assert late == {2, 3, 4}
    assert all(isinstance(o.error, ProviderTimeout) for o in outcomes if not o.ok)
    assert batch.stats.count == 6 and batch.stats.ok == 3 and batch.stats.failed == 3
    assert batch.stats.errors == {"ProviderTimeout": 3}
    await asyncio.sleep(0)
    assert _ours(asyncio.all_tasks()) - before <= {asyncio.current_task()}
    assert (await _idle(openai_server))["in_flight"] == 0


async def test_deadline_already_passed(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    outcomes = [
        o
        async for o in gateway.map(
            [make_request(f"[[latency:1]] z{i}") for i in range(3)], deadline=0.01
        )
    ]
    assert sorted(o.index for o in outcomes) == [0, 1, 2]
    assert all(isinstance(o.error, ProviderTimeout) for o in outcomes)


async def test_breaking_out_early_cancels_the_rest(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    before = _ours(asyncio.all_tasks())
    reqs = [make_request("[[latency:0]] quick")] + [
        make_request(f"[[latency:5]] slow {i}") for i in range(8)
    ]
    t0 = time.perf_counter()
    async for outcome in gateway.map(reqs):
        assert outcome.index == 0
        break
    await asyncio.sleep(0.2)
    idle = await _idle(openai_server)
    assert idle["in_flight"] == 0
    assert time.perf_counter() - t0 < 4.0
    assert _ours(asyncio.all_tasks()) - before <= {asyncio.current_task()}


async def test_cancelling_the_consumer_cancels_the_batch(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    reqs = [make_request(f"[[latency:5]] c{i}") for i in range(5)]

    async def consume() -> None:
        async for _ in gateway.map(reqs):
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await _idle(openai_server))["in_flight"] == 0


async def test_batch_stats(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    await gateway.gather([make_request("cached a"), make_request("cached b")])
    openai_server.reset()
    openai_server.fault("500", count=1)
    reqs = [
        make_request("cached a"),
        make_request("[[latency:0.2]] new c"),
        make_request("cached b"),
        make_request("[[latency:0.2]] new d"),
    ]
    batch = gateway.map(reqs)
    outcomes = [o async for o in batch]
    s = batch.stats
    assert (s.count, s.ok, s.failed) == (4, 4, 0)
    assert (s.cache_hits, s.cache_misses) == (2, 2)
    assert s.retries == 1
    fresh = [o.response for o in outcomes if o.response is not None and not o.response.cached]
    assert s.prompt_tokens == sum(r.usage.prompt_tokens for r in fresh) > 0
    assert s.completion_tokens == sum(r.usage.completion_tokens for r in fresh) > 0
    assert s.wall >= 0.2
    assert s.sum_latency == pytest.approx(sum(o.latency for o in outcomes))
    assert s.saved == pytest.approx(max(0.0, s.sum_latency - s.wall))
    assert s.average == pytest.approx(s.sum_latency / 4)
    assert openai_server.stats()["calls"] == 3  # two new ones, one of them twice


async def test_the_blocking_detector_detects(no_blocking) -> None:  # type: ignore[no-untyped-def]
    """The detector itself: a callback that sleeps 0.2 s is reported (then forgiven here)."""

    def block() -> None:
        time.sleep(0.2)

    asyncio.get_running_loop().call_soon(block)
    await asyncio.sleep(0.05)
    assert len(no_blocking.records) == 1 and "took" in no_blocking.records[0]
    no_blocking.records.clear()
