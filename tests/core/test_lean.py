"""``newsdesk._lean``: newsdesk's calls skip LiteLLM's success logging and the re-pricing of
unpriced models — still through ``litellm.acompletion``, with the same answers, usage and costs —
and LiteLLM is left alone as soon as anyone else could listen (a callback, per-request metadata)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from newsdesk import Gateway, ProviderUnavailable, Request, _lean
from newsdesk._backend import LiteLLMBackend, import_litellm
from tests.servers.plugin import OpenAIServerHandle

PRICED = "openai/gpt-4o-mini"


class Spy:
    """Counts what LiteLLM does per call: ``acompletion`` (and whether the shortcut was on
    inside it), the cost step and the async success logging."""

    def __init__(self) -> None:
        self.calls: list[bool] = []
        self.pricings = 0
        self.success_logs = 0


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Spy]:
    litellm = import_litellm()
    from litellm.litellm_core_utils.litellm_logging import Logging

    s = Spy()
    acompletion = litellm.acompletion
    pricing = litellm.response_cost_calculator
    success = Logging.async_success_handler

    async def counted_acompletion(*args: Any, **kwargs: Any) -> Any:
        s.calls.append(_lean._LEAN.get())
        return await acompletion(*args, **kwargs)

    def counted_pricing(*args: Any, **kwargs: Any) -> Any:
        s.pricings += 1
        return pricing(*args, **kwargs)

    async def counted_success(self: Any, *args: Any, **kwargs: Any) -> Any:
        s.success_logs += 1
        return await success(self, *args, **kwargs)

    monkeypatch.setattr(litellm, "acompletion", counted_acompletion)
    monkeypatch.setattr(litellm, "response_cost_calculator", counted_pricing)
    monkeypatch.setattr(Logging, "async_success_handler", counted_success)
    monkeypatch.setattr(_lean, "_UNPRICED", {})  # what earlier tests taught it is not this test's
    yield s


async def _settle(until: Callable[[], bool]) -> None:
    """LiteLLM logs on a background worker: wait (at most 10 s) for what the test expects."""
    deadline = time.monotonic() + 10.0
    for _ in range(1000):  # polled: LiteLLM's worker offers nothing to wait on
        if until() or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.02)


async def test_calls_go_through_litellm_with_the_same_usage_and_cost(
    spy: Spy, openai_server: OpenAIServerHandle, make_request: Callable[..., Request]
) -> None:
    litellm = import_litellm()
    backend = LiteLLMBackend()
    unpriced = [await backend.complete(make_request(f"unpriced {i}")) for i in range(3)]
    priced = [await backend.complete(make_request(f"priced {i}", model=PRICED)) for i in range(2)]
    assert spy.calls == [True] * 5  # every call went through litellm.acompletion, shortcut on
    assert openai_server.stats()["calls"] == 5
    for c in unpriced + priced:
        assert c.text and c.usage.prompt_tokens > 0 and c.usage.completion_tokens > 0
    assert all(c.cost is None for c in unpriced)
    for c in priced:  # priced by LiteLLM, as without the shortcut
        prompt, completion = litellm.cost_per_token(
            model=PRICED,
            prompt_tokens=c.usage.prompt_tokens,
            completion_tokens=c.usage.completion_tokens,
        )
        assert c.cost == pytest.approx(prompt + completion) and c.cost > 0
    # An unpriced model is priced once (it fails), then known; a priced one every call.
    assert spy.pricings == 1 + 2
    await asyncio.sleep(0.2)
    assert spy.success_logs == 0  # no one listens: no logging payload built


async def test_the_shortcut_stays_inside_newsdesk_calls(
    spy: Spy, openai_server: OpenAIServerHandle, make_request: Callable[..., Request]
) -> None:
    litellm = import_litellm()
    await LiteLLMBackend().complete(make_request("known unpriced now"))
    pricings = spy.pricings
    # Someone else's call in the same process: LiteLLM in full (logging, pricing attempt).
    direct = await litellm.acompletion(
        model="openai/test-model",
        messages=[{"role": "user", "content": "direct"}],
        api_base=openai_server.url,
        api_key="sk-test",
    )
    assert direct.choices[0].message.content
    assert spy.calls[-1] is False and spy.pricings > pricings
    await _settle(lambda: spy.success_logs >= 1)
    assert spy.success_logs >= 1
    assert not _lean._LEAN.get()


async def test_a_user_callback_still_gets_every_event(
    spy: Spy,
    monkeypatch: pytest.MonkeyPatch,
    openai_server: OpenAIServerHandle,
    make_request: Callable[..., Request],
) -> None:
    litellm = import_litellm()
    from litellm.integrations.custom_logger import CustomLogger

    class Recorder(CustomLogger):
        def __init__(self) -> None:
            super().__init__()
            self.successes: list[dict[str, Any]] = []
            self.failures: list[dict[str, Any]] = []

        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):  # type: ignore[no-untyped-def]
            self.successes.append(kwargs)

        async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):  # type: ignore[no-untyped-def]
            self.failures.append(kwargs)

    recorder = Recorder()
    plain: list[Any] = []  # the other style: a function in litellm.success_callback

    async def log_success(kwargs: Any, resp: Any, start: Any, end: Any) -> None:
        plain.append(resp)

    # LiteLLM moves callbacks between its lists on the first call: every list is this test's own.
    for name in _lean._HOOK_LISTS:
        monkeypatch.setattr(litellm, name, [])
    monkeypatch.setattr(litellm, "callbacks", [recorder])
    monkeypatch.setattr(litellm, "success_callback", [log_success])
    gw = Gateway(cache="off")
    unpriced = await gw.complete(make_request("logged"))
    priced = await gw.complete(make_request("logged and priced", model=PRICED))
    assert spy.calls == [False, False]  # LiteLLM left alone
    await _settle(lambda: len(recorder.successes) >= 2 and len(plain) >= 2)
    assert len(recorder.successes) == 2 and len(plain) == 2
    logged = {e["model"]: e["standard_logging_object"] for e in recorder.successes}
    assert logged["gpt-4o-mini"]["response_cost"] == pytest.approx(priced.cost)
    assert not logged["test-model"]["response_cost"] and unpriced.cost is None

    openai_server.fault("500", count=1)
    with pytest.raises(ProviderUnavailable):
        await LiteLLMBackend().complete(make_request("fails"))
    await _settle(lambda: len(recorder.failures) >= 1)
    assert len(recorder.failures) == 1


async def test_per_request_metadata_or_pricing_leaves_litellm_alone(
    spy: Spy, openai_server: OpenAIServerHandle, make_request: Callable[..., Request]
) -> None:
    backend = LiteLLMBackend()
    await backend.complete(make_request("tagged", extra={"metadata": {"run": "7"}}))
    custom = await backend.complete(
        make_request(
            "own price", extra={"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}
        )
    )
    assert spy.calls == [False, False]
    assert custom.cost == pytest.approx(
        custom.usage.prompt_tokens * 1e-6 + custom.usage.completion_tokens * 2e-6
    )


async def test_a_price_registered_later_is_used(
    openai_server: OpenAIServerHandle, make_request: Callable[..., Request]
) -> None:
    litellm = import_litellm()
    model = "openai/newsdesk-lean-priced-later"  # a name no other test uses: registered for good
    backend = LiteLLMBackend()
    assert (await backend.complete(make_request("before", model=model))).cost is None
    assert (await backend.complete(make_request("still unpriced", model=model))).cost is None
    litellm.register_model(
        {
            model: {
                "input_cost_per_token": 1e-6,
                "output_cost_per_token": 2e-6,
                "litellm_provider": "openai",
                "mode": "chat",
            }
        }
    )
    after = await backend.complete(make_request("after", model=model))
    assert after.cost is not None and after.cost > 0


def test_user_hooks_are_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    litellm = import_litellm()
    assert not _lean.user_hooks(litellm, {"model": "m", "messages": [], "timeout": 5})
    assert _lean.user_hooks(litellm, {"success_callback": ["langfuse"]})
    assert _lean.user_hooks(litellm, {"output_cost_per_token": 1.0})
    for name, value in (
        ("failure_callback", ["sentry"]),
        ("_async_success_callback", [object()]),
        ("max_budget", 10.0),
        ("cache", object()),
    ):
        with monkeypatch.context() as m:
            m.setattr(litellm, name, value)
            assert _lean.user_hooks(litellm, {})
