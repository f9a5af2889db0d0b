"""A small, deterministic OpenAI-compatible chat-completions server for tests and benchmarks.

Why this exists
---------------
newsdesk talks to LLM providers through LiteLLM, and its interesting behaviour (streaming,
retries, rate-limit back-off, timeouts, structured output, concurrency limits, caching) only
shows up against a real HTTP endpoint. Tests must never reach the internet, so this module is
that endpoint: a starlette app served by uvicorn on 127.0.0.1 that speaks enough of the OpenAI
wire protocol for LiteLLM's ``openai/`` provider, answers deterministically, and can be told to
misbehave in scripted ways.

It is deliberately a *standalone script* (no imports from ``newsdesk`` or ``tests``) so it can
run in a subprocess, isolated from the event loop and the monkeypatching of the code under test::

    python tests/servers/openai_server.py --host 127.0.0.1 --port 0 [--latency S]

prints exactly one line ``READY http://127.0.0.1:PORT`` to stdout once it is listening, then
serves until SIGTERM/SIGINT. ``tests/servers/plugin.py`` wraps this in pytest fixtures.

Endpoints
---------
``POST /v1/chat/completions``
    Non-streaming and streaming (SSE) chat completions. Tokens are whitespace-separated words.
    The reply is, in order of precedence: a ``[[json:...]]`` or ``[[reply:...]]`` directive; a
    JSON document valid for ``response_format`` (``json_schema`` or ``json_object``); otherwise
    ``"Echo: " + <last user message without directives>``. ``max_tokens`` /
    ``max_completion_tokens`` truncate the reply to that many words (``finish_reason="length"``),
    JSON replies included. Streams send one word (with its trailing whitespace) per chunk.
``GET /v1/models``
    A fixed list of model ids (any model name is accepted by the completions endpoint).
``POST /_control`` (``GET`` shows the current settings)
    ``{"reset": true}``, ``{"latency": S}``, ``{"chunk_delay": S}``,
    ``{"faults": [{"kind": K, "count": N, "retry_after": S}, ...]}`` (appended to a queue; each
    chat-completion request consumes one fault). Kinds: ``500``, ``503``, ``429``,
    ``malformed``, ``hang``, ``midstream``, ``empty``.
``GET /_stats``
    ``calls``, ``completed``, ``in_flight``, ``max_in_flight``, ``by_model``, ``faults_served``,
    ``last_requests`` (the last 200 request bodies, each annotated with ``_auth_present``,
    ``_auth_sha256`` = sha256 of the raw ``Authorization`` header value, and
    ``_api_key_sha256`` = sha256 of the bearer token, ``_received`` = arrival time (``time.time()``);
    the key itself is never stored).

Per-request directives
----------------------
Placed anywhere in the last user message; they override the global settings for that request:
``[[latency:1.5]]``, ``[[chunk_delay:0.01]]``, ``[[status:500]]`` (any 4xx/5xx),
``[[retry_after:2]]``, ``[[malformed]]``, ``[[hang]]``, ``[[midstream]]``, ``[[empty]]``,
``[[reply:some text]]`` and ``[[json:{...}]]`` (everything up to the *last* ``]]`` of the
message, so the JSON may contain brackets - put it last). A request carrying a fault directive
(``status``/``malformed``/``hang``/``midstream``/``empty``) does not consume a scripted fault.

Fault semantics
---------------
``500``/``503``/``429`` return an OpenAI-style error body (429 adds ``Retry-After`` when
``retry_after`` is given). ``malformed`` returns HTTP 200 whose body is not JSON (for streams:
an SSE event whose data is not JSON, then ``[DONE]``). ``hang`` never answers; it ends as soon
as the client disconnects. ``midstream`` sends two chunks of a stream (or half of a non-streamed
JSON body, with the full ``Content-Length`` declared) and then closes the connection, so the
client sees an incomplete HTTP message. ``empty`` is a valid completion with empty content.
Latency (global or directive) applies before the first byte of every reply, faults included.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import copy
import hashlib
import json
import logging
import math
import re
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CHAT_PATH = "/v1/chat/completions"
MODELS = ("gpt-4o-mini", "gpt-4o", "newsdesk-test", "newsdesk-test-json")
FAULT_KINDS = frozenset({"500", "503", "429", "malformed", "hang", "midstream", "empty"})
LAST_REQUESTS_KEPT = 200
HANG_SECONDS = 3600.0
_RECORD_KEY = "newsdesk.record"

# --------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------


@dataclass
class Fault:
    """One scripted fault entry: served ``remaining`` more times."""

    kind: str
    remaining: int = 1
    retry_after: float | None = None


@dataclass
class ServerState:
    """Global settings and counters. Everything runs on one event loop, so no locking."""

    latency: float = 0.0
    chunk_delay: float = 0.0
    baseline_latency: float = 0.0  # the --latency given at startup; what reset() restores
    faults: collections.deque[Fault] = field(default_factory=collections.deque)
    calls: int = 0
    completed: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    by_model: collections.Counter[str] = field(default_factory=collections.Counter)
    faults_served: collections.Counter[str] = field(default_factory=collections.Counter)
    last_requests: collections.deque[dict[str, Any]] = field(
        default_factory=lambda: collections.deque(maxlen=LAST_REQUESTS_KEPT)
    )

    def reset(self) -> None:
        """Clear settings and counters; ``in_flight`` stays truthful (requests may be running)."""
        self.latency = self.baseline_latency
        self.chunk_delay = 0.0
        self.faults.clear()
        self.calls = 0
        self.completed = 0
        self.max_in_flight = self.in_flight
        self.by_model.clear()
        self.faults_served.clear()
        self.last_requests.clear()

    def next_fault(self) -> Fault | None:
        """Consume one use of the first queued fault (if any)."""
        while self.faults:
            head = self.faults[0]
            if head.remaining <= 0:
                self.faults.popleft()
                continue
            head.remaining -= 1
            if head.remaining == 0:
                self.faults.popleft()
            return head
        return None

    def settings(self) -> dict[str, Any]:
        return {
            "latency": self.latency,
            "chunk_delay": self.chunk_delay,
            "faults": [
                {"kind": f.kind, "count": f.remaining, "retry_after": f.retry_after}
                for f in self.faults
            ],
        }

    def stats(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "completed": self.completed,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "by_model": dict(self.by_model),
            "faults_served": dict(self.faults_served),
            "pending_faults": sum(f.remaining for f in self.faults),
            "last_requests": list(self.last_requests),
        }


@dataclass
class RequestRecord:
    """Per-request bookkeeping shared between the middleware and the endpoint via the scope."""

    ok: bool = False  # the endpoint produced a normal (non-fault) completion
    status: int = 0
    complete: bool = False  # the final body chunk was sent


class CountingMiddleware:
    """Pure-ASGI middleware counting chat requests, including the full duration of streams."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != CHAT_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        state = self.state
        record = RequestRecord()
        scope[_RECORD_KEY] = record

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = int(message["status"])
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                record.complete = True
            await send(message)

        state.calls += 1
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            await self.app(scope, receive, tracking_send)
        finally:
            state.in_flight -= 1
            if record.ok and record.complete and record.status == 200:
                state.completed += 1


# --------------------------------------------------------------------------------------------
# Directives and prompt handling
# --------------------------------------------------------------------------------------------

_DIRECTIVE_RE = re.compile(
    r"\[\[(latency|chunk_delay|status|retry_after|malformed|hang|midstream|empty|reply)"
    r"(?::(.*?))?\]\]",
    re.DOTALL,
)
_JSON_DIRECTIVE = "[[json:"


@dataclass
class Directives:
    """Per-request overrides parsed out of the last user message."""

    latency: float | None = None
    chunk_delay: float | None = None
    status: int | None = None
    retry_after: float | None = None
    malformed: bool = False
    hang: bool = False
    midstream: bool = False
    empty: bool = False
    reply: str | None = None
    json_text: str | None = None

    @property
    def has_fault(self) -> bool:
        return bool(self.status or self.malformed or self.hang or self.midstream or self.empty)


def _to_float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def parse_directives(text: str) -> tuple[Directives, str]:
    """Extract ``[[...]]`` directives; return them and the text with directives removed."""
    d = Directives()
    start = text.find(_JSON_DIRECTIVE)
    if start >= 0:
        end = text.rfind("]]")
        if end >= start + len(_JSON_DIRECTIVE):
            d.json_text = text[start + len(_JSON_DIRECTIVE) : end]
            text = text[:start] + " " + text[end + 2 :]

    def handle(match: re.Match[str]) -> str:
        name, arg = match.group(1), match.group(2)
        if name in ("latency", "chunk_delay", "retry_after"):
            setattr(d, name, _to_float(arg))
        elif name == "status":
            with contextlib.suppress(TypeError, ValueError):
                d.status = int(arg or "")
        elif name == "reply":
            d.reply = arg or ""
        else:
            setattr(d, name, True)
        return " "

    text = _DIRECTIVE_RE.sub(handle, text)
    text = re.sub(r"[ \t]{2,}", " ", text).strip()
    return d, text


def content_text(content: Any) -> str:
    """Flatten an OpenAI message ``content`` (string or list of parts) to text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return " ".join(parts)
    return str(content)


def last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def count_words(text: str) -> int:
    return len(text.split())


_PIECE_RE = re.compile(r"\s*\S+\s*")


def split_words(text: str) -> list[str]:
    """Split into one-word pieces, each keeping its trailing whitespace ("".join == text)."""
    return _PIECE_RE.findall(text)


def truncate(text: str, max_tokens: int | None) -> tuple[str, str, int]:
    """Cut ``text`` to ``max_tokens`` words: return (text, finish_reason, completion_tokens)."""
    pieces = split_words(text)
    if max_tokens is not None and len(pieces) > max_tokens:
        return "".join(pieces[: max(max_tokens, 0)]).rstrip(), "length", max(max_tokens, 0)
    return text, "stop", len(pieces)


# --------------------------------------------------------------------------------------------
# JSON Schema -> deterministic instance
# --------------------------------------------------------------------------------------------


class SchemaInstanceGenerator:
    """Build a deterministic JSON value valid for a (pydantic-style) JSON Schema.

    Supports objects (properties/required/additionalProperties), ``$ref`` into ``$defs`` /
    ``definitions``, ``anyOf``/``oneOf``/``allOf``, ``enum``/``const``, type lists and
    nullables, strings (min/maxLength, common formats; ``pattern`` is not honoured), numbers and
    integers (minimum/maximum, exclusive bounds, multipleOf), booleans, arrays (1-3 items within
    minItems/maxItems, prefixItems, uniqueItems) and null. Choices (enum values, union members,
    numbers, words) are picked by a stable hash of the prompt and the JSON path, so different
    prompts give different but reproducible documents. Recursion is cut at ``max_depth``.
    """

    def __init__(self, root: Any, prompt: str, words: list[str], max_depth: int = 6) -> None:
        self.root = root
        self.prompt = prompt
        self.words = words or ["lorem", "ipsum", "dolor", "sit", "amet"]
        self.max_depth = max_depth

    def hash(self, path: str, salt: str = "") -> int:
        digest = hashlib.sha256(f"{self.prompt}\x00{path}\x00{salt}".encode()).digest()
        return int.from_bytes(digest[:8], "big")

    def resolve(self, schema: Any, seen: int = 0) -> Any:
        while isinstance(schema, dict) and "$ref" in schema and seen < 64:
            ref = schema["$ref"]
            target: Any = self.root
            if isinstance(ref, str) and ref.startswith("#"):
                for token in [t for t in ref[1:].split("/") if t]:
                    token = token.replace("~1", "/").replace("~0", "~")
                    target = target[int(token)] if isinstance(target, list) else target[token]
            else:
                raise ValueError(f"unsupported $ref {ref!r}")
            extra = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **extra} if extra and isinstance(target, dict) else target
            seen += 1
        return schema

    def merge_all_of(self, schema: dict[str, Any]) -> dict[str, Any]:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for sub in schema["allOf"]:
            sub = self.resolve(sub)
            if not isinstance(sub, dict):
                continue
            if "allOf" in sub:
                sub = self.merge_all_of(sub)
            for key, value in sub.items():
                if key == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **value}
                elif key == "required":
                    merged["required"] = sorted(set(merged.get("required", [])) | set(value))
                else:
                    merged.setdefault(key, value)
        return merged

    def generate(self, schema: Any, path: str = "$", depth: int = 0) -> Any:
        schema = self.resolve(schema)
        if schema is True or schema == {}:
            return self.string({}, path)
        if not isinstance(schema, dict):
            raise ValueError(f"cannot generate a value for schema {schema!r}")
        if "allOf" in schema:
            schema = self.merge_all_of(schema)
        if "const" in schema:
            return copy.deepcopy(schema["const"])
        if "enum" in schema and schema["enum"]:
            options = schema["enum"]
            return copy.deepcopy(options[self.hash(path, "enum") % len(options)])
        for key in ("anyOf", "oneOf"):
            if key in schema:
                base = {k: v for k, v in schema.items() if k not in (key, "title", "description")}
                option = self.pick_option(schema[key], path, depth)
                option = self.resolve(option)
                if base and isinstance(option, dict):
                    option = {**base, **option}
                return self.generate(option, path, depth)
        kind = schema.get("type")
        if isinstance(kind, list):
            non_null = [t for t in kind if t != "null"]
            if not non_null or (depth > self.max_depth and "null" in kind):
                return None
            kind = non_null[0]
        if kind is None:
            if "properties" in schema or "additionalProperties" in schema:
                kind = "object"
            elif "items" in schema or "prefixItems" in schema:
                kind = "array"
            else:
                kind = "string"
        if kind == "object":
            return self.object(schema, path, depth)
        if kind == "array":
            return self.array(schema, path, depth)
        if kind == "string":
            return self.string(schema, path)
        if kind == "integer":
            return self.integer(schema, path)
        if kind == "number":
            return self.number(schema, path)
        if kind == "boolean":
            return self.hash(path, "bool") % 2 == 0
        if kind == "null":
            return None
        raise ValueError(f"unsupported schema type {kind!r}")

    def pick_option(self, options: list[Any], path: str, depth: int) -> Any:
        resolved = [self.resolve(o) for o in options]
        is_null = [isinstance(o, dict) and o.get("type") == "null" for o in resolved]
        if depth > self.max_depth and any(is_null):
            return {"type": "null"}
        candidates = [o for o, null in zip(resolved, is_null, strict=True) if not null]
        if not candidates:
            return {"type": "null"}
        # Bare strings in unions are usually lax encodings (Decimal = number | string, ...),
        # and patterns are not honoured: prefer the other members when there are any.
        plain = [o for o in candidates if not (isinstance(o, dict) and "pattern" in o)]
        candidates = plain or candidates
        typed = [o for o in candidates if not (isinstance(o, dict) and o.get("type") == "string")]
        candidates = typed or candidates
        return candidates[self.hash(path, "anyOf") % len(candidates)]

    def object(self, schema: dict[str, Any], path: str, depth: int) -> dict[str, Any]:
        properties: dict[str, Any] = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        out: dict[str, Any] = {}
        for name, sub in properties.items():
            if depth >= self.max_depth and name not in required:
                continue
            out[name] = self.generate(sub, f"{path}.{name}", depth + 1)
        additional = schema.get("additionalProperties")
        min_props = int(schema.get("minProperties", 0))
        if isinstance(additional, dict) and not properties:
            wanted = max(min_props, 1 if depth < self.max_depth else 0)
            for i in range(wanted):
                key = self.word(f"{path}#key{i}", "key") + ("" if i == 0 else f"_{i}")
                out[key] = self.generate(additional, f"{path}.{key}", depth + 1)
        return out

    def array(self, schema: dict[str, Any], path: str, depth: int) -> list[Any]:
        min_items = int(schema.get("minItems", 0))
        max_items = schema.get("maxItems")
        prefix = schema.get("prefixItems") or []
        items_schema = schema.get("items", {} if not prefix else False)
        if depth >= self.max_depth:
            count = max(min_items, len(prefix))
        else:
            count = max(1 + self.hash(path, "len") % 3, min_items, len(prefix))
        if max_items is not None:
            count = min(count, int(max_items))
        unique = bool(schema.get("uniqueItems"))
        out: list[Any] = []
        seen: set[str] = set()
        attempt = 0
        while len(out) < count and attempt < count + 32:
            index = len(out)
            item_path = f"{path}[{attempt}]"
            if index < len(prefix):
                value = self.generate(prefix[index], item_path, depth + 1)
            elif items_schema is False:
                break
            else:
                value = self.generate(items_schema, item_path, depth + 1)
            attempt += 1
            key = json.dumps(value, sort_keys=True)
            if unique and key in seen:
                continue
            seen.add(key)
            out.append(value)
        return out

    def word(self, path: str, salt: str = "word") -> str:
        return self.words[self.hash(path, salt) % len(self.words)]

    def string(self, schema: dict[str, Any], path: str) -> str:
        fmt = schema.get("format")
        h = self.hash(path, "str")
        word = re.sub(r"[^a-z0-9]", "", self.word(path).lower()) or "item"
        if fmt == "date-time":
            value = f"2024-01-{1 + h % 28:02d}T{h % 24:02d}:{h % 60:02d}:00Z"
        elif fmt == "date":
            value = f"2024-{1 + h % 12:02d}-{1 + h % 28:02d}"
        elif fmt == "time":
            value = f"{h % 24:02d}:{h % 60:02d}:00"
        elif fmt == "email":
            value = f"{word}@example.com"
        elif fmt in ("uri", "url", "iri", "uri-reference"):
            value = f"https://example.com/{word}"
        elif fmt == "uuid":
            value = str(uuid.UUID(int=h << 64 | self.hash(path, "uuid2")))
        elif fmt == "ipv4":
            value = f"10.0.{h % 256}.{(h >> 8) % 256}"
        elif fmt == "ipv6":
            value = "::1"
        elif fmt == "hostname":
            value = f"{word}.example.com"
        elif fmt == "duration":
            value = f"PT{1 + h % 59}S"
        else:
            n = len(self.words)
            length = 2 + h % 3
            value = " ".join(self.words[(h + i) % n] for i in range(min(length, n)))
        max_len = schema.get("maxLength")
        if max_len is not None:
            value = value[: int(max_len)].rstrip() or value[: int(max_len)]
        min_len = int(schema.get("minLength", 0))
        if len(value) < min_len:
            value = value + "x" * (min_len - len(value))
        return value

    @staticmethod
    def bounds(schema: dict[str, Any]) -> tuple[float | None, bool, float | None, bool]:
        lo, lo_ex, hi, hi_ex = schema.get("minimum"), False, schema.get("maximum"), False
        if isinstance(schema.get("exclusiveMinimum"), int | float) and not isinstance(
            schema.get("exclusiveMinimum"), bool
        ):
            lo, lo_ex = schema["exclusiveMinimum"], True
        if isinstance(schema.get("exclusiveMaximum"), int | float) and not isinstance(
            schema.get("exclusiveMaximum"), bool
        ):
            hi, hi_ex = schema["exclusiveMaximum"], True
        return lo, lo_ex, hi, hi_ex

    def integer(self, schema: dict[str, Any], path: str) -> int:
        lo_f, lo_ex, hi_f, hi_ex = self.bounds(schema)
        lo = None if lo_f is None else (math.floor(lo_f) + 1 if lo_ex else math.ceil(lo_f))
        hi = None if hi_f is None else (math.ceil(hi_f) - 1 if hi_ex else math.floor(hi_f))
        if lo is None and hi is None:
            lo, hi = 0, 100
        elif lo is None:
            assert hi is not None
            lo = hi - 100
        elif hi is None:
            hi = lo + 100
        multiple = schema.get("multipleOf")
        h = self.hash(path, "int")
        if isinstance(multiple, int) and multiple > 0:
            first = math.ceil(lo / multiple) * multiple
            steps = max((hi - first) // multiple + 1, 1)
            return int(first + multiple * (h % steps))
        return int(lo + h % max(hi - lo + 1, 1))

    def number(self, schema: dict[str, Any], path: str) -> float:
        lo, _, hi, _ = self.bounds(schema)
        if lo is None and hi is None:
            lo, hi = 0.0, 100.0
        elif lo is None:
            assert hi is not None
            lo = hi - 100.0
        elif hi is None:
            hi = lo + 100.0
        multiple = schema.get("multipleOf")
        if isinstance(multiple, int | float) and multiple > 0:
            value = math.ceil(lo / multiple) * multiple
            if value == lo and "exclusiveMinimum" in schema:
                value += multiple
            return float(value)
        fraction = 0.05 + (self.hash(path, "num") % 9001) / 10000.0  # in [0.05, 0.95]
        value = round(lo + (hi - lo) * fraction, 4)
        if not lo < value < hi:  # rounding pushed it onto a (possibly exclusive) bound
            value = lo + (hi - lo) / 2
        return float(value)


def schema_reply(response_format: dict[str, Any], prompt: str, user_text: str) -> str | None:
    """Return JSON text for ``response_format`` (``json_schema``/``json_object``), else None."""
    kind = response_format.get("type")
    words = re.findall(r"[A-Za-z0-9][A-Za-z0-9'-]*", user_text)
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema", spec) if isinstance(spec, dict) else {}
        generator = SchemaInstanceGenerator(schema, prompt, words)
        return json.dumps(generator.generate(schema), ensure_ascii=False)
    if kind == "json_object":
        return json.dumps({"echo": user_text, "words": len(words)}, ensure_ascii=False)
    return None


# --------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    kinds = {
        400: ("invalid_request_error", None),
        401: ("invalid_request_error", "invalid_api_key"),
        403: ("invalid_request_error", "forbidden"),
        404: ("invalid_request_error", "model_not_found"),
        429: ("requests", "rate_limit_exceeded"),
        500: ("server_error", None),
        502: ("server_error", None),
        503: ("server_error", "service_unavailable"),
    }
    err_type, code = kinds.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    default = {
        429: "Rate limit reached for requests (scripted by the newsdesk test server).",
        503: "The server is overloaded or not ready yet (scripted by the newsdesk test server).",
    }.get(status, f"Scripted HTTP {status} from the newsdesk test server.")
    return {"error": {"message": message or default, "type": err_type, "param": None, "code": code}}


def error_response(status: int, retry_after: float | None = None) -> JSONResponse:
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = (
            str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)
        )
        headers["retry-after-ms"] = str(int(retry_after * 1000))
    return JSONResponse(error_body(status), status_code=status, headers=headers)


class AbortedResponse(Response):
    """Send a response start plus some body, then return without finishing the message.

    uvicorn reacts to an app that returns mid-response by closing the transport, which is the
    "connection dropped mid-stream" a client would see. (The error uvicorn logs about it is
    filtered by :class:`_QuietAbortFilter`.)
    """

    def __init__(
        self,
        parts: Iterable[bytes],
        media_type: str,
        content_length: int | None = None,
        chunk_delay: float = 0.0,
    ) -> None:
        super().__init__(status_code=200, media_type=media_type)
        self.parts = list(parts)
        self.chunk_delay = chunk_delay
        if content_length is not None:
            self.headers["content-length"] = str(content_length)
        else:
            del self.headers["content-length"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        for i, part in enumerate(self.parts):
            if i and self.chunk_delay > 0:
                await asyncio.sleep(self.chunk_delay)
            await send({"type": "http.response.body", "body": part, "more_body": True})


class NoResponse(Response):
    """Send nothing: the client has already gone away."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        return None


class _QuietAbortFilter(logging.Filter):
    """Hide uvicorn's complaint about the deliberately unfinished ``midstream`` responses."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing response" not in record.getMessage()


async def wait_disconnect(receive: Receive) -> None:
    """Return once the client has closed the connection (request body already consumed)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def sleep_unless_disconnected(receive: Receive, seconds: float) -> bool:
    """Sleep ``seconds``; return False early if the client disconnects meanwhile."""
    if seconds <= 0:
        return True
    sleeper = asyncio.ensure_future(asyncio.sleep(seconds))
    watcher = asyncio.ensure_future(wait_disconnect(receive))
    try:
        await asyncio.wait({sleeper, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sleeper, watcher):
            task.cancel()
        await asyncio.gather(sleeper, watcher, return_exceptions=True)
    return not (watcher.done() and not watcher.cancelled() and watcher.exception() is None)


class ChatCompletionServer:
    """The starlette application and its state."""

    def __init__(self, latency: float = 0.0) -> None:
        self.state = ServerState(latency=latency, baseline_latency=latency)
        self._id_counter = 0
        routes = [
            Route(CHAT_PATH, self.chat_completions, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/_control", self.control, methods=["GET", "POST"]),
            Route("/_stats", self.stats, methods=["GET"]),
            Route("/health", self.health, methods=["GET"]),
        ]
        self.starlette = Starlette(routes=routes)
        self.app: ASGIApp = CountingMiddleware(self.starlette, self.state)

    # -- control endpoints ---------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def models(self, request: Request) -> Response:
        now = int(time.time())
        data = [
            {"id": m, "object": "model", "created": now, "owned_by": "newsdesk-test"}
            for m in MODELS
        ]
        return JSONResponse({"object": "list", "data": data})

    async def stats(self, request: Request) -> Response:
        return JSONResponse(self.state.stats())

    async def control(self, request: Request) -> Response:
        state = self.state
        if request.method == "GET":
            return JSONResponse({"ok": True, "settings": state.settings()})
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse(error_body(400, "control body must be JSON"), status_code=400)
        if not isinstance(body, dict):
            return JSONResponse(error_body(400, "control body must be an object"), status_code=400)
        unknown = set(body) - {"reset", "latency", "chunk_delay", "faults"}
        if unknown:
            msg = f"unknown control keys: {sorted(unknown)}"
            return JSONResponse(error_body(400, msg), status_code=400)
        new_faults: list[Fault] = []
        for entry in body.get("faults") or []:
            if not isinstance(entry, dict) or str(entry.get("kind")) not in FAULT_KINDS:
                msg = f"bad fault {entry!r}; kinds: {sorted(FAULT_KINDS)}"
                return JSONResponse(error_body(400, msg), status_code=400)
            retry_after = entry.get("retry_after")
            new_faults.append(
                Fault(
                    kind=str(entry["kind"]),
                    remaining=int(entry.get("count", 1)),
                    retry_after=None if retry_after is None else float(retry_after),
                )
            )
        if body.get("reset"):
            state.reset()
        if "latency" in body:
            state.latency = float(body["latency"] or 0.0)
        if "chunk_delay" in body:
            state.chunk_delay = float(body["chunk_delay"] or 0.0)
        state.faults.extend(f for f in new_faults if f.remaining > 0)
        return JSONResponse({"ok": True, "settings": state.settings()})

    # -- chat completions ----------------------------------------------------------------------

    def _next_id(self) -> str:
        self._id_counter += 1
        return f"chatcmpl-test{self._id_counter:010d}"

    def _record_request(self, request: Request, body: dict[str, Any]) -> None:
        entry = dict(body)
        auth = request.headers.get("authorization")
        entry["_auth_present"] = auth is not None
        entry["_auth_sha256"] = hashlib.sha256(auth.encode()).hexdigest() if auth else None
        token = auth.split(" ", 1)[1].strip() if auth and " " in auth else auth
        entry["_api_key_sha256"] = hashlib.sha256(token.encode()).hexdigest() if token else None
        entry["_received"] = (
            time.time()
        )  # wall clock: rate tests compare arrivals from many processes
        self.state.last_requests.append(entry)
        self.state.by_model[str(body.get("model"))] += 1

    async def chat_completions(self, request: Request) -> Response:
        state = self.state
        record: RequestRecord = request.scope.get(_RECORD_KEY) or RequestRecord()
        try:
            body = json.loads(await request.body())
        except ValueError:
            return JSONResponse(error_body(400, "request body is not valid JSON"), status_code=400)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            msg = "'messages' is a required property"
            return JSONResponse(error_body(400, msg), status_code=400)
        self._record_request(request, body)

        messages: list[Any] = body["messages"]
        stream = bool(body.get("stream"))
        directives, user_text = parse_directives(last_user_text(messages))

        # Which fault (if any) applies: a directive wins and leaves the scripted queue alone.
        fault_kind: str | None = None
        retry_after = directives.retry_after
        if directives.has_fault:
            if directives.status:
                fault_kind = str(directives.status)
            elif directives.hang:
                fault_kind = "hang"
            elif directives.malformed:
                fault_kind = "malformed"
            elif directives.midstream:
                fault_kind = "midstream"
            else:
                fault_kind = "empty"
        else:
            scripted = state.next_fault()
            if scripted is not None:
                fault_kind = scripted.kind
                if retry_after is None:
                    retry_after = scripted.retry_after
        if fault_kind is not None:
            state.faults_served[fault_kind] += 1

        latency = directives.latency if directives.latency is not None else state.latency
        chunk_delay = (
            directives.chunk_delay if directives.chunk_delay is not None else state.chunk_delay
        )
        if fault_kind == "hang":
            latency = HANG_SECONDS
        if not await sleep_unless_disconnected(request.receive, latency):
            return NoResponse()
        if fault_kind == "hang":  # pragma: no cover - only after an hour
            return NoResponse()

        if fault_kind is not None and fault_kind.isdigit():
            status = int(fault_kind)
            if 400 <= status <= 599:
                return error_response(status, retry_after if status == 429 else None)
        if fault_kind == "malformed":
            if stream:
                return Response(
                    b"data: {this is not json\n\ndata: [DONE]\n\n", media_type="text/event-stream"
                )
            return Response(b"<html>this is not JSON {", media_type="application/json")

        # The reply text.
        prompt = "\n".join(content_text(m.get("content")) for m in messages if isinstance(m, dict))
        if fault_kind == "empty":
            text: str = ""
        elif directives.json_text is not None:
            text = directives.json_text
        elif directives.reply is not None:
            text = directives.reply
        else:
            response_format = body.get("response_format")
            generated = None
            if isinstance(response_format, dict):
                try:
                    generated = schema_reply(response_format, prompt, user_text)
                except (ValueError, KeyError, IndexError, TypeError) as exc:
                    msg = f"cannot generate output for response_format: {exc}"
                    return JSONResponse(error_body(400, msg), status_code=400)
            text = generated if generated is not None else "Echo: " + user_text

        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        limit = int(max_tokens) if isinstance(max_tokens, int | float) else None
        text, finish_reason, completion_tokens = truncate(text, limit)
        prompt_tokens = count_words(prompt)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        completion_id = self._next_id()
        created = int(time.time())
        model = str(body.get("model") or "newsdesk-test")

        if stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = self._stream_events(
                completion_id, created, model, text, finish_reason, usage, include_usage
            )
            if fault_kind == "midstream":
                return AbortedResponse(events[:2], "text/event-stream", chunk_delay=chunk_delay)
            record.ok = True
            return StreamingResponse(
                self._paced(events, chunk_delay),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )

        payload = {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_newsdesk_test",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": usage,
        }
        raw = json.dumps(payload, ensure_ascii=False).encode()
        if fault_kind == "midstream":
            return AbortedResponse([raw[: len(raw) // 2]], "application/json", len(raw))
        record.ok = True
        return Response(raw, media_type="application/json")

    @staticmethod
    def _stream_events(
        completion_id: str,
        created: int,
        model: str,
        text: str,
        finish_reason: str,
        usage: dict[str, int],
        include_usage: bool,
    ) -> list[bytes]:
        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            chunk = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_newsdesk_test",
                "choices": choices,
                **extra,
            }
            return b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n"

        pieces = split_words(text) or [""]
        events = []
        for i, piece in enumerate(pieces):
            delta: dict[str, Any] = (
                {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            )
            events.append(event([{"index": 0, "delta": delta, "finish_reason": None}]))
        events.append(event([{"index": 0, "delta": {}, "finish_reason": finish_reason}]))
        if include_usage:
            events.append(event([], usage=usage))
        events.append(b"data: [DONE]\n\n")
        return events

    @staticmethod
    async def _paced(events: list[bytes], chunk_delay: float) -> Any:
        for i, chunk in enumerate(events):
            if i and chunk_delay > 0:
                await asyncio.sleep(chunk_delay)
            yield chunk


# --------------------------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------------------------


def _fast_options() -> dict[str, str]:
    """Use httptools/uvloop when installed (several times the throughput), else the defaults."""
    options: dict[str, str] = {}
    try:
        import httptools  # noqa: F401

        options["http"] = "httptools"
    except ImportError:
        options["http"] = "h11"
    try:
        import uvloop  # noqa: F401

        options["loop"] = "uvloop"
    except ImportError:
        options["loop"] = "asyncio"
    return options


class _ReadyServer(uvicorn.Server):
    """uvicorn server printing the READY line once the socket is accepting connections."""

    def __init__(self, config: uvicorn.Config, ready_line: str) -> None:
        super().__init__(config)
        self.ready_line = ready_line

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            sys.stdout.write(self.ready_line + "\n")
            sys.stdout.flush()


def serve(
    host: str = "127.0.0.1", port: int = 0, latency: float = 0.0, backlog: int = 2048
) -> None:
    """Bind, print ``READY http://HOST:PORT``, and serve until SIGTERM/SIGINT."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    bound_port = sock.getsockname()[1]
    url_host = f"[{host}]" if family == socket.AF_INET6 else host

    app = ChatCompletionServer(latency=latency).app
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        limit_concurrency=None,
        backlog=backlog,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=2,
        lifespan="off",
        **_fast_options(),  # type: ignore[arg-type]
    )
    server = _ReadyServer(config, f"READY http://{url_host}:{bound_port}")
    logging.getLogger("uvicorn.error").addFilter(_QuietAbortFilter())
    server.run(sockets=[sock])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (0 = pick a free one)")
    parser.add_argument("--latency", type=float, default=0.0, help="initial global latency (s)")
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.latency)


if __name__ == "__main__":
    main()
