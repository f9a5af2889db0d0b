"""Fit messages into a model's context window instead of failing (pure logic + one lookup)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

from newsdesk._request import Message, Request

LOCAL_CONTEXT = 2048


@functools.lru_cache(maxsize=256)
def context_window(model: str) -> int | None:
    if model.startswith("local/"):
        return LOCAL_CONTEXT
    try:
        from newsdesk._backend import import_litellm

        info = import_litellm().get_model_info(model)
    except Exception:
        return None
    window = info.get("max_input_tokens") or info.get("max_tokens")
    return int(window) if window else None


def _estimate(text: str) -> int:
    # ~3.5 characters a token for English BPE vocabularies; errs on the side of trimming.
    return int(len(text) / 3.2) + 4


def trim_messages(
    messages: list[Message], budget: int, count: Callable[[str], int] = _estimate
) -> list[Message]:
    """Drop the oldest non-system turns, then shorten the longest remaining message, until it fits.

    The system prompt and the last message are always kept (shortened if they must be; the
    last one keeps its end, where the question is).
    """
    msgs = list(messages)
    total = sum(count(m.content) for m in msgs)
    while total > budget and len(msgs) > 2:
        idx = next((i for i, m in enumerate(msgs[:-1]) if m.role != "system"), None)
        if idx is None:
            break
        total -= count(msgs[idx].content)
        msgs.pop(idx)
    while total > budget:
        idx = max(range(len(msgs)), key=lambda i: len(msgs[i].content))
        content = msgs[idx].content
        over = total - budget
        # Characters that fit this message's share (the inverse of ``_estimate``, with room for
        # the "[…]" marker); not ``over`` characters fewer, which cut everything.
        keep = max(0, min(len(content), int((count(content) - over - 4) * 3.2) - 24))
        if keep >= len(content) or keep == 0 and not content:
            break
        if idx == len(msgs) - 1 and keep:
            # The last message ends with what is asked (a question after a pasted text): keep
            # its end, and a little of its start for context.
            head = keep // 4
            cut = content[:head] + " […] " + content[len(content) - (keep - head) :]
        else:
            cut = content[: keep // 2 * 2] + " […]"
        msgs[idx] = msgs[idx].model_copy(update={"content": cut})
        total = sum(count(m.content) for m in msgs)
        if keep == 0:
            break
    return msgs


def fit_request(request: Request) -> Request:
    if os.environ.get("NEWSDESK_NO_TRIM"):
        return request
    window = context_window(request.model)
    if not window:
        return request
    budget = window - (request.max_tokens or min(512, window // 4)) - 16
    total = sum(_estimate(m.content) for m in request.messages)
    if total <= budget:
        return request
    return request.model_copy(update={"messages": trim_messages(request.messages, max(64, budget))})
