"""Chat with a message longer than the model's context: the question at its end reaches the
model, and the reply says the message was shortened."""

from __future__ import annotations

import asyncio
from typing import Any

from newsdesk import Gateway
from newsdesk.testing import FunctionBackend
from newsdesk.web._app import WAITING, _token_cap, chat_reply


def test_a_long_message_keeps_its_question_and_says_it_was_shortened() -> None:
    backend = FunctionBackend(lambda r: "Echo: " + r.messages[-1].content[-40:])
    question = "Which of these is about the central bank?"
    text = "Pasted article text. " * 1000 + question  # ~21,000 characters

    async def main() -> list[list[dict[str, Any]]]:
        gw = Gateway(backend=backend, cache="off")
        try:
            return [
                t async for t in chat_reply(gw, text, [], model="local/smollm2", max_tokens=4096)
            ]
        finally:
            await gw.aclose()

    updates = asyncio.run(main())
    assert updates[0][-1]["content"] == WAITING  # shown before the first token
    sent = backend.requests[-1]
    assert sent.messages[-1].content.endswith(question)
    assert sent.max_tokens is not None and sent.max_tokens <= 2048 - 256
    final = updates[-1][-1]["content"]
    assert final.startswith("Echo:") and question[-20:] in final
    assert "shortened" in final
    assert _token_cap("local/smollm2") == 2048


def test_model_errors_read_as_one_sentence_without_object_dumps() -> None:
    from newsdesk._backend import _first_line

    raw = (
        "litellm.APIConnectionError: OpenAIException - Cannot connect to host "
        "api.example.com:443 ssl:<ssl.SSLContext object at 0x7f12ab34> [Name or service not known]"
    )
    assert _first_line(Exception(raw)) == (
        "Cannot connect to host api.example.com:443 [Name or service not known]"
    )
