"""Running smolagents agents from async code: ``arun``, ``astream_agent``, ``run_agents``.

Each run steps the agent (``agent.run(task, stream=True)``) in a worker thread of its own and
passes what it yields to the event loop as ``AgentEvent``s. The loop is never blocked, tools
made with ``async_tool`` run their coroutines on it (``_bridge``), and cancelling the awaiting
task stops the agent at its next step (``agent.interrupt()``) and cancels its tool calls.

An agent instance keeps one run's memory and step counter, so it runs one task at a time:
concurrent runs of the *same instance* wait for each other. For parallel runs, give a factory
(``run_agents`` always does): one fresh agent per task, sharing the model.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from newsdesk._concurrency import TaskBatch, aclosing, acquire, iterate_in_thread
from newsdesk._exceptions import NewsdeskError
from newsdesk.agents._bridge import RunScope, enter_scope, exit_scope

try:
    from smolagents import MultiStepAgent
    from smolagents.agents import ActionOutput, ToolOutput
    from smolagents.memory import ActionStep, FinalAnswerStep, PlanningStep, ToolCall
    from smolagents.models import ChatMessageStreamDelta
except ModuleNotFoundError as exc:  # pragma: no cover - the extra is missing
    if exc.name != "smolagents":
        raise
    from newsdesk._exceptions import MissingExtraError

    raise MissingExtraError("newsdesk.agents", "agents") from exc

EventKind = Literal["delta", "tool_call", "tool_result", "step", "planning", "final", "error"]
AgentSource: TypeAlias = "MultiStepAgent | Callable[[], MultiStepAgent]"


class AgentTimeout(NewsdeskError):
    """The run did not finish before its deadline; it was stopped."""


class AgentCancelled(NewsdeskError):
    """The run was cancelled before it finished."""


@dataclass(frozen=True)
class AgentEvent:
    """One thing that happened in a run, in the order it happened.

    ``kind``:

    * ``delta`` — model text as it streams (only when the agent has ``stream_outputs=True``);
    * ``tool_call`` — the model asked for a tool (``tool``, ``arguments``, ``call_id``), before it runs;
    * ``tool_result`` — a tool returned (``text`` = the observation the model will see);
    * ``step`` — a step ended (``text`` = the model's output, ``error`` = what went wrong in it,
      ``observations``, ``duration``, token counts);
    * ``planning`` — a planning step (``text`` = the plan);
    * ``final`` — the run's answer (``text``; ``output`` is the object itself);
    * ``error`` — the run failed (``error``); only ``astream_agent`` yields it, ``arun`` raises.
    """

    kind: EventKind
    step: int = 0
    text: str = ""
    tool: str | None = None
    arguments: Any = None
    call_id: str | None = None
    error: str | None = None
    observations: str | None = None
    duration: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    output: Any = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``output`` as text)."""
        data = {
            k: getattr(self, k)
            for k in (
                "kind",
                "step",
                "text",
                "tool",
                "arguments",
                "call_id",
                "error",
                "observations",
                "duration",
                "input_tokens",
                "output_tokens",
            )
        }
        return {k: v for k, v in data.items() if v is not None and v != ""}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):  # smolagents' content parts
        return "\n".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in value)
    return str(value)


def to_event(item: Any, step: int) -> AgentEvent | None:
    """The ``AgentEvent`` for one thing ``agent.run(stream=True)`` yielded (None: nothing to show)."""
    if isinstance(item, ChatMessageStreamDelta):
        return AgentEvent("delta", step, text=item.content) if item.content else None
    if isinstance(item, ToolCall):
        return AgentEvent(
            "tool_call", step, tool=item.name, arguments=item.arguments, call_id=item.id
        )
    if isinstance(item, ToolOutput):
        return AgentEvent(
            "tool_result",
            step,
            text=item.observation,
            tool=item.tool_call.name,
            call_id=item.id,
            output=item.output,
        )
    if isinstance(item, ActionStep):
        usage = item.token_usage
        timing = item.timing
        return AgentEvent(
            "step",
            item.step_number,
            text=_text(item.model_output).strip(),
            error=str(item.error) if item.error is not None else None,
            observations=item.observations,
            duration=timing.duration
            if timing is not None and timing.end_time is not None
            else None,
            input_tokens=usage.input_tokens if usage is not None else None,
            output_tokens=usage.output_tokens if usage is not None else None,
            output=item,
        )
    if isinstance(item, PlanningStep):
        return AgentEvent("planning", step, text=item.plan, output=item)
    if isinstance(item, FinalAnswerStep):
        return AgentEvent("final", step, text=_text(item.output), output=item.output)
    if isinstance(item, ActionOutput):
        return None  # the answer comes with FinalAnswerStep
    return None


# ---------------------------------------------------------------- one run

_locks: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


def _lock_for(agent: Any) -> threading.Lock:
    with _locks_guard:
        lock = _locks.get(agent)
        if lock is None:
            lock = _locks[agent] = threading.Lock()
        return lock


def _agent_of(source: AgentSource) -> MultiStepAgent:
    if isinstance(source, MultiStepAgent):
        return source
    if callable(source):
        agent = source()
        if not isinstance(agent, MultiStepAgent):
            raise TypeError(
                f"the agent factory returned {type(agent).__name__}, not a smolagents agent"
            )
        return agent
    raise TypeError(
        f"expected a smolagents agent or a factory of them, got {type(source).__name__}"
    )


async def _events(
    agent: MultiStepAgent, task: str, *, max_steps: int | None = None
) -> AsyncIterator[AgentEvent]:
    """Run ``agent`` on ``task`` in a worker thread; yield its events; raise what the run raised."""
    scope = RunScope(loop=asyncio.get_running_loop())
    lock = _lock_for(agent)
    await acquire(lock, first=0.005, most=0.1)  # another run of this instance: wait, no thread

    def steps() -> Iterator[AgentEvent]:  # runs in the agent's thread, which releases the lock
        token = enter_scope(scope)
        try:
            if scope.cancelled:
                return
            last: Any = None
            for item in agent.run(task, stream=True, max_steps=max_steps, reset=True):
                if item is last:  # smolagents yields the last step twice when max_steps runs out
                    continue
                if isinstance(item, (ActionStep, PlanningStep, FinalAnswerStep)):
                    last = item
                step = agent.step_number
                if isinstance(item, FinalAnswerStep):
                    step = max(1, step - 1)  # the counter has moved past the last step by now
                ev = to_event(item, step)
                if ev is not None:
                    yield ev
        finally:
            exit_scope(token)
            lock.release()

    def stop() -> None:
        # Cancelled, deadline, or the consumer stopped listening: stop the agent at its next
        # step and cancel its tool calls. Its thread ends on its own; nobody waits for it.
        scope.cancel()
        agent.interrupt()

    # No await between taking the lock and starting the thread that releases it.
    async with aclosing(
        iterate_in_thread(steps, stop=stop, wait=False, name="newsdesk-agent")
    ) as events:
        async for ev in events:
            yield ev


async def astream_agent(
    agent_or_factory: AgentSource,
    task: str,
    *,
    max_steps: int | None = None,
    raise_errors: bool = False,
) -> AsyncIterator[AgentEvent]:
    """Run an agent and yield its ``AgentEvent``s as they happen, ending with ``final``.

    A failed run ends with one ``error`` event (or raises, with ``raise_errors=True``). Leaving
    the loop early stops the agent at its next step.
    """
    agent = _agent_of(agent_or_factory)
    try:
        async for ev in _events(agent, task, max_steps=max_steps):
            yield ev
    except Exception as exc:
        if raise_errors:
            raise
        yield AgentEvent("error", agent.step_number, error=_describe(exc), output=exc)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 2000 else text[:2000] + " […]"


StreamTo = Callable[[AgentEvent], Awaitable[Any] | Any]


async def arun(
    agent_or_factory: AgentSource,
    task: str,
    *,
    stream_to: StreamTo | None = None,
    max_steps: int | None = None,
) -> Any:
    """Run an agent without blocking the event loop and return its final answer.

    ``agent_or_factory``: an agent (runs of one instance queue behind each other) or a
    zero-argument callable making one (a fresh agent per call: runs go in parallel).
    ``stream_to``: called with each ``AgentEvent`` as it happens (may be async).
    Raises what the run raised; cancelling stops the agent at its next step.
    """
    agent = _agent_of(agent_or_factory)
    output: Any = None
    async for ev in _events(agent, task, max_steps=max_steps):
        if stream_to is not None:
            result = stream_to(ev)
            if inspect.isawaitable(result):
                await result
        if ev.kind == "final":
            output = ev.output
    return output


# ---------------------------------------------------------------- many runs


@dataclass
class AgentOutcome:
    """One task's run in ``run_agents``: ``output`` or ``error`` (never both), with its index."""

    index: int
    task: str
    output: Any = None
    error: BaseException | None = None
    steps: int = 0
    latency: float = 0.0
    agent: MultiStepAgent | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def value(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.output


class AgentBatch(TaskBatch[str, AgentOutcome]):
    """Async iterator of ``AgentOutcome``s in completion order; ``await batch.gather()`` gives
    them in task order. One failed run never stops the others; the deadline stops those still
    running and reports each of them (and those never started) once, as ``AgentTimeout``.
    Leaving the loop early stops every run still going."""

    def __init__(
        self,
        tasks: Sequence[str],
        factory: Callable[[], MultiStepAgent],
        *,
        max_concurrency: int = 4,
        deadline: float | None = None,
        max_steps: int | None = None,
        on_event: Callable[[int, AgentEvent], Any] | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if isinstance(factory, MultiStepAgent) or not callable(factory):
            raise TypeError(
                "run_agents needs a factory (a callable returning a new agent), not an agent: "
                "one instance cannot run several tasks at once"
            )
        super().__init__(tasks, deadline=deadline)
        self.tasks = self.items
        self.factory = factory
        self.max_concurrency = max_concurrency
        self.max_steps = max_steps
        self.on_event = on_event
        self._sem: asyncio.Semaphore | None = None
        self._cancelled: set[int] = set()

    async def _one(self, index: int, task: str) -> AgentOutcome:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.max_concurrency)
        t0 = time.perf_counter()
        outcome = AgentOutcome(index, task)
        try:
            async with self._sem:
                t0 = time.perf_counter()
                agent = outcome.agent = _agent_of(self.factory)
                async for ev in _events(agent, task, max_steps=self.max_steps):
                    if ev.kind == "step":
                        outcome.steps += 1
                    elif ev.kind == "final":
                        outcome.output = ev.output
                    if self.on_event is not None:
                        result = self.on_event(index, ev)
                        if inspect.isawaitable(result):
                            await result
        except asyncio.CancelledError:
            if index not in self._cancelled:
                raise  # the batch itself is stopping (deadline, consumer gone)
            outcome.error = AgentCancelled("the run was cancelled")
            outcome.output = None
        except Exception as exc:  # reported in the outcome; the other runs go on
            outcome.error = exc
            outcome.output = None
        outcome.latency = time.perf_counter() - t0
        return outcome

    def _missing(self, index: int, task: str, reason: BaseException) -> AgentOutcome:
        if isinstance(reason, TimeoutError):
            error: NewsdeskError = AgentTimeout(
                f"the deadline of {self.deadline:g} s passed before this run finished"
            )
        else:  # cancelled before it started
            error = AgentCancelled("the run was cancelled")
        return AgentOutcome(index, task, error=error, latency=self._elapsed())

    def cancel(self, index: int | None = None) -> None:
        """Stop one run (by task index), or every run not finished yet; each is reported once,
        with ``AgentCancelled``. A running agent stops at its next step."""
        self._cancelled.update(range(len(self.tasks)) if index is None else [index])
        super().cancel(index)


def run_agents(
    tasks: Sequence[str],
    factory: Callable[[], MultiStepAgent],
    *,
    max_concurrency: int = 4,
    deadline: float | None = None,
    max_steps: int | None = None,
    on_event: Callable[[int, AgentEvent], Any] | None = None,
) -> AgentBatch:
    """Run one fresh agent (``factory()``) per task, at most ``max_concurrency`` at once.

    ``async for outcome in run_agents(...)`` gives ``AgentOutcome``s in completion order, each
    with its task's ``index``; ``await run_agents(...).gather()`` gives them in task order.
    ``deadline``: seconds for the whole batch. ``on_event(index, event)``: every run's events.
    """
    return AgentBatch(
        tasks,
        factory,
        max_concurrency=max_concurrency,
        deadline=deadline,
        max_steps=max_steps,
        on_event=on_event,
    )
