"""``Request``: everything one model call needs, validated at construction."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from newsdesk._config import default_model

Role = Literal["system", "user", "assistant", "tool"]
CachePolicy = Literal["use", "refresh", "off"]
"""``use``: read and write the cache; ``refresh``: skip the read, write the new answer; ``off``: neither."""

# Parameters that change the answer: they go into the cache key. Anything else in ``extra``
# (headers, organisation ids, ...) is transport detail and stays out of it.
_OUTPUT_PARAMS = frozenset(
    {
        "top_p",
        "top_k",
        "seed",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "tools",
        "tool_choice",
        "n",
        "reasoning_effort",
        "response_format",
    }
)


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Role
    content: str

    @field_validator("content", mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        if v is None:
            return ""
        return v


class Request(BaseModel):
    """One model call. Invalid requests fail here, with pydantic's clear message.

    ``model`` is any LiteLLM model string (``openai/gpt-4o-mini``, ``ollama/llama3``...), or
    ``local/smollm2`` (the embedded model, the default), or an alias ``fast`` / ``strong``
    resolved from ``NEWSDESK_FAST_MODEL`` / ``NEWSDESK_STRONG_MODEL``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    model: str = Field(default_factory=default_model, min_length=1)
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    answer_model: type[BaseModel] | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    timeout: float = Field(default=120.0, gt=0, description="seconds for one attempt")
    retries: int = Field(default=2, ge=0, le=10)
    cache: CachePolicy = "use"
    cache_ttl: float | None = Field(default=None, gt=0)
    fallbacks: list[str] = Field(default_factory=list)
    api_base: str | None = None
    api_key: SecretStr | None = Field(default=None, repr=False)
    extra: dict[str, Any] = Field(default_factory=dict, description="passed through to LiteLLM")

    @field_validator("answer_model")
    @classmethod
    def _is_model(cls, v: Any) -> Any:
        if v is not None and not (isinstance(v, type) and issubclass(v, BaseModel)):
            raise ValueError("answer_model must be a pydantic BaseModel subclass")
        return v

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key(cls, v: Any) -> Any:
        return None if v == "" else v

    @model_validator(mode="after")
    def _check(self) -> Request:
        if not self.model.strip():
            raise ValueError("model must not be blank")
        if "api_key" in self.extra:
            raise ValueError(
                "pass api_key as Request(api_key=...), not in extra, so it is kept secret"
            )
        return self

    @classmethod
    def prompt(cls, text: str, **kw: Any) -> Request:
        """Shorthand for a one-message request."""
        return cls(messages=[Message(role="user", content=text)], **kw)

    def answer_schema(self) -> dict[str, Any] | None:
        return self.answer_model.model_json_schema() if self.answer_model else None

    def output_params(self) -> dict[str, Any]:
        """The pass-through settings that change the answer (part of the cache key)."""
        return {k: v for k, v in self.extra.items() if k in _OUTPUT_PARAMS}

    def cache_identity(self) -> str:
        """Canonical JSON of everything that changes the answer. Never includes the API key."""
        ident = {
            "v": 1,
            "model": self.model,
            "api_base": self.api_base,
            "messages": [m.model_dump(mode="json") for m in self.messages],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "schema": self.answer_schema(),
            "params": self.output_params(),
        }
        return json.dumps(ident, sort_keys=True, ensure_ascii=False, default=str)
