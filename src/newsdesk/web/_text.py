"""Turning untrusted text (feed titles, summaries, error messages, model output) into safe display.

Feed content is attacker-controlled: a title may carry ``<script>`` or an ``onerror=`` image. Every
string that goes into a Markdown or HTML component passes through ``md_text`` (or ``md_link``), so
it is shown as the literal characters it contains, never interpreted. Dataframe cells and
Textboxes show plain text and need nothing.
"""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import quote, urlsplit

# Every character Markdown (CommonMark + GFM tables, strikethrough, autolinks) can give a meaning
# to, except ``& < >``: those become HTML entities (a backslash before ``&`` would break them).
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~:])")


def md_text(value: Any, *, inline: bool = True) -> str:
    """``value`` as Markdown source that renders to exactly its characters (HTML escaped too)."""
    text = "" if value is None else str(value)
    if inline:
        text = " ".join(text.split())
    return html.escape(_MD_SPECIAL.sub(r"\\\1", text), quote=False)


def clip(text: str, limit: int = 160) -> str:
    """``text`` cut at a word boundary near ``limit`` characters, with an ellipsis when cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] or text[:limit]
    return cut.rstrip(" ,;:.") + "…"


def md_link(label: Any, url: str | None) -> str:
    """A Markdown link to ``url`` when it is http(s); otherwise just the escaped label."""
    shown = md_text(label)
    if not url:
        return shown
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return shown
    # Percent-encode anything that could end the link target or start markup.
    safe_url = quote(url.strip(), safe=":/?#[]@!$&'*+,;=%~-._")
    safe_url = safe_url.replace("(", "%28").replace(")", "%29").replace("'", "%27")
    return f"[{shown}](<{safe_url}>)"


def message_text(content: Any) -> str:
    """The text of a Chatbot message's content (Gradio 6 gives a list of typed parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        if content.get("type", "text") == "text":
            return str(content.get("text") or content.get("content") or "")
        return ""
    if isinstance(content, (list, tuple)):
        return "".join(message_text(part) for part in content)
    return str(content)
