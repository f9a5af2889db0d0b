"""The wrappers one at a time over ``newsdesk.testing.FunctionBackend``: the pass-through base,
validation and re-asking as a wrapper of its own (inside the cache, outside the limits), and
``Gateway`` closing what it holds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pydantic import BaseModel

from newsdesk import BadResponse, Gateway, Request, TruncatedAnswer
from newsdesk._backend import Restart, StreamItem
from newsdesk._response import Completion
from newsdesk._wrappers import ValidateBackend, WrapperBackend
from newsdesk.testing import FunctionBackend


class Answer(BaseModel):
    title: str
    score: int


def _req(text: str = "q", **kw: object) -> Request:
    kw.setdefault("model", "openai/test")
    return Request(messages=[{"role": "user", "content": text}], **kw)  # type: ignore[arg-type]


async def _items(stream: AsyncIterator[StreamItem]) -> list[StreamItem]:
    return [item async for item in stream]


# ---------------------------------------------------------------- the pass-through base


async def test_a_wrapper_writes_only_what_it_changes() -> None:
    class Shout(WrapperBackend):
        async def complete(self, request: Request) -> Completion:
            c = await super().complete(request)
            return c.model_copy(update={"text": c.text.upper()})

    closed: list[str] = []

    class Inner(FunctionBackend):
        async def aclose(self) -> None:
            closed.append("inner")

    shout = Shout(Inner(lambda r: "hello there"))
    assert (await shout.complete(_req())).text == "HELLO THERE"
    # stream was not overridden: it passes through untouched, pieces and the final completion
    items = await _items(shout.stream(_req()))
    assert items[:-1] == ["hello ", "there"]
    assert isinstance(items[-1], Completion) and items[-1].text == "hello there"
    await shout.aclose()  # closing a wrapper closes the stack below it
    assert closed == ["inner"]


async def test_the_base_closes_the_inner_stream_when_the_reader_stops() -> None:
    closed = asyncio.Event()

    async def pieces(request: Request) -> AsyncIterator[str]:
        try:
            for i in range(100):
                yield f"w{i} "
        finally:
            closed.set()

    wrapper = WrapperBackend(FunctionBackend(stream_handler=pieces))
    stream = wrapper.stream(_req())
    assert await stream.__anext__() == "w0 "
    await stream.aclose()  # type: ignore[attr-defined]
    assert closed.is_set()  # at once, not at garbage collection


# ---------------------------------------------------------------- validation


async def test_validate_asks_again_hotter_until_the_answer_validates() -> None:
    replies = iter(['{"title": "Rain"}', '{"title": "Rain", "score": 7}'])
    backend = FunctionBackend(lambda r: next(replies))
    completion = await ValidateBackend(backend).complete(_req(answer_model=Answer, temperature=0))
    assert Answer.model_validate_json(completion.text) == Answer(title="Rain", score=7)
    assert [r.temperature for r in backend.requests] == [0, 0.3]


async def test_validate_doubles_the_budget_after_a_cut() -> None:
    def reply(request: Request) -> Completion:
        if request.max_tokens == 3:
            return Completion(text='{"title": "Ra', model=request.model, finish_reason="length")
        return Completion(text='{"title": "Rain", "score": 1}', model=request.model)

    backend = FunctionBackend(reply)
    await ValidateBackend(backend).complete(_req(answer_model=Answer, max_tokens=3))
    assert [r.max_tokens for r in backend.requests] == [3, 6]


async def test_validate_gives_up_after_retries_with_the_last_error() -> None:
    backend = FunctionBackend(lambda r: '{"title": 5}')
    with pytest.raises(BadResponse, match="does not match Answer"):
        await ValidateBackend(backend).complete(_req(answer_model=Answer, retries=2))
    assert len(backend.requests) == 3
    cut = FunctionBackend(lambda r: Completion(text="", model=r.model, finish_reason="length"))
    with pytest.raises(BadResponse, match="max_tokens ran out"):  # a text answer left empty
        await ValidateBackend(cut).complete(_req(retries=0))


async def test_validate_stream_restarts_then_ends_with_the_valid_completion() -> None:
    replies = iter(['{"title": 5}', '{"title": "Rain", "score": 7}'])
    items = await _items(
        ValidateBackend(FunctionBackend(lambda r: next(replies))).stream(_req(answer_model=Answer))
    )
    restart = next(i for i, item in enumerate(items) if isinstance(item, Restart))
    assert all(
        isinstance(x, str) for x in items[:restart]
    )  # the invalid one's completion is held back
    assert "".join(items[restart + 1 : -1]) == '{"title": "Rain", "score": 7}'  # type: ignore[arg-type]
    assert isinstance(items[-1], Completion)


async def test_gateway_caches_the_reasked_answer_under_the_original_request() -> None:
    replies = iter(['{"title": "Rain"', '{"title": "Rain", "score": 7}'])
    backend = FunctionBackend(lambda r: next(replies))
    async with Gateway(cache="memory", backend=backend) as gw:
        first = await gw.complete(_req(answer_model=Answer))
        again = await gw.complete(_req(answer_model=Answer))
    assert first.value == again.value == Answer(title="Rain", score=7)
    assert first.attempts == 2 and not first.cached
    assert again.cached and len(backend.requests) == 2  # the second cost nothing


async def test_identical_requests_share_one_validation() -> None:
    calls = 0

    async def reply(request: Request) -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return '{"title": "x"}' if calls == 1 else '{"title": "x", "score": 1}'

    async with Gateway(cache="memory", backend=FunctionBackend(reply)) as gw:
        answers = await asyncio.gather(*(gw.complete(_req(answer_model=Answer)) for _ in range(5)))
    assert calls == 2  # one call and one re-ask, shared by all five
    assert all(a.value == Answer(title="x", score=1) for a in answers)


async def test_invalid_and_truncated_answers_are_never_cached() -> None:
    backend = FunctionBackend(
        lambda r: Completion(text='{"title": "R', model=r.model, finish_reason="length")
    )
    async with Gateway(cache="memory", backend=backend) as gw:
        for _ in range(2):
            with pytest.raises(TruncatedAnswer):
                await gw.complete(_req(answer_model=Answer, retries=1, max_tokens=4))
        assert gw.store is not None
    assert [r.max_tokens for r in backend.requests] == [4, 8, 4, 8]


# ---------------------------------------------------------------- Request.stream


async def test_request_stream_makes_complete_stream_from_the_provider() -> None:
    streamed: list[Request] = []

    def pieces(request: Request) -> list[str]:
        streamed.append(request)
        return ["one ", "two"]

    backend = FunctionBackend(lambda r: "whole", stream_handler=pieces)
    async with Gateway(cache="off", backend=backend) as gw:
        assert (await gw.complete(_req())).text == "whole"
        resp = await gw.complete(_req(stream=True))
    assert resp.text == "one two" and len(streamed) == 1


# ---------------------------------------------------------------- closing


async def test_async_with_gateway_closes_redis_connections(redis_url: str) -> None:
    import redis.asyncio as aioredis

    probe = aioredis.Redis.from_url(redis_url)

    async def connected() -> int:
        return len(await probe.client_list()) - 1  # not counting the probe itself

    try:
        backend = FunctionBackend()
        async with Gateway(cache=redis_url, backend=backend) as gw:
            await gw.complete(_req("first"))
            await gw.complete(_req("first"))
            assert await connected() >= 1
        assert await connected() == 0
        gw2 = Gateway(cache=redis_url, backend=backend)
        assert (await gw2.complete(_req("first"))).cached  # stored before the close
        await gw2.aclose()
        assert await connected() == 0
    finally:
        await probe.aclose()
