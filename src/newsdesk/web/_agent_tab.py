"""The web app's Agent tab: ask the news agent, watch its steps stream into a Chatbot.

Wire it in with ``build_app(extra_tabs=[agent_tab])`` (or ``register_tab(agent_tab)``); it is
a tab builder: called inside the app's ``gr.Tabs`` with the ``WebContext``. Gradio is imported
only when the tab is built. ``agent_reply`` (the chat history after each event) has no Gradio
in it, so it is testable alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from newsdesk.web._text import md_text, message_text

if TYPE_CHECKING:
    from newsdesk.web._context import WebContext

MAX_SHOWN = 1500  # characters of a tool result shown in the chat


def _fence(text: str, lang: str = "text") -> str:
    """Tool calls and output (feed text: untrusted) as a code block, shown literally."""
    body = text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + " …"
    return f"```{lang}\n" + body.replace("```", "'''") + "\n```"


def _args(arguments: Any) -> str:
    if isinstance(arguments, dict):
        return ", ".join(f"{k}={v!r}" for k, v in arguments.items())
    return repr(arguments)


def apply_event(turns: list[dict[str, Any]], ev: Any) -> None:
    """Add (in place) what one ``AgentEvent`` shows: tool calls and results as collapsible
    "thought" messages (``metadata.title``), step errors as notes, the answer as the reply."""
    if ev.kind == "tool_call" and ev.tool != "final_answer":
        turns.append(
            {
                "role": "assistant",
                # A code block shows the call literally (no Markdown escapes to read through).
                "content": _fence(f"{ev.tool}({_args(ev.arguments)})", "python"),
                "metadata": {
                    "title": f"Step {ev.step}: {ev.tool}",
                    "status": "pending",
                    "id": ev.call_id or "",
                },
            }
        )
    elif ev.kind == "tool_result" and ev.tool != "final_answer":
        for m in reversed(turns):
            meta = m.get("metadata") or {}
            if meta.get("id") == (ev.call_id or "") and meta.get("status") == "pending":
                m["content"] = message_text(m["content"]) + "\n\n" + _fence(ev.text)
                meta["status"] = "done"
                break
        else:
            turns.append(
                {
                    "role": "assistant",
                    "content": _fence(ev.text),
                    "metadata": {"title": f"{ev.tool} result", "status": "done"},
                }
            )
    elif ev.kind == "step" and ev.error:
        first = ev.error.splitlines()[0] if ev.error else ""
        turns.append(
            {
                "role": "assistant",
                "content": md_text(first[:400]),
                "metadata": {"title": f"⚠ step {ev.step} went wrong", "status": "done"},
            }
        )
    elif ev.kind == "planning":
        turns.append(
            {
                "role": "assistant",
                "content": md_text(ev.text[:1500], inline=False),
                "metadata": {"title": "plan", "status": "done"},
            }
        )
    elif ev.kind == "final":
        turns.append(
            {"role": "assistant", "content": md_text(ev.text, inline=False).replace("\n", "  \n")}
        )
    elif ev.kind == "error":
        turns.append(
            {
                "role": "assistant",
                "content": f"**Error:** {md_text(ev.error or 'the agent failed')}",
            }
        )


async def agent_reply(
    question: str | None, history: list[dict[str, Any]] | None, make_agent: Callable[[], Any]
) -> AsyncIterator[list[dict[str, Any]]]:
    """The chat history after each agent event, ending with the answer (or the error).
    Closing this generator (or cancelling its task: the Stop button) stops the agent at its
    next step."""
    from newsdesk.agents import astream_agent
    from newsdesk.web._aio import closing

    turns = [dict(m) for m in history or []]
    text = (question or "").strip()
    if not text:
        yield turns
        return
    turns.append({"role": "user", "content": text})
    yield list(turns)
    try:
        agent = await asyncio.to_thread(make_agent)  # the first one imports LiteLLM: seconds
    except Exception as exc:  # a bad model name or a missing extra: say so in the chat
        turns.append({"role": "assistant", "content": f"**Error:** {md_text(str(exc))}"})
        yield turns
        return
    async with closing(astream_agent(agent, text)) as events:
        async for ev in events:
            if ev.kind == "delta":
                continue
            apply_event(turns, ev)
            yield [dict(m) for m in turns]


def agent_tab(ctx: WebContext, *, max_steps: int | None = None, label: str = "Agent") -> None:
    """Build the Agent tab (call inside ``gr.Tabs``; ``ctx`` is the app's ``WebContext``).

    The agent uses the app's model and API base fields and its store; each question gets a
    fresh agent, so sessions never share memory.
    """
    import gradio as gr

    from newsdesk.agents import news_agent
    from newsdesk.web._aio import closing

    with gr.Tab(label, id="agent", elem_id="tab-agent"):
        gr.Markdown(
            "Ask about the stored news. The agent searches and reads the analyzed articles with "
            "tools; each step shows as it happens. The embedded model follows a fixed "
            "search-then-answer plan and is often wrong: trust its **Sources**."
        )
        chatbot = gr.Chatbot(
            label="Agent",
            height=460,
            elem_id="agent-chatbot",
            placeholder="e.g. What happened with the floods?",
        )
        with gr.Row():
            question = gr.Textbox(
                placeholder="Ask a question and press Enter",
                show_label=False,
                scale=6,
                elem_id="agent-input",
            )
            ask = gr.Button("Ask", variant="primary", scale=1, elem_id="agent-ask")
            stop = gr.Button("Stop", variant="stop", scale=1, elem_id="agent-stop")
            clear = gr.Button("Clear", scale=1, elem_id="agent-clear")

        policy = getattr(ctx, "key_policy", None)
        key_box = getattr(ctx, "api_key", None)

        async def respond(
            text: str,
            history: list[dict[str, Any]],
            model: str | None,
            api_base: str | None,
            user_key: str | None = None,
        ) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
            chosen, base = ctx.chosen_model(model, api_base)
            # smolagents calls LiteLLM itself: the server's keys only for bases it trusts.
            key = policy.api_key_for(base, user_key) if policy is not None else None

            def make() -> Any:
                from newsdesk._backend import check_model

                check_model(chosen, api_base=base, api_key=key)
                return news_agent(
                    chosen,
                    api_base=base,
                    api_key=key,
                    store=ctx.store,
                    max_steps=max_steps,
                    tools=_web_tools(ctx, chosen, base),
                )

            async with closing(agent_reply(text, history, make)) as updates:
                async for turns in updates:
                    yield turns, ""

        event = gr.on(
            [question.submit, ask.click],
            respond,
            inputs=[
                question,
                chatbot,
                ctx.model,
                ctx.api_base,
                *([key_box] if key_box is not None else []),
            ],
            outputs=[chatbot, question],
            api_name="agent",
            show_progress="hidden",
        )
        stop.click(None, cancels=[event])
        clear.click(
            lambda: ([], ""), None, [chatbot, question], cancels=[event], api_visibility="private"
        )


def _web_tools(ctx: Any, model: str, api_base: str | None) -> list[Any] | None:
    """The agent's tools in the web app. ``analyze_feed`` reads only http(s) URLs, through the
    app's guarded fetcher (no private addresses unless ``--allow-private-sources``)."""
    from newsdesk._client import resolve_model
    from newsdesk.agents._model import is_small
    from newsdesk.agents._news_agent import ALL_TOOLS
    from newsdesk.agents._news_tools import NewsToolbox

    if is_small(resolve_model(model)):
        return None  # the small-model setup reads the store only already
    box = NewsToolbox(
        store=ctx.store,
        model=model,
        api_base=api_base,
        gateway=ctx.gateway,
        private_sources=ctx.desk.private_sources,
    )
    return box.tools(ALL_TOOLS)
