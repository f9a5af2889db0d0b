"""What a call gives back: ``Response`` (whole answer), ``Chunk`` (one streamed piece), ``Usage``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Completion(BaseModel):
    """What a backend returns: raw text plus metadata. Serialisable: this is what the cache stores."""

    text: str
    model: str
    finish_reason: str | None = "stop"
    usage: Usage = Usage()
    cost: float | None = None
    cached: bool = False


class Response(BaseModel):
    """The answer to one ``Request``.

    ``value`` is the validated ``answer_model`` instance when the request had one, else the text.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    value: Any
    text: str
    model: str
    usage: Usage = Usage()
    cost: float | None = None
    latency: float = 0.0
    cached: bool = False
    finish_reason: str | None = "stop"
    attempts: int = 1

    @property
    def content(self) -> str:
        return self.text


class Chunk(BaseModel):
    """One streamed piece. ``content`` is the new text; ``partial`` the structured answer so far
    (a dict while streaming, the validated ``answer_model`` instance on the final chunk)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    content: str = ""
    partial: Any = None
    done: bool = False
    restart: bool = False  # the answer so far was invalid and is being asked again: drop its text
    response: Response | None = None
