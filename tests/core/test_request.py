"""Request validation: invalid requests fail at construction with a clear message."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from newsdesk import Message, Request


def msgs(text: str = "hi") -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_valid_request_defaults() -> None:
    r = Request(model="openai/x", messages=msgs())
    assert r.messages == [Message(role="user", content="hi")]
    assert r.cache == "use" and r.retries == 2 and not r.stream


def test_empty_messages_rejected() -> None:
    with pytest.raises(ValidationError, match="messages"):
        Request(model="openai/x", messages=[])


def test_bad_role_rejected() -> None:
    with pytest.raises(ValidationError, match="role"):
        Request(model="openai/x", messages=[{"role": "wizard", "content": "hi"}])


@pytest.mark.parametrize("temperature", [-0.1, 2.5])
def test_temperature_out_of_range(temperature: float) -> None:
    with pytest.raises(ValidationError, match="temperature"):
        Request(model="openai/x", messages=msgs(), temperature=temperature)


def test_temperature_bounds_accepted() -> None:
    assert Request(model="openai/x", messages=msgs(), temperature=0).temperature == 0
    assert Request(model="openai/x", messages=msgs(), temperature=2).temperature == 2


class _Thing(BaseModel):
    x: int = 1


@pytest.mark.parametrize("bad", [dict, "Answer", 42, _Thing(), int])
def test_answer_model_must_be_basemodel_subclass(bad: object) -> None:
    with pytest.raises(ValidationError, match="answer_model"):
        Request(model="openai/x", messages=msgs(), answer_model=bad)  # type: ignore[arg-type]


def test_api_key_in_extra_rejected() -> None:
    with pytest.raises(ValidationError, match="api_key"):
        Request(model="openai/x", messages=msgs(), extra={"api_key": "sk-secret"})


@pytest.mark.parametrize(
    "field,value",
    [
        ("model", ""),
        ("model", "   "),
        ("max_tokens", 0),
        ("timeout", 0),
        ("retries", -1),
        ("cache", "sometimes"),
    ],
)
def test_other_bad_fields(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        Request(messages=msgs(), **{field: value})  # type: ignore[arg-type]


def test_api_key_is_secret_and_not_in_repr() -> None:
    r = Request(model="openai/x", messages=msgs(), api_key="sk-very-secret")
    assert "sk-very-secret" not in repr(r)
    assert "sk-very-secret" not in str(r)
    assert "sk-very-secret" not in r.model_dump_json()
    assert "sk-very-secret" not in r.cache_identity()
    assert r.api_key is not None and r.api_key.get_secret_value() == "sk-very-secret"


def test_request_is_frozen() -> None:
    r = Request(model="openai/x", messages=msgs())
    with pytest.raises(ValidationError):
        r.model = "openai/y"  # type: ignore[misc]


def test_prompt_shorthand() -> None:
    r = Request.prompt("hello", model="openai/x")
    assert r.messages[0].role == "user" and r.messages[0].content == "hello"
