from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
import weakref
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from newsdesk._exceptions import ConfigError

KEY_PREFIX = "newsdesk:v1:"
log = logging.getLogger("newsdesk.cache")


def cache_key(identity: str) -> str:
    return KEY_PREFIX + hashlib.sha256(identity.encode()).hexdigest()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    writes: int = 0
    errors: int = 0


class CacheStore(Protocol):
    name: str
    stats: CacheStats

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None: ...

    async def clear(self) -> None: ...

    def close(self) -> None:
        """Release what the store holds. A store that holds connections of an event loop may
        also have ``async aclose()``, which ``Gateway.aclose`` prefers."""


class MemoryStore:
    """Bounded in-process LRU (cachetools), with per-entry TTL."""

    name = "memory"

    def __init__(self, maxsize: int = 2048) -> None:
        from cachetools import LRUCache

        self._data: LRUCache[str, tuple[bytes, float | None]] = LRUCache(maxsize=maxsize)
        self._lock = threading.Lock()
        self.stats = CacheStats()

    def get_nowait(self, key: str) -> bytes | None:
        import time

        with self._lock:
            item = self._data.get(key)
            if item is not None and item[1] is not None and item[1] < time.monotonic():
                del self._data[key]
                item = None
        if item is None:
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return item[0]

    async def get(self, key: str) -> bytes | None:
        return self.get_nowait(key)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        import time

        with self._lock:
            self._data[key] = (value, time.monotonic() + ttl if ttl else None)
        self.stats.writes += 1

    async def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def close(self) -> None:
        pass


class DiskStore:
    """Persistent cache on disk (diskcache: SQLite + files, safe across processes)."""

    name = "disk"

    def __init__(self, directory: str | Path, size_limit: int = 512 * 2**20) -> None:
        import diskcache

        try:
            Path(directory).mkdir(parents=True, exist_ok=True)
            self._cache = diskcache.Cache(str(directory), size_limit=size_limit)
        except OSError as exc:
            raise ConfigError(
                f"cannot open the cache directory {directory}: {exc.strerror or exc}"
            ) from exc
        self.directory = Path(directory)
        self.stats = CacheStats()

    def get_nowait(self, key: str) -> bytes | None:
        value = self._cache.get(key)
        if not isinstance(value, bytes):  # None: a miss (anything else was not written here)
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return value

    async def get(self, key: str) -> bytes | None:
        # A local SQLite read takes tens of microseconds: cheaper inline than a thread hop.
        return self.get_nowait(key)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self._cache.set(key, value, expire=ttl)
        self.stats.writes += 1

    async def clear(self) -> None:
        self._cache.clear()

    def close(self) -> None:
        self._cache.close()


class RedisStore:
    """Shared cache in Redis (redis-py asyncio), so several processes and machines pay once.

    A cache must never cost more than it saves: each operation gets ``timeout`` seconds (a
    Redis that accepts connections and never answers would otherwise stall every call), and
    after a failure a circuit breaker skips Redis for ``cooldown`` seconds, then tries again.
    The first failure is logged once (one line on stderr by default); the run carries on uncached.
    """

    name = "redis"

    def __init__(self, url: str, *, timeout: float = 0.5, cooldown: float = 30.0) -> None:
        import redis.asyncio as aioredis

        self.url = url
        try:
            aioredis.connection.parse_url(url)
        except ValueError as exc:
            raise ConfigError(f"bad Redis URL {url!r}: {exc}") from exc
        self.timeout = timeout
        self.cooldown = cooldown
        # Keyed by the loop itself, not id(loop): a new loop can reuse a dead one's id.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self.stats = CacheStats()
        self._open_until = 0.0  # monotonic time until which Redis is skipped
        self._warned = False

    def _client(self) -> Any:
        # redis.asyncio connections belong to one event loop; keep a client per loop.
        import redis.asyncio as aioredis

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = aioredis.Redis.from_url(
                self.url,
                socket_connect_timeout=self.timeout,
                socket_timeout=self.timeout,
            )
            self._clients[loop] = client
        return client

    @property
    def available(self) -> bool:
        """False while the circuit breaker is open (Redis failed less than ``cooldown`` ago)."""
        return time.monotonic() >= self._open_until

    def _failed(self, exc: BaseException) -> None:
        self.stats.errors += 1
        self._open_until = time.monotonic() + self.cooldown
        if not self._warned:
            self._warned = True
            reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            log.warning(
                "newsdesk: the Redis cache at %s is unavailable (%s); carrying on without it",
                _redacted(self.url),
                reason,
            )

    async def get(self, key: str) -> bytes | None:
        if not self.available:
            self.stats.errors += 1
            return None
        try:
            async with asyncio.timeout(self.timeout):
                value = await self._client().get(key)
        except Exception as exc:
            # A cache that is down, hung or broken must not fail (or stall) the call: count it
            # and carry on uncached.
            self._failed(exc)
            return None
        if not isinstance(value, bytes):
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return value

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        if not self.available:
            self.stats.errors += 1
            return
        try:
            async with asyncio.timeout(self.timeout):
                await self._client().set(key, value, px=max(1, int(ttl * 1000)) if ttl else None)
            self.stats.writes += 1
        except Exception as exc:
            self._failed(exc)

    async def clear(self) -> None:
        client = self._client()
        async for key in client.scan_iter(match=KEY_PREFIX + "*"):
            await client.delete(key)

    async def aclose(self) -> None:
        """Close every connection: this loop's here; another loop's on that loop (not waited for)."""
        here = asyncio.get_running_loop()
        clients, self._clients = list(self._clients.items()), weakref.WeakKeyDictionary()
        for loop, client in clients:
            if loop is here:
                with contextlib.suppress(Exception):  # closing a broken connection: nothing to keep
                    await client.aclose()
            else:
                _close_on(loop, client)

    def close(self) -> None:
        """``aclose`` for sync code: each loop's connections are closed on that loop."""
        clients, self._clients = list(self._clients.items()), weakref.WeakKeyDictionary()
        for loop, client in clients:
            _close_on(loop, client)


async def _quietly(close: Coroutine[Any, Any, Any]) -> None:
    with contextlib.suppress(Exception):
        await close


_closing: set[Any] = set()  # close tasks in flight: the loop keeps only weak references to tasks


def _close_on(loop: asyncio.AbstractEventLoop, client: Any) -> None:
    """Close a redis.asyncio client on the loop its connections belong to, without blocking."""
    if loop.is_closed():
        return  # its connections went with it
    if not loop.is_running():
        loop.run_until_complete(_quietly(client.aclose()))
        return
    try:
        same_thread = asyncio.get_running_loop() is loop
    except RuntimeError:
        same_thread = False
    if same_thread:  # sync close() called from async code: let the loop do it next
        task = loop.create_task(_quietly(client.aclose()))
        _closing.add(task)
        task.add_done_callback(_closing.discard)
    else:
        asyncio.run_coroutine_threadsafe(_quietly(client.aclose()), loop)


def _redacted(url: str) -> str:
    """The Redis URL without its password (it may hold one: redis://:secret@host)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return parts._replace(netloc=f"{user}{host}{port}").geturl()


class LayeredStore:
    """A fast store in front of a slower one: reads fall through and fill the front."""

    def __init__(self, front: MemoryStore, back: CacheStore) -> None:
        self.front = front
        self.back = back
        self.name = f"{front.name}+{back.name}"
        self.stats = CacheStats()

    async def get(self, key: str) -> bytes | None:
        value = self.front.get_nowait(key)
        if value is None:
            value = await self.back.get(key)
            if value is not None:
                await self.front.set(key, value)
        if value is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
        return value

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        await self.front.set(key, value, ttl)
        await self.back.set(key, value, ttl)
        self.stats.writes += 1

    async def clear(self) -> None:
        await self.front.clear()
        await self.back.clear()

    async def aclose(self) -> None:
        from newsdesk._concurrency import aclose

        await aclose(self.back)

    def close(self) -> None:
        self.back.close()


def open_cache(spec: str | None) -> CacheStore | None:
    """``None``/"disk": memory + disk in the user cache dir; "off": no cache; "memory";
    ``redis://...`` / ``rediss://...``: memory + Redis; anything else: a directory for the disk cache."""
    from newsdesk._config import cache_dir

    if spec is None or spec == "" or spec == "disk":
        return LayeredStore(MemoryStore(), DiskStore(cache_dir() / "llm"))
    if spec == "off":
        return None
    if spec == "memory":
        return MemoryStore()
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return LayeredStore(MemoryStore(), RedisStore(spec))
    if "://" in spec:
        raise ConfigError(
            f"unknown cache {spec!r}: use a directory, redis://host:port/db, 'memory' or 'off'"
        )
    return LayeredStore(MemoryStore(), DiskStore(Path(spec).expanduser()))
