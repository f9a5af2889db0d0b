"""Per-call work LiteLLM does that newsdesk does not use, skipped — only while nobody else could.

Profiled on ``LiteLLMBackend.complete`` (litellm 1.110, a zero-latency local provider), about half
of ``litellm.acompletion``'s own CPU went to two things newsdesk never reads:

- the success logging: ``Logging.async_success_handler`` builds the standard logging payload (and
  prices the response again) for callbacks, with no callback registered;
- pricing a model LiteLLM has no price for (a local server, Ollama, the embedded model): every call
  retries seven failing model-info look-ups (the generalisation rules are ~1,000 regex searches)
  and then again to diagnose why the cost is zero.

``lean_call`` skips both around one ``acompletion``, and only when no one else is listening: no
LiteLLM callback, budget or LiteLLM cache is configured, and the request carries no per-call
callbacks, metadata or pricing. Otherwise LiteLLM runs exactly as it would without newsdesk.

- The logging is skipped through LiteLLM's own switch for calls whose logging someone else owns
  (the ``is_internal_call`` context variable it sets for its nested sub-calls); the call itself,
  its errors and its cost in ``_hidden_params`` are unchanged.
- A model LiteLLM failed to price ("isn't mapped") is remembered per (model, provider); while the
  price map has no entry for it, LiteLLM's cost step answers ``None`` — what it would have
  answered — at once. A model with a price is priced by LiteLLM on every call, as before.

Both are context variables, so the effect is limited to newsdesk's own calls: other code using
LiteLLM in the same process is untouched. If LiteLLM's internals move, ``install`` finds nothing
to hook and newsdesk simply runs without the shortcut.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import time
from collections.abc import Iterator, Mapping
from typing import Any

_LEAN: contextvars.ContextVar[bool] = contextvars.ContextVar("newsdesk_lean_call", default=False)

# LiteLLM's hooks and settings that consume what the skipped work produces.
_HOOK_LISTS = (
    "callbacks",
    "success_callback",
    "failure_callback",
    "input_callback",
    "service_callback",
    "audit_log_callbacks",
    "_async_success_callback",
    "_async_failure_callback",
    "_async_input_callback",
)
# Per-request arguments that ask LiteLLM for logging or pricing of their own.
_REQUEST_HOOKS = frozenset(
    {
        "callbacks",
        "success_callback",
        "failure_callback",
        "metadata",
        "litellm_metadata",
        "litellm_logging_obj",
        "model_info",
        "base_model",
        "custom_cost_per_token",
        "custom_cost_per_second",
    }
)

# (model, provider) -> (when, the price-map entries it was judged against).
_UNPRICED: dict[tuple[str, str | None], tuple[float, tuple[int, ...]]] = {}
_UNPRICED_TTL_S = 300.0  # re-checked now and then, in case a price was registered in place
_installed: Any = None  # the LiteLLM Logging class hooked, once
_internal_call: contextvars.ContextVar[bool] | None = None


def install(litellm: Any) -> bool:
    """Hook LiteLLM's cost step (a no-op outside ``lean_call``). True when the shortcuts are on."""
    global _installed, _internal_call
    if _installed is not None:
        return True
    try:
        from litellm._internal_context import is_internal_call
        from litellm.litellm_core_utils.litellm_logging import Logging
    except ImportError:
        return False
    original = getattr(Logging, "response_cost_calculator", None)
    if not callable(original) or not isinstance(is_internal_call, contextvars.ContextVar):
        return False

    @functools.wraps(original)
    def response_cost_calculator(self: Any, *args: Any, **kwargs: Any) -> float | None:
        cost: float | None
        if not _LEAN.get() or args or kwargs.get("cache_hit"):
            cost = original(self, *args, **kwargs)
            return cost
        model = kwargs.get("litellm_model_name") or getattr(self, "model", None)
        details = getattr(self, "model_call_details", None) or {}
        key = (str(model), details.get("custom_llm_provider"))
        if _known_unpriced(litellm.model_cost, key):
            return None
        cost = original(self, *args, **kwargs)
        failure = details.get("response_cost_failure_debug_information") or {}
        if cost is None and "isn't mapped" in str(failure.get("error_str", "")):
            _UNPRICED[key] = (time.monotonic(), _price_entries(litellm.model_cost, key))
        return cost

    Logging.response_cost_calculator = response_cost_calculator  # type: ignore[method-assign]
    _installed, _internal_call = Logging, is_internal_call
    return True


def _price_entries(model_cost: Mapping[str, Any], key: tuple[str, str | None]) -> tuple[int, ...]:
    """What the price map holds under the model's names now (ids; ``None`` for the usual none),
    and its size: a ``litellm.register_model`` for this model changes one of them."""
    model, provider = key
    names = {model, model.split("/", 1)[-1]}
    if provider:
        names.add(f"{provider}/{model.split('/', 1)[-1]}")
    return (len(model_cost), *(id(model_cost.get(n)) for n in sorted(names)))


def _known_unpriced(model_cost: Mapping[str, Any], key: tuple[str, str | None]) -> bool:
    seen = _UNPRICED.get(key)
    if seen is None:
        return False
    when, entries = seen
    if time.monotonic() - when > _UNPRICED_TTL_S or entries != _price_entries(model_cost, key):
        del _UNPRICED[key]
        return False
    return True


def user_hooks(litellm: Any, kwargs: Mapping[str, Any]) -> bool:
    """Whether anyone but newsdesk could consume LiteLLM's logging or pricing of this call."""
    if any(getattr(litellm, name, None) for name in _HOOK_LISTS):
        return True
    if getattr(litellm, "max_budget", None) or getattr(litellm, "cache", None) is not None:
        return True
    return any(
        k in _REQUEST_HOOKS or k.endswith(("_cost_per_token", "_cost_per_second")) for k in kwargs
    )


@contextlib.contextmanager
def lean_call(litellm: Any, kwargs: Mapping[str, Any]) -> Iterator[bool]:
    """Around one ``await litellm.acompletion(**kwargs)``: skip what only others would use.
    Yields whether it did. Not for streams: their logging runs while the consumer iterates."""
    if _installed is None or _internal_call is None or user_hooks(litellm, kwargs):
        yield False
        return
    internal = _internal_call.set(True)
    lean = _LEAN.set(True)
    try:
        yield True
    finally:
        _LEAN.reset(lean)
        _internal_call.reset(internal)
