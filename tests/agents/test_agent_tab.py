"""The web Agent tab: the chat history it streams, and the tab inside the real app."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from newsdesk.web._agent_tab import agent_reply
from tests.agents.demo_store import populate
from tests.agents.scripted import ScriptedModel, call, final, reply
from tests.helpers import free_port
from tests.servers.plugin import OpenAIServerHandle


def news_model() -> ScriptedModel:
    def script(messages: list[Any], step: int) -> Any:
        if step == 1:
            return reply(call("search_news", query="floods"))
        return final("Harbor City <b>flooded</b>.")

    return ScriptedModel(script)


async def test_agent_reply_streams_tool_calls_results_and_answer() -> None:
    from newsdesk.agents import news_agent

    populate()
    updates = [
        turns
        async for turns in agent_reply("floods?", [], lambda: news_agent(news_model(), small=False))
    ]
    assert updates[0] == [{"role": "user", "content": "floods?"}]
    last = updates[-1]
    tool = next(
        m for m in last if (m.get("metadata") or {}).get("title", "").endswith("search_news")
    )
    assert tool["metadata"]["status"] == "done"
    assert "search_news(query='floods')" in tool["content"].replace("\\", "")
    assert "```text\n[" in tool["content"] and "Harbor City floods" in tool["content"]
    answer = last[-1]
    assert answer["role"] == "assistant" and "metadata" not in answer
    assert (
        "<b>" not in answer["content"] and "&lt;b&gt;" in answer["content"]
    )  # model text is shown, not rendered
    assert len(updates) >= 4  # the history grew event by event


async def test_agent_reply_reports_errors_in_the_chat() -> None:
    def broken() -> Any:
        raise ValueError("no such model")

    updates = [t async for t in agent_reply("hi", [], broken)]
    assert updates[-1][-1]["content"].startswith("**Error:** no such model")
    assert [t async for t in agent_reply("  ", [{"role": "user", "content": "x"}], broken)] == [
        [{"role": "user", "content": "x"}]
    ]


async def test_stop_cancels_the_reply_and_stops_the_agent() -> None:
    from newsdesk.agents import news_agent

    populate()
    gate = threading_event()
    model = ScriptedModel(lambda m, step: (gate.wait(5), reply(call("search_news", query="x")))[1])
    agent = news_agent(model, small=False, max_steps=20)
    updates = agent_reply("loop", [], lambda: agent)
    await updates.__anext__()  # the user's message
    pending = asyncio.ensure_future(updates.__anext__())  # the agent starts; its model call waits
    await asyncio.sleep(0.3)
    pending.cancel()  # what the Stop button does to the event's task
    with pytest.raises(asyncio.CancelledError):
        await pending
    gate.set()
    await asyncio.sleep(0.3)
    assert agent.interrupt_switch
    assert agent.step_number <= 2


def threading_event() -> Any:
    import threading

    return threading.Event()


def test_tab_in_the_app_answers_over_the_api(openai_server: OpenAIServerHandle) -> None:
    pytest.importorskip("gradio")
    gradio_client = pytest.importorskip("gradio_client")
    from newsdesk.web._agent_tab import agent_tab
    from newsdesk.web._app import build_app, launch_kwargs

    populate()
    demo = build_app(
        model="openai/test-model", api_base=openai_server.url, cache="off", extra_tabs=[agent_tab]
    )
    port = free_port()
    demo.launch(prevent_thread_lock=True, **launch_kwargs("127.0.0.1", port, None, quiet=True))
    try:
        client = gradio_client.Client(
            f"http://127.0.0.1:{port}/", verbose=False, download_files=False
        )
        answer = json.dumps({"name": "final_answer", "arguments": {"answer": "All quiet."}})
        history, box = client.predict(
            f"news? [[reply:{answer}]]",
            [],
            "openai/test-model",
            openai_server.url,
            api_name="/agent",
        )
        assert box == ""
        texts = [str(m.get("content")) for m in history]
        assert any("All quiet" in t for t in texts), history
    finally:
        demo.close()


def test_step_view_shows_calls_literally_without_emoji() -> None:
    from types import SimpleNamespace

    from newsdesk.web._agent_tab import apply_event

    turns: list[dict[str, Any]] = []
    call = SimpleNamespace(
        kind="tool_call",
        tool="search_news",
        arguments={"query": "today's news."},
        step=1,
        call_id="c1",
    )
    apply_event(turns, call)
    content, title = turns[0]["content"], turns[0]["metadata"]["title"]
    assert 'search_news(query="today\'s news.")' in content and "\\" not in content
    assert title == "Step 1: search_news" and not any(ord(ch) > 0x2FFF for ch in title)
