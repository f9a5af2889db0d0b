"""``arun`` / ``astream_agent`` / ``run_agents`` with a scripted model: parallel async tools,
isolated concurrent agents, tool errors, deadlines and cancellation."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from smolagents import ToolCallingAgent

from newsdesk.agents import (
    AgentCancelled,
    AgentEvent,
    AgentTimeout,
    arun,
    astream_agent,
    async_tool,
    run_agents,
)
from tests.agents.scripted import ScriptedModel, call, final, reply, task_of, text_of


def agent_with(tools: list[Any], model: Any, **kw: Any) -> ToolCallingAgent:
    return ToolCallingAgent(tools=tools, model=model, verbosity_level=-1, **kw)


class Gauge:
    """Counts how many things are inside at once."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: Any) -> None:
        with self._lock:
            self.now -= 1


def sleeper(name: str) -> Any:
    async def work(city: str) -> str:
        await asyncio.sleep(1)
        return f"{name} for {city}"

    work.__name__ = name
    work.__doc__ = f"Get the {name}.\n\nArgs:\n    city: Where.\n"
    return async_tool(work)


def make_sleepers() -> list[Any]:
    return [sleeper(name) for name in ("weather", "stocks", "headlines")]


async def test_parallel_async_tools_in_one_step_overlap() -> None:
    tools = make_sleepers()

    def script(messages: list[Any], step: int) -> Any:
        if step == 1:
            return reply(*(call(t.name, city="Oslo") for t in tools))
        return final(text_of(messages[-1:]))

    events: list[AgentEvent] = []
    started = time.perf_counter()
    answer = await arun(
        agent_with(tools, ScriptedModel(script)), "brief me", stream_to=events.append
    )
    elapsed = time.perf_counter() - started
    assert elapsed < 2.5, (
        f"three 1-second tools took {elapsed:.2f} s: they did not run concurrently"
    )
    for name in ("weather", "stocks", "headlines"):
        assert f"{name} for Oslo" in answer
    kinds = [e.kind for e in events]
    assert (
        kinds.count("tool_call") == 4 and kinds.count("tool_result") == 4
    )  # 3 tools + final_answer
    assert kinds[:3] == ["tool_call"] * 3  # every call is announced before any result
    assert kinds[-1] == "final" and kinds.count("step") == 2


async def test_ten_agents_at_concurrency_five_keep_their_own_memory() -> None:
    gauge = Gauge()

    @async_tool
    async def echo(text: str) -> str:
        """Echo the text.

        Args:
            text: The text.
        """
        with gauge:
            await asyncio.sleep(0.3)
        return f"echo:{text}"

    def script(messages: list[Any], step: int) -> Any:
        task = task_of(messages)
        if step == 1:
            return reply(call("echo", text=task))
        # The observation this agent got must be for its own task.
        assert f"echo:{task}" in text_of(messages[-1:])
        return final(f"answer:{task}")

    model = ScriptedModel(script)
    tasks = [f"task-{i}" for i in range(10)]
    started = time.perf_counter()
    outcomes = [
        o async for o in run_agents(tasks, lambda: agent_with([echo], model), max_concurrency=5)
    ]
    elapsed = time.perf_counter() - started

    assert sorted(o.index for o in outcomes) == list(range(10))
    for o in outcomes:
        assert o.ok, o.error
        assert o.output == f"answer:{o.task}" and o.task == tasks[o.index]
        assert o.steps == 2
        assert o.agent is not None and o.agent.task == o.task
        own = text_of(o.agent.write_memory_to_messages())
        assert f"echo:{o.task}" in own
        assert not any(f"echo:{t}" in own for t in tasks if t != o.task)
    assert len({id(o.agent) for o in outcomes}) == 10
    assert gauge.peak <= 5
    assert gauge.peak >= 2, "the agents never overlapped"
    assert elapsed < 10 * 0.3, f"{elapsed:.2f} s: no faster than one after another"


async def test_gather_returns_outcomes_in_task_order() -> None:
    def script(messages: list[Any], step: int) -> Any:
        return final(task_of(messages).upper())

    model = ScriptedModel(script)
    outcomes = await run_agents(
        ["a", "b", "c"], lambda: agent_with([], model), max_concurrency=2
    ).gather()
    assert [(o.index, o.output) for o in outcomes] == [(0, "A"), (1, "B"), (2, "C")]


async def test_a_raising_tool_is_a_tool_error_the_model_sees() -> None:
    @async_tool
    async def fragile(text: str) -> str:
        """Fails.

        Args:
            text: Anything.
        """
        raise ValueError("the archive is on fire")

    def script(messages: list[Any], step: int) -> Any:
        if step == 1:
            return reply(call("fragile", text="x"))
        return final("saw: " + text_of(messages[-1:]))

    model = ScriptedModel(script)
    events: list[AgentEvent] = []
    answer = await arun(agent_with([fragile], model), "try it", stream_to=events.append)
    assert "the archive is on fire" in text_of(model.calls[1])  # the next model call saw the error
    assert "ValueError" in answer
    step1 = next(e for e in events if e.kind == "step")
    assert step1.error and "the archive is on fire" in step1.error


async def test_one_failing_run_does_not_stop_the_others() -> None:
    def script(messages: list[Any], step: int) -> Any:
        task = task_of(messages)
        if task == "boom":
            raise RuntimeError("model exploded")
        return final(f"fine:{task}")

    model = ScriptedModel(script)
    outcomes = await run_agents(
        ["a", "boom", "c"], lambda: agent_with([], model), max_concurrency=3
    ).gather()
    assert [o.ok for o in outcomes] == [True, False, True]
    assert "model exploded" in str(outcomes[1].error)
    assert outcomes[0].output == "fine:a" and outcomes[2].output == "fine:c"
    with pytest.raises(Exception, match="model exploded"):
        _ = outcomes[1].value


async def test_deadline_stops_the_rest_and_reports_each_once() -> None:
    cancelled: list[str] = []
    agents: list[Any] = []

    @async_tool
    async def slow(text: str) -> str:
        """Slow.

        Args:
            text: Anything.
        """
        if text == "quick":
            return "done"
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(text)
            raise
        return "late"

    def script(messages: list[Any], step: int) -> Any:
        task = task_of(messages)
        return reply(call("slow", text=task)) if step == 1 else final(f"finished:{task}")

    model = ScriptedModel(script)

    def factory() -> Any:
        agents.append(agent_with([slow], model))
        return agents[-1]

    started = time.perf_counter()
    outcomes = [
        o
        async for o in run_agents(
            ["quick", "s1", "s2", "s3"], factory, max_concurrency=2, deadline=1.0
        )
    ]
    elapsed = time.perf_counter() - started
    assert elapsed < 3
    assert sorted(o.index for o in outcomes) == [0, 1, 2, 3]  # each reported exactly once
    by_index = {o.index: o for o in outcomes}
    assert by_index[0].ok and by_index[0].output == "finished:quick"
    for i in (1, 2, 3):
        assert isinstance(by_index[i].error, AgentTimeout)
    await asyncio.sleep(0.2)
    assert sorted(cancelled) == ["s1", "s2"]  # the running tools were cancelled (s3 never started)
    assert all(a.interrupt_switch for a in agents if a.task in ("s1", "s2"))


async def test_cancel_one_run() -> None:
    gate = asyncio.Event()

    @async_tool
    async def wait(text: str) -> str:
        """Wait.

        Args:
            text: Anything.
        """
        if text == "b":
            await gate.wait()
        return text

    def script(messages: list[Any], step: int) -> Any:
        return (
            reply(call("wait", text=task_of(messages))) if step == 1 else final(task_of(messages))
        )

    model = ScriptedModel(script)
    batch = run_agents(["a", "b"], lambda: agent_with([wait], model), max_concurrency=2)
    got = []
    async for o in batch:
        got.append(o)
        if o.index == 0:
            batch.cancel(1)
    assert [o.index for o in got] == [0, 1]
    assert got[0].output == "a" and isinstance(got[1].error, AgentCancelled)


async def test_cancelling_arun_interrupts_the_agent() -> None:
    entered = asyncio.Event()

    @async_tool
    async def hang(text: str) -> str:
        """Hang.

        Args:
            text: Anything.
        """
        entered.set()
        await asyncio.sleep(30)
        return text

    model = ScriptedModel(lambda m, step: reply(call("hang", text="x")))
    agent = agent_with([hang], model, max_steps=50)
    task = asyncio.create_task(arun(agent, "hang forever"))
    await asyncio.wait_for(entered.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert agent.interrupt_switch
    # The worker thread stops at the next step: the step counter stops moving.
    await asyncio.sleep(0.3)
    steps = agent.step_number
    await asyncio.sleep(0.3)
    assert agent.step_number == steps and steps <= 3


async def test_same_instance_runs_queue_instead_of_mixing() -> None:
    gauge = Gauge()

    def script(messages: list[Any], step: int) -> Any:
        with gauge:
            time.sleep(0.1)
        return final(task_of(messages))

    agent = agent_with([], ScriptedModel(script))
    answers = await asyncio.gather(*(arun(agent, q) for q in ("one", "two", "three")))
    assert answers == ["one", "two", "three"]
    assert gauge.peak == 1


async def test_astream_agent_reports_a_failure_as_an_event() -> None:
    def script(messages: list[Any], step: int) -> Any:
        raise RuntimeError("no model today")

    events = [e async for e in astream_agent(lambda: agent_with([], ScriptedModel(script)), "q")]
    assert events[-1].kind == "error" and "no model today" in (events[-1].error or "")
    with pytest.raises(Exception, match="no model today"):
        async for _ in astream_agent(agent_with([], ScriptedModel(script)), "q", raise_errors=True):
            pass


async def test_event_loop_stays_responsive_during_a_run() -> None:
    def script(messages: list[Any], step: int) -> Any:
        time.sleep(0.5)  # a slow, blocking model call
        return final("done")

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    t = asyncio.create_task(ticker())
    try:
        assert await arun(lambda: agent_with([], ScriptedModel(script)), "q") == "done"
    finally:
        t.cancel()
    assert ticks > 20


def test_run_agents_needs_a_factory() -> None:
    agent = agent_with([], ScriptedModel(lambda m, s: final("x")))
    with pytest.raises(TypeError, match="factory"):
        run_agents(["a"], agent)
