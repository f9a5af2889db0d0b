"""``Gateway`` (the assembled stack: cache, limits, retries, fallbacks over LiteLLM),
``LiteLLMClient`` (one request, sync and async, whole or streamed) and batch runs."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from newsdesk._backend import Backend, LiteLLMBackend, aimport_litellm
from newsdesk._cache import CacheStore, open_cache
from newsdesk._context import fit_request
from newsdesk._exceptions import BadResponse, NewsdeskError, ProviderError, ProviderTimeout
from newsdesk._request import Request
from newsdesk._response import Chunk, Completion, Response
from newsdesk._structured import parse_answer, parse_partial
from newsdesk._wrappers import (
    CacheBackend,
    CallStats,
    FallbackBackend,
    LimitBackend,
    Limits,
    RetryBackend,
    RetryPolicy,
    _aclose,
    begin_call,
)

_DEFAULT = object()


def resolve_model(model: str) -> str:
    """``fast`` / ``strong`` are per-task aliases: cheap compact model for simple work, strong for hard."""
    if model == "fast":
        return os.environ.get("NEWSDESK_FAST_MODEL") or "local/smollm2"
    if model == "strong":
        return os.environ.get("NEWSDESK_STRONG_MODEL") or os.environ.get("NEWSDESK_FAST_MODEL") or "local/smollm2"
    return model


class Gateway:
    """The assembled call stack. Share one per process (or per app) so the cache, single-flight
    and limits see every request: ``Fallback(Cache(Limit(Retry(LiteLLM))))``.

    ``cache``: a ``CacheStore``, or a spec string for ``open_cache`` ("off", "memory", a directory,
    ``redis://...``); by default memory + disk in the user cache directory.
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
        self.limiter = LimitBackend(RetryBackend(backend or LiteLLMBackend(), self.stats, retry), self.limits)
        self.stack: Backend = FallbackBackend(CacheBackend(self.limiter, store, self.stats))

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
        max_tokens) are asked again — with twice the token budget after a cut — up to ``retries``."""
        request = await self._aprepare(request)
        info = begin_call()
        started = time.perf_counter()
        attempt = 0
        original = request
        while True:
            completion = await self.stack.complete(request)
            try:
                value = self._value(request, completion)
                break
            except BadResponse:
                attempt += 1
                if attempt > request.retries:
                    raise
                request = _ask_again(request, completion)
        if attempt:
            await self._remember(original, completion)
        return _response(request, completion, value, started, info.attempts, info.cached)

    async def stream(self, request: Request) -> AsyncIterator[Chunk]:
        """Text deltas as they arrive (``partial`` = the structured answer so far), then one final
        chunk with ``done=True`` and the ``Response``."""
        request = await self._aprepare(request)
        info = begin_call()
        started = time.perf_counter()
        attempt = 0
        original = request
        while True:
            text = ""
            final: Completion | None = None
            items = self.stack.stream(request)
            try:
                async for item in items:
                    if isinstance(item, Completion):
                        final = item
                        continue
                    text += item
                    partial = parse_partial(text) if request.answer_model is not None else None
                    yield Chunk(content=item, partial=partial)
            finally:
                await _aclose(items)  # a consumer that stops early releases the call at once
            if final is None:
                raise BadResponse(f"{request.model}: the stream ended without an answer", model=request.model)
            try:
                value = self._value(request, final)
                break
            except BadResponse:
                attempt += 1
                if attempt > request.retries:
                    raise
                request = _ask_again(request, final)
                yield Chunk(restart=True)
        if attempt:
            await self._remember(original, final)
        response = _response(request, final, value, started, info.attempts, info.cached)
        yield Chunk(content="", partial=value if request.answer_model else None, done=True, response=response)

    async def _remember(self, original: Request, completion: Completion) -> None:
        """A structured answer that only validated when asked again is also stored under the
        original request's key, so the next identical request doesn't pay for the failed try again."""
        if self.store is None or original.cache == "off":
            return
        from newsdesk._cache import cache_key

        try:
            await self.store.set(cache_key(original.cache_identity()), completion.model_dump_json().encode(),
                                 original.cache_ttl)
        except Exception:  # the cache fails open
            pass

    @staticmethod
    def _value(request: Request, completion: Completion) -> Any:
        if request.answer_model is None:
            if completion.finish_reason == "length" and not completion.text:
                raise BadResponse(f"{request.model}: max_tokens ran out before any text", model=request.model)
            return completion.text
        return parse_answer(completion.text, request.answer_model, model=request.model,
                            finish_reason=completion.finish_reason)

    def map(self, requests: Iterable[Request], *, deadline: float | None = None) -> Batch:
        """Run many requests at once; iterate the ``Batch`` for ``Outcome``s in completion order."""
        return Batch(self, list(requests), deadline=deadline)

    async def gather(self, requests: Iterable[Request], *, deadline: float | None = None) -> list[Outcome]:
        """Like ``map`` but returns every ``Outcome`` in input order."""
        return await self.map(requests, deadline=deadline).gather()

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def _ask_again(request: Request, completion: Completion) -> Request:
    if completion.finish_reason == "length":
        budget = min((request.max_tokens or 512) * 2, 4096)
        return request.model_copy(update={"max_tokens": budget, "cache": "refresh"})
    temp = max(0.3, (request.temperature or 0.0) + 0.3)
    return request.model_copy(update={"temperature": min(temp, 1.0), "cache": "refresh"})


def _response(request: Request, c: Completion, value: Any, started: float, attempts: int, cached: bool) -> Response:
    return Response(
        value=value, text=c.text, model=c.model, usage=c.usage, cost=c.cost,
        latency=time.perf_counter() - started, cached=cached or c.cached,
        finish_reason=c.finish_reason, attempts=max(attempts, 0 if cached else 1),
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


class Batch:
    """Async iterator over ``Outcome``s in completion order. One failure never raises out of it.

    Leaving the loop early (break, cancel, deadline) cancels every request still running and
    waits for them, so no task or connection is left behind.
    """

    def __init__(self, gateway: Gateway, requests: list[Request], *, deadline: float | None = None) -> None:
        self.gateway = gateway
        self.requests = requests
        self.deadline = deadline
        self.stats = BatchStats()

    def __aiter__(self) -> AsyncIterator[Outcome]:
        return self._run()

    async def _run(self) -> AsyncIterator[Outcome]:
        started = time.perf_counter()
        queue: asyncio.Queue[Outcome] = asyncio.Queue()

        async def one(index: int, request: Request) -> None:
            t0 = time.perf_counter()
            try:
                resp = await self.gateway.complete(request)
                queue.put_nowait(Outcome(index, request, response=resp, latency=time.perf_counter() - t0))
            except NewsdeskError as exc:
                queue.put_nowait(Outcome(index, request, error=exc, latency=time.perf_counter() - t0))
            except Exception as exc:  # a bug below must not take the batch down either
                err = ProviderError(f"{request.model}: unexpected {type(exc).__name__}: {exc}", model=request.model)
                queue.put_nowait(Outcome(index, request, error=err, latency=time.perf_counter() - t0))

        tasks = {asyncio.create_task(one(i, r)): i for i, r in enumerate(self.requests)}
        done_idx: set[int] = set()
        try:
            for _ in range(len(tasks)):
                timeout = None if self.deadline is None else self.deadline - (time.perf_counter() - started)
                try:
                    if timeout is not None and timeout <= 0:
                        raise TimeoutError
                    outcome = await asyncio.wait_for(queue.get(), timeout)
                except TimeoutError:
                    break
                done_idx.add(outcome.index)
                self.stats.add(outcome)
                self.stats.wall = time.perf_counter() - started
                yield outcome
            else:
                return
            # Deadline: stop the rest and report each of them once.
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            while not queue.empty():  # finished in the meantime
                outcome = queue.get_nowait()
                done_idx.add(outcome.index)
                self.stats.add(outcome)
                yield outcome
            for i, r in enumerate(self.requests):
                if i not in done_idx:
                    err = ProviderTimeout(f"{r.model}: the batch deadline of {self.deadline:g} s passed", model=r.model)
                    outcome = Outcome(i, r, error=err, latency=time.perf_counter() - started)
                    self.stats.add(outcome)
                    yield outcome
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.stats.wall = time.perf_counter() - started

    async def gather(self) -> list[Outcome]:
        out: list[Outcome | None] = [None] * len(self.requests)
        async for o in self:
            out[o.index] = o
        return [o for o in out if o is not None]


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
        from newsdesk import _portal

        return _portal.run(self.aresponse())

    def stream_response(self) -> Iterator[Chunk]:
        from newsdesk import _portal

        return _portal.iterate(self.astream_response())
