"""``async_tool``: metadata from the signature and docstring, and calls that never deadlock."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from smolagents import Tool, ToolCallingAgent

from newsdesk.agents import AsyncTool, arun, async_tool
from newsdesk.agents._bridge import RunScope, enter_scope, exit_scope, run_coroutine
from tests.agents.scripted import ScriptedModel, call, final, reply

loops: list[Any] = []


@async_tool
async def lookup(query: str, limit: int = 3) -> str:
    """Look something up in the archive.

    Args:
        query: What to look for.
        limit: How many results at most.
    """
    loops.append(asyncio.get_running_loop())
    await asyncio.sleep(0.01)
    return f"{query}:{limit}"


def test_metadata_comes_from_signature_and_docstring() -> None:
    assert isinstance(lookup, Tool) and isinstance(lookup, AsyncTool)
    assert lookup.name == "lookup"
    assert lookup.description == "Look something up in the archive."
    assert lookup.inputs == {
        "query": {"type": "string", "description": "What to look for."},
        "limit": {"type": "integer", "description": "How many results at most.", "nullable": True},
    }
    assert lookup.output_type == "string"
    assert "lookup(query: string, limit: integer)" in lookup.to_code_prompt()


def test_name_and_description_can_be_overridden() -> None:
    @async_tool(name="find", description="Find things.")
    async def whatever(text: str) -> str:
        """Ignored.

        Args:
            text: Text.
        """
        return text

    assert (whatever.name, whatever.description) == ("find", "Find things.")


def test_plain_functions_and_missing_docs_are_refused() -> None:
    def sync(query: str) -> str:
        """Sync.

        Args:
            query: q
        """
        return query

    with pytest.raises(TypeError, match="async def"):
        async_tool(sync)  # type: ignore[arg-type]

    async def undocumented(query: str) -> str:
        """No args section."""
        return query

    with pytest.raises(Exception, match="description for the argument 'query'"):
        async_tool(undocumented)


def test_call_with_no_running_loop() -> None:
    assert lookup(query="plain") == "plain:3"
    assert lookup("positional", 5) == "positional:5"


async def test_direct_await() -> None:
    assert await lookup.acall("direct", limit=1) == "direct:1"


async def test_sync_call_on_the_loop_thread_does_not_deadlock() -> None:
    # Blocking the loop's own thread on that loop would hang forever; it goes to the background loop.
    here = asyncio.get_running_loop()
    loops.clear()
    assert lookup(query="inline") == "inline:3"
    assert loops and loops[-1] is not here


async def test_worker_thread_uses_the_callers_loop_while_it_runs() -> None:
    here = asyncio.get_running_loop()
    loops.clear()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    tick_task = asyncio.create_task(ticker())
    scope = RunScope(loop=here)

    def in_worker() -> str:
        token = enter_scope(scope)
        try:
            return str(lookup(query="worker"))
        finally:
            exit_scope(token)

    try:
        assert await asyncio.wait_for(asyncio.to_thread(in_worker), 5) == "worker:3"
    finally:
        tick_task.cancel()
    assert loops == [here]  # ran on the caller's loop...
    assert ticks > 1  # ...which kept running meanwhile


async def test_worker_thread_without_a_scope_uses_the_background_loop() -> None:
    here = asyncio.get_running_loop()
    loops.clear()
    assert await asyncio.wait_for(asyncio.to_thread(lookup, query="bg"), 5) == "bg:3"
    assert loops and loops[-1] is not here


async def test_agent_tools_run_on_the_arun_callers_loop() -> None:
    here = asyncio.get_running_loop()
    loops.clear()
    threads: list[str] = []

    def script(messages: list[Any], step: int) -> Any:
        threads.append(threading.current_thread().name)
        return reply(call("lookup", query="x")) if step == 1 else final("ok")

    agent = ToolCallingAgent(tools=[lookup], model=ScriptedModel(script), verbosity_level=-1)
    assert await arun(agent, "task") == "ok"
    assert loops == [here]
    assert threads and all(
        t != threading.current_thread().name for t in threads
    )  # the agent ran elsewhere


async def test_cancelled_scope_cancels_the_coroutine() -> None:
    here = asyncio.get_running_loop()
    scope = RunScope(loop=here)
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def worker() -> BaseException | None:
        token = enter_scope(scope)
        try:
            run_coroutine(forever)
        except BaseException as exc:
            return exc
        finally:
            exit_scope(token)
        return None

    pending = asyncio.ensure_future(asyncio.to_thread(worker))
    await asyncio.wait_for(started.wait(), 5)
    scope.cancel()
    exc = await asyncio.wait_for(pending, 5)
    assert type(exc).__name__ == "RunCancelled"
    await asyncio.wait_for(cancelled.wait(), 5)
