"""Nothing in the scale-out path waits forever: against a real ``redis-server``.

The hang these guard against (tests/scale/test_queue.py's rate test, ~1 run in 12 on a loaded
machine): a worker's single-flight leader finished its call just as its lock renewer was sending
``lock.extend``. redis-py sends each command under ``asyncio.wait_for``, which on Python 3.11
drops a cancel that lands as the command completes; the renewer kept running, the leader waited
for it forever, and so did its job and the run that enqueued it."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import uuid
from typing import Any

import pytest
from redis.asyncio.lock import Lock

from newsdesk import Request
from newsdesk._response import Completion
from newsdesk._wrappers import CallStats
from newsdesk.news._analyze import AnalysisResult
from newsdesk.news._models import ArticleAnalysis
from newsdesk.scale import QueueExecutor, RedisSingleFlightBackend
from newsdesk.scale._protocol import TASK, heartbeat_entry, result_payload, workers_key
from tests.scale.conftest import MODEL, job
from tests.servers.redis_server import RedisProc

pytestmark = pytest.mark.timeout(120)


def _request(text: str) -> Request:
    return Request(model=MODEL, messages=[{"role": "user", "content": text}], timeout=5)


class _Provider:
    """A backend below the single-flight wrapper: counts calls, answers after ``latency``."""

    def __init__(self, latency: float = 0.0, started: asyncio.Event | None = None) -> None:
        self.latency, self.started, self.calls = latency, started, 0

    async def complete(self, request: Request) -> Completion:
        self.calls += 1
        if self.started is not None:
            await self.started.wait()  # (see the first test)
        await asyncio.sleep(self.latency)
        return Completion(text=f"answer to {request.messages[-1].content}", model=MODEL)


async def test_leader_returns_when_its_renewer_misses_the_cancel(
    redis_proc: RedisProc, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Deterministic: the leader's call ends while the renewer is inside lock.extend, and the
    # extend then swallows the cancel exactly as Python 3.11's wait_for does inside redis-py.
    extending = asyncio.Event()
    real_extend = Lock.extend
    swallowed = 0

    async def extend_like_py311(self: Lock, *args: Any, **kwargs: Any) -> Any:
        nonlocal swallowed
        extending.set()
        try:
            await asyncio.sleep(0.3)  # the command on the wire
        except asyncio.CancelledError:
            swallowed += 1  # it completed as the cancel landed: wait_for returns its result
        return await real_extend(self, *args, **kwargs)

    monkeypatch.setattr(Lock, "extend", extend_like_py311)
    provider = _Provider(started=extending)  # answers once the renewer is extending
    flight = RedisSingleFlightBackend(provider, redis_proc.url, CallStats(), lock_ttl=0.6)
    answer = await asyncio.wait_for(flight.complete(_request("renewed")), 10)
    assert answer.text == "answer to renewed"
    assert swallowed == 1  # the cancel really was lost, and the leader came back anyway
    client = redis_proc.client()
    try:  # the lock is released at once, not left to expire (or renewed forever)
        assert not [k for k in client.scan_iter("newsdesk:v1:flight:*:lock")]
        extends_before = swallowed
        await asyncio.sleep(0.6)  # the renewer has stopped: no more extends
        assert swallowed == extends_before
    finally:
        client.close()


async def test_many_leaders_ending_as_their_renewers_wake(redis_proc: RedisProc) -> None:
    # The same race with redis-py itself, many times over: every call ends about when its
    # renewer (every lock_ttl / 3 = 0.1 s) sends lock.extend. Before the fix some of them never
    # returned (on Python 3.11, within the first few rounds).
    ttl = 0.3
    flight = RedisSingleFlightBackend(_Provider(), redis_proc.url, CallStats(), lock_ttl=ttl)

    class Timed(_Provider):
        async def complete(self, request: Request) -> Completion:
            await asyncio.sleep(ttl / 3 + random.uniform(-0.01, 0.01))
            return await super().complete(request)

    flight.inner = Timed()
    for round_ in range(25):
        calls = [flight.complete(_request(f"{round_}-{i}-{uuid.uuid4().hex}")) for i in range(20)]
        answers = await asyncio.wait_for(asyncio.gather(*calls), 15)
        assert len(answers) == 20


async def test_follower_of_a_stuck_leader_asks_itself(redis_proc: RedisProc) -> None:
    # A leader that is alive (its lock renewed) but never answers nor publishes: the follower
    # gives up after max_wait and asks the provider itself, instead of waiting forever.
    provider = _Provider()
    stats = CallStats()
    flight = RedisSingleFlightBackend(provider, redis_proc.url, stats, lock_ttl=2, max_wait=2)
    request = _request("stuck leader")
    lock_key, _done, _chan = flight._keys(request)
    client = redis_proc.client()
    client.set(lock_key, "someone-else", px=60_000)
    started = time.monotonic()
    try:
        answer = await asyncio.wait_for(flight.complete(request), 20)
    finally:
        client.close()
    assert answer.text == "answer to stuck leader" and provider.calls == 1
    assert 2 <= time.monotonic() - started < 10
    assert stats.errors.get("SingleFlightLeaderStuck") == 1


async def test_result_whose_message_was_lost_still_comes_back(redis_proc: RedisProc) -> None:
    # The result is stored but its pub/sub message never reaches the producer (published before
    # it listened, or dropped): the producer's sweep finds it within a poll.
    client = redis_proc.client()
    client.hset(workers_key(), "stand-in", heartbeat_entry("stand-in", 1))  # a worker "alive"
    ex = QueueExecutor(redis_proc.url, no_worker_timeout=30, poll=0.5)
    the_job = job(1, "http://127.0.0.1:9/v1")
    running = asyncio.ensure_future(ex.analyze(the_job))
    deadline = time.monotonic() + 10
    while not (ex._waiting and ex._sent):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    (task_id,) = ex._waiting
    stored = AnalysisResult(
        article_id=the_job.article.id,
        analysis=ArticleAnalysis(
            summary="stored, never announced", topic="science", tone="positive", sentiment=0.5
        ),
        model=MODEL,
    )
    record = {"f": TASK, "s": True, "r": result_payload(stored, "stand-in"), "t": 1, "w": "x"}
    # streaq's result key, written without the PUBLISH that normally goes with it
    client.set(f"streaq:newsdesk-analysis:task:results:{task_id}", json.dumps(record))
    client.close()
    try:
        answer = await asyncio.wait_for(running, 10)
    finally:
        await ex.aclose()
    assert answer.article_id == the_job.article.id
    assert answer.analysis.summary == "stored, never announced"


def test_a_loop_left_without_aclose_still_closes(redis_proc: RedisProc) -> None:
    # A run that ends without aclose() (an error, Ctrl-C): asyncio.run() cancels every task
    # left, the executor's listener and coredis's own tasks at once. The listener then saw
    # coredis's ClosedResourceError (anyio's task groups turn the cancel into their children's
    # errors), reconnected, and asyncio.run() - or pytest's loop teardown - waited for it
    # forever. (Which is also why a failed queue test could hang past its pytest timeout.)
    client = redis_proc.client()
    client.hset(workers_key(), "stand-in", heartbeat_entry("stand-in", 1))  # a worker "alive"
    client.close()

    def run() -> None:
        async def leave_it_open() -> None:
            # as in the rate test that failed: a job out, the caller's deadline cancels it
            ex = QueueExecutor(redis_proc.url, no_worker_timeout=60, poll=0.2)
            out = asyncio.ensure_future(ex.analyze(job(1, "http://127.0.0.1:9/v1")))
            await asyncio.sleep(random.uniform(0.3, 1.0))
            out.cancel()
            await asyncio.gather(out, return_exceptions=True)

        asyncio.run(leave_it_open())

    for _ in range(3):
        thread = threading.Thread(target=run, daemon=True)  # daemon: a hang must not outlive us
        thread.start()
        thread.join(20)
        assert not thread.is_alive(), "asyncio.run() never finished closing the loop"
