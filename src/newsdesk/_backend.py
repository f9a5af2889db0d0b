"""The one seam between newsdesk and model providers.

A ``Backend`` turns a ``Request`` into a ``Completion`` (``complete``) or a stream of text
deltas ending with the ``Completion`` (``stream``). ``LiteLLMBackend`` is the real one: every
model call goes through LiteLLM, the embedded model included (registered as a LiteLLM custom
provider in ``_local``). Caching, limits, retries and fallbacks are wrappers around a Backend
(``_wrappers``), each readable and testable alone.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

from newsdesk._exceptions import (
    BadResponse,
    ConfigError,
    MissingAPIKeyError,
    NewsdeskError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    UnknownModelError,
)
from newsdesk._lean import lean_call
from newsdesk._request import Request
from newsdesk._response import Completion, Usage


class Restart:
    """In a stream: the text so far is void (the answer did not validate and is asked again)."""

    def __repr__(self) -> str:
        return "Restart()"


StreamItem = str | Restart | Completion
"""A stream yields text deltas (``str``) and ends with exactly one ``Completion``. Only the
validation wrapper yields ``Restart``; a backend yields text and the ``Completion``."""


class Backend(Protocol):
    """The seam: ``complete`` gives the whole answer; ``stream`` yields it in pieces. A Backend
    may also have ``async aclose()`` for the resources it holds (``Gateway.aclose`` calls it)."""

    async def complete(self, request: Request) -> Completion: ...

    def stream(self, request: Request) -> AsyncIterator[StreamItem]: ...


_litellm: Any = None
_import_lock = threading.Lock()

# Modules LiteLLM imports lazily inside the first call (HTTP stack, OpenAI SDK resources, proxy
# types, the tokenizer): ~0.5 s that would otherwise block the event loop of whoever calls first.
_WARM = (
    "httpcore",
    "openai.resources.chat",
    "litellm.proxy._types",
    "litellm.litellm_core_utils.default_encoding",
    # LiteLLM's error mapping imports FastAPI (~0.5 s) on the first failure: do it here, off the
    # event loop, rather than inside someone's loop when a call first fails. Not in a background
    # thread: a thread still importing at interpreter exit deadlocked shutdown (seen here).
    "fastapi.exceptions",
)


def import_litellm() -> Any:
    """Import LiteLLM lazily (it costs ~3 s) and offline-safe (no price-map download)."""
    if _litellm is not None:
        return _litellm
    return _import_litellm()


def _import_litellm() -> Any:
    global _litellm
    with _import_lock:
        if _litellm is not None:
            return _litellm
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import importlib

        import litellm

        litellm.suppress_debug_info = True
        litellm.telemetry = False
        from newsdesk import _lean, _local

        _local.register(litellm)
        _lean.install(litellm)
        for name in _WARM:
            with contextlib.suppress(Exception):
                importlib.import_module(name)
        _litellm = litellm
        return litellm


async def aimport_litellm() -> Any:
    """``import_litellm`` for async code: the first import runs in a worker thread so that the
    event loop (streams, other requests, a UI) keeps running meanwhile."""
    if _litellm is not None:
        return _litellm
    import asyncio

    return await asyncio.to_thread(_import_litellm)


def _retry_after(exc: BaseException) -> float | None:
    """Seconds from a Retry-After header, if the provider sent one."""
    for attr in ("litellm_response_headers", "response"):
        obj = getattr(exc, attr, None)
        headers = getattr(obj, "headers", obj) if attr == "response" else obj
        if not headers:
            continue
        with contextlib.suppress(Exception):
            value = headers.get("retry-after") or headers.get("Retry-After")
            if value is None:
                continue
            try:
                return max(0.0, float(value))
            except ValueError:
                when = email.utils.parsedate_to_datetime(value)
                return max(0.0, when.timestamp() - time.time())
    return None


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else type(exc).__name__
    # LiteLLM prefixes messages with its class path; keep what the provider said.
    for prefix in ("litellm.", "LiteLLM"):
        if msg.startswith(prefix) and ": " in msg:
            msg = msg.split(": ", 1)[1]
    # Python object dumps ("ssl:<ssl.SSLContext object at 0x7f…>") mean nothing to a reader.
    msg = " ".join(_OBJECT_DUMP.sub("", msg).split())
    msg = re.sub(r"^\w+Exception - ", "", msg)  # "OpenAIException - ": the class, again
    return msg[:limit]


_OBJECT_DUMP = re.compile(r"(?:\b\w+:)?<[^<>]*\bobject at 0x[0-9a-fA-F]+>")


@contextlib.contextmanager
def translate_errors(model: str) -> Iterator[None]:
    """Map LiteLLM/httpx/OpenAI errors onto newsdesk's tree, once, here."""
    try:
        yield
    except NewsdeskError:
        raise
    except TimeoutError as exc:
        raise ProviderTimeout(f"{model}: timed out", model=model) from exc
    except Exception as exc:
        own = _own_error(exc)
        if own is not None:
            raise own from None  # ours already (from the embedded provider): as raised, unwrapped
        raise _translate(exc, model) from exc


def _malformed_reply(exc: BaseException) -> bool:
    """A reply that arrived (no HTTP error status) but whose body did not parse. LiteLLM reports
    it as a 500 or a connection error; the JSON error in the exception chain gives it away."""
    import httpx

    seen: set[int] = set()
    parse_error = False
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, httpx.HTTPStatusError):
            return False  # the provider answered with an error status: not a malformed reply
        parse_error = parse_error or isinstance(e, json.JSONDecodeError)
        e = e.__cause__ or e.__context__
    return parse_error


def _own_error(exc: BaseException) -> NewsdeskError | None:
    """A newsdesk error raised below LiteLLM (by the embedded model's provider) and wrapped by it."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, NewsdeskError):
            return e
        e = e.__cause__ or e.__context__ or getattr(e, "original_exception", None)
    return None


def _translate(exc: Exception, model: str) -> NewsdeskError:
    import litellm

    own = _own_error(exc)
    if own is not None:
        return own
    name = type(exc).__name__
    status = getattr(exc, "status_code", None)
    msg = _first_line(exc)
    if isinstance(exc, litellm.exceptions.AuthenticationError) or status == 401:
        return MissingAPIKeyError(
            f"{model}: the provider rejected the API key or none was set "
            "(set the provider's usual environment variable, e.g. OPENAI_API_KEY, or pass --api-key)"
        )
    if isinstance(exc, litellm.exceptions.RateLimitError) or status == 429:
        return RateLimited(
            f"{model}: rate limited (429)",
            retry_after=_retry_after(exc),
            status_code=429,
            model=model,
        )
    if isinstance(exc, litellm.exceptions.Timeout) or "Timeout" in name:
        return ProviderTimeout(f"{model}: timed out", model=model)
    if isinstance(exc, litellm.exceptions.NotFoundError) or status == 404:
        return UnknownModelError(f"{model}: the provider does not know this model ({msg})")
    if isinstance(exc, litellm.exceptions.BadRequestError):
        low = msg.lower()
        if (
            "llm provider not provided" in low
            or "provider not provided" in low
            or "unknown model" in low
        ):
            return UnknownModelError(
                f"unknown model {model!r}: use a LiteLLM model string like 'openai/gpt-4o-mini', "
                "'ollama/llama3' or 'local/smollm2'"
            )
        if "api_key" in low or "api key" in low:
            return MissingAPIKeyError(f"{model}: no API key ({msg})")
        return ConfigError(f"{model}: the provider refused the request: {msg}")
    if status in (None, 500) and _malformed_reply(exc):
        return BadResponse(f"{model}: malformed reply from the provider: {msg}", model=model)
    if "exceed context window" in msg.lower():
        # llama.cpp (the embedded model) says so through a generic error: retrying cannot help.
        return ConfigError(
            f"{model}: the conversation does not fit the model's context window ({msg})"
        )
    if isinstance(
        exc,
        (
            litellm.exceptions.APIConnectionError,
            litellm.exceptions.ServiceUnavailableError,
            litellm.exceptions.InternalServerError,
            litellm.exceptions.BadGatewayError,
        ),
    ):
        if "api_key" in msg.lower() or "api key" in msg.lower():
            return MissingAPIKeyError(f"{model}: no API key ({msg})")
        if isinstance(exc, litellm.exceptions.APIConnectionError) and status in (None, 500):
            # LiteLLM reports malformed provider replies as connection errors too.
            low = msg.lower()
            if any(w in low for w in ("json", "decode", "expecting", "parse", "validation")):
                return BadResponse(
                    f"{model}: malformed reply from the provider: {msg}", model=model
                )
        return ProviderUnavailable(
            f"{model}: provider unavailable: {msg}", status_code=status, model=model
        )
    if isinstance(exc, litellm.exceptions.APIError):
        if status is not None and status >= 500:
            return ProviderUnavailable(
                f"{model}: provider error {status}: {msg}", status_code=status, model=model
            )
        return BadResponse(
            f"{model}: bad reply from the provider: {msg}", status_code=status, model=model
        )
    if isinstance(exc, (ValueError, KeyError, TypeError, AttributeError)):
        return BadResponse(f"{model}: malformed reply from the provider: {msg}", model=model)
    return ProviderError(f"{model}: {name}: {msg}", status_code=status, model=model)


class LiteLLMBackend:
    """Sends requests through ``litellm.acompletion``. LiteLLM's own retries are switched off:
    the retry wrapper owns retries so that they are counted, jittered and honour Retry-After."""

    def _kwargs(self, request: Request) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "model": request.model,
            "messages": [m.model_dump(exclude_none=True) for m in request.messages],
            "timeout": request.timeout,
            "num_retries": 0,
            "max_retries": 0,
        }
        if request.temperature is not None:
            kw["temperature"] = request.temperature
        if request.max_tokens is not None:
            kw["max_tokens"] = request.max_tokens
        if request.api_base:
            kw["api_base"] = request.api_base
        if request.api_key is not None:
            kw["api_key"] = request.api_key.get_secret_value()
        if request.answer_model is not None:
            kw["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": request.answer_model.__name__,
                    "schema": request.answer_model.model_json_schema(),
                },
            }
        kw.update(request.extra)
        return kw

    @staticmethod
    def _usage(obj: Any) -> Usage:
        u = getattr(obj, "usage", None)
        if not u:
            return Usage()
        return Usage(
            prompt_tokens=getattr(u, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(u, "completion_tokens", 0) or 0,
        )

    @staticmethod
    def _cost(litellm: Any, resp: Any) -> float | None:
        hidden = getattr(resp, "_hidden_params", None) or {}
        if "response_cost" in hidden:
            # LiteLLM priced the response already (None: a model it has no price for); pricing it
            # again costs ~0.5 ms a call, a tenth of the whole call against a local server.
            cost = hidden["response_cost"]
        else:
            try:
                cost = litellm.completion_cost(completion_response=resp)
            except Exception:
                return None
        return float(cost) if cost else None

    async def complete(self, request: Request) -> Completion:
        litellm = await aimport_litellm()
        with translate_errors(request.model):
            kw = self._kwargs(request)
            # Without the success logging and re-pricing nobody here reads (see _lean).
            with lean_call(litellm, kw):
                resp = await litellm.acompletion(**kw)
            choice = resp.choices[0]
            text = choice.message.content
            if text is None:
                text = ""
            return Completion(
                text=text,
                model=request.model,
                finish_reason=choice.finish_reason,
                usage=self._usage(resp),
                cost=self._cost(litellm, resp),
            )

    async def stream(self, request: Request) -> AsyncIterator[StreamItem]:
        litellm = await aimport_litellm()
        parts: list[str] = []
        finish: str | None = None
        usage = Usage()
        with translate_errors(request.model):
            kw = self._kwargs(request)
            kw["stream"] = True
            kw["stream_options"] = {"include_usage": True}
            resp = await litellm.acompletion(**kw)
            try:
                async for chunk in resp:
                    if getattr(chunk, "usage", None):
                        usage = self._usage(chunk)
                    if not chunk.choices:
                        continue
                    choice = chunk.choices[0]
                    delta = getattr(choice.delta, "content", None)
                    if delta:
                        parts.append(delta)
                        yield delta
                    if choice.finish_reason:
                        finish = choice.finish_reason
            finally:
                # Closing the stream releases the provider connection even when the consumer stops early.
                close = getattr(resp, "aclose", None)
                if close is not None:
                    with contextlib.suppress(Exception):
                        await close()
        text = "".join(parts)
        if not usage.completion_tokens:
            with contextlib.suppress(Exception):
                usage = Usage(
                    prompt_tokens=litellm.token_counter(
                        model=request.model, messages=kw["messages"]
                    ),
                    completion_tokens=litellm.token_counter(model=request.model, text=text),
                )
        cost = None
        with contextlib.suppress(Exception):
            cost = (
                float(litellm.completion_cost(model=request.model, prompt="", completion=text))
                or None
            )
        yield Completion(
            text=text, model=request.model, finish_reason=finish or "stop", usage=usage, cost=cost
        )


def check_model(model: str, *, api_base: str | None = None, api_key: str | None = None) -> None:
    """Fail early, with one clear line, for an unknown model or a remote model without its key."""
    if model.startswith("local/") or model in ("fast", "strong"):
        return
    litellm = import_litellm()
    try:
        litellm.get_llm_provider(model, api_base=api_base)
    except Exception as exc:
        raise UnknownModelError(
            f"unknown model {model!r}: use a LiteLLM model string such as 'openai/gpt-4o-mini', "
            "'openrouter/openai/gpt-4o-mini', 'ollama/llama3', or 'local/smollm2'"
        ) from exc
    if api_key or api_base:
        return
    try:
        env = litellm.validate_environment(model)
    except Exception:
        return
    missing = [k for k in env.get("missing_keys", []) if k.endswith(("_KEY", "_TOKEN"))]
    if missing:
        raise MissingAPIKeyError(
            f"{model} needs an API key: set {' or '.join(missing)} in the environment"
        )
