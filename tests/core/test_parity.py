"""Every sync API of ``LiteLLMClient`` behaves as its async twin (simonw/llm keeps such a file):
``response()`` ~ ``await aresponse()``, ``stream_response()`` ~ ``astream_response()``."""

from __future__ import annotations

import re
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pydantic import BaseModel

from newsdesk import (
    BadResponse,
    Chunk,
    Gateway,
    LiteLLMClient,
    RateLimited,
    Request,
    Response,
    RetryPolicy,
    UnknownModelError,
)
from newsdesk.testing import FunctionBackend
from tests.servers.plugin import OpenAIServerHandle


class Answer(BaseModel):
    title: str
    score: int


async def _whole(client: LiteLLMClient, way: str) -> Response:
    if way == "sync":
        return client.response()
    return await client.aresponse()


async def _chunks(client: LiteLLMClient, way: str) -> list[Chunk]:
    if way == "sync":
        return list(client.stream_response())
    return [c async for c in client.astream_response()]


WAYS = ["sync", "async"]


def _client(reply: Callable[[Request], Any], text: str = "q", **kw: Any) -> LiteLLMClient:
    gw = Gateway(cache="memory", backend=FunctionBackend(reply), retry=RetryPolicy(base_delay=0))
    req = Request(model="openai/parity", messages=[{"role": "user", "content": text}], **kw)
    return LiteLLMClient(req, gw)


def _shape(r: Response) -> dict[str, Any]:
    return r.model_dump(exclude={"latency"})


@pytest.mark.parametrize("way", WAYS)
async def test_text_answer(way: str) -> None:
    client = _client(lambda r: "one two three")
    resp = await _whole(client, way)
    assert resp.value == resp.text == "one two three" and resp.attempts == 1 and not resp.cached
    chunks = await _chunks(client, way)
    assert "".join(c.content for c in chunks) == "one two three"
    assert chunks[-1].done and chunks[-1].response is not None
    assert chunks[-1].response.cached  # the first call cached it, in either world


async def test_both_ways_give_equal_responses_and_chunks() -> None:
    results: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for way in WAYS:
        client = _client(
            lambda r: '{"title": "Rain", "score": 7}', answer_model=Answer, cache="off"
        )
        resp = await _whole(client, way)
        chunks = await _chunks(client, way)
        results[way] = (
            _shape(resp),
            [c.model_dump(exclude={"response"}) for c in chunks],
        )
    assert results["sync"] == results["async"]
    assert results["sync"][0]["value"] == {"title": "Rain", "score": 7}


@pytest.mark.parametrize("way", WAYS)
async def test_reasked_structured_answer(way: str) -> None:
    replies = iter(['{"title": 1}', '{"title": "x", "score": 2}'] * 2)
    client = _client(lambda r: next(replies), answer_model=Answer, cache="off")
    resp = await _whole(client, way)
    assert resp.value == Answer(title="x", score=2) and resp.attempts == 2
    chunks = await _chunks(client, way)
    assert sum(c.restart for c in chunks) == 1
    assert chunks[-1].partial == Answer(title="x", score=2)


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (RateLimited("openai/parity: rate limited (429)", status_code=429), RateLimited),
        (UnknownModelError("unknown model 'x'"), UnknownModelError),
    ],
)
async def test_errors_are_the_same_exception(way: str, error: Exception, kind: type) -> None:
    def fail(request: Request) -> str:
        raise error

    client = _client(fail, retries=1)
    with pytest.raises(kind, match=re.escape(str(error))):
        await _whole(client, way)
    with pytest.raises(kind, match=re.escape(str(error))):
        await _chunks(client, way)


@pytest.mark.parametrize("way", WAYS)
async def test_invalid_answer_raises_bad_response(way: str) -> None:
    client = _client(lambda r: "not json", answer_model=Answer, retries=0)
    with pytest.raises(BadResponse):
        await _whole(client, way)
    with pytest.raises(BadResponse):
        await _chunks(client, way)


@pytest.mark.parametrize("way", WAYS)
async def test_request_stream_flag_means_the_same(way: str) -> None:
    streamed = threading.Event()

    def pieces(request: Request) -> list[str]:
        streamed.set()
        return ["a ", "b"]

    gw = Gateway(cache="off", backend=FunctionBackend(lambda r: "whole", stream_handler=pieces))
    req = Request(model="openai/parity", messages=[{"role": "user", "content": "q"}], stream=True)
    assert (await _whole(LiteLLMClient(req, gw), way)).text == "a b"
    assert streamed.is_set()


@pytest.mark.parametrize("way", WAYS)
async def test_leaving_a_stream_early_closes_it(way: str) -> None:
    closed = threading.Event()

    async def pieces(request: Request) -> AsyncIterator[str]:
        try:
            for i in range(1000):
                yield f"w{i} "
        finally:
            closed.set()

    gw = Gateway(cache="off", backend=FunctionBackend(stream_handler=pieces))
    client = LiteLLMClient(
        Request(model="openai/parity", messages=[{"role": "user", "content": "q"}]), gw
    )
    if way == "sync":
        it = client.stream_response()
        next(it)
        it.close()  # type: ignore[attr-defined]
    else:
        stream = client.astream_response()
        await stream.__anext__()
        await stream.aclose()  # type: ignore[attr-defined]
    assert closed.wait(5)


@pytest.mark.parametrize("way", WAYS)
async def test_against_the_test_provider(
    way: str, openai_server: OpenAIServerHandle, make_request: Callable[..., Request]
) -> None:
    # cache off: each call really reaches the provider
    req = make_request("parity please [[reply:one two three four five six seven]]", cache="off")
    client = LiteLLMClient(req, Gateway(cache="off"))
    resp = await _whole(client, way)
    chunks = await _chunks(client, way)
    assert resp.text == "one two three four five six seven" and resp.value == resp.text
    assert not resp.cached and resp.attempts == 1
    assert len(chunks) >= 7 and chunks[-1].done
    assert "".join(c.content for c in chunks) == resp.text
    assert openai_server.stats()["calls"] == 2
