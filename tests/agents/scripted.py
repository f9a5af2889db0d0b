"""A smolagents ``Model`` that replies from a script instead of a language model."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

from smolagents import Model
from smolagents.models import (
    ChatMessage,
    ChatMessageToolCall,
    ChatMessageToolCallFunction,
    MessageRole,
)

_ids = itertools.count(1)


def call(name: str, **arguments: Any) -> ChatMessageToolCall:
    return ChatMessageToolCall(
        function=ChatMessageToolCallFunction(name=name, arguments=arguments),
        id=f"call_{next(_ids)}",
        type="function",
    )


def reply(*calls: ChatMessageToolCall, text: str = "") -> ChatMessage:
    return ChatMessage(role=MessageRole.ASSISTANT, content=text, tool_calls=list(calls))


def final(answer: Any) -> ChatMessage:
    return reply(call("final_answer", answer=answer))


def text_of(messages: list[Any]) -> str:
    parts = []
    for m in messages:
        content = m["content"] if isinstance(m, dict) else m.content
        if isinstance(content, list):
            parts += [str(p.get("text", "")) for p in content if isinstance(p, dict)]
        else:
            parts.append(str(content or ""))
    return "\n".join(parts)


def task_of(messages: list[Any]) -> str:
    """The run's task, from the 'New task:' message smolagents writes."""
    for m in messages:
        text = text_of([m])
        if text.startswith("New task:"):
            return text.split("\n", 1)[1].strip()
    raise AssertionError("no task in the messages")


class ScriptedModel(Model):
    """``script(messages, step)`` returns the reply; ``step`` is the run's step number (from 1,
    counted from the earlier steps' model outputs in the messages). Every call's messages are kept in ``calls`` (thread-safe: shared by many agents)."""

    def __init__(self, script: Callable[[list[Any], int], ChatMessage]) -> None:
        super().__init__(model_id="scripted")
        self.script = script
        self.calls: list[list[Any]] = []
        self._lock = threading.Lock()

    def generate(
        self,
        messages: list[Any],
        stop_sequences: list[str] | None = None,
        response_format: dict[str, Any] | None = None,
        tools_to_call_from: list[Any] | None = None,
        **kwargs: Any,
    ) -> ChatMessage:
        with self._lock:
            self.calls.append(list(messages))
        step = 1 + sum(1 for m in messages if _role(m) == "assistant")  # one per earlier step
        return self.script(messages, step)


def _role(m: Any) -> str:
    role = m["role"] if isinstance(m, dict) else m.role
    return str(getattr(role, "value", role))
