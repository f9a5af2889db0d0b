"""The cache: what goes into the key, what is stored (never a key), stores, policies, persistence."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from newsdesk import (
    ConfigError,
    DiskStore,
    Gateway,
    MemoryStore,
    RedisStore,
    Request,
    open_cache,
)
from newsdesk._cache import LayeredStore, cache_key
from newsdesk._response import Completion
from tests.core.conftest import KEY, MODEL
from tests.helpers import free_port
from tests.servers.plugin import OpenAIServerHandle


class A(BaseModel):
    x: int


class B(BaseModel):
    y: int


def _req(**kw: object) -> Request:
    base: dict[str, object] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "api_base": "http://h/v1",
    }
    return Request(**{**base, **kw})  # type: ignore[arg-type]


def _key(r: Request) -> str:
    return cache_key(r.cache_identity())


# ---------------------------------------------------------------- the key


def test_key_is_stable_and_ignores_transport_details() -> None:
    k = _key(_req())
    assert k == _key(_req())
    assert k.startswith("newsdesk:v1:") and len(k) == len("newsdesk:v1:") + 64
    same = [
        _req(api_key="sk-one"),
        _req(api_key="sk-two"),
        _req(timeout=3),
        _req(retries=7),
        _req(cache="refresh"),
        _req(stream=True),
        _req(cache_ttl=5),
        _req(fallbacks=["openai/other"]),
        _req(extra={"extra_headers": {"X-Trace": "1"}}),
    ]
    for r in same:
        assert _key(r) == k, r


def test_key_changes_with_everything_that_changes_the_answer() -> None:
    variants = [
        _req(),
        _req(temperature=0.5),
        _req(temperature=0.6),
        _req(max_tokens=10),
        _req(answer_model=A),
        _req(answer_model=B),
        _req(messages=[{"role": "user", "content": "hi!"}]),
        _req(messages=[{"role": "system", "content": "hi"}]),
        _req(
            messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
        ),
        _req(model="openai/other"),
        _req(api_base="http://elsewhere/v1"),
        _req(extra={"seed": 1}),
        _req(extra={"seed": 2}),
        _req(extra={"top_p": 0.5}),
    ]
    keys = [_key(r) for r in variants]
    assert len(set(keys)) == len(keys)


# ---------------------------------------------------------------- stores


async def test_memory_store_lru_bound() -> None:
    store = MemoryStore(maxsize=3)
    for i in range(3):
        await store.set(f"k{i}", b"v%d" % i)
    assert await store.get("k0") == b"v0"  # k0 is now the most recently used
    await store.set("k3", b"v3")
    await store.set("k4", b"v4")
    assert await store.get("k1") is None and await store.get("k2") is None
    assert await store.get("k0") == b"v0"
    assert await store.get("k3") == b"v3" and await store.get("k4") == b"v4"
    assert len(store._data) == 3


@pytest.mark.parametrize("kind", ["memory", "disk", "redis"])
async def test_ttl_expiry(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if kind == "memory":
        store: object = MemoryStore()
    elif kind == "disk":
        store = DiskStore(tmp_path / "disk")
    else:
        store = RedisStore(request.getfixturevalue("redis_url"))
    await store.set("short", b"1", ttl=0.3)  # type: ignore[attr-defined]
    await store.set("forever", b"2")  # type: ignore[attr-defined]
    assert await store.get("short") == b"1"  # type: ignore[attr-defined]
    await asyncio.sleep(0.5)
    assert await store.get("short") is None  # type: ignore[attr-defined]
    assert await store.get("forever") == b"2"  # type: ignore[attr-defined]
    store.close()  # type: ignore[attr-defined]


async def test_ttl_through_gateway(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    req = make_request("short lived", cache_ttl=0.3)
    assert not (await gateway.complete(req)).cached
    assert (await gateway.complete(req)).cached
    await asyncio.sleep(0.5)
    assert not (await gateway.complete(req)).cached
    assert openai_server.stats()["calls"] == 2


def test_open_cache_specs(tmp_path: Path) -> None:
    assert open_cache("off") is None
    assert isinstance(open_cache("memory"), MemoryStore)
    default = open_cache(None)
    assert isinstance(default, LayeredStore) and isinstance(default.back, DiskStore)
    assert str(default.back.directory).startswith(os.environ["NEWSDESK_HOME"])
    default.close()
    d = open_cache(str(tmp_path / "c"))
    assert isinstance(d, LayeredStore) and isinstance(d.back, DiskStore)
    d.close()
    r = open_cache("redis://127.0.0.1:1/0")
    assert isinstance(r, LayeredStore) and isinstance(r.back, RedisStore)
    with pytest.raises(ConfigError):
        open_cache("ftp://nope")


def test_unwritable_cache_directory_is_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError):
        DiskStore(blocker / "cache")


# ---------------------------------------------------------------- policies


async def test_cache_hit_and_cost(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    first = await gateway.complete(make_request("cache me", api_key="sk-one", timeout=5))
    second = await gateway.complete(make_request("cache me", api_key="sk-two", timeout=9))
    assert not first.cached and second.cached
    assert second.text == first.text and second.cost in (0, None) and second.attempts == 0
    assert openai_server.stats()["calls"] == 1
    assert gateway.stats.cache_hits == 1 and gateway.stats.cache_misses == 1


async def test_cache_off_neither_reads_nor_writes(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    await gateway.complete(make_request("read me"))  # stored
    off = await gateway.complete(make_request("read me", cache="off"))
    assert not off.cached  # not read
    await gateway.complete(make_request("never stored", cache="off"))
    assert await gateway.store.get(_key(make_request("never stored"))) is None  # type: ignore[union-attr]
    assert openai_server.stats()["calls"] == 3


async def test_cache_refresh_skips_the_read_and_writes(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    req = make_request("what is new")
    stale = Completion(text="stale answer", model=MODEL)
    await gateway.store.set(_key(req), stale.model_dump_json().encode())  # type: ignore[union-attr]
    assert (await gateway.complete(req)).text == "stale answer"
    fresh = await gateway.complete(make_request("what is new", cache="refresh"))
    assert fresh.text == "Echo: what is new" and not fresh.cached
    again = await gateway.complete(req)
    assert again.cached and again.text == "Echo: what is new"
    assert openai_server.stats()["calls"] == 1


async def test_unreadable_entry_is_a_miss(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    req = make_request("corrupt")
    await gateway.store.set(_key(req), b"\x00not json")  # type: ignore[union-attr]
    resp = await gateway.complete(req)
    assert resp.text == "Echo: corrupt" and not resp.cached


async def test_stream_and_complete_share_entries(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    chunks = [c async for c in gateway.stream(make_request("shared entry"))]
    resp = await gateway.complete(make_request("shared entry"))
    assert resp.cached and resp.text == chunks[-1].response.text  # type: ignore[union-attr]
    assert openai_server.stats()["calls"] == 1


async def test_cached_stream_replays_as_a_stream(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    words = " ".join(f"word{i}" for i in range(40))
    req = make_request(f"[[reply:{words}]]")
    live = [c async for c in gateway.stream(req)]
    replay = [c async for c in gateway.stream(req)]
    assert openai_server.stats()["calls"] == 1
    live_text = "".join(c.content for c in live)
    replay_text = "".join(c.content for c in replay)
    assert live_text == replay_text == words
    assert len([c for c in replay if c.content]) >= 5
    assert replay[-1].done and replay[-1].response is not None and replay[-1].response.cached
    assert not live[-1].response.cached  # type: ignore[union-attr]


def test_replay_pieces_rebuild_the_text() -> None:
    from newsdesk._wrappers import _replay_pieces

    for text in [
        "",
        "one",
        " lead",
        "trail ",
        "a  b   c",
        "line\nbreak and more words here " * 5,
        "x" * 100,
    ]:
        assert "".join(_replay_pieces(text)) == text


# ---------------------------------------------------------------- persistence and secrets


async def test_disk_cache_persists_across_gateways(
    openai_server: OpenAIServerHandle, make_request, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    one = Gateway(cache=str(tmp_path / "c"))
    assert not (await one.complete(make_request("persist me"))).cached
    one.close()
    two = Gateway(cache=str(tmp_path / "c"))
    resp = await two.complete(make_request("persist me"))
    two.close()
    assert resp.cached and resp.text == "Echo: persist me"
    assert openai_server.stats()["calls"] == 1


async def test_default_gateway_cache_lives_in_newsdesk_home(
    openai_server: OpenAIServerHandle, make_request
) -> None:  # type: ignore[no-untyped-def]
    one = Gateway()
    await one.complete(make_request("home cache"))
    one.close()
    two = Gateway()
    assert (await two.complete(make_request("home cache"))).cached
    two.close()
    assert (Path(os.environ["NEWSDESK_HOME"]) / "cache" / "llm").is_dir()


async def test_api_key_never_stored_on_disk(
    openai_server: OpenAIServerHandle, make_request, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    gw = Gateway(cache=str(tmp_path / "c"))
    await gw.complete(make_request("secret one"))
    async for _ in gw.stream(make_request("secret two")):
        pass
    await gw.complete(make_request("structured secret", answer_model=A))
    gw.close()
    # the server really got the key ...
    assert openai_server.last_request()["_api_key_sha256"] == openai_server.key_sha256(KEY)
    # ... and no byte of the cache directory contains it
    files = [p for p in (tmp_path / "c").rglob("*") if p.is_file()]
    assert files
    needle = KEY.encode()
    for p in files:
        assert needle not in p.read_bytes(), p
    disk = DiskStore(tmp_path / "c")
    assert len(disk._cache) == 3
    for k in disk._cache.iterkeys():
        assert needle not in disk._cache[k] and KEY not in k
    disk.close()


async def test_api_key_never_stored_in_redis(
    openai_server: OpenAIServerHandle, make_request, redis_url: str
) -> None:  # type: ignore[no-untyped-def]
    import redis.asyncio as aioredis

    gw = Gateway(cache=redis_url)
    await gw.complete(make_request("secret in redis"))
    async for _ in gw.stream(make_request("streamed secret in redis")):
        pass
    gw.close()
    client = aioredis.Redis.from_url(redis_url)
    keys = [k async for k in client.scan_iter(match="*")]
    assert len(keys) == 2
    for k in keys:
        assert KEY.encode() not in k and KEY.encode() not in await client.get(k)
    await client.aclose()


# ---------------------------------------------------------------- Redis


async def test_redis_shared_between_gateways(
    openai_server: OpenAIServerHandle, make_request, redis_url: str
) -> None:  # type: ignore[no-untyped-def]
    one, two = Gateway(cache=redis_url), Gateway(cache=redis_url)
    assert not (await one.complete(make_request("shared via redis"))).cached
    resp = await two.complete(make_request("shared via redis"))
    assert resp.cached and resp.text == "Echo: shared via redis"
    assert openai_server.stats()["calls"] == 1
    one.close()
    two.close()


_CHILD = """
import asyncio, sys
from newsdesk import Gateway, Request
async def main():
    gw = Gateway(cache=sys.argv[1])
    r = await gw.complete(Request(model=sys.argv[3], messages=[{"role": "user", "content": "across processes"}],
                                  api_base=sys.argv[2], api_key=sys.argv[4]))
    print("CACHED" if r.cached else "FRESH", r.text)
asyncio.run(main())
"""


async def test_redis_shared_between_processes(
    openai_server: OpenAIServerHandle, make_request, redis_url: str
) -> None:  # type: ignore[no-untyped-def]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        redis_url,
        openai_server.url,
        MODEL,
        KEY,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, errout = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, errout.decode()
    assert out.decode().strip() == "FRESH Echo: across processes"
    gw = Gateway(cache=redis_url)
    resp = await gw.complete(make_request("across processes"))
    gw.close()
    assert resp.cached and resp.text == "Echo: across processes"
    assert openai_server.stats()["calls"] == 1


async def test_redis_down_calls_still_work(openai_server: OpenAIServerHandle, make_request) -> None:  # type: ignore[no-untyped-def]
    url = f"redis://127.0.0.1:{free_port()}/0"
    store = RedisStore(url)
    gw = Gateway(cache=store)
    t0 = time.perf_counter()
    a = await gw.complete(make_request("no redis"))
    b = await gw.complete(make_request("no redis"))
    chunks = [c async for c in gw.stream(make_request("no redis stream"))]
    assert time.perf_counter() - t0 < 10
    assert a.text == b.text == "Echo: no redis" and not a.cached and not b.cached
    assert chunks[-1].response is not None and chunks[-1].response.text == "Echo: no redis stream"
    assert openai_server.stats()["calls"] == 3
    assert store.stats.errors >= 4
    gw.close()


@pytest.fixture
def hung_redis() -> Iterator[str]:
    """A TCP listener that accepts connections and never answers: a hung Redis."""
    import socket
    import threading

    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)  # read nothing, answer nothing

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in held:
            conn.close()
        server.close()


async def test_hung_redis_costs_one_short_timeout_then_is_skipped(
    openai_server: OpenAIServerHandle,
    make_request,  # type: ignore[no-untyped-def]
    hung_redis: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    store = RedisStore(hung_redis, timeout=0.3, cooldown=60)
    gw = Gateway(cache=store)
    t0 = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="newsdesk.cache"):
        texts = [(await gw.complete(make_request(f"hung redis {i}"))).text for i in range(10)]
    elapsed = time.perf_counter() - t0
    assert texts == [f"Echo: hung redis {i}" for i in range(10)]
    # One timed-out get opens the breaker; the other 19 operations skip Redis at once. Before the
    # breaker, each of the 20 operations waited for the socket timeout.
    assert elapsed < 0.3 * 3 + 3.0, elapsed
    assert not store.available
    warnings = [r.getMessage() for r in caplog.records if r.name == "newsdesk.cache"]
    assert len(warnings) == 1
    assert "Redis cache" in warnings[0] and "unavailable" in warnings[0]
    assert "carrying on" in warnings[0]
    gw.close()


async def test_redis_breaker_closes_again_after_cooldown(redis_url: str) -> None:
    store = RedisStore(redis_url, timeout=0.5, cooldown=0.2)
    store._failed(TimeoutError())  # as if the last operation had timed out
    assert not store.available and await store.get("k") is None
    await asyncio.sleep(0.25)
    await store.set("k", b"v")
    assert await store.get("k") == b"v"


def test_redis_url_password_is_not_logged() -> None:
    from newsdesk._cache._stores import _redacted

    assert _redacted("redis://:hunter2@cache.local:6380/0") == "redis://:***@cache.local:6380/0"
    assert "hunter2" not in _redacted("redis://user:hunter2@h/0")
    assert _redacted("redis://h:6379/0") == "redis://h:6379/0"


async def test_redis_down_behind_memory_still_caches_in_process(
    openai_server: OpenAIServerHandle, make_request
) -> None:  # type: ignore[no-untyped-def]
    gw = Gateway(cache=f"redis://127.0.0.1:{free_port()}/0")
    assert not (await gw.complete(make_request("memory saves us"))).cached
    assert (await gw.complete(make_request("memory saves us"))).cached
    gw.close()


class _BrokenStore:
    """A cache whose every operation fails (disk full, database locked, ...)."""

    name = "broken"

    def __init__(self) -> None:
        from newsdesk._cache import CacheStats

        self.stats = CacheStats()

    async def get(self, key: str) -> bytes | None:
        raise OSError("disk on fire")

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        raise OSError("disk full")

    async def clear(self) -> None:
        pass

    def close(self) -> None:
        pass


async def test_a_failing_store_never_fails_the_call(
    openai_server: OpenAIServerHandle, make_request
) -> None:  # type: ignore[no-untyped-def]
    store = _BrokenStore()
    gw = Gateway(cache=store)  # type: ignore[arg-type]
    resp = await gw.complete(make_request("answer anyway"))
    chunks = [c async for c in gw.stream(make_request("stream anyway"))]
    assert resp.text == "Echo: answer anyway" and not resp.cached
    assert chunks[-1].response is not None and chunks[-1].response.text == "Echo: stream anyway"
    assert store.stats.errors == 4  # two reads, two writes
