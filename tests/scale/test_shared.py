"""Redis-shared behaviours without workers: password redaction, single-flight between two
gateways that share nothing but Redis, and the global limiter failing open."""

from __future__ import annotations

import asyncio
import time

import pytest

from newsdesk import ConfigError, Request
from newsdesk.scale import redact_url, shared_gateway
from newsdesk.scale._redact import check_redis_url, redact_text
from tests.helpers import free_port
from tests.scale.conftest import MODEL
from tests.servers.plugin import OpenAIServerHandle

pytestmark = pytest.mark.timeout(
    300
)  # the first test also imports LiteLLM (a minute on a loaded machine)


def test_redact_url() -> None:
    assert redact_url("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert redact_url("rediss://user:s3cret@host/2") == "rediss://user:***@host/2"
    assert redact_url("redis://host:6379/0") == "redis://host:6379/0"
    url = "redis://:p%40ss@host:1/0"
    assert "p%40ss" not in redact_text(f"failed for {url} (p@ss)", url)
    assert "p@ss" not in redact_text(f"failed for {url} (p@ss)", url)


def test_bad_url_error_hides_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        check_redis_url("http://:topsecret@host/0")
    assert "topsecret" not in str(info.value) and "redis://" in str(info.value)
    with pytest.raises(ConfigError) as info:
        check_redis_url("redis://:topsecret@host:notaport/0")
    assert "topsecret" not in str(info.value)


def _request(server: OpenAIServerHandle, text: str) -> Request:
    return Request(
        model=MODEL, api_base=server.url, messages=[{"role": "user", "content": text}], timeout=10
    )


async def test_single_flight_between_gateways(
    openai_server: OpenAIServerHandle, redis_proc
) -> None:  # type: ignore[no-untyped-def]
    # Two gateways with no cache and separate in-process single-flight: only Redis joins them.
    one, two = (shared_gateway(redis_proc.url, cache="off") for _ in range(2))
    openai_server.control(latency=0.8)
    a, b = await asyncio.gather(
        one.complete(_request(openai_server, "same question")),
        two.complete(_request(openai_server, "same question")),
    )
    assert a.text == b.text == "Echo: same question"
    assert openai_server.stats()["calls"] == 1
    assert sorted([a.cached, b.cached]) == [False, True]
    assert one.stats.coalesced + two.stats.coalesced == 1

    # streams too, and a different question is not coalesced
    async def streamed(gw, text):  # type: ignore[no-untyped-def]
        return [c async for c in gw.stream(_request(openai_server, text))][-1].response

    x, y, z = await asyncio.gather(
        streamed(one, "streamed"), streamed(two, "streamed"), streamed(two, "other")
    )
    assert x.text == y.text == "Echo: streamed" and z.text == "Echo: other"
    assert openai_server.stats()["calls"] == 3


async def test_refresh_is_not_answered_by_an_old_flight(
    openai_server: OpenAIServerHandle, redis_proc
) -> None:  # type: ignore[no-untyped-def]
    gw = shared_gateway(redis_proc.url, cache="off")
    await gw.complete(_request(openai_server, "ask twice"))
    again = _request(openai_server, "ask twice").model_copy(update={"cache": "refresh"})
    assert not (await gw.complete(again)).cached
    assert openai_server.stats()["calls"] == 2


async def test_redis_down_fails_open(openai_server: OpenAIServerHandle) -> None:
    from newsdesk import Limits

    gw = shared_gateway(f"redis://127.0.0.1:{free_port()}/0", limits=Limits(rpm=1), rate_window=60)
    started = time.monotonic()
    r1 = await gw.complete(_request(openai_server, "no redis one"))
    r2 = await gw.complete(_request(openai_server, "no redis two"))
    assert r1.text == "Echo: no redis one" and r2.text == "Echo: no redis two"
    assert time.monotonic() - started < 20  # not held for the rpm=1 window: the limiter failed open
    assert gw.stats.errors.get("RedisUnavailable", 0) >= 2
