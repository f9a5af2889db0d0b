"""Behaviours shared by every process through Redis, as wrappers in the Gateway stack:

    Fallback( Cache+single-flight( Validate( RedisSingleFlight( Limit( Retry( GlobalLimit( LiteLLM )))))))

- ``RedisSingleFlightBackend``: identical requests in flight in *different processes* make one
  provider call. The first takes a Redis lock (redis-py ``Lock``, with an expiry it keeps renewing
  while it works, so a killed leader frees it by itself); the others wait for its answer on
  pub/sub (and re-check on a short poll, so a lost message or a dead leader costs a moment, not
  a hang), then replay it. A leader that fails releases the lock and the next in line asks; a
  leader alive but stuck far beyond any call's time budget is given up on (``max_wait``).
- ``GlobalLimitBackend``: requests/tokens per minute for *all* processes together, a moving
  window kept in Redis by ``limits`` (async storage over redis-py). It sits under the retry
  wrapper, so every attempt the provider sees is counted.

Both fail open: when Redis is unreachable a call goes ahead uncoordinated (and is counted in
``CallStats.errors``) rather than failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

from newsdesk._backend import Backend, LiteLLMBackend, StreamItem
from newsdesk._cache import CacheStore, cache_key, open_cache
from newsdesk._client import Gateway
from newsdesk._concurrency import aclosing
from newsdesk._exceptions import UserError
from newsdesk._request import Request
from newsdesk._response import Completion
from newsdesk._wrappers import (
    CacheBackend,
    CallStats,
    FallbackBackend,
    Limits,
    RetryPolicy,
    ValidateBackend,
    WrapperBackend,
    _note_cached,
    _replay_pieces,
    estimate_tokens,
)
from newsdesk.scale._cancel import cancel_requested, raise_if_cancelled, stop_task
from newsdesk.scale._redact import check_redis_url

PREFIX = "newsdesk:v1:"


class _Clients:
    """One redis-py asyncio client per event loop (its connections belong to that loop)."""

    def __init__(self, url: str) -> None:
        self.url = check_redis_url(url)
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> Any:
        import redis.asyncio as aioredis

        loop = asyncio.get_running_loop()
        client = self._by_loop.get(loop)
        if client is None:
            client = aioredis.Redis.from_url(self.url, socket_connect_timeout=3, socket_timeout=5)
            self._by_loop[loop] = client
        return client


def _count_error(stats: CallStats, what: str) -> None:
    stats.errors[what] = stats.errors.get(what, 0) + 1


# ---------------------------------------------------------------- single-flight across processes


class RedisSingleFlightBackend(WrapperBackend):
    """See the module docstring. ``lock_ttl``: how long a silent (killed) leader blocks the
    others; ``done_ttl``: how long a finished answer stays for late followers; ``max_wait``:
    the longest a follower waits for a live leader before asking itself (default: three times
    the request's own time budget, at least 30 s)."""

    def __init__(
        self,
        inner: Backend,
        url: str,
        stats: CallStats,
        *,
        # A killed leader holds its identical followers up to this long: redelivered jobs of a
        # SIGKILLed worker waited the full 30 s of the old default (bench/scale.py). The live
        # leader renews every third of it, one Redis command each.
        lock_ttl: float = 6.0,
        done_ttl: float = 30.0,
        poll: float = 0.5,
        max_wait: float | None = None,
    ) -> None:
        super().__init__(inner)
        self.stats = stats
        self.lock_ttl = lock_ttl
        self.done_ttl = done_ttl
        self.poll = poll
        self.max_wait = max_wait
        self._clients = _Clients(url)

    @staticmethod
    def _keys(request: Request) -> tuple[str, str, str]:
        digest = cache_key(request.cache_identity()).rsplit(":", 1)[-1]
        base = f"{PREFIX}flight:{digest}"
        return base + ":lock", base + ":done", base + ":chan"

    def _fresh(self, request: Request, raw: bytes | None, since: float) -> Completion | None:
        """The answer a leader left, if this request may take it: any answer for cache="use",
        only one finished after this request started for cache="refresh"."""
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            if request.cache == "refresh" and data["t"] < since:
                return None
            return Completion.model_validate(data["c"])
        except (ValueError, KeyError, TypeError):
            return None

    def _wait_limit(self, request: Request) -> float:
        """How long a follower waits for a leader at most: a leader's call (attempts, retries,
        rate-limit waits) that takes longer than this is stuck, not slow."""
        if self.max_wait is not None:
            return self.max_wait
        return max(30.0, 3 * request.timeout * (request.retries + 1))

    async def _claim(self, request: Request) -> tuple[Completion | None, Any]:
        """(answer, None) when another process answered; (None, lock) when this one must ask;
        (None, None) when Redis is unusable or the leader is stuck (ask without coordination)."""
        lock_key, done_key, chan = self._keys(request)
        since = time.time()
        give_up = time.monotonic() + self._wait_limit(request)
        try:
            client = self._clients.get()
            if (hit := self._fresh(request, await client.get(done_key), since)) is not None:
                return hit, None
            lock = client.lock(lock_key, timeout=self.lock_ttl, blocking=False)
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(chan)  # before the checks: no answer can slip by
                while True:
                    raise_if_cancelled()  # (a job aborted while it follows)
                    if time.monotonic() > give_up:
                        # The leader holds the lock far longer than any call takes: ask
                        # rather than wait forever (counted, so it shows in the stats).
                        _count_error(self.stats, "SingleFlightLeaderStuck")
                        return None, None
                    if await lock.acquire():
                        # A leader may have finished between our first look and the lock.
                        if (
                            hit := self._fresh(request, await client.get(done_key), since)
                        ) is not None:
                            await lock.release()
                            return hit, None
                        return None, lock
                    await pubsub.get_message(ignore_subscribe_messages=True, timeout=self.poll)
                    if (hit := self._fresh(request, await client.get(done_key), since)) is not None:
                        return hit, None
        except asyncio.CancelledError:
            raise
        except Exception:
            _count_error(self.stats, "RedisUnavailable")
            return None, None

    @contextlib.asynccontextmanager
    async def _holding(self, lock: Any) -> AsyncIterator[None]:
        """Keep the lock alive while the call runs (a long answer must not let others in);
        release it afterwards, whatever happened.

        The renewer stops on ``finished`` and is never awaited without a bound: a cancel that
        lands while ``lock.extend`` completes is lost (see ``_cancel``), and a renewer that
        missed it used to keep the lock, its leader, the job and every follower forever."""
        finished = asyncio.Event()

        async def renew() -> None:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.lock_ttl / 3):
                        await finished.wait()
                if finished.is_set() or cancel_requested():
                    return
                with contextlib.suppress(Exception):
                    await lock.extend(self.lock_ttl, replace_ttl=True)

        renewer = asyncio.create_task(renew())
        try:
            yield
        finally:
            finished.set()
            renewer.cancel()
            # Released first: the followers wait for it. A late extend finds the lock gone
            # (or someone else's) and fails; the renewer then stops at its next check.
            with contextlib.suppress(Exception):
                await lock.release()
            await stop_task(renewer, self.lock_ttl)

    async def _publish(self, request: Request, completion: Completion) -> None:
        _lock_key, done_key, chan = self._keys(request)
        payload = json.dumps({"t": time.time(), "c": completion.model_dump(mode="json")})
        try:
            client = self._clients.get()
            await client.set(done_key, payload, px=max(1, int(self.done_ttl * 1000)))
            await client.publish(chan, b"1")
        except Exception:
            _count_error(self.stats, "RedisUnavailable")

    def _shared(self, completion: Completion) -> Completion:
        self.stats.coalesced += 1
        _note_cached()
        return completion.model_copy(update={"cost": 0.0, "cached": True})

    async def complete(self, request: Request) -> Completion:
        if request.cache == "off":
            return await self.inner.complete(request)
        hit, lock = await self._claim(request)
        if hit is not None:
            return self._shared(hit)
        if lock is None:
            return await self.inner.complete(request)
        async with self._holding(lock):
            result = await self.inner.complete(request)
            await self._publish(request, result)  # before the lock goes: waiters find it
            return result

    async def stream(self, request: Request) -> AsyncIterator[StreamItem]:
        if request.cache == "off":
            hit, lock = None, None
        else:
            hit, lock = await self._claim(request)
        if hit is not None:
            hit = self._shared(hit)
            for piece in _replay_pieces(hit.text):
                yield piece
            yield hit
            return
        async with (
            aclosing(self.inner.stream(request)) as inner,
            self._holding(lock) if lock is not None else contextlib.nullcontext(),
        ):
            async for item in inner:
                if isinstance(item, Completion) and lock is not None:
                    await self._publish(request, item)
                yield item


# ---------------------------------------------------------------- limits across processes


class GlobalLimitBackend(WrapperBackend):
    """``rpm`` requests and ``tpm`` (estimated) tokens per ``window`` seconds (60: per minute),
    counted in Redis for every process using the same URL and ``name``."""

    def __init__(
        self,
        inner: Backend,
        url: str,
        stats: CallStats,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        window: float = 60.0,
        name: str = "default",
    ) -> None:
        if rpm is not None and rpm < 1 or tpm is not None and tpm < 1:
            raise UserError("rpm and tpm must be at least 1")
        if window < 1:
            raise UserError("the rate window must be at least 1 second")
        super().__init__(inner)
        self.stats = stats
        self.url = check_redis_url(url, "limit")
        self.rpm, self.tpm, self.window, self.name = rpm, tpm, int(window), name
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    def _limiter(self) -> Any:
        from limits.aio.storage import RedisStorage
        from limits.aio.strategies import MovingWindowRateLimiter

        loop = asyncio.get_running_loop()
        limiter = self._by_loop.get(loop)
        if limiter is None:
            storage = RedisStorage(
                "async+" + self.url,
                implementation="redispy",  # the redis-py the cache uses; no second client library
                key_prefix=PREFIX + "limits",
                socket_connect_timeout=3,
                socket_timeout=5,
            )
            limiter = self._by_loop[loop] = MovingWindowRateLimiter(storage)
        return limiter

    def _items(self, request: Request) -> list[tuple[Any, int]]:
        from limits import RateLimitItemPerSecond

        items = []
        if self.rpm is not None:
            items.append((RateLimitItemPerSecond(int(self.rpm), self.window), 1))
        if self.tpm is not None:
            tpm = int(self.tpm)
            items.append(
                (RateLimitItemPerSecond(tpm, self.window), min(estimate_tokens(request), tpm))
            )
        return items

    async def _acquire(self, request: Request) -> None:
        items = self._items(request)
        if not items:
            return
        limiter = self._limiter()
        for item, cost in items:
            while True:
                raise_if_cancelled()
                try:
                    if await limiter.hit(item, self.name, cost=cost):
                        break
                    stats = await limiter.get_window_stats(item, self.name)
                    wait = stats.reset_time - time.time()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # Redis is down: go ahead rather than stall every call (counted).
                    _count_error(self.stats, "RedisUnavailable")
                    break
                # Jitter, so the processes waiting on one window don't all knock at once.
                await asyncio.sleep(max(0.01, wait) + random.uniform(0, 0.05))

    async def complete(self, request: Request) -> Completion:
        await self._acquire(request)
        return await self.inner.complete(request)

    async def stream(self, request: Request) -> AsyncIterator[StreamItem]:
        await self._acquire(request)
        async with aclosing(self.inner.stream(request)) as inner:
            async for item in inner:
                yield item


# ---------------------------------------------------------------- a Gateway that shares


def shared_gateway(
    redis_url: str,
    *,
    cache: CacheStore | str | None = None,
    limits: Limits | None = None,
    retry: RetryPolicy | None = None,
    backend: Backend | None = None,
    rate_window: float = 60.0,
    limit_name: str = "default",
) -> Gateway:
    """A ``Gateway`` whose cache (by default), single-flight and RPM/TPM limits are shared by
    every process that uses the same Redis. ``limits.concurrency`` stays per process;
    ``limits.rpm``/``tpm`` become global."""
    check_redis_url(redis_url, "cache")
    limits = limits or Limits()
    stats_probe = CallStats()
    inner: Backend = backend or LiteLLMBackend()
    if limits.rpm is not None or limits.tpm is not None:
        inner = GlobalLimitBackend(
            inner,
            redis_url,
            stats_probe,
            rpm=limits.rpm,
            tpm=limits.tpm,
            window=rate_window,
            name=limit_name,
        )
    store = open_cache(redis_url) if cache is None else cache
    gateway = Gateway(
        cache=store, limits=Limits(concurrency=limits.concurrency), retry=retry, backend=inner
    )
    if isinstance(inner, GlobalLimitBackend):
        inner.stats = gateway.stats
    flight = RedisSingleFlightBackend(gateway.limiter, redis_url, gateway.stats)
    gateway.stack = FallbackBackend(
        CacheBackend(ValidateBackend(flight), gateway.store, gateway.stats)
    )
    return gateway
