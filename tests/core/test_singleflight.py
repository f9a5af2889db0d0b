"""Single-flight: identical requests in flight at the same time make one provider call."""

from __future__ import annotations

import asyncio

import pytest

from newsdesk import Gateway, ProviderUnavailable
from tests.servers.plugin import OpenAIServerHandle


async def test_100_identical_requests_make_one_call(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request, no_blocking
) -> None:  # type: ignore[no-untyped-def]
    req = make_request("[[latency:0.3]] the same question")
    responses = await asyncio.gather(*(gateway.complete(req) for _ in range(100)))
    assert openai_server.stats()["calls"] == 1
    assert {r.text for r in responses} == {"Echo: the same question"}
    assert sum(not r.cached for r in responses) == 1
    assert gateway.stats.coalesced == 99 and gateway.stats.calls == 1


async def test_identical_streams_make_one_call(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request, no_blocking
) -> None:  # type: ignore[no-untyped-def]
    words = " ".join(f"w{i}" for i in range(30))
    req = make_request(f"[[latency:0.3]] [[reply:{words}]]")

    async def consume() -> tuple[str, int]:
        chunks = [c async for c in gateway.stream(req)]
        return "".join(c.content for c in chunks), len(chunks)

    results = await asyncio.gather(*(consume() for _ in range(20)))
    assert openai_server.stats()["calls"] == 1
    assert {text for text, _ in results} == {words}
    assert all(n >= 3 for _, n in results)  # followers get a replayed stream, not one blob


async def test_stream_and_complete_coalesce(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    req = make_request("[[latency:0.3]] mixed")

    async def streamed() -> str:
        return "".join([c.content async for c in gateway.stream(req)])

    text, resp = await asyncio.gather(streamed(), gateway.complete(req))
    assert text == resp.text == "Echo: mixed"
    assert openai_server.stats()["calls"] == 1


async def test_cache_off_is_not_coalesced(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    req = make_request("[[latency:0.2]] fresh each time", cache="off")
    await asyncio.gather(*(gateway.complete(req) for _ in range(5)))
    assert openai_server.stats()["calls"] == 5


async def test_cache_off_request_does_not_break_single_flight(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    """An uncached twin finishing first must not unregister the cached request in flight."""
    req = make_request("twin")
    openai_server.control(latency=1.0)
    leader = asyncio.create_task(gateway.complete(req))
    await asyncio.sleep(0.2)
    openai_server.control(latency=0.0)
    await gateway.complete(make_request("twin", cache="off"))  # done while the leader waits
    assert not leader.done()
    follower = await gateway.complete(req)  # must join the leader, not make a third call
    await leader
    assert follower.cached
    assert openai_server.stats()["calls"] == 2


async def test_followers_share_the_leaders_error(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    req = make_request("[[latency:0.2]] [[status:500]]", retries=0)
    results = await asyncio.gather(
        *(gateway.complete(req) for _ in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, ProviderUnavailable) for r in results)
    assert openai_server.stats()["calls"] == 1


@pytest.mark.parametrize("leader_streams", [False, True])
async def test_follower_survives_a_cancelled_leader(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request, leader_streams: bool
) -> None:  # type: ignore[no-untyped-def]
    req = make_request("[[latency:0.5]] who asked first")

    async def lead() -> None:
        if leader_streams:
            async for _ in gateway.stream(req):
                pass
        else:
            await gateway.complete(req)

    leader = asyncio.create_task(lead())
    await asyncio.sleep(0.1)
    follower = asyncio.create_task(gateway.complete(req))
    await asyncio.sleep(0.1)
    leader.cancel()
    resp = await asyncio.wait_for(follower, 10)
    assert resp.text == "Echo: who asked first"
    assert openai_server.stats()["calls"] == 2  # the follower asked for itself
