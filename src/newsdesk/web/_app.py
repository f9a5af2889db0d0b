"""The Gradio app: Chat, News and History tabs over one shared ``Gateway`` and ``Store``.

Other tabs (the Agent tab) plug in through ``register_tab`` or ``build_app(extra_tabs=...)``: a
tab builder is called inside the app's ``gr.Tabs`` with the ``WebContext`` and creates its own
``gr.Tab``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import os
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from newsdesk._exceptions import MissingExtraError, NewsdeskError
from newsdesk.web._aio import closing
from newsdesk.web._context import TabBuilder, WebContext, api_base_for
from newsdesk.web._security import KeyGuardBackend, KeyPolicy, LoginGuard
from newsdesk.web._text import md_text, message_text

if TYPE_CHECKING:
    import gradio as gr

    from newsdesk._client import Gateway
    from newsdesk.news import AnalysisExecutor

WAITING = "_… waiting for the first token_"  # shown until the reply starts
CHAT_UPDATE_INTERVAL = 0.04  # seconds between chat UI updates (a token at a time at ~25/s)
DEFAULT_CONCURRENCY = 8  # events of one kind running at once across all sessions (>= 4 sessions)
MODEL_CHOICES = ["local/smollm2", "fast", "strong", "openai/gpt-4o-mini", "ollama/llama3"]

INTRO = (
    "**News** analyzes feeds — the bundled demo feeds are checked, press **Run** · "
    "**Chat** talks to the model · **History** searches past runs · "
    "**Agent** answers questions about the stored news"
)

CSS = """
#news-inflight textarea { font-family: ui-monospace, monospace; font-size: 12px; }
#news-status table { font-size: 13px; }
footer { display: none !important; }
"""


__all__ = ["TabBuilder", "WebContext", "api_base_for", "build_app", "register_tab", "serve"]

_registered: list[TabBuilder] = []


def register_tab(builder: TabBuilder) -> TabBuilder:
    """Add a tab to every app built from now on (usable as a decorator)."""
    if builder not in _registered:
        _registered.append(builder)
    return builder


def import_gradio() -> Any:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio
    except ImportError as exc:
        raise MissingExtraError("the web app", "web") from exc
    return gradio


def _load_optional_tabs() -> None:
    """The Agent tab, when the agents extra (smolagents) is installed."""
    if importlib.util.find_spec("smolagents") is None:
        return
    from newsdesk.web._agent_tab import agent_tab

    register_tab(agent_tab)


def build_app(
    *,
    model: str | None = None,
    api_base: str | None = None,
    store_path: str | Path | None = None,
    cache: str | None = None,
    extra_tabs: Sequence[TabBuilder] = (),
    gateway: Gateway | None = None,
    allowed_api_bases: Sequence[str] = (),
    private_sources: bool = True,
    executor: AnalysisExecutor | None = None,
) -> gr.Blocks:
    """The whole app, queue configured; ``launch()`` it or use ``serve()``.

    ``private_sources=False`` (what ``serve`` passes unless ``--allow-private-sources``): feeds
    and pages on loopback, private, link-local and metadata addresses are refused.
    ``executor``: who analyzes the News tab's articles (None: this process; a
    ``newsdesk.scale.QueueExecutor``: the workers behind a Redis queue).

    ``cache``: as ``--cache`` (None: memory + disk). Chat requests never use the cache.
    The server's API keys go only to providers' own endpoints, ``api_base`` and
    ``allowed_api_bases`` (a ``gateway`` you pass is used as it is: guard it yourself).
    """
    gr = import_gradio()
    from newsdesk._client import Gateway
    from newsdesk._config import default_model
    from newsdesk.news import NewsDesk, Store
    from newsdesk.web._history import build_history_tab
    from newsdesk.web._news import build_news_tab

    _load_optional_tabs()
    from newsdesk._backend import LiteLLMBackend

    policy = KeyPolicy.of([api_base, *allowed_api_bases])
    gw = gateway or Gateway(
        cache=cache if cache is not None else "disk",
        backend=KeyGuardBackend(LiteLLMBackend(), policy),
    )
    desk = NewsDesk(
        gateway=gw, store=Store(store_path), private_sources=private_sources, executor=executor
    )
    chosen = model or default_model()
    choices = [chosen, *[c for c in MODEL_CHOICES if c != chosen]]

    with gr.Blocks(title="newsdesk", analytics_enabled=False) as demo:
        with gr.Row(equal_height=True):
            gr.Markdown("## newsdesk", elem_id="brand")
            model_box = gr.Dropdown(
                choices,
                value=chosen,
                allow_custom_value=True,
                label="Model",
                info="Any LiteLLM model string; local/smollm2 runs on this machine.",
                elem_id="model",
                scale=2,
            )
            api_base_box = gr.Textbox(
                value=api_base or "",
                label="API base (optional)",
                placeholder="http://localhost:11434 or an OpenAI-compatible URL",
                elem_id="api-base",
                scale=2,
            )
            api_key_box = gr.Textbox(
                value="",
                type="password",
                label="API key (optional)",
                info="Your own key for your own API base; kept in this browser session only.",
                elem_id="api-key",
                scale=1,
            )
        ctx = WebContext(
            desk=desk,
            model=model_box,
            api_base=api_base_box,
            default_model=chosen,
            key_policy=policy,
            api_key=api_key_box,
        )
        gr.Markdown(INTRO, elem_id="intro")
        # The News tab is the main job: the app opens on it, demo feeds already checked.
        with gr.Tabs(elem_id="tabs", selected="news"):
            build_news_tab(ctx)
            build_chat_tab(ctx)
            build_history_tab(ctx)
            for builder in dict.fromkeys([*_registered, *extra_tabs]):  # each tab once
                builder(ctx)
    demo.queue(default_concurrency_limit=DEFAULT_CONCURRENCY)
    demo.newsdesk_context = ctx  # for tests and embedding apps
    return demo


# ---------------------------------------------------------------- chat


def _chat_request(
    history: list[dict[str, Any]],
    *,
    model: str,
    api_base: str | None,
    api_key: str | None = None,
    system: str | None,
    max_tokens: int | None,
    temperature: float | None,
) -> Any:
    from pydantic import SecretStr

    from newsdesk._request import Message, Request

    messages = [Message(role="system", content=system)] if system and system.strip() else []
    for m in history:
        role = m.get("role")
        text = message_text(m.get("content"))
        if role in ("user", "assistant") and text:
            messages.append(Message(role=role, content=text))
    return Request(
        model=model,
        api_base=api_base,
        api_key=SecretStr(api_key) if api_key else None,
        messages=messages,
        max_tokens=max_tokens,
        temperature=temperature,
        cache="off",
        retries=0,
    )


async def chat_reply(
    gateway: Gateway,
    message: str | None,
    history: list[dict[str, Any]] | None,
    *,
    model: str,
    api_base: str | None = None,
    api_key: str | None = None,
    system: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    interval: float = CHAT_UPDATE_INTERVAL,
) -> AsyncIterator[list[dict[str, Any]]]:
    """The chat history after each streamed piece of the reply. Errors end up as a message in
    the chat. Closing this generator (or cancelling its task) closes the model stream, which
    stops the provider call."""
    from newsdesk._backend import check_model
    from newsdesk._context import context_window, fit_request

    turns = [
        {"role": m.get("role"), "content": message_text(m.get("content"))} for m in history or []
    ]
    text = (message or "").strip()
    if not text:
        yield turns
        return
    turns.append({"role": "user", "content": text})
    reply: dict[str, Any] = {"role": "assistant", "content": ""}
    yield [*turns, {"role": "assistant", "content": WAITING}]
    note = ""
    try:
        await asyncio.to_thread(check_model, model, api_base=api_base)
        window = await asyncio.to_thread(context_window, model)
        if window and max_tokens and max_tokens > window - 256:
            max_tokens = max(16, window - 256)  # leave the conversation some room
        request = _chat_request(
            turns,
            model=model,
            api_base=api_base,
            api_key=api_key,
            system=system,
            max_tokens=max_tokens,
            temperature=temperature,
        )
        fitted = fit_request(request)
        if fitted.messages[-1].content != request.messages[-1].content:
            note = (
                f"_Your message was shortened to fit the model's context window ({window} "
                "tokens): its start and end were kept._"
            )
        last = 0.0
        async with closing(gateway.stream(request)) as chunks:
            async for chunk in chunks:
                if chunk.restart:
                    reply["content"] = ""
                if chunk.done:
                    break
                if chunk.content:
                    reply["content"] += chunk.content
                    now = time.monotonic()
                    if now - last >= interval:
                        last = now
                        yield [*turns, dict(reply)]
        if not reply["content"].strip():
            reply["content"] = "_(the model returned no text)_"
        if note:
            reply["content"] += f"\n\n{note}"
    except NewsdeskError as exc:
        reply["content"] = _with_error(reply["content"], str(exc))
    except Exception as exc:  # a bug must not become a traceback in the page
        reply["content"] = _with_error(reply["content"], f"unexpected {type(exc).__name__}: {exc}")
    yield [*turns, reply]


def _with_error(partial: str, error: str) -> str:
    note = f"**Error:** {md_text(error)}"
    return f"{partial}\n\n{note}" if partial.strip() else note


def _token_cap(model: str) -> int:
    """The Max tokens slider's top: the model's context window when known (2048 for the
    embedded model, whose prompt would otherwise be squeezed to nothing), else 4096."""
    from newsdesk._context import context_window

    if not model.startswith("local/"):
        return 4096  # looking a remote window up would import LiteLLM while the page builds
    return context_window(model) or 4096


def build_chat_tab(ctx: WebContext) -> None:
    import gradio as gr

    with gr.Tab("Chat", id="chat", elem_id="tab-chat"):
        chatbot = gr.Chatbot(
            label="Chat",
            height=460,
            elem_id="chatbot",
            buttons=["copy", "copy_all"],
            placeholder="Ask anything. Replies stream token by token.",
        )
        with gr.Row():
            msg = gr.Textbox(
                placeholder="Type a message and press Enter",
                show_label=False,
                scale=6,
                elem_id="chat-input",
                autofocus=True,
            )
            send = gr.Button("Send", variant="primary", scale=1, elem_id="chat-send")
            stop = gr.Button("Stop", variant="stop", scale=1, elem_id="chat-stop")
            clear = gr.Button("Clear", scale=1, elem_id="chat-clear")
        with gr.Accordion("Settings", open=False):
            system = gr.Textbox("", label="System prompt", lines=2, elem_id="chat-system")
            with gr.Row():
                max_tokens = gr.Slider(
                    8,
                    _token_cap(ctx.default_model),
                    value=512,
                    step=8,
                    label="Max tokens",
                    info="At most the model's context window (the prompt needs room too).",
                    elem_id="chat-max-tokens",
                )
                temperature = gr.Slider(0, 2, value=0.7, step=0.05, label="Temperature")

        async def respond(
            message: str,
            history: list[dict[str, Any]],
            model: str | None,
            api_base: str | None,
            system_prompt: str | None,
            max_tok: float | None,
            temp: float | None,
            user_key: str | None = None,
        ) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
            chosen = (model or "").strip() or ctx.default_model
            base = api_base_for(chosen, api_base)
            async with closing(
                chat_reply(
                    ctx.gateway,
                    message,
                    history,
                    model=chosen,
                    api_base=base,
                    api_key=ctx.key_policy.api_key_for(base, user_key),
                    system=system_prompt,
                    max_tokens=int(max_tok) if max_tok else None,
                    temperature=float(temp) if temp is not None else None,
                )
            ) as updates:
                async for turns in updates:
                    yield turns, ""

        event = gr.on(
            [msg.submit, send.click],
            respond,
            inputs=[
                msg,
                chatbot,
                ctx.model,
                ctx.api_base,
                system,
                max_tokens,
                temperature,
                *([ctx.api_key] if ctx.api_key is not None else []),
            ],
            outputs=[chatbot, msg],
            api_name="chat",
            show_progress="hidden",
        )
        stop.click(None, cancels=[event])
        ctx.model.change(
            lambda m: gr.update(maximum=_token_cap((m or "").strip() or ctx.default_model)),
            [ctx.model],
            [max_tokens],
            api_visibility="private",
            queue=False,
        )
        clear.click(
            lambda: ([], ""), None, [chatbot, msg], cancels=[event], api_visibility="private"
        )


# ---------------------------------------------------------------- serving


def theme() -> Any:
    gr = import_gradio()
    # System fonts only: the app must look right with no internet.
    return gr.themes.Soft(
        primary_hue="indigo",
        font=["ui-sans-serif", "system-ui", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "monospace"],
    )


def launch_kwargs(
    host: str, port: int, auth: tuple[str, str] | None, *, quiet: bool = False
) -> dict[str, Any]:
    """What ``serve`` passes to ``Blocks.launch`` (tests reuse it to launch in a thread)."""
    return {
        "server_name": host,
        "server_port": port,
        # Gradio awaits an async auth function: failed logins are slowed, then locked out.
        "auth": LoginGuard(auth).check if auth else None,
        "share": False,
        "ssr_mode": False,
        "show_error": False,
        "quiet": quiet,
        "theme": theme(),
        "css": CSS,
        "footer_links": [],
        "max_file_size": "20mb",
        "enable_monitoring": False,
        "mcp_server": False,
    }


def serve(
    host: str = "127.0.0.1",
    port: int = 7860,
    auth: tuple[str, str] | None = None,
    *,
    model: str | None = None,
    api_base: str | None = None,
    store_path: str | Path | None = None,
    cache: str | None = None,
    quiet: bool = False,
    block: bool = True,
    allow_api_bases: Sequence[str] = (),
    allow_private_sources: bool = False,
    executor: AnalysisExecutor | None = None,
) -> gr.Blocks:
    """Build the app and serve it until interrupted (``block=False``: return once it is up).

    Web users must not reach the server's own network: feeds and pages on loopback, private,
    link-local and metadata addresses are refused unless ``allow_private_sources``.
    """
    from newsdesk._backend import import_litellm

    demo = build_app(
        private_sources=allow_private_sources,
        model=model,
        api_base=api_base,
        store_path=store_path,
        cache=cache,
        allowed_api_bases=allow_api_bases,
        executor=executor,
    )
    # LiteLLM is imported before the server starts, so the first chat reply does not wait for
    # it. Not in a background thread: one still importing at interpreter exit deadlocked
    # shutdown elsewhere (see _backend's warm-up).
    with contextlib.suppress(Exception):
        import_litellm()
    demo.launch(prevent_thread_lock=not block, **launch_kwargs(host, port, auth, quiet=quiet))
    if block:  # the server has stopped (Ctrl-C)
        ctx: WebContext = getattr(demo, "newsdesk_context")  # noqa: B009
        with contextlib.suppress(Exception):
            ctx.store.close()
        with contextlib.suppress(Exception):
            ctx.gateway.close()
    return demo
