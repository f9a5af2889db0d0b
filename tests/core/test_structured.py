"""Structured answers: validated into the model; truncated or invalid ones re-asked and never cached."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from newsdesk import BadResponse, Gateway, TruncatedAnswer
from newsdesk._cache import cache_key
from newsdesk._structured import parse_answer, parse_partial
from tests.servers.plugin import OpenAIServerHandle


class Answer(BaseModel):
    title: str
    score: int


class Summary(BaseModel):
    summary: str


LONG = " ".join(f"w{i}" for i in range(30))


async def _stored(gateway: Gateway) -> int:
    from newsdesk import MemoryStore

    assert isinstance(gateway.store, MemoryStore)
    return len(gateway.store._data)


async def test_valid_json_becomes_model_instance(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    resp = await gateway.complete(
        make_request('[[json:{"title": "Rain", "score": 7}]]', answer_model=Answer)
    )
    assert resp.value == Answer(title="Rain", score=7)
    assert json.loads(resp.text) == {"title": "Rain", "score": 7}
    sent = openai_server.last_request()["response_format"]
    assert (
        sent["type"] == "json_schema"
        and sent["json_schema"]["schema"] == Answer.model_json_schema()
    )
    assert await _stored(gateway) == 1


async def test_schema_generated_answer(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    resp = await gateway.complete(make_request("anything", answer_model=Answer))
    assert isinstance(resp.value, Answer)


async def test_truncated_answer_is_asked_again_with_bigger_budget(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    # the reply is 4 words; max_tokens=3 cuts it, the re-ask with 6 fits
    req = make_request('[[json:{"title": "Rain", "score": 7}]]', answer_model=Answer, max_tokens=3)
    resp = await gateway.complete(req)
    assert resp.value == Answer(title="Rain", score=7)
    budgets = [r["max_tokens"] for r in openai_server.stats()["last_requests"]]
    assert budgets == [3, 6]
    assert resp.attempts == 2
    # the original key holds the answer that validated (never the cut-off one) ...
    stored = await gateway.store.get(cache_key(req.cache_identity()))  # type: ignore[union-attr]
    assert stored is not None and json.loads(json.loads(stored)["text"]) == {
        "title": "Rain",
        "score": 7,
    }
    # ... so asking the same again costs no provider call at all
    again = await gateway.complete(req)
    assert again.cached and again.value == resp.value
    assert openai_server.stats()["calls"] == 2


async def test_still_truncated_raises_and_caches_nothing(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    req = make_request(
        f'[[json:{{"summary": "{LONG}"}}]]', answer_model=Summary, max_tokens=2, retries=2
    )
    with pytest.raises(TruncatedAnswer):
        await gateway.complete(req)
    budgets = [r["max_tokens"] for r in openai_server.stats()["last_requests"]]
    assert budgets == [2, 4, 8]
    assert await _stored(gateway) == 0
    with pytest.raises(TruncatedAnswer):
        await gateway.complete(req)
    assert openai_server.stats()["calls"] == 6  # nothing came from a cache


async def test_invalid_answer_is_never_cached(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    req = make_request(
        '[[json:{"title": "Rain", "score": "lots"}]]', answer_model=Answer, retries=1
    )
    with pytest.raises(BadResponse, match="score"):
        await gateway.complete(req)
    assert openai_server.stats()["calls"] == 2
    assert await _stored(gateway) == 0
    with pytest.raises(BadResponse):
        await gateway.complete(req)
    assert openai_server.stats()["calls"] == 4


async def test_invalid_streamed_answer_restarts_then_fails(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    req = make_request('[[json:{"title": 5}]]', answer_model=Answer, retries=1)
    chunks = []
    with pytest.raises(BadResponse):
        async for c in gateway.stream(req):
            chunks.append(c)
    assert sum(c.restart for c in chunks) == 1
    assert openai_server.stats()["calls"] == 2
    assert await _stored(gateway) == 0


async def test_truncated_stream_asks_again_with_bigger_budget(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    req = make_request('[[json:{"title": "Rain", "score": 7}]]', answer_model=Answer, max_tokens=3)
    chunks = [c async for c in gateway.stream(req)]
    assert [c.restart for c in chunks].count(True) == 1
    assert chunks[-1].done and chunks[-1].partial == Answer(title="Rain", score=7)
    after_restart = chunks[[c.restart for c in chunks].index(True) + 1 :]
    assert "".join(c.content for c in after_restart) == chunks[-1].response.text  # type: ignore[union-attr]


def test_parse_answer_variants() -> None:
    kw = {"model": "m", "finish_reason": "stop"}
    assert parse_answer('{"title": "a", "score": 1}', Answer, **kw) == Answer(title="a", score=1)  # type: ignore[arg-type]
    assert parse_answer('```json\n{"title": "a", "score": 1}\n```', Answer, **kw) == Answer(
        title="a", score=1
    )  # type: ignore[arg-type]
    assert parse_answer('Sure! {"title": "a", "score": 1} hope that helps', Answer, **kw) == Answer(
        title="a", score=1
    )  # type: ignore[arg-type]
    with pytest.raises(BadResponse, match="score"):
        parse_answer('{"title": "a"}', Answer, **kw)  # type: ignore[arg-type]
    with pytest.raises(TruncatedAnswer):
        parse_answer('{"title": "a", "sco', Answer, model="m", finish_reason="length")
    with pytest.raises(BadResponse):
        parse_answer("no json at all", Answer, **kw)  # type: ignore[arg-type]


def test_parse_partial() -> None:
    assert parse_partial("") is None
    assert parse_partial("thinking...") is None
    assert parse_partial('{"title": "Ra') == {"title": "Ra"}
    assert parse_partial('```json\n{"title": "Rain", "score": 7') == {"title": "Rain", "score": 7}
