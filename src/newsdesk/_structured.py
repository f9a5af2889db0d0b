"""Structured answers: parse model text into the request's ``answer_model`` (pure functions)."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ValidationError

from newsdesk._exceptions import BadResponse, TruncatedAnswer
from newsdesk._request import Request
from newsdesk._response import Completion

_FENCE = re.compile(r"^\s*```(?:json)?\s*|\s*```\s*$", re.I)


def _strip(text: str) -> str:
    text = _FENCE.sub("", text.strip())
    start = text.find("{")
    return text[start:] if start > 0 else text


def parse_partial(text: str) -> dict[str, Any] | None:
    """The answer so far, from incomplete JSON (None until an object has started)."""
    body = _strip(text)
    if not body.startswith("{"):
        return None
    from partial_json_parser import loads

    try:
        value = loads(body)
    except Exception:
        return None
    return value if isinstance(value, dict) else None


def parse_answer(
    text: str, answer_model: type[BaseModel], *, model: str, finish_reason: str | None
) -> BaseModel:
    body = _strip(text)
    try:
        return answer_model.model_validate_json(body)
    except ValidationError as exc:
        if finish_reason == "length":
            raise TruncatedAnswer(
                f"{model}: the answer was cut off by max_tokens before the JSON was complete",
                model=model,
            ) from exc
        # Some models wrap the object or add trailing text: try the first complete JSON object.
        try:
            obj, _ = json.JSONDecoder().raw_decode(body)
            return answer_model.model_validate(obj)
        except (ValueError, ValidationError):
            pass
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": str(exc)}
        where = ".".join(str(p) for p in first.get("loc", ())) or "answer"
        raise BadResponse(
            f"{model}: the answer does not match {answer_model.__name__} ({where}: {first.get('msg')})",
            model=model,
        ) from exc


def answer_value(request: Request, completion: Completion) -> Any:
    """What ``completion`` answers to ``request``: the validated ``answer_model`` instance, or the
    text. ``BadResponse`` (``TruncatedAnswer`` when max_tokens cut it) when it is no answer."""
    if request.answer_model is None:
        if completion.finish_reason == "length" and not completion.text:
            raise BadResponse(
                f"{request.model}: max_tokens ran out before any text", model=request.model
            )
        return completion.text
    return parse_answer(
        completion.text,
        request.answer_model,
        model=request.model,
        finish_reason=completion.finish_reason,
    )
