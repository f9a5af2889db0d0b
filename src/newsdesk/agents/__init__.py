"""Agents with async tools, on smolagents (``pip install newsdesk[agents]``).

    from smolagents import ToolCallingAgent
    from newsdesk.agents import NewsdeskModel, arun, async_tool, run_agents

    @async_tool
    async def search(query: str) -> str:
        \"\"\"Search the web.

        Args:
            query: What to look for.
        \"\"\"
        ...

    model = NewsdeskModel("openai/gpt-4o-mini")
    answer = await arun(lambda: ToolCallingAgent(tools=[search], model=model), "question")
    async for outcome in run_agents(questions, lambda: ToolCallingAgent(tools=[search], model=model),
                                    max_concurrency=5, deadline=120):
        print(outcome.index, outcome.output if outcome.ok else outcome.error)

``async_tool`` turns an ``async def`` into a tool; ``arun`` / ``astream_agent`` run an agent
without blocking the event loop (its tools' coroutines run on that loop); ``run_agents`` runs
many, one agent per task. ``news_agent`` is a ready agent over the news store; docs/AGENTS.md
says what to expect from the embedded model.
"""

from newsdesk.agents._bridge import RunCancelled
from newsdesk.agents._model import NewsdeskModel, tool_call_format
from newsdesk.agents._news_agent import NewsAgent, news_agent
from newsdesk.agents._news_tools import NewsToolbox, news_tools
from newsdesk.agents._run import (
    AgentBatch,
    AgentCancelled,
    AgentEvent,
    AgentOutcome,
    AgentTimeout,
    arun,
    astream_agent,
    run_agents,
)
from newsdesk.agents._tools import AsyncTool, async_tool

__all__ = [
    "AgentBatch",
    "AgentCancelled",
    "AgentEvent",
    "AgentOutcome",
    "AgentTimeout",
    "AsyncTool",
    "NewsAgent",
    "NewsToolbox",
    "NewsdeskModel",
    "RunCancelled",
    "arun",
    "astream_agent",
    "async_tool",
    "news_agent",
    "news_tools",
    "run_agents",
    "tool_call_format",
]
