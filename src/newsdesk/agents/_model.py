"""``NewsdeskModel``: smolagents' ``LiteLLMModel`` made to work with every newsdesk model string.

What it adds, and why:

* The embedded ``local/...`` models are registered with LiteLLM first (``import_litellm``), and
  the aliases ``fast`` / ``strong`` resolve as everywhere else in newsdesk.
* LiteLLM (1.106 here) imports the optional ``mcp`` package whenever ``tools`` are passed to
  ``completion`` — which a ``ToolCallingAgent`` always does; ``_skip_mcp_handler`` avoids that.
* For the embedded model (2048-token window, weak at following a format):
  messages are sent as plain text, trimmed to fit the window (system prompt and task kept,
  oldest steps dropped first), and a tool-calling step is *constrained* to a JSON tool call by
  a grammar (``response_format`` with a JSON schema: one of the offered tools, with its
  arguments), so every reply parses. String arguments are capped, so a model stuck repeating
  itself still closes its JSON.
"""

from __future__ import annotations

import copy
from collections.abc import Generator
from typing import Any

from newsdesk._backend import import_litellm
from newsdesk._client import resolve_model
from newsdesk._config import default_model
from newsdesk._context import _estimate, context_window

try:
    from smolagents import LiteLLMModel, Tool
    from smolagents.models import ChatMessage, ChatMessageStreamDelta, get_tool_json_schema
except ModuleNotFoundError as exc:  # pragma: no cover - the extra is missing
    if exc.name != "smolagents":
        raise
    from newsdesk._exceptions import MissingExtraError

    raise MissingExtraError("newsdesk.agents", "agents") from exc

MAX_STRING_ARG = 300  # characters, for a constrained tool call's string arguments


def is_small(model_id: str) -> bool:
    """The embedded models: tiny context, need the constrained format and a short prompt."""
    return model_id.startswith("local/")


def tool_call_format(tools: list[Tool], *, max_string: int = MAX_STRING_ARG) -> dict[str, Any]:
    """A ``response_format`` whose JSON schema admits exactly one call of one of ``tools``:
    ``{"name": "<tool>", "arguments": {...}}`` — the shape smolagents parses from text."""
    variants = []
    for tool in tools:
        params = copy.deepcopy(get_tool_json_schema(tool)["function"]["parameters"])
        for prop in params.get("properties", {}).values():
            prop.pop("nullable", None)
            prop.pop("description", None)  # in the prompt already; the grammar needs none of it
            if prop.get("type") == "string":
                prop["maxLength"] = max_string
        variants.append(
            {
                "type": "object",
                "properties": {"name": {"const": tool.name}, "arguments": params},
                "required": ["name", "arguments"],
            }
        )
    schema = variants[0] if len(variants) == 1 else {"anyOf": variants}
    return {"type": "json_schema", "json_schema": {"name": "tool_call", "schema": schema}}


def _message_text(message: ChatMessage | dict[str, Any]) -> str:
    content = message.get("content") if isinstance(message, dict) else message.content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def _with_text(message: ChatMessage | dict[str, Any], text: str) -> ChatMessage | dict[str, Any]:
    if isinstance(message, dict):
        return {**message, "content": [{"type": "text", "text": text}]}
    return ChatMessage(role=message.role, content=[{"type": "text", "text": text}])


def fit_messages(messages: list[Any], budget: int) -> list[Any]:
    """Messages within ``budget`` tokens (estimated): keep the system prompt, the task (first
    user message) and the latest message; drop the oldest of the rest first, then shorten the
    longest message left."""
    msgs = list(messages)
    sizes = [_estimate(_message_text(m)) for m in msgs]
    keep_head = 2 if len(msgs) > 2 else 0
    while sum(sizes) > budget and len(msgs) > keep_head + 1:
        del msgs[keep_head]
        del sizes[keep_head]
    while sum(sizes) > budget:
        i = max(range(len(msgs)), key=lambda k: sizes[k])
        text = _message_text(msgs[i])
        over = sum(sizes) - budget
        keep = max(0, len(text) - int(over * 3.2) - 16)
        if keep <= 0 or keep >= len(text):
            break
        msgs[i] = _with_text(msgs[i], text[:keep] + " […]")
        sizes[i] = _estimate(_message_text(msgs[i]))
    return msgs


class NewsdeskModel(LiteLLMModel):
    """A smolagents model for any newsdesk model string, the embedded ``local/smollm2`` included.

    ``constrain_tool_calls``: force each tool-calling reply into a valid JSON tool call with a
    grammar (default: on for the embedded models, whose replies otherwise rarely parse; remote
    providers get native tool calling). Extra keyword arguments go to ``litellm.completion``.
    """

    def __init__(
        self,
        model_id: str | None = None,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        constrain_tool_calls: bool | None = None,
        **kwargs: Any,
    ) -> None:
        import_litellm()
        model_id = resolve_model(model_id or default_model())
        self.small = is_small(model_id)
        self.constrain_tool_calls = (
            self.small if constrain_tool_calls is None else constrain_tool_calls
        )
        if max_tokens is not None:
            kwargs["max_tokens"] = max_tokens
        if temperature is not None:
            kwargs["temperature"] = temperature
        elif self.small:
            kwargs.setdefault("temperature", 0.0)
        kwargs.setdefault("_skip_mcp_handler", True)
        if self.small:
            kwargs.setdefault("flatten_messages_as_text", True)
        super().__init__(model_id=model_id, api_base=api_base, api_key=api_key, **kwargs)

    @property
    def context_budget(self) -> int | None:
        """Prompt tokens that fit beside the answer, for models whose window newsdesk knows."""
        if not self.small:
            return None
        window = context_window(self.model_id or "") or 2048
        answer = int(self.kwargs.get("max_tokens") or 512)
        return max(256, window - answer - 48)

    def _adapt(
        self,
        messages: list[Any],
        response_format: dict[str, Any] | None,
        tools_to_call_from: list[Tool] | None,
    ) -> tuple[list[Any], dict[str, Any] | None]:
        budget = self.context_budget
        if budget is not None:
            messages = fit_messages(messages, budget)
        if tools_to_call_from and self.constrain_tool_calls and response_format is None:
            response_format = tool_call_format(tools_to_call_from)
        return messages, response_format

    def generate(
        self,
        messages: list[Any],
        stop_sequences: list[str] | None = None,
        response_format: dict[str, Any] | None = None,
        tools_to_call_from: list[Tool] | None = None,
        **kwargs: Any,
    ) -> ChatMessage:
        messages, response_format = self._adapt(messages, response_format, tools_to_call_from)
        return super().generate(
            messages,
            stop_sequences=stop_sequences,
            response_format=response_format,
            tools_to_call_from=tools_to_call_from,
            **kwargs,
        )

    def generate_stream(
        self,
        messages: list[Any],
        stop_sequences: list[str] | None = None,
        response_format: dict[str, Any] | None = None,
        tools_to_call_from: list[Tool] | None = None,
        **kwargs: Any,
    ) -> Generator[ChatMessageStreamDelta]:
        messages, response_format = self._adapt(messages, response_format, tools_to_call_from)
        yield from super().generate_stream(
            messages,
            stop_sequences=stop_sequences,
            response_format=response_format,
            tools_to_call_from=tools_to_call_from,
            **kwargs,
        )
