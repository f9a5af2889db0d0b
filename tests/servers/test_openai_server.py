"""Tests of the fake OpenAI-compatible server itself, talking plain HTTP with httpx.

Everything else in the suite trusts this server to behave like a provider (and to misbehave
exactly as scripted), so its wire format, faults, directives and counters are pinned down here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import json
import time
from decimal import Decimal
from typing import Annotated, Any, Literal

import httpx
import pytest
from pydantic import BaseModel, Field, TypeAdapter

from tests.servers.plugin import OpenAIServerHandle


def chat(
    server: OpenAIServerHandle,
    content: str = "hello world",
    *,
    timeout: float = 10.0,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> httpx.Response:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], **extra}
    return httpx.post(
        f"{server.url}/chat/completions",
        json=body,
        timeout=timeout,
        headers=headers,
        trust_env=False,
    )


def reply_text(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    content: str = response.json()["choices"][0]["message"]["content"]
    return content


def stream_events(server: OpenAIServerHandle, content: str, **extra: Any) -> list[Any]:
    """Stream a completion; return parsed SSE data payloads ("[DONE]" kept as a string)."""
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": content}],
        "stream": True,
        **extra,
    }
    events: list[Any] = []
    with httpx.stream(
        "POST", f"{server.url}/chat/completions", json=body, timeout=10, trust_env=False
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line:
                continue
            assert line.startswith("data: ")
            data = line[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


# ------------------------------------------------------------------------------------------------
# Basic wire format
# ------------------------------------------------------------------------------------------------


def test_models_lists_a_few_ids(openai_server: OpenAIServerHandle) -> None:
    response = httpx.get(f"{openai_server.url}/models", trust_env=False)
    assert response.status_code == 200
    ids = [m["id"] for m in response.json()["data"]]
    assert "gpt-4o-mini" in ids and len(ids) >= 3


def test_non_streaming_echo(openai_server: OpenAIServerHandle) -> None:
    response = chat(
        openai_server,
        "hello there world",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello there world"},
        ],
    )
    data = response.json()
    assert data["object"] == "chat.completion"
    assert data["id"] and isinstance(data["created"], int) and data["model"] == "gpt-4o-mini"
    choice = data["choices"][0]
    assert choice["index"] == 0
    assert choice["message"] == {"role": "assistant", "content": "Echo: hello there world"}
    assert choice["finish_reason"] == "stop"
    assert data["usage"] == {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}


def test_content_parts_are_flattened(openai_server: OpenAIServerHandle) -> None:
    parts = [{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}]
    response = chat(openai_server, messages=[{"role": "user", "content": parts}])
    assert reply_text(response) == "Echo: part one part two"


def test_bad_requests_get_openai_errors(openai_server: OpenAIServerHandle) -> None:
    bad = httpx.post(f"{openai_server.url}/chat/completions", content=b"{nope", trust_env=False)
    assert bad.status_code == 400 and "error" in bad.json()
    missing = httpx.post(
        f"{openai_server.url}/chat/completions", json={"model": "x"}, trust_env=False
    )
    assert missing.status_code == 400 and missing.json()["error"]["type"] == "invalid_request_error"


def test_streaming_one_word_per_chunk(openai_server: OpenAIServerHandle) -> None:
    events = stream_events(openai_server, "alpha beta gamma")
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk"
        assert {"id", "created", "model", "choices"} <= chunk.keys()
    content_chunks, final = chunks[:-1], chunks[-1]
    deltas = [c["choices"][0]["delta"] for c in content_chunks]
    assert deltas[0]["role"] == "assistant"
    assert [d["content"] for d in deltas] == ["Echo: ", "alpha ", "beta ", "gamma"]
    assert all(c["choices"][0]["finish_reason"] is None for c in content_chunks)
    assert final["choices"][0]["finish_reason"] == "stop"
    assert "usage" not in final  # include_usage was not requested
    assert len({c["id"] for c in chunks}) == 1


def test_streaming_usage_chunk(openai_server: OpenAIServerHandle) -> None:
    events = stream_events(openai_server, "one two", stream_options={"include_usage": True})
    assert events[-1] == "[DONE]"
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    assert events[-3]["choices"][0]["finish_reason"] == "stop"


def test_max_tokens_truncates(openai_server: OpenAIServerHandle) -> None:
    response = chat(openai_server, "a b c d e f", max_tokens=3)
    data = response.json()
    assert data["choices"][0]["message"]["content"] == "Echo: a b"
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 3

    response = chat(openai_server, "a b c d e f", max_completion_tokens=2)
    assert response.json()["choices"][0]["message"]["content"] == "Echo: a"

    events = stream_events(
        openai_server, "a b c d e f", max_tokens=2, stream_options={"include_usage": True}
    )
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-3])
    assert text == "Echo: a"
    assert events[-3]["choices"][0]["finish_reason"] == "length"
    assert events[-2]["usage"]["completion_tokens"] == 2

    # Not truncated when it fits exactly.
    response = chat(openai_server, "a b", max_tokens=3)
    assert response.json()["choices"][0]["finish_reason"] == "stop"


# ------------------------------------------------------------------------------------------------
# Structured output
# ------------------------------------------------------------------------------------------------


class Sentiment(enum.Enum):
    positive = "positive"
    neutral = "neutral"
    negative = "negative"


class Entity(BaseModel):
    name: Annotated[str, Field(min_length=2, max_length=12)]
    kind: Literal["person", "org", "place"]
    salience: Annotated[float, Field(ge=0.0, le=1.0)]


class Tree(BaseModel):
    label: str
    children: list[Tree] = []
    parent: Tree | None = None


class Article(BaseModel):
    title: Annotated[str, Field(max_length=40)]
    sentiment: Sentiment
    score: Annotated[int, Field(gt=-5, lt=5)]
    confidence: Annotated[float, Field(gt=0, lt=1)]
    rating: Annotated[int, Field(ge=10, le=100, multiple_of=5)]
    is_opinion: bool
    published: dt.datetime
    day: dt.date
    tags: Annotated[list[str], Field(min_length=2, max_length=3)]
    keywords: Annotated[set[str], Field(min_length=1)]
    entities: list[Entity]
    counts: dict[str, int]
    pair: tuple[int, str]
    summary: str | None = None
    lang: Literal["en"] = "en"
    tree: Tree
    url: Annotated[str, Field(json_schema_extra={"format": "uri"})]


def json_schema_format(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {
            "name": model.__name__,
            "schema": model.model_json_schema(),
            "strict": True,
        },
    }


class Cat(BaseModel):
    pet: Literal["cat"]
    lives: Annotated[int, Field(ge=1, le=9)]


class Dog(BaseModel):
    pet: Literal["dog"]
    good: bool


class Owner(BaseModel):
    pets: Annotated[list[Annotated[Cat | Dog, Field(discriminator="pet")]], Field(min_length=1)]
    budget: Decimal
    nickname: Annotated[str, Field(min_length=30)]


@pytest.mark.parametrize("target", [Sentiment, Entity, Tree, Article, Owner, list[Entity]], ids=str)
def test_json_schema_output_validates(openai_server: OpenAIServerHandle, target: Any) -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(target)
    fmt = {"type": "json_schema", "json_schema": {"name": "out", "schema": adapter.json_schema()}}
    for prompt in ("Markets rallied in Paris today", "Storm hits the coast", "x", ""):
        adapter.validate_json(reply_text(chat(openai_server, prompt, response_format=fmt)))


def test_json_schema_output_is_deterministic_and_prompt_dependent(
    openai_server: OpenAIServerHandle,
) -> None:
    fmt = json_schema_format(Article)
    first = reply_text(chat(openai_server, "Markets rallied in Paris today", response_format=fmt))
    again = reply_text(chat(openai_server, "Markets rallied in Paris today", response_format=fmt))
    assert first == again
    assert any(w in Article.model_validate_json(first).title for w in ("Markets", "Paris", "today"))

    sentiments = {
        Article.model_validate_json(
            reply_text(chat(openai_server, f"headline number {i}", response_format=fmt))
        ).sentiment
        for i in range(12)
    }
    assert len(sentiments) >= 2


def test_json_schema_output_truncated_by_max_tokens(openai_server: OpenAIServerHandle) -> None:
    response = chat(openai_server, "hi", response_format=json_schema_format(Article), max_tokens=5)
    data = response.json()
    assert data["choices"][0]["finish_reason"] == "length"
    with pytest.raises(json.JSONDecodeError):
        json.loads(data["choices"][0]["message"]["content"])


def test_json_object_output(openai_server: OpenAIServerHandle) -> None:
    text = reply_text(chat(openai_server, "give json", response_format={"type": "json_object"}))
    assert isinstance(json.loads(text), dict)


# ------------------------------------------------------------------------------------------------
# Directives
# ------------------------------------------------------------------------------------------------


def test_reply_and_json_directives(openai_server: OpenAIServerHandle) -> None:
    assert reply_text(chat(openai_server, "ignored [[reply:exactly this]] too")) == "exactly this"
    doc = '{"a": [[1, 2], [3]], "b": {"c": "]]"}}'
    text = reply_text(
        chat(openai_server, f"ignored [[json:{doc}]]", response_format={"type": "json_object"})
    )
    assert text == doc and json.loads(text)["a"] == [[1, 2], [3]]
    # Directives are removed from the echo.
    assert reply_text(chat(openai_server, "keep [[latency:0]] this")) == "Echo: keep this"


def test_status_directives(openai_server: OpenAIServerHandle) -> None:
    for status in (500, 503, 429, 400):
        response = chat(openai_server, f"x [[status:{status}]]")
        assert response.status_code == status
        assert "message" in response.json()["error"]
    response = chat(openai_server, "x [[status:429]] [[retry_after:2]]")
    assert response.status_code == 429 and response.headers["retry-after"] == "2"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"


def test_fault_directives_do_not_consume_scripted_faults(
    openai_server: OpenAIServerHandle,
) -> None:
    openai_server.fault("503")
    assert chat(openai_server, "x [[status:500]]").status_code == 500
    assert chat(openai_server, "x [[reply:hi]]").status_code == 503
    assert reply_text(chat(openai_server, "x [[reply:hi]]")) == "hi"


def test_malformed_and_hang_directives(openai_server: OpenAIServerHandle) -> None:
    response = chat(openai_server, "x [[malformed]]")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()
    with pytest.raises(httpx.ReadTimeout):
        chat(openai_server, "x [[hang]]", timeout=0.3)
    assert openai_server.wait_idle()["in_flight"] == 0


def test_latency_directive_overrides_global(openai_server: OpenAIServerHandle) -> None:
    openai_server.control(latency=2.0)
    start = time.perf_counter()
    assert reply_text(chat(openai_server, "quick [[latency:0.05]]")) == "Echo: quick"
    assert time.perf_counter() - start < 1.0


# ------------------------------------------------------------------------------------------------
# Scripted faults
# ------------------------------------------------------------------------------------------------


def test_scripted_faults_in_order_with_counts(openai_server: OpenAIServerHandle) -> None:
    openai_server.control(
        faults=[{"kind": "500", "count": 2}, {"kind": "429", "retry_after": 1.5}, {"kind": "503"}]
    )
    statuses = [chat(openai_server).status_code for _ in range(5)]
    assert statuses == [500, 500, 429, 503, 200]


def test_fault_429_retry_after_header(openai_server: OpenAIServerHandle) -> None:
    openai_server.fault("429", retry_after=3)
    openai_server.fault("429")
    first, second = chat(openai_server), chat(openai_server)
    assert first.status_code == 429 and first.headers["retry-after"] == "3"
    assert first.json()["error"]["type"] == "requests"
    assert second.status_code == 429 and "retry-after" not in second.headers


def test_fault_500_and_503_bodies(openai_server: OpenAIServerHandle) -> None:
    openai_server.control(faults=[{"kind": "500"}, {"kind": "503"}])
    for expected in (500, 503):
        response = chat(openai_server)
        assert response.status_code == expected
        assert response.json()["error"]["type"] == "server_error"


def test_fault_malformed(openai_server: OpenAIServerHandle) -> None:
    openai_server.fault("malformed", count=2)
    response = chat(openai_server)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}
    streamed = httpx.post(f"{openai_server.url}/chat/completions", json=body, trust_env=False)
    assert streamed.status_code == 200
    first_data = streamed.text.split("\n")[0].removeprefix("data: ")
    with pytest.raises(json.JSONDecodeError):
        json.loads(first_data)


def test_fault_hang_ends_when_client_gives_up(openai_server: OpenAIServerHandle) -> None:
    openai_server.fault("hang")
    start = time.perf_counter()
    with pytest.raises(httpx.ReadTimeout):
        chat(openai_server, timeout=0.3)
    assert time.perf_counter() - start < 2
    stats = openai_server.wait_idle()
    assert stats["in_flight"] == 0 and stats["calls"] == 1 and stats["completed"] == 0
    assert chat(openai_server).status_code == 200  # the hang was consumed


def test_fault_midstream_non_streaming(openai_server: OpenAIServerHandle) -> None:
    openai_server.fault("midstream")
    with pytest.raises(httpx.RemoteProtocolError):
        chat(openai_server)
    assert chat(openai_server).status_code == 200


def test_fault_midstream_streaming(openai_server: OpenAIServerHandle) -> None:
    openai_server.fault("midstream")
    body = {"model": "m", "messages": [{"role": "user", "content": "a b c d e"}], "stream": True}
    received: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):  # noqa: PT012
        with httpx.stream(
            "POST", f"{openai_server.url}/chat/completions", json=body, trust_env=False
        ) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line:
                    received.append(line)
    assert len(received) == 2 and "[DONE]" not in received
    assert openai_server.wait_idle()["completed"] == 0


def test_fault_empty(openai_server: OpenAIServerHandle) -> None:
    openai_server.fault("empty", count=2)
    data = chat(openai_server).json()
    assert data["choices"][0]["message"]["content"] == ""
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["usage"]["completion_tokens"] == 0
    events = stream_events(openai_server, "x")
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1]) == ""
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


def test_control_rejects_unknown_fault_kinds(openai_server: OpenAIServerHandle) -> None:
    with pytest.raises(httpx.HTTPStatusError):
        openai_server.control(faults=[{"kind": "explode"}])
    with pytest.raises(httpx.HTTPStatusError):
        openai_server.control(latncy=1)
    settings = httpx.get(f"{openai_server.base_url}/_control", trust_env=False).json()["settings"]
    assert settings["faults"] == []


# ------------------------------------------------------------------------------------------------
# Stats, latency, concurrency
# ------------------------------------------------------------------------------------------------


def test_stats_and_reset(openai_server: OpenAIServerHandle) -> None:
    openai_server.fault("500")
    chat(openai_server, headers={"Authorization": "Bearer sk-secret-123"})
    chat(openai_server, model="other-model")
    stream_events(openai_server, "streamed")
    stats = openai_server.stats()
    assert stats["calls"] == 3 and stats["completed"] == 2
    assert stats["by_model"] == {"gpt-4o-mini": 2, "other-model": 1}
    assert stats["faults_served"] == {"500": 1}
    first = stats["last_requests"][0]
    assert first["_auth_present"] is True
    assert first["_auth_sha256"] == OpenAIServerHandle.auth_sha256("sk-secret-123")
    assert first["_api_key_sha256"] == OpenAIServerHandle.key_sha256("sk-secret-123")
    assert "sk-secret-123" not in json.dumps(stats)
    assert stats["last_requests"][1]["_auth_present"] is False
    assert stats["last_requests"][1]["model"] == "other-model"

    openai_server.control(latency=1, chunk_delay=1, faults=[{"kind": "500"}])
    openai_server.reset()
    stats = openai_server.stats()
    assert stats["calls"] == 0 and stats["last_requests"] == [] and stats["by_model"] == {}
    assert chat(openai_server).status_code == 200  # fault queue cleared, latency back to 0


def test_last_requests_keeps_the_newest(openai_server: OpenAIServerHandle) -> None:
    from tests.servers.openai_server import LAST_REQUESTS_KEPT

    with httpx.Client(base_url=openai_server.url, trust_env=False) as client:
        for i in range(LAST_REQUESTS_KEPT + 5):
            client.post(
                "/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": f"n{i}"}]},
            )
    last = openai_server.stats()["last_requests"]
    assert len(last) == LAST_REQUESTS_KEPT
    assert last[0]["messages"][0]["content"] == "n5"
    assert last[-1]["messages"][0]["content"] == f"n{LAST_REQUESTS_KEPT + 4}"


def test_global_latency_and_chunk_delay(openai_server: OpenAIServerHandle) -> None:
    openai_server.control(latency=0.2)
    start = time.perf_counter()
    chat(openai_server)
    assert time.perf_counter() - start >= 0.2
    openai_server.control(latency=0, chunk_delay=0.05)
    start = time.perf_counter()
    stream_events(openai_server, "a b c")  # 4 content chunks + final + [DONE]
    assert time.perf_counter() - start >= 0.25


async def test_concurrency_counter(openai_server: OpenAIServerHandle) -> None:
    """500 requests held open together: the server must accept and count all of them."""
    n, per_client = 500, 25
    openai_server.control(latency=0.5)
    # Several small pools: one httpx pool with 500 connections is itself slow (client-side).
    clients = [
        httpx.AsyncClient(
            base_url=openai_server.url,
            limits=httpx.Limits(max_connections=per_client),
            timeout=30,
            trust_env=False,
        )
        for _ in range(n // per_client)
    ]

    async def one(i: int) -> str:
        body = {"model": "m", "messages": [{"role": "user", "content": f"req {i}"}]}
        response = await clients[i % len(clients)].post("/chat/completions", json=body)
        content: str = response.json()["choices"][0]["message"]["content"]
        return content

    try:
        start = time.perf_counter()
        replies = await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.perf_counter() - start
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))
    assert replies == [f"Echo: req {i}" for i in range(n)]
    assert elapsed < 6  # ~1 s when idle: the 0.5 s latencies overlap
    stats = openai_server.stats()
    assert stats["max_in_flight"] == n
    assert stats["in_flight"] == 0 and stats["calls"] == n and stats["completed"] == n
