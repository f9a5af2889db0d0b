"""Behaviours stacked around a ``Backend``, each one a Backend itself:

    Fallback( Cache+SingleFlight( Validate( Limit( Retry( LiteLLMBackend )))))

Each subclasses ``WrapperBackend`` (everything passes through to ``inner``) and writes only what
it changes, so each can be read and tested alone:

- ``FallbackBackend``: tries ``request.fallbacks`` in order when the model fails for good.
- ``CacheBackend``: answers from the cache; identical requests in flight at the same time make one
  call (single-flight); a cached answer replays as a stream; errors and truncated answers are never
  stored. It sits outside validation, so what it stores under a request is the answer that
  validated, even when that took asking again.
- ``ValidateBackend``: checks each answer (the structured answer against ``answer_model``; a text
  answer not left empty by max_tokens) and asks again when it fails — with twice the token budget
  after a cut — up to ``request.retries`` times; a stream yields ``Restart`` before asking again.
- ``LimitBackend``: max in flight, requests/minute and tokens/minute (aiolimiter leaky buckets).
- ``RetryBackend``: exponential backoff with full jitter, honouring Retry-After; a per-attempt timeout.
  A stream is retried only while it has yielded nothing (a half-shown answer cannot be taken back).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import random
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from newsdesk._backend import Backend, Restart, StreamItem
from newsdesk._cache import CacheStore, cache_key
from newsdesk._concurrency import aclose, aclosing
from newsdesk._exceptions import (
    BadResponse,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    UserError,
)
from newsdesk._request import Request
from newsdesk._response import Completion
from newsdesk._structured import answer_value


@dataclass
class CallStats:
    """Counters shared by the wrappers of one stack (read by batch runs and the CLI)."""

    calls: int = 0  # provider attempts actually sent
    retries: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    coalesced: int = 0  # requests answered by another identical request in flight
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    def snapshot(self) -> CallStats:
        return CallStats(**{**self.__dict__, "errors": dict(self.errors)})


class _PerLoop:
    """asyncio primitives belong to one event loop; keep one set per loop (sync wrappers run their own)."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> Any:
        loop = asyncio.get_running_loop()
        value = self._by_loop.get(loop)
        if value is None:
            value = self._by_loop[loop] = self._factory()
        return value


class WrapperBackend:
    """A Backend around ``inner`` that passes everything through (pydantic-ai's ``WrapperModel``):
    a behaviour subclasses it and overrides only what it changes. ``aclose`` closes the stack
    below. Inner streams are closed as soon as the reader stops (``aclosing``), not whenever they
    are garbage collected: that releases their connection and concurrency slot at once."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner

    async def complete(self, request: Request) -> Completion:
        return await self.inner.complete(request)

    async def stream(self, request: Request) -> AsyncIterator[StreamItem]:
        async with aclosing(self.inner.stream(request)) as items:
            async for item in items:
                yield item

    async def aclose(self) -> None:
        await aclose(self.inner)


# ---------------------------------------------------------------- retry


@dataclass(frozen=True)
class RetryPolicy:
    base_delay: float = 0.5
    max_delay: float = 20.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, exc: BaseException) -> float:
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            # The provider said when: wait that long (plus a little jitter so a batch doesn't stampede).
            return min(exc.retry_after, self.max_retry_after) + random.uniform(0, 0.1)
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


class RetryBackend(WrapperBackend):
    def __init__(self, inner: Backend, stats: CallStats, policy: RetryPolicy | None = None) -> None:
        super().__init__(inner)
        self.stats = stats
        self.policy = policy or RetryPolicy()

    async def _after_failure(
        self, request: Request, attempt: int, exc: Exception, what: str, *, started: bool = False
    ) -> None:
        """Count the failure; raise it if it is final, else wait before the next attempt."""
        if isinstance(exc, TimeoutError):
            err: ProviderError = ProviderTimeout(
                f"{request.model}: {what} {request.timeout:g} s", model=request.model
            )
            err.__cause__ = exc
        else:
            assert isinstance(exc, ProviderError)
            err = exc
        name = type(err).__name__
        self.stats.errors[name] = self.stats.errors.get(name, 0) + 1
        if started or not err.retryable or attempt > request.retries:
            raise err
        self.stats.retries += 1
        await asyncio.sleep(self.policy.delay(attempt, err))

    def _attempt(self) -> None:
        self.stats.calls += 1
        _note_attempt()

    async def complete(self, request: Request) -> Completion:
        for attempt in itertools.count(1):
            self._attempt()
            try:
                async with asyncio.timeout(request.timeout):
                    return await self.inner.complete(request)
            except (TimeoutError, ProviderError) as exc:
                await self._after_failure(request, attempt, exc, "no answer within")
        raise AssertionError("unreachable")  # pragma: no cover

    async def stream(self, request: Request) -> AsyncIterator[StreamItem]:
        for attempt in itertools.count(1):
            self._attempt()
            started = False
            try:
                agen = self.inner.stream(request)
                try:
                    while True:
                        # The timeout covers waiting for each piece, so a stalled stream fails too.
                        async with asyncio.timeout(request.timeout):
                            try:
                                item = await agen.__anext__()
                            except StopAsyncIteration:
                                break
                        started = True
                        yield item
                    return
                finally:  # closed before any wait for the next attempt
                    with contextlib.suppress(
                        Exception
                    ):  # a stream that broke may fail to close too
                        await aclose(agen)
            except (TimeoutError, ProviderError) as exc:
                await self._after_failure(
                    request, attempt, exc, "stream stalled for", started=started
                )
        raise AssertionError("unreachable")  # pragma: no cover


# ---------------------------------------------------------------- validation


def ask_again(request: Request, completion: Completion) -> Request:
    """The request that asks again for an answer that failed to validate: twice the token budget
    if max_tokens cut it, else a little more temperature (the same prompt at 0 gives the same)."""
    if completion.finish_reason == "length":
        budget = min((request.max_tokens or 512) * 2, 4096)
        return request.model_copy(update={"max_tokens": budget})
    temp = max(0.3, (request.temperature or 0.0) + 0.3)
    return request.model_copy(update={"temperature": min(temp, 1.0)})


class ValidateBackend(WrapperBackend):
    """Ask again, up to ``request.retries`` times, for an answer that does not validate
    (``answer_value``). The answer given back is the one that validated; the last error when none did.
    A stream yields ``Restart`` before asking again (the text so far is void) and its
    ``Completion`` only once it validated."""

    async def complete(self, request: Request) -> Completion:
        current = request
        for attempt in range(request.retries + 1):
            completion = await self.inner.complete(current)
            try:
                answer_value(current, completion)
                return completion
            except BadResponse:
                if attempt == request.retries:
                    raise
                current = ask_again(current, completion)
        raise AssertionError("unreachable")  # pragma: no cover

    async def stream(self, request: Request) -> AsyncIterator[StreamItem]:
        current = request
        for attempt in range(request.retries + 1):
            final: Completion | None = None
            async with aclosing(self.inner.stream(current)) as items:
                async for item in items:
                    if isinstance(item, Completion):
                        final = item
                    else:
                        yield item
            if final is None:
                raise BadResponse(
                    f"{current.model}: the stream ended without an answer", model=current.model
                )
            try:
                answer_value(current, final)
            except BadResponse:
                if attempt == request.retries:
                    raise
                current = ask_again(current, final)
                yield Restart()
                continue
            yield final
            return


# ---------------------------------------------------------------- limits


@dataclass(frozen=True)
class Limits:
    """How hard to push providers. ``concurrency``: max requests in flight; ``rpm``/``tpm``:
    requests and tokens per minute (None = unlimited)."""

    concurrency: int = 8
    rpm: float | None = None
    tpm: float | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise UserError("concurrency must be at least 1")
        if self.rpm is not None and self.rpm <= 0:
            raise UserError("rpm must be positive")
        if self.tpm is not None and self.tpm <= 0:
            raise UserError("tpm must be positive")


def estimate_tokens(request: Request) -> int:
    """A cheap upper-ish estimate (4 chars a token) used to reserve TPM budget before the call."""
    chars = sum(len(m.content) for m in request.messages)
    return chars // 4 + (request.max_tokens or 256)


class LimitBackend(WrapperBackend):
    def __init__(self, inner: Backend, limits: Limits) -> None:
        super().__init__(inner)
        self.limits = limits
        self._state = _PerLoop(self._make)
        self.in_flight = 0
        self.max_in_flight = 0

    def _make(self) -> tuple[asyncio.Semaphore, Any, Any]:
        from aiolimiter import AsyncLimiter

        rpm = AsyncLimiter(self.limits.rpm, 60) if self.limits.rpm else None
        tpm = AsyncLimiter(self.limits.tpm, 60) if self.limits.tpm else None
        return asyncio.Semaphore(self.limits.concurrency), rpm, tpm

    @contextlib.asynccontextmanager
    async def _slot(self, request: Request) -> AsyncIterator[None]:
        sem, rpm, tpm = self._state.get()
        async with sem:
            if rpm is not None:
                await rpm.acquire()
            if tpm is not None:
                await tpm.acquire(min(float(estimate_tokens(request)), tpm.max_rate))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                yield
            finally:
                self.in_flight -= 1

    async def complete(self, request: Request) -> Completion:
        async with self._slot(request):
            return await super().complete(request)

    async def stream(self, request: Request) -> AsyncIterator[StreamItem]:
        async with self._slot(request), aclosing(super().stream(request)) as items:
            async for item in items:
                yield item


# ---------------------------------------------------------------- cache + single-flight


def _cacheable(request: Request, c: Completion) -> bool:
    if c.finish_reason in ("length", "error", "content_filter") or not c.text:
        return False
    try:  # an answer that does not validate is an error, and errors are never cached
        answer_value(request, c)
    except ProviderError:
        return False
    return True


@dataclass
class CallInfo:
    """Per-call facts the wrappers record (one per task, through a context variable)."""

    attempts: int = 0
    cached: bool = False


_call_info: contextvars.ContextVar[CallInfo | None] = contextvars.ContextVar(
    "newsdesk_call_info", default=None
)


def begin_call() -> CallInfo:
    info = CallInfo()
    _call_info.set(info)
    return info


def _note_attempt() -> None:
    info = _call_info.get()
    if info is not None:
        info.attempts += 1


def _note_cached() -> None:
    info = _call_info.get()
    if info is not None:
        info.cached = True


class CacheBackend(WrapperBackend):
    def __init__(self, inner: Backend, store: CacheStore | None, stats: CallStats) -> None:
        super().__init__(inner)
        self.store = store
        self.stats = stats
        self._inflight = _PerLoop(dict)

    async def _lookup(self, request: Request, key: str) -> Completion | None:
        if self.store is None or request.cache != "use":
            return None
        try:
            raw = await self.store.get(key)
        except (
            Exception
        ):  # a broken cache (disk full, database locked...) is a miss, never an error
            self.store.stats.errors += 1
            return None
        if raw is None:
            return None
        try:
            return Completion.model_validate_json(raw)
        except ValueError:
            return None  # an unreadable entry is a miss, never an error

    async def _save(self, request: Request, key: str, completion: Completion) -> None:
        if self.store is not None and request.cache != "off" and _cacheable(request, completion):
            try:
                await self.store.set(key, completion.model_dump_json().encode(), request.cache_ttl)
            except Exception:  # the answer is good: failing to store it must not lose it
                self.store.stats.errors += 1

    def _count_usage(self, c: Completion) -> None:
        self.stats.prompt_tokens += c.usage.prompt_tokens
        self.stats.completion_tokens += c.usage.completion_tokens
        self.stats.cost += c.cost or 0.0

    async def _follow(self, request: Request, key: str) -> Completion | None:
        """If an identical request is in flight, wait for its answer (None: there is none, or it
        was cancelled and this request must ask for itself)."""
        if request.cache == "off":
            return None
        inflight: dict[str, asyncio.Future[Completion]] = self._inflight.get()
        while key in inflight:
            try:
                result = await asyncio.shield(inflight[key])
            except _LeaderCancelled:
                continue  # its caller went away (break, cancel): the next in line asks itself
            self.stats.coalesced += 1
            _note_cached()
            return result.model_copy(update={"cost": 0.0, "cached": True})
        return None

    def _lead(self, request: Request, key: str) -> asyncio.Future[Completion]:
        self.stats.cache_misses += 1
        fut: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        if request.cache != "off":
            self._inflight.get()[key] = fut
        return fut

    def _release(
        self, request: Request, key: str, fut: asyncio.Future[Completion], exc: BaseException | None
    ) -> None:
        if exc is not None and not fut.done():
            # Followers get the same error; if this caller was cancelled they ask themselves.
            fut.set_exception(
                exc
                if isinstance(exc, Exception)
                else _LeaderCancelled(f"{request.model}: the identical request was cancelled")
            )
            fut.exception()  # mark retrieved: followers may not exist
        inflight = self._inflight.get()
        if inflight.get(key) is fut:
            del inflight[key]

    async def complete(self, request: Request) -> Completion:
        key = cache_key(request.cache_identity())
        hit = await self._lookup(request, key)
        if hit is not None:
            self.stats.cache_hits += 1
            _note_cached()
            return hit.model_copy(update={"cost": 0.0, "cached": True})
        shared = await self._follow(request, key)
        if shared is not None:
            return shared
        fut = self._lead(request, key)
        error: BaseException | None = None
        try:
            result = await self.inner.complete(request)
            self._count_usage(result)
            await self._save(request, key, result)
            fut.set_result(result)
            return result
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._release(request, key, fut, error)

    async def stream(self, request: Request) -> AsyncIterator[StreamItem]:
        key = cache_key(request.cache_identity())
        hit = await self._lookup(request, key)
        if hit is not None:
            self.stats.cache_hits += 1
            _note_cached()
            hit = hit.model_copy(update={"cost": 0.0, "cached": True})
        else:
            # Someone is already asking this: wait for their answer and replay it.
            hit = await self._follow(request, key)
        if hit is not None:
            for piece in _replay_pieces(hit.text):
                yield piece
            yield hit
            return
        fut = self._lead(request, key)
        error: BaseException | None = None
        try:
            final: Completion | None = None
            async with aclosing(self.inner.stream(request)) as inner:
                async for item in inner:
                    if isinstance(item, Completion):
                        final = item
                    yield item
            if final is None:
                raise BadResponse(
                    f"{request.model}: the stream ended without an answer", model=request.model
                )
            self._count_usage(final)
            await self._save(request, key, final)
            fut.set_result(final)
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._release(request, key, fut, error)


class _LeaderCancelled(ProviderTimeout):
    """Handed to the followers of a request whose caller went away before it finished."""


def _replay_pieces(text: str, size: int = 16) -> list[str]:
    """A cached answer replays as a stream in word-ish pieces, so consumers see the same shape."""
    pieces: list[str] = []
    buf = ""
    for word in text.split(" "):
        buf = f"{buf} {word}" if buf else word
        if len(buf) >= size:
            pieces.append(buf + " ")
            buf = ""
    if buf:
        pieces.append(buf)
    if pieces and not text.endswith(" ") and pieces[-1].endswith(" ") and "".join(pieces) != text:
        pieces[-1] = pieces[-1][:-1]
    return pieces if "".join(pieces) == text else [text]


# ---------------------------------------------------------------- fallback


def _provider(model: str) -> str:
    return model.split("/", 1)[0] if "/" in model else ""


def _fallback_request(request: Request, model: str) -> Request:
    """The request for a fallback model. The endpoint and key belong to the primary's provider:
    a fallback on another provider must not be sent there (nor be handed that provider's key)."""
    update: dict[str, Any] = {"model": model, "fallbacks": []}
    if _provider(model) != _provider(request.model):
        update.update(api_base=None, api_key=None)
    return request.model_copy(update=update)


class FallbackBackend(WrapperBackend):
    """Try the request's model, then each of ``request.fallbacks``. The caller's own mistakes
    (bad config, missing key for *every* model) are not hidden: the last error is raised."""

    def _chain(self, request: Request) -> list[Request]:
        return [request] + [_fallback_request(request, m) for m in request.fallbacks]

    async def complete(self, request: Request) -> Completion:
        last: Exception | None = None
        for req in self._chain(request):
            try:
                return await self.inner.complete(req)
            except (ProviderError, UserError) as exc:
                last = exc
        assert last is not None
        raise last

    async def stream(self, request: Request) -> AsyncIterator[StreamItem]:
        last: Exception | None = None
        for req in self._chain(request):
            started = False
            try:
                async with aclosing(self.inner.stream(req)) as inner:
                    async for item in inner:
                        started = True
                        yield item
                return
            except (ProviderError, UserError) as exc:
                if started:
                    raise
                last = exc
        assert last is not None
        raise last
