"""A backend answered by a function, for tests and for trying newsdesk without a provider
(httpx's ``MockTransport``, pydantic-ai's ``FunctionModel``)::

    from newsdesk import Gateway, Request
    from newsdesk.testing import FunctionBackend

    def answer(request: Request) -> str:
        return "Echo: " + request.messages[-1].content

    async with Gateway(backend=FunctionBackend(answer), cache="memory") as gateway:
        response = await gateway.complete(Request.prompt("hi"))
        assert response.value == "Echo: hi"

The handler gets each ``Request`` (after the wrappers: resolved model, trimmed messages, a
fallback's model) and returns — or, if it is async, awaits to — the answer:

* ``str``: the text (streamed in word-sized pieces);
* a pydantic model instance: its JSON (for requests with an ``answer_model``);
* a list of ``str``: the stream's pieces, as given;
* a ``Completion``: full control of ``finish_reason``, ``usage`` and ``cost``.

To fail like a provider, raise a newsdesk error (``RateLimited``, ``ProviderUnavailable``...): the
retry and fallback wrappers treat it as they treat a real one. ``stream_handler`` (optional)
gives a stream's pieces itself, as an (async) iterable of ``str`` — to test a slow or broken
stream. Every request is kept in ``backend.requests``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeAlias

from pydantic import BaseModel

from newsdesk._backend import StreamItem
from newsdesk._concurrency import aclosing
from newsdesk._request import Request
from newsdesk._response import Completion, Usage

__all__ = ["FunctionBackend", "Reply", "echo"]

Reply: TypeAlias = "str | BaseModel | Sequence[str] | Completion"
Handler: TypeAlias = "Callable[[Request], Reply | Awaitable[Reply]]"
StreamHandler: TypeAlias = "Callable[[Request], Iterable[str] | AsyncIterable[str]]"

_PIECE = re.compile(r"\s*\S+\s*|\s+")


def echo(request: Request) -> str:
    """A handler that answers ``Echo: <the last message>``."""
    return f"Echo: {request.messages[-1].content}"


def _tokens(text: str) -> int:
    return len(text.split())


class FunctionBackend:
    """A ``Backend`` whose answers come from ``handler(request)``; see the module docstring."""

    def __init__(
        self, handler: Handler = echo, *, stream_handler: StreamHandler | None = None
    ) -> None:
        self.handler = handler
        self.stream_handler = stream_handler
        self.requests: list[Request] = []

    def _completion(self, request: Request, text: str, finish_reason: str = "stop") -> Completion:
        prompt = sum(_tokens(m.content) for m in request.messages)
        return Completion(
            text=text,
            model=request.model,
            finish_reason=finish_reason,
            usage=Usage(prompt_tokens=prompt, completion_tokens=_tokens(text)),
        )

    async def _reply(self, request: Request) -> tuple[list[str], Completion]:
        """The stream's pieces and the completion they add up to."""
        self.requests.append(request)
        reply: Any = self.handler(request)
        if inspect.isawaitable(reply):
            reply = await reply
        if isinstance(reply, Completion):
            return _PIECE.findall(reply.text), reply
        if isinstance(reply, BaseModel):
            reply = reply.model_dump_json()
        if isinstance(reply, str):
            return _PIECE.findall(reply), self._completion(request, reply)
        pieces = [str(p) for p in reply]
        return pieces, self._completion(request, "".join(pieces))

    async def complete(self, request: Request) -> Completion:
        _, completion = await self._reply(request)
        return completion

    async def stream(self, request: Request) -> AsyncIterator[StreamItem]:
        if self.stream_handler is None:
            pieces, completion = await self._reply(request)
            for piece in pieces:
                yield piece
            yield completion
            return
        self.requests.append(request)
        given = self.stream_handler(request)
        parts: list[str] = []
        if isinstance(given, AsyncIterable):
            async with aclosing(given):  # a reader that stops early closes the handler's stream
                async for piece in given:
                    parts.append(piece)
                    yield piece
        else:
            for piece in given:
                parts.append(piece)
                yield piece
        yield self._completion(request, "".join(parts))
