"""Fitting a conversation into the model's context window instead of failing."""

from __future__ import annotations

import pytest

from newsdesk import ConfigError, Gateway, Message, Request
from newsdesk._context import LOCAL_CONTEXT, _estimate, context_window, fit_request, trim_messages


def m(role: str, text: str) -> Message:
    return Message(role=role, content=text)  # type: ignore[arg-type]


def total(msgs: list[Message]) -> int:
    return sum(_estimate(x.content) for x in msgs)


def test_nothing_to_trim() -> None:
    msgs = [m("system", "be brief"), m("user", "hi")]
    assert trim_messages(msgs, 1000) == msgs


def test_drops_oldest_turns_first_and_keeps_system_and_last() -> None:
    msgs = [m("system", "SYSTEM")] + [
        m("user" if i % 2 == 0 else "assistant", f"turn {i} " + "x" * 300) for i in range(10)
    ]
    msgs.append(m("user", "the question"))
    out = trim_messages(msgs, 400)
    assert out[0].content == "SYSTEM"
    assert out[-1].content == "the question"
    assert total(out) <= 400
    kept = [x.content.split()[1] for x in out[1:-1]]
    assert kept == sorted(kept, key=int) and (not kept or kept[-1] == "9")  # the newest survive


def test_shortens_a_message_that_alone_is_too_long() -> None:
    msgs = [m("system", "S"), m("user", "y" * 10_000)]
    out = trim_messages(msgs, 500)
    assert total(out) <= 500
    assert out[0].content == "S" and "[…]" in out[1].content
    assert len(out) == 2


def test_a_long_last_message_keeps_its_end_where_the_question_is() -> None:
    text = "pasted " * 3000 + "So what is the capital of Norland?"
    out = trim_messages([m("system", "S"), m("user", text)], 500)
    assert total(out) <= 500
    assert out[1].content.endswith("So what is the capital of Norland?")
    assert out[1].content.startswith("pasted") and "[…]" in out[1].content


def test_context_window_lookup() -> None:
    assert context_window("local/smollm2") == LOCAL_CONTEXT
    assert context_window("openai/gpt-4o-mini") == 128_000
    assert context_window("openai/no-such-model-here") is None


def test_fit_request_only_trims_when_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    short = Request(model="local/smollm2", messages=[{"role": "user", "content": "hi"}])
    assert fit_request(short) is short
    long_msgs = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": "word " * 400} for i in range(20)
    ]
    long = Request(
        model="local/smollm2",
        messages=[*long_msgs, {"role": "user", "content": "last"}],
        max_tokens=8,
    )
    fitted = fit_request(long)
    assert fitted.messages[-1].content == "last"
    assert total(fitted.messages) <= LOCAL_CONTEXT - 8 - 16
    unknown = Request(model="openai/no-such-model-here", messages=long.messages)
    assert fit_request(unknown) is unknown  # no known window: left to the provider
    monkeypatch.setenv("NEWSDESK_NO_TRIM", "1")
    assert fit_request(long) is long


def test_context_overflow_from_llama_cpp_is_a_config_error() -> None:
    import litellm

    from newsdesk._backend import _translate

    exc = litellm.exceptions.APIConnectionError(
        message="Requested tokens (10162) exceed context window of 2048",
        llm_provider="local",
        model="local/smollm2",
    )
    err = _translate(exc, "local/smollm2")
    assert isinstance(err, ConfigError) and "context window" in str(err)


@pytest.mark.slow
async def test_over_long_conversation_to_embedded_model_is_trimmed() -> None:
    history: list[dict[str, str]] = []
    for i in range(24):
        history.append(
            {"role": "user", "content": f"Question {i}: " + "tell me more about the weather " * 40}
        )
        history.append({"role": "assistant", "content": "It is sunny. " * 60})
    history.append({"role": "user", "content": "Say hello."})
    # A big answer budget leaves ~500 tokens for the prompt (quick to evaluate on a small CPU);
    # the stop sequence keeps the answer itself short.
    req = Request(
        model="local/smollm2",
        messages=history,
        max_tokens=1536,
        temperature=0,
        extra={"stop": ["\n", "."]},
    )
    assert total(req.messages) > 4 * LOCAL_CONTEXT  # far beyond the 2048-token window
    gw = Gateway(cache="off")
    resp = await gw.complete(req)
    assert resp.text.strip()
    assert 0 < resp.usage.prompt_tokens <= LOCAL_CONTEXT - 1536
