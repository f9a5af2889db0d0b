"""The embedded model (SmolLM2-135M through llama-cpp-python, as LiteLLM's ``local`` provider)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from newsdesk import ConfigError, Gateway, Request

pytestmark = pytest.mark.slow


class Verdict(BaseModel):
    topic: str = Field(max_length=24, description="a one- or two-word topic")
    positive: bool


async def test_short_completion() -> None:
    gw = Gateway(cache="memory")
    req = Request(
        model="local/smollm2",
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8,
        temperature=0,
    )
    resp = await gw.complete(req)
    assert resp.text.strip()
    assert resp.model == "local/smollm2"
    assert 0 < resp.usage.completion_tokens <= 8 and resp.usage.prompt_tokens > 0
    again = await gw.complete(req)
    if resp.finish_reason == "stop":  # an answer cut by max_tokens is (by design) not cached
        assert again.cached and again.text == resp.text


async def test_streamed_completion() -> None:
    gw = Gateway(cache="off")
    req = Request(
        model="local/smollm2",
        messages=[{"role": "user", "content": "Count: one, two,"}],
        max_tokens=6,
        temperature=0,
    )
    chunks = [c async for c in gw.stream(req)]
    assert len(chunks) >= 3
    assert "".join(c.content for c in chunks) == chunks[-1].response.text  # type: ignore[union-attr]


async def test_json_schema_answer_validates() -> None:
    gw = Gateway(cache="off")
    req = Request(
        model="local/smollm2",
        messages=[
            {
                "role": "user",
                "content": "Headline: 'City park reopens after repairs, families celebrate.' Give its topic and whether it is positive.",
            }
        ],
        answer_model=Verdict,
        max_tokens=48,
        temperature=0,
    )
    resp = await gw.complete(req)
    assert isinstance(resp.value, Verdict)
    assert Verdict.model_validate_json(resp.text) == resp.value


async def test_unknown_local_model_is_a_clear_error() -> None:
    gw = Gateway(cache="off")
    with pytest.raises(ConfigError, match="unknown local model"):
        await gw.complete(
            Request(
                model="local/no-such-model", messages=[{"role": "user", "content": "x"}], retries=0
            )
        )
