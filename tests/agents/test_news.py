"""The news tools over a small fixed store, and the news agent's guard rails for weak models
(scripted), plus one agent run against the OpenAI-compatible test server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from smolagents import ToolCallingAgent
from smolagents.models import ChatMessage, MessageRole

from newsdesk.agents import (
    NewsAgent,
    NewsdeskModel,
    NewsToolbox,
    arun,
    news_agent,
    news_tools,
    tool_call_format,
)
from newsdesk.news._sources import DEMO_DIR
from newsdesk.news._store import Store
from tests.agents.demo_store import ARTICLES, article_id, populate
from tests.agents.scripted import ScriptedModel, call, final, reply, task_of
from tests.servers.plugin import OpenAIServerHandle

FLOOD = article_id(ARTICLES[0][0])


def tools_by_name(**kw: Any) -> dict[str, Any]:
    return {t.name: t for t in news_tools(**kw)}


async def test_search_news_is_compact_with_short_ids() -> None:
    populate()
    out = await tools_by_name()["search_news"].acall("flooding evacuated")
    first = out.splitlines()[0]
    assert first.startswith(f"[{FLOOD[:8]}] Harbor City floods after record rain — ")
    assert "(disaster, Harbor City Herald, 2026-03-01)" in first
    assert len(out) <= 1200
    assert "No stored articles" in await tools_by_name()["search_news"].acall("zeppelins")


async def test_search_news_by_meaning_with_vectors() -> None:
    populate(vectors=True)
    out = await tools_by_name()["search_news"].acall("who won the football final?")
    assert out.splitlines()[0].startswith(
        f"[{article_id(ARTICLES[3][0])[:8]}] Harbor City Mariners"
    )


async def test_get_analysis_by_id_prefix() -> None:
    populate()
    tool = tools_by_name()["get_analysis"]
    out = await tool.acall(f"[{FLOOD[:8]}]")
    assert "summary: Record rain flooded" in out and "- 300 people evacuated" in out
    assert "topic: disaster; tone: negative" in out and "url: https://example.test/" in out
    assert "No stored article" in await tool.acall("ffffffff")


async def test_topic_digest_matches_loose_topic_names() -> None:
    populate()
    tool = tools_by_name()["topic_digest"]
    out = await tool.acall("tech")
    assert out.startswith("1 latest stored analyses on technology:") and "Northwind" in out
    assert "No stored analyses on health" in await tool.acall("health")
    assert (await tool.acall("stock markets")).startswith("1 latest stored analyses on business")


async def test_topics_question_gets_the_days_topics_or_says_there_is_nothing_today() -> None:
    from datetime import UTC, datetime

    from newsdesk.agents._news_tools import topics_overview
    from newsdesk.news import NewsDesk

    populate()  # published 2026-03-01, 03-02, ...
    out = await tools_by_name()["search_news"].acall("Which topics appear in today's news?")
    assert out.startswith("Nothing stored is from today") or out.startswith("Topics in the stored")
    desk = NewsDesk()
    try:
        later = topics_overview(
            desk, "Which topics appear in today's news?", now=datetime(2030, 1, 1, tzinfo=UTC)
        )
        assert later.startswith("Nothing stored is from today (2030-01-01). The latest stored")
        first_day = topics_overview(desk, "topics today", now=datetime(2026, 3, 1, 12, tzinfo=UTC))
        assert first_day.startswith(
            "Topics in the stored news from today (2026-03-01): disaster (1)"
        )
        assert "Harbor City floods" in first_day
    finally:
        desk.close()


async def test_analyze_feed_runs_the_pipeline_into_the_store(
    openai_server: OpenAIServerHandle, home: Path
) -> None:
    box = NewsToolbox(model="openai/test-model", api_base=openai_server.url, feed_limit=2)
    out = await box.analyze_feed(str(DEMO_DIR / "harbor_city_herald.xml"))
    lines = out.splitlines()
    assert lines[0].startswith("1 source(s) read, 2 article(s) analyzed"), out
    assert len(lines) == 3 and all(line.startswith("[") for line in lines[1:])
    with Store() as store:
        assert len(store.query()) == 2
    assert "Cannot use" in await box.analyze_feed("/no/such/feed.xml")


def test_tool_call_format_admits_one_call_of_the_offered_tools() -> None:
    search = news_tools(names=["search_news"])[0]
    fmt = tool_call_format([search])
    schema = fmt["json_schema"]["schema"]
    assert schema["properties"]["name"] == {"const": "search_news"}
    assert schema["properties"]["arguments"]["properties"]["query"]["maxLength"] == 300
    assert schema["properties"]["arguments"]["required"] == ["query"]


def test_small_model_messages_are_trimmed_to_the_window() -> None:
    model = NewsdeskModel("local/smollm2", max_tokens=128)
    seen: dict[str, Any] = {}

    class Client:
        @staticmethod
        def completion(**kw: Any) -> Any:
            seen.update(kw)
            raise RuntimeError("stop here")

    model.client = Client()
    long = "word " * 3000
    messages = [
        ChatMessage(role=MessageRole.SYSTEM, content=[{"type": "text", "text": "system prompt"}]),
        ChatMessage(
            role=MessageRole.USER, content=[{"type": "text", "text": "New task:\nthe question"}]
        ),
        *[
            ChatMessage(
                role=MessageRole.USER, content=[{"type": "text", "text": f"old {i} {long}"}]
            )
            for i in range(3)
        ],
        ChatMessage(role=MessageRole.USER, content=[{"type": "text", "text": "latest " + long}]),
    ]
    search = news_tools(names=["search_news"])[0]
    try:
        model.generate(messages, tools_to_call_from=[search])
    except RuntimeError:
        pass
    sent = seen["messages"]
    text = "\n".join(str(m["content"]) for m in sent)
    assert (
        "system prompt" in text
        and "the question" in text
        and "latest" in text
        and "old 0" not in text
    )
    assert len(text) / 3.2 < 2048 - 128
    assert seen["response_format"]["type"] == "json_schema"
    assert seen["_skip_mcp_handler"] is True


async def test_small_agent_plan_guard_and_sources() -> None:
    populate()

    def script(messages: list[Any], step: int) -> Any:
        if step == 1:
            return reply(
                call("search_news", query="...")
            )  # a weak model's query: nothing to do with the task
        return final("Harbor City flooded.")

    model = ScriptedModel(script)
    offered: list[list[str]] = []
    original = model.generate

    def spy(messages: list[Any], **kw: Any) -> Any:
        offered.append([t.name for t in kw.get("tools_to_call_from") or []])
        return original(messages, **kw)

    model.generate = spy  # type: ignore[method-assign,assignment]
    agent = news_agent(model, small=True)
    events: list[Any] = []
    answer = await arun(
        agent, "What happened with the Harbor City flooding?", stream_to=events.append
    )
    assert offered == [["search_news"], ["final_answer"]]  # search first, then answer
    first_call = next(e for e in events if e.kind == "tool_call")
    assert first_call.arguments == {
        "query": "What happened with the Harbor City flooding?"
    }  # the guard
    assert answer.startswith("Harbor City flooded.\n\nSources:\n[")
    assert "Harbor City floods after record rain" in answer
    assert not agent.used_fallback


async def test_small_agent_falls_back_to_a_direct_search_when_a_step_does_not_parse() -> None:
    populate()
    model = ScriptedModel(
        lambda m, step: ChatMessage(role=MessageRole.ASSISTANT, content='{ "name": "sea')
    )
    agent = news_agent(model, small=True)
    events: list[Any] = []
    answer = await arun(agent, "Harbor City flooding", stream_to=events.append)
    assert agent.used_fallback
    assert answer.startswith("From the stored news:\n[") and "Harbor City floods" in answer
    assert [e.tool for e in events if e.kind == "tool_call"] == ["search_news"]
    assert len(model.calls) == 1


async def test_small_agent_answers_from_its_search_when_steps_run_out() -> None:
    populate()
    model = ScriptedModel(lambda m, step: reply(call("search_news", query="Mariners cup")))
    agent = NewsAgent(
        news_tools(names=["search_news"]),
        model,
        fallback=news_tools(names=["search_news"])[0],
        max_steps=2,
        verbosity_level=-1,
    )
    answer = await arun(agent, "Mariners cup")
    assert answer.startswith("From the stored news:\n[") and "Mariners" in answer
    assert len(model.calls) == 2  # no extra model call to write the answer


async def test_capable_model_gets_all_tools_and_the_stock_prompt() -> None:
    model = ScriptedModel(lambda m, s: final("x"))
    agent = news_agent(model, small=False)
    assert set(agent.tools) == {
        "search_news",
        "get_analysis",
        "topic_digest",
        "analyze_feed",
        "final_answer",
    }
    assert (
        "search_news" in agent.system_prompt
        and "You are an expert assistant" in agent.system_prompt
    )
    assert agent.max_steps == 6 and agent.fallback is None


async def test_agent_against_the_openai_test_server(openai_server: OpenAIServerHandle) -> None:
    """A real LiteLLM round trip: the server's scripted reply is a text tool call that smolagents parses."""
    populate()
    calls = [
        {"name": "search_news", "arguments": {"query": "floods"}},
        {"name": "final_answer", "arguments": {"answer": "Floods in Harbor City."}},
    ]
    model = NewsdeskModel("openai/test-model", api_base=openai_server.url, api_key="sk-test")
    results: list[list[Any]] = []
    answers = []
    for c in calls:  # one run per scripted step: the directive must be in the last user message
        agent = news_agent(model, max_steps=1)
        events: list[Any] = []
        answers.append(
            await arun(agent, f"find floods [[reply:{json.dumps(c)}]]", stream_to=events.append)
        )
        results.append([e for e in events if e.kind == "tool_result"])
        tool_calls = [e for e in events if e.kind == "tool_call"]
        assert (
            tool_calls
            and tool_calls[0].tool == c["name"]
            and tool_calls[0].arguments == c["arguments"]
        )
    body = openai_server.last_request()
    assert {t["function"]["name"] for t in body["tools"]} >= {"search_news", "final_answer"}
    assert (
        "Harbor City floods after record rain" in results[0][0].text
    )  # the async tool ran on a real reply
    assert answers[1] == "Floods in Harbor City."


def test_scripted_helpers() -> None:
    msgs = [{"role": "user", "content": [{"type": "text", "text": "New task:\nabc"}]}]
    assert task_of(msgs) == "abc"
    assert isinstance(ToolCallingAgent, type)
