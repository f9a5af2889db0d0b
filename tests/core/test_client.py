"""The README shape (stream with a structured answer) and the sync client in odd places
(parity of every sync API with its async twin: test_parity.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import BaseModel, Field

import newsdesk._client
from newsdesk import Chunk, Gateway, LiteLLMClient, Request
from tests.core.conftest import KEY, MODEL
from tests.servers.plugin import OpenAIServerHandle


class Answer(BaseModel):
    title: str
    score: int


class Mood(BaseModel):
    mood: str = Field(max_length=20, description="one word")
    score: int = Field(ge=0, le=10)


@pytest.fixture
def fresh_default_gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``LiteLLMClient(req)`` without a gateway uses the process default: start from a new one."""
    monkeypatch.setattr(newsdesk._client, "_default_gateway", None)
    yield
    gw = newsdesk._client._default_gateway
    if gw is not None:
        gw.close()


def _check_structured_stream(chunks: list[Chunk], answer_model: type[BaseModel]) -> None:
    assert len(chunks) >= 3, chunks
    assert all(isinstance(c, Chunk) for c in chunks)
    final = chunks[-1]
    assert final.done and final.response is not None
    assert isinstance(final.partial, answer_model)
    assert isinstance(final.response.value, answer_model)
    body = [c for c in chunks if not c.done]
    text = "".join(c.content for c in body)
    assert text == final.response.text
    # partial grows: each dict has at least the keys of the one before, and it ends complete
    partials = [c.partial for c in body if c.partial is not None]
    assert partials, "no partial answers while streaming"
    for before, after in zip(partials, partials[1:], strict=False):
        assert isinstance(after, dict) and set(before) <= set(after)
    assert set(partials[-1]) == set(answer_model.model_fields)
    assert answer_model.model_validate(partials[-1]) == final.partial


def test_readme_snippet_against_test_server(
    openai_server: OpenAIServerHandle, fresh_default_gateway: None
) -> None:
    req = Request(
        model=MODEL,
        messages=[{"role": "user", "content": "Rate this headline"}],
        stream=True,
        answer_model=Answer,
        api_base=openai_server.url,
        api_key=KEY,
    )
    chunks = list(LiteLLMClient(req).stream_response())
    _check_structured_stream(chunks, Answer)
    assert openai_server.stats()["calls"] == 1
    sent = openai_server.last_request()
    assert sent["stream"] is True
    assert sent["response_format"]["type"] == "json_schema"


@pytest.mark.slow
def test_readme_snippet_against_embedded_model(fresh_default_gateway: None) -> None:
    req = Request(
        model="local/smollm2",
        messages=[
            {
                "role": "user",
                "content": "How does a sunny day feel? Answer with a mood word and a score.",
            }
        ],
        stream=True,
        answer_model=Mood,
        max_tokens=48,
        temperature=0,
    )
    chunks = list(LiteLLMClient(req).stream_response())
    restarts = [i for i, c in enumerate(chunks) if c.restart]
    _check_structured_stream(chunks[restarts[-1] + 1 :] if restarts else chunks, Mood)


def test_sync_client_works_inside_running_loop(
    openai_server: OpenAIServerHandle, make_request
) -> None:  # type: ignore[no-untyped-def]
    """The sync API goes through the portal thread, so it works even where a loop is running."""
    import asyncio

    req = make_request("from inside a loop")
    gw = Gateway(cache="off")

    async def inside() -> str:
        return LiteLLMClient(req, gw).response().text

    assert asyncio.run(inside()) == "Echo: from inside a loop"


def test_breaking_out_of_sync_stream_closes_it(
    openai_server: OpenAIServerHandle, make_request
) -> None:  # type: ignore[no-untyped-def]
    words = " ".join(f"w{i}" for i in range(200))
    req = make_request(f"[[chunk_delay:0.02]] [[reply:{words}]]", cache="off")
    it = LiteLLMClient(req, Gateway(cache="off")).stream_response()
    for i, _chunk in enumerate(it):
        if i == 3:
            break
    it.close()  # type: ignore[attr-defined]
    assert openai_server.wait_idle(5.0)["in_flight"] == 0


async def test_cost_and_usage_of_a_priced_model(
    openai_server: OpenAIServerHandle, make_request
) -> None:  # type: ignore[no-untyped-def]
    gw = Gateway(cache="memory")
    req = make_request("price me", model="openai/gpt-4o-mini")
    first = await gw.complete(req)
    assert first.usage.prompt_tokens > 0 and first.usage.completion_tokens > 0
    assert first.cost is not None and 0 < first.cost < 0.01
    streamed = [
        c async for c in gw.stream(make_request("price me too", model="openai/gpt-4o-mini"))
    ]
    assert streamed[-1].response is not None and (streamed[-1].response.cost or 0) > 0
    again = await gw.complete(req)
    assert again.cached and not again.cost  # a cache hit costs nothing
    unpriced = await gw.complete(make_request("no price list entry"))
    assert unpriced.cost is None
