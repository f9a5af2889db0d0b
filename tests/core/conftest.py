"""Fixtures for the core tests: a real Redis, a blocking-call detector, and small helpers to build
requests against the fake OpenAI server (the isolated home is the top conftest's)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from newsdesk import Gateway, Request
from tests.helpers import free_port
from tests.servers.plugin import OpenAIServerHandle

MODEL = "openai/test-model"
KEY = "sk-test-9f3a7c1e5b"  # distinctive, so a scan for it cannot match anything by accident


@pytest.fixture(scope="session", autouse=True)
def _litellm_imported() -> None:
    """Import LiteLLM once, up front: its ~3 s import must not land inside a test's event loop
    (where the blocking-call detector would rightly flag it)."""
    from newsdesk._backend import import_litellm

    import_litellm()


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on (connection refused)."""
    return free_port()


@pytest.fixture
def make_request(openai_server: OpenAIServerHandle) -> Callable[..., Request]:
    """``make_request("text", **fields)``: a one-message request to the fake server."""

    def build(text: str, **kw: Any) -> Request:
        kw.setdefault("model", MODEL)
        kw.setdefault("api_base", openai_server.url)
        kw.setdefault("api_key", KEY)
        kw.setdefault("timeout", 10.0)
        return Request(messages=[{"role": "user", "content": text}], **kw)

    return build


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    """A gateway with a private in-memory cache and fast retries."""
    from newsdesk import Limits, RetryPolicy

    gw = Gateway(
        cache="memory",
        limits=Limits(concurrency=64),
        retry=RetryPolicy(base_delay=0.05, max_delay=0.2),
    )
    yield gw
    gw.close()


# ---------------------------------------------------------------- Redis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A real ``redis-server`` on a free port (no persistence); yields its URL."""
    binary = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )
    if binary is None:
        pytest.skip(
            "redis-server is not installed (apt-get install redis-server): Redis cache tests skipped"
        )
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start (exit code {proc.poll()})")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The session's Redis, emptied for this test."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushdb()
    client.close()
    return redis_server


# ---------------------------------------------------------------- blocking-call detector


def _runqueue_wait() -> float | None:
    """Seconds this thread has spent runnable but waiting for a CPU (Linux schedstat)."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


class _GCClock:
    """Total seconds spent in the garbage collector (a full collection with LiteLLM loaded
    scans ~400k objects and can take a few hundred ms on a loaded machine)."""

    def __init__(self) -> None:
        self.total = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.total += time.perf_counter() - self._started


class _SlowCallbacks(logging.Handler):
    """Collects asyncio's "Executing <...> took N seconds" warnings.

    A callback only counts as blocking if it held the loop for more than the threshold
    *excluding* the time its thread sat in the CPU run queue and the time spent in the garbage
    collector: on a loaded 2-core machine a 30 ms step can take 150 ms of wall time with no
    blocking call in it. (Where schedstat is unavailable the run-queue part is not excluded.)
    """

    def __init__(self, threshold: float) -> None:
        super().__init__(logging.WARNING)
        self.threshold = threshold
        self.records: list[str] = []
        self.excused: list[str] = []
        self.last_excuse = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if not msg.startswith("Executing"):
            return
        match = re.search(r"took ([0-9.]+) seconds", msg)
        took = float(match.group(1)) if match else float("inf")
        if took - self.last_excuse > self.threshold:
            self.records.append(msg)
        else:
            self.excused.append(f"{msg} ({self.last_excuse:.3f} s waiting for a CPU or in the GC)")


@pytest.fixture
async def no_blocking(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[_SlowCallbacks]:
    """Run the test's loop in asyncio debug mode (``slow_callback_duration = 0.1``) and fail if a
    callback blocked it for longer than that."""
    import gc

    loop = asyncio.get_running_loop()
    handler = _SlowCallbacks(0.1)
    gc_clock = _GCClock()
    loop_thread = threading.get_ident()
    original_run = asyncio.events.Handle._run

    def timed_run(self: asyncio.Handle) -> None:
        if threading.get_ident() != loop_thread:
            return original_run(self)
        wait0, gc0 = _runqueue_wait(), gc_clock.total
        try:
            return original_run(self)
        finally:
            wait1 = _runqueue_wait()
            waited = wait1 - wait0 if wait0 is not None and wait1 is not None else 0.0
            handler.last_excuse = waited + (gc_clock.total - gc0)

    monkeypatch.setattr(asyncio.events.Handle, "_run", timed_run)
    gc.callbacks.append(gc_clock)
    logger = logging.getLogger("asyncio")
    old_debug, old_slow = loop.get_debug(), loop.slow_callback_duration
    loop.set_debug(True)
    loop.slow_callback_duration = 0.1
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        gc.callbacks.remove(gc_clock)
        loop.set_debug(old_debug)
        loop.slow_callback_duration = old_slow
    if handler.records:
        pytest.fail("the event loop was blocked:\n" + "\n".join(handler.records[:5]), pytrace=False)
