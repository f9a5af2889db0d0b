"""Provider failures: each becomes the right newsdesk error, retried (and counted) when it should be."""

from __future__ import annotations

import asyncio
import time

import pytest

from newsdesk import (
    BadResponse,
    Gateway,
    MissingAPIKeyError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    UnknownModelError,
)
from newsdesk._backend import check_model
from tests.servers.plugin import OpenAIServerHandle


async def test_500_then_success_is_retried(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    openai_server.fault("500", count=1)
    resp = await gateway.complete(make_request("retry me"))
    assert resp.text == "Echo: retry me"
    assert resp.attempts == 2
    assert gateway.stats.retries == 1 and gateway.stats.calls == 2
    assert gateway.stats.errors == {"ProviderUnavailable": 1}
    assert openai_server.stats()["calls"] == 2


async def test_500_every_time_gives_up_after_retries(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ProviderUnavailable) as info:
        await gateway.complete(make_request("[[status:500]] always", retries=2))
    assert info.value.status_code == 500
    assert openai_server.stats()["calls"] == 3
    assert gateway.stats.retries == 2


async def test_429_retry_after_is_honoured(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    openai_server.fault("429", count=1, retry_after=1.0)
    t0 = time.perf_counter()
    resp = await gateway.complete(make_request("patience"))
    waited = time.perf_counter() - t0
    assert resp.text == "Echo: patience" and resp.attempts == 2
    # the gateway's own backoff is capped at 0.2 s: only Retry-After explains a 1 s wait
    assert waited >= 1.0, waited
    assert waited < 5.0, waited


async def test_429_exhausted_raises_rate_limited(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    openai_server.fault("429", count=10, retry_after=0.1)
    with pytest.raises(RateLimited) as info:
        await gateway.complete(make_request("too many", retries=2))
    assert info.value.retry_after == pytest.approx(0.1)
    assert info.value.status_code == 429
    assert openai_server.stats()["calls"] == 3
    assert gateway.stats.retries == 2
    assert gateway.stats.errors == {"RateLimited": 3}


@pytest.mark.parametrize("stream", [False, True])
async def test_hang_times_out_within_request_timeout(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request, stream: bool
) -> None:  # type: ignore[no-untyped-def]
    req = make_request("[[hang]]", timeout=1.0, retries=0)
    t0 = time.perf_counter()
    with pytest.raises(ProviderTimeout):
        if stream:
            async for _ in gateway.stream(req):
                pass
        else:
            await gateway.complete(req)
    elapsed = time.perf_counter() - t0
    assert 0.9 <= elapsed < 3.5, elapsed
    idle = await asyncio.to_thread(openai_server.wait_idle, 5.0)
    assert idle["in_flight"] == 0  # the hung connection was closed


async def test_hang_is_retried(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    openai_server.fault("hang", count=1)
    resp = await gateway.complete(make_request("hang once", timeout=0.5, retries=1))
    assert resp.text == "Echo: hang once" and resp.attempts == 2
    assert gateway.stats.errors == {"ProviderTimeout": 1}


@pytest.mark.parametrize("stream", [False, True])
async def test_malformed_reply_is_bad_response(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request, stream: bool
) -> None:  # type: ignore[no-untyped-def]
    req = make_request("[[malformed]]", retries=0)
    with pytest.raises(BadResponse):
        if stream:
            async for _ in gateway.stream(req):
                pass
        else:
            await gateway.complete(req)


async def test_malformed_then_good_is_retried(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    openai_server.fault("malformed", count=1)
    resp = await gateway.complete(make_request("second time lucky", retries=1))
    assert resp.text == "Echo: second time lucky" and resp.attempts == 2
    assert gateway.stats.errors == {"BadResponse": 1}


async def test_midstream_cut_raises_and_is_not_cached(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    words = " ".join(f"w{i}" for i in range(20))
    req = make_request(f"[[reply:{words}]]")
    openai_server.fault("midstream", count=1)
    seen = ""
    with pytest.raises(ProviderError):
        async for chunk in gateway.stream(req):
            seen += chunk.content
    assert seen and seen != words  # part of the answer was shown, then the error
    assert openai_server.stats()["calls"] == 1  # a stream that has started is not retried
    resp = await gateway.complete(req)
    assert resp.text == words and not resp.cached
    assert openai_server.stats()["calls"] == 2
    again = await gateway.complete(req)
    assert again.cached and openai_server.stats()["calls"] == 2


async def test_midstream_cut_of_whole_reply_is_retried(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    openai_server.fault("midstream", count=1)
    resp = await gateway.complete(make_request("whole body please"))
    assert resp.text == "Echo: whole body please" and resp.attempts == 2


async def test_unknown_model(
    gateway: Gateway, make_request, openai_server: OpenAIServerHandle
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnknownModelError, match="unknown model"):
        await gateway.complete(make_request("hi", model="nosuchprovider/some-model", api_base=None))
    with pytest.raises(UnknownModelError):
        check_model("nosuchprovider/some-model")
    with pytest.raises(UnknownModelError):
        check_model("definitely-not-a-model-xyz")
    assert gateway.stats.retries == 0  # the caller's mistake is not retried


def test_check_model_missing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match="OPENAI_API_KEY"):
        check_model("openai/gpt-4o-mini")
    with pytest.raises(MissingAPIKeyError, match="ANTHROPIC_API_KEY"):
        check_model("anthropic/claude-3-5-sonnet-20240620")
    # a key, an explicit endpoint, or the embedded model: fine
    check_model("openai/gpt-4o-mini", api_key="sk-x")
    check_model("openai/gpt-4o-mini", api_base="http://127.0.0.1:1/v1")
    check_model("local/smollm2")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    check_model("openai/gpt-4o-mini")


async def test_rejected_key_is_missing_api_key_error(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MissingAPIKeyError):
        await gateway.complete(make_request("[[status:401]]"))
    assert openai_server.stats()["calls"] == 1  # not retried


async def test_connection_refused(gateway: Gateway, make_request, closed_port: int) -> None:  # type: ignore[no-untyped-def]
    req = make_request("anyone there?", api_base=f"http://127.0.0.1:{closed_port}/v1", retries=1)
    t0 = time.perf_counter()
    with pytest.raises(ProviderUnavailable):
        await gateway.complete(req)
    assert time.perf_counter() - t0 < 5
    assert gateway.stats.calls == 2 and gateway.stats.retries == 1
    assert gateway.stats.errors == {"ProviderUnavailable": 2}


# ---------------------------------------------------------------- fallbacks


async def test_fallback_answers_when_primary_fails(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    openai_server.fault("500", count=1)
    resp = await gateway.complete(
        make_request("fall back", retries=0, fallbacks=["openai/backup-model"])
    )
    assert resp.text == "Echo: fall back"
    assert resp.model == "openai/backup-model"
    by_model = openai_server.stats()["by_model"]
    assert by_model == {"test-model": 1, "backup-model": 1}


async def test_fallback_in_a_stream(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    openai_server.fault("503", count=1)
    chunks = [
        c
        async for c in gateway.stream(
            make_request("stream fall back", retries=0, fallbacks=["openai/backup-model"])
        )
    ]
    assert chunks[-1].response is not None and chunks[-1].response.model == "openai/backup-model"
    assert "".join(c.content for c in chunks) == "Echo: stream fall back"


async def test_every_model_failing_raises_the_last_error(
    openai_server: OpenAIServerHandle, gateway: Gateway, make_request
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ProviderUnavailable, match="backup-model"):
        await gateway.complete(
            make_request("[[status:500]]", retries=0, fallbacks=["openai/backup-model"])
        )
    assert openai_server.stats()["calls"] == 2


@pytest.mark.slow
async def test_fallback_from_unreachable_server_to_embedded_model(
    gateway: Gateway, make_request, closed_port: int
) -> None:  # type: ignore[no-untyped-def]
    req = make_request(
        "Say hello.",
        api_base=f"http://127.0.0.1:{closed_port}/v1",
        retries=0,
        fallbacks=["local/smollm2"],
        max_tokens=8,
    )
    resp = await gateway.complete(req)
    assert resp.model == "local/smollm2"
    assert resp.text.strip()


def test_fallback_on_another_provider_gets_neither_endpoint_nor_key() -> None:
    from newsdesk import Request
    from newsdesk._wrappers import FallbackBackend

    req = Request(
        model="openai/a",
        messages=[{"role": "user", "content": "x"}],
        api_base="http://h/v1",
        api_key="sk-openai",
        fallbacks=["openai/b", "anthropic/c"],
    )
    chain = FallbackBackend(None)._chain(req)  # type: ignore[arg-type]
    assert [r.model for r in chain] == ["openai/a", "openai/b", "anthropic/c"]
    assert chain[1].api_base == "http://h/v1" and chain[1].api_key is not None
    assert chain[2].api_base is None and chain[2].api_key is None
    assert all(r.fallbacks == [] for r in chain[1:])
