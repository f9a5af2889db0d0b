"""``Gateway`` (the assembled stack: cache, limits, retries, fallbacks over LiteLLM),
``LiteLLMClient`` (one request, sync and async, whole or streamed) and batch runs."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from newsdesk._backend import Backend, LiteLLMBackend, Restart, aimport_litellm
from newsdesk._cache import CacheStore, open_cache
from newsdesk._concurrency import TaskBatch, aclose, aclosing, iterate_sync, run_sync
from newsdesk._context import fit_request
from newsdesk._exceptions import BadResponse, NewsdeskError, ProviderError, ProviderTimeout
from newsdesk._request import Request
from newsdesk._response import Chunk, Completion, Response
from newsdesk._structured import answer_value, parse_partial
from newsdesk._wrappers import (
    CacheBackend,
    CallInfo,
    CallStats,
    FallbackBackend,
    LimitBackend,
    Limits,
    RetryBackend,
    RetryPolicy,
    ValidateBackend,
    begin_call,
)

_DEFAULT = object()


def resolve_model(model: str) -> str:
    """``fast`` / ``strong`` are per-task aliases: cheap compact model for simple work, strong for hard."""
    if model == "fast":
        return os.environ.get("NEWSDESK_FAST_MODEL") or "local/smollm2"
    if model == "strong":
        return (
            os.environ.get("NEWSDESK_STRONG_MODEL")
            or os.environ.get("NEWSDESK_FAST_MODEL")
            or "local/smollm2"
        )
    return model


class Gateway:
    """The assembled call stack. Share one per process (or per app) so the cache, single-flight
    and limits see every request: ``Fallback(Cache(Validate(Limit(Retry(backend)))))``.

    ``cache``: a ``CacheStore``, or a spec string for ``open_cache`` ("off", "memory", a directory,
    ``redis://...``); by default memory + disk in the user cache directory. ``backend``: what
    answers (LiteLLM by default; ``newsdesk.testing.FunctionBackend`` for tests).

    ``async with Gateway(...) as gw:`` (or ``await gw.aclose()``) closes what it holds — Redis
    connections, the disk cache — when done; ``close()`` is the same for sync code.
    """

    def __init__(
        self,
        *,
        cache: CacheStore | str | None | object = _DEFAULT,
        limits: Limits | None = None,
        retry: RetryPolicy | None = None,
        backend: Backend | None = None,
    ) -> None:
        if cache is _DEFAULT:
            store = open_cache(None)
        elif isinstance(cache, str) or cache is None:
            store = open_cache(cache) if cache is not None else None
        else:
            store = cache  # type: ignore[assignment]
        self.store: CacheStore | None = store
        self.stats = CallStats()
        self.limits = limits or Limits()
        self.limiter = LimitBackend(
            RetryBackend(backend or LiteLLMBackend(), self.stats, retry), self.limits
        )
        self.stack: Backend = FallbackBackend(
            CacheBackend(ValidateBackend(self.limiter), store, self.stats)
        )

    def _prepare(self, request: Request) -> Request:
        model = resolve_model(request.model)
        if model != request.model:
            request = request.model_copy(update={"model": model})
        return fit_request(request)

    async def _aprepare(self, request: Request) -> Request:
        if not request.model.startswith("local/"):
            await aimport_litellm()  # the context-window lookup needs it; import off the loop
        return self._prepare(request)

    async def complete(self, request: Request) -> Response:
        """The whole answer. Structured answers that fail to validate (or were cut off by
        max_tokens) are asked again — with twice the token budget after a cut — up to ``retries``.
        With ``request.stream`` the provider is asked for a stream, assembled here: the timeout
        then covers each piece rather than the whole answer, so a long answer is not cut short."""
        if request.stream:
            async with aclosing(self.stream(request)) as chunks:
                async for chunk in chunks:
                    if chunk.response is not None:
                        return chunk.response
            raise BadResponse(
                f"{request.model}: the stream ended without an answer", model=request.model
            )
        request = await self._aprepare(request)
        info = begin_call()
        started = time.perf_counter()
        completion = await self.stack.complete(request)
        return _response(completion, answer_value(request, completion), started, info)

    async def stream(self, request: Request) -> AsyncIterator[Chunk]:
        """Text deltas as they arrive (``partial`` = the structured answer so far), then one final
        chunk with ``done=True`` and the ``Response``. ``restart=True``: the answer so far did not
        validate and is being asked again — drop its text."""
        request = await self._aprepare(request)
        info = begin_call()
        started = time.perf_counter()
        text = ""
        final: Completion | None = None
        # Closed at once when the consumer stops early: that releases the call.
        async with aclosing(self.stack.stream(request)) as items:
            async for item in items:
                if isinstance(item, Completion):
                    final = item
                elif isinstance(item, Restart):
                    text = ""
                    yield Chunk(restart=True)
                else:
                    text += item
                    partial = parse_partial(text) if request.answer_model is not None else None
                    yield Chunk(content=item, partial=partial)
        if final is None:
            raise BadResponse(
                f"{request.model}: the stream ended without an answer", model=request.model
            )
        value = answer_value(request, final)
        response = _response(final, value, started, info)
        yield Chunk(
            content="",
            partial=value if request.answer_model else None,
            done=True,
            response=response,
        )

    def map(self, requests: Iterable[Request], *, deadline: float | None = None) -> Batch:
        """Run many requests at once; iterate the ``Batch`` for ``Outcome``s in completion order."""
        return Batch(self, list(requests), deadline=deadline)

    async def gather(
        self, requests: Iterable[Request], *, deadline: float | None = None
    ) -> list[Outcome]:
        """Like ``map`` but returns every ``Outcome`` in input order."""
        return await self.map(requests, deadline=deadline).gather()

    async def aclose(self) -> None:
        """Close the stack and the cache store (Redis connections included)."""
        await aclose(self.stack)
        if self.store is not None:
            await aclose(self.store)

    def close(self) -> None:
        """``aclose`` for sync code: closes the cache store (a Redis connection that belongs to a
        running loop is closed on that loop, without waiting for it)."""
        if self.store is not None:
            self.store.close()

    async def __aenter__(self) -> Gateway:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _response(c: Completion, value: Any, started: float, info: CallInfo) -> Response:
    cached = info.cached
    return Response(
        value=value,
        text=c.text,
        model=c.model,
        usage=c.usage,
        cost=c.cost,
        latency=time.perf_counter() - started,
        cached=cached or c.cached,
        finish_reason=c.finish_reason,
        attempts=max(info.attempts, 0 if cached else 1),
    )


# ---------------------------------------------------------------- batches


@dataclass
class Outcome:
    """One request's result in a batch: ``response`` or ``error`` (never both), with its input index."""

    index: int
    request: Request
    response: Response | None = None
    error: NewsdeskError | None = None
    latency: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def value(self) -> Any:
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response.value


@dataclass
class BatchStats:
    count: int = 0
    ok: int = 0
    failed: int = 0
    wall: float = 0.0
    sum_latency: float = 0.0  # what running them one after another would roughly have cost
    cache_hits: int = 0
    cache_misses: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def saved(self) -> float:
        return max(0.0, self.sum_latency - self.wall)

    @property
    def average(self) -> float:
        return self.sum_latency / self.count if self.count else 0.0

    def add(self, outcome: Outcome) -> None:
        self.count += 1
        self.sum_latency += outcome.latency
        if outcome.response is not None:
            r = outcome.response
            self.ok += 1
            if r.cached:
                self.cache_hits += 1
            else:
                self.cache_misses += 1
                self.prompt_tokens += r.usage.prompt_tokens
                self.completion_tokens += r.usage.completion_tokens
                self.cost += r.cost or 0.0
            self.retries += max(0, r.attempts - 1)
        else:
            self.failed += 1
            name = type(outcome.error).__name__
            self.errors[name] = self.errors.get(name, 0) + 1


class Batch(TaskBatch[Request, Outcome]):
    """Async iterator over ``Outcome``s in completion order (``gather()``: input order). One
    failure never raises out of it; the deadline reports each request still running once, as
    ``ProviderTimeout``. Leaving the loop early (break, cancel) cancels every request still
    running and waits for them, so no task or connection is left behind.
    """

    def __init__(
        self, gateway: Gateway, requests: list[Request], *, deadline: float | None = None
    ) -> None:
        super().__init__(requests, deadline=deadline)
        self.gateway = gateway
        self.requests = self.items
        self.stats = BatchStats()

    async def _one(self, index: int, request: Request) -> Outcome:
        t0 = time.perf_counter()
        try:
            resp = await self.gateway.complete(request)
            return Outcome(index, request, response=resp, latency=time.perf_counter() - t0)
        except NewsdeskError as exc:
            return Outcome(index, request, error=exc, latency=time.perf_counter() - t0)
        except Exception as exc:  # a bug below must not take the batch down either
            err = ProviderError(
                f"{request.model}: unexpected {type(exc).__name__}: {exc}", model=request.model
            )
            return Outcome(index, request, error=err, latency=time.perf_counter() - t0)

    def _missing(self, index: int, request: Request, reason: BaseException) -> Outcome:
        if isinstance(reason, TimeoutError):
            why = f"the batch deadline of {self.deadline:g} s passed"
        else:
            why = "the request was cancelled"
        err = ProviderTimeout(f"{request.model}: {why}", model=request.model)
        return Outcome(index, request, error=err, latency=self._elapsed())

    def _record(self, outcome: Outcome) -> None:
        self.stats.add(outcome)
        self.stats.wall = self.wall

    def _finish(self) -> None:
        self.stats.wall = self.wall


# ---------------------------------------------------------------- the single-request client

_default_gateway: Gateway | None = None


def default_gateway() -> Gateway:
    """The process-wide gateway used when none is given (memory + disk cache, default limits)."""
    global _default_gateway
    if _default_gateway is None:
        _default_gateway = Gateway()
    return _default_gateway


class LiteLLMClient:
    """One request, four ways: ``response()``, ``await aresponse()``, ``stream_response()``,
    ``astream_response()``. The sync ones are thin wrappers over the async ones."""

    def __init__(self, request: Request, gateway: Gateway | None = None) -> None:
        self.request = request
        self.gateway = gateway or default_gateway()

    async def aresponse(self) -> Response:
        return await self.gateway.complete(self.request)

    def astream_response(self) -> AsyncIterator[Chunk]:
        return self.gateway.stream(self.request)

    def response(self) -> Response:
        return run_sync(self.aresponse())

    def stream_response(self) -> Iterator[Chunk]:
        return iterate_sync(self.astream_response())
