"""The news agent: a ``ToolCallingAgent`` over the news tools, with what the embedded model needs.

For a small model (``local/...``) it uses a short system prompt (the stock one alone is ~1,500
tokens of a 2,048-token window), offers ``search_news`` only, runs a fixed plan (search, then
answer: the model writes the query and the answer, each forced into a valid call by
``NewsdeskModel``'s grammar), shows it only the best match, searches for the question itself
when the model's query has nothing to do with it, ends the answer with the search's own line
(or answers with that line alone when the model's answer says nothing), and never ends without an
answer: if a step cannot be parsed, or the steps run out, the answer is built from a direct
``search_news`` call instead of from more generated text. Capable models get smolagents' own
prompt and behaviour with all four news tools, plus a note on them.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable
from typing import Any

import yaml

from newsdesk.agents._model import NewsdeskModel
from newsdesk.agents._news_tools import NewsToolbox, _keywords

try:
    from smolagents import LogLevel, Model, ToolCallingAgent
    from smolagents.agents import ActionOutput, PromptTemplates, ToolOutput
    from smolagents.memory import ActionStep, ToolCall
    from smolagents.models import ChatMessage, MessageRole
    from smolagents.utils import AgentParsingError
except ModuleNotFoundError as exc:  # pragma: no cover - the extra is missing
    if exc.name != "smolagents":
        raise
    from newsdesk._exceptions import MissingExtraError

    raise MissingExtraError("newsdesk.agents", "agents") from exc

# Measured on the embedded 135M model (docs/AGENTS.md): a longer prompt, a worked example (it
# copies the example's query) or more tools all made its calls worse.
SMALL_SYSTEM_PROMPT = """You answer questions about the news. You call tools by writing JSON.
{%- for tool in tools.values() %}
{%- if tool.name == "final_answer" %}
To answer: {"name": "final_answer", "arguments": {"answer": "<one or two sentences from the search results>"}}
{%- else %}
{{ tool.description.split(". ")[0] }}: {"name": "{{ tool.name }}", "arguments": { {%- for k in tool.inputs %}"{{ k }}": "..."{% if not loop.last %}, {% endif %}{% endfor -%} }}
{%- endif %}
{%- endfor %}
{%- if custom_instructions %}
{{ custom_instructions }}
{%- endif %}"""

NEWS_INSTRUCTIONS = (
    "You work on a store of news articles already analyzed by newsdesk. Find articles with search_news "
    "(ids in [brackets]), read one with get_analysis, get a topic's latest with topic_digest, and fetch a "
    "new feed with analyze_feed. Answer from what the tools return, citing article ids."
)

SMALL_TOOLS = ("search_news",)
ALL_TOOLS = ("search_news", "get_analysis", "topic_digest", "analyze_feed")


def _templates(system_prompt: str | None = None) -> PromptTemplates:
    text = (
        importlib.resources.files("smolagents.prompts")
        .joinpath("toolcalling_agent.yaml")
        .read_text()
    )
    templates: PromptTemplates = yaml.safe_load(text)
    if system_prompt is not None:
        templates["system_prompt"] = system_prompt
        templates["final_answer"] = {
            "pre_messages": "Answer the question from the notes below.",
            "post_messages": "Question: {{task}}\nShort answer:",
        }
    return templates


class NewsAgent(ToolCallingAgent):
    """A ``ToolCallingAgent`` with guard rails for weak models (all off unless asked for):

    ``tool_plan``: the tool names offered at step 1, 2, ... (the last entry for every later
    step); e.g. ``[["search_news"], ["final_answer"]]``: look first, then answer.
    ``fallback``: a search tool called with ``{query: task}`` when a step's output cannot be
    parsed or the steps run out; the run then ends with an answer built from what it returned
    (``compose_fallback``) instead of failing or generating more unchecked text.
    ``guard_queries``: a ``fallback`` search whose query shares no word with the task searches
    for the task itself (small models often write a query about something else entirely).
    ``cite_sources``: the final answer ends with the lines of the last ``fallback`` search, so
    what the store says stands next to what the model made of it.
    """

    def __init__(
        self,
        tools: list[Any],
        model: Model,
        *,
        tool_plan: list[list[str]] | None = None,
        fallback: Any = None,
        compose_fallback: Callable[[str, str], str] | None = None,
        guard_queries: bool = False,
        cite_sources: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(tools=tools, model=model, **kwargs)
        self.tool_plan = tool_plan
        self.fallback = fallback
        self.compose_fallback = compose_fallback or _compose
        self.guard_queries = guard_queries
        self.cite_sources = cite_sources
        self.used_fallback = False

    @property
    def tools_and_managed_agents(self) -> list[Any]:
        every = list(self.tools.values()) + list(self.managed_agents.values())
        if not self.tool_plan:
            return every
        names = self.tool_plan[min(max(self.step_number, 1), len(self.tool_plan)) - 1]
        offered = [t for t in every if t.name in names]
        return offered or every

    def _last_search(self) -> str | None:
        if self.fallback is None:
            return None
        for step in reversed(self.memory.steps):
            calls = getattr(step, "tool_calls", None) or []
            if any(c.name == self.fallback.name for c in calls) and getattr(
                step, "observations", None
            ):
                return str(step.observations)
        return None

    def _fallback_observation(self) -> tuple[ToolCall, str]:
        call = ToolCall(name=self.fallback.name, arguments={"query": self.task}, id="call_fallback")
        try:
            observation = str(self.fallback(query=self.task)).strip()
        except Exception as exc:
            observation = f"(the search failed: {type(exc).__name__}: {exc})"
        return call, observation

    def process_tool_calls(self, chat_message: ChatMessage, memory_step: ActionStep) -> Any:
        if self.guard_queries and self.fallback is not None and chat_message.tool_calls:
            for tc in chat_message.tool_calls:
                args = tc.function.arguments
                if tc.function.name == self.fallback.name and isinstance(args, dict):
                    query = str(args.get("query", ""))
                    if not set(_keywords(query)) & set(_keywords(self.task or "")):
                        tc.function.arguments = {**args, "query": self.task}
        return super().process_tool_calls(chat_message, memory_step)

    def _step_stream(self, memory_step: ActionStep) -> Any:
        try:
            for item in super()._step_stream(memory_step):
                if isinstance(item, ActionOutput) and item.is_final_answer and self.cite_sources:
                    sources = self._last_search()
                    if sources and not sources.startswith("No stored"):
                        if _empty_answer(item.output, self.task or ""):
                            text = self.compose_fallback(self.task or "", sources)
                        else:
                            text = f"{item.output}\n\nSources:\n{sources}"
                        item = ActionOutput(output=text, is_final_answer=True)
                yield item
        except AgentParsingError:
            if self.fallback is None:
                raise
            # The model's step did not parse: look the question up directly and answer from that.
            self.used_fallback = True
            call, observation = self._fallback_observation()
            yield call
            yield ToolOutput(
                id=call.id,
                output=observation,
                is_final_answer=False,
                observation=observation,
                tool_call=call,
            )
            memory_step.tool_calls = [call]
            memory_step.observations = observation
            answer = self.compose_fallback(self.task or "", observation)
            memory_step.action_output = answer
            yield ActionOutput(output=answer, is_final_answer=True)

    def provide_final_answer(self, task: str) -> ChatMessage:
        if self.fallback is None:
            return super().provide_final_answer(task)
        # Out of steps: answer from the last search this run made, or make one now.
        self.used_fallback = True
        observation = self._last_search()
        if observation is None:
            _, observation = self._fallback_observation()
        return ChatMessage(
            role=MessageRole.ASSISTANT, content=self.compose_fallback(task, observation)
        )


def _empty_answer(answer: Any, task: str) -> bool:
    """An answer that says nothing: blank, the prompt's placeholder, or the question echoed."""
    text = " ".join(str(answer or "").split()).strip()
    words = _keywords(text)
    return not words or text.startswith("<") or words == _keywords(task)


def _compose(task: str, observation: str) -> str:
    if not observation or observation.startswith("No stored"):
        return f"I found nothing in the stored news about: {task.strip()}"
    return f"From the stored news:\n{observation}"


def news_agent(
    model: str | Model | None = None,
    *,
    api_base: str | None = None,
    api_key: str | None = None,
    store: Any = None,
    tools: list[Any] | None = None,
    max_steps: int | None = None,
    max_tokens: int | None = None,
    small: bool | None = None,
    stream_outputs: bool = False,
    analysis_model: str | None = None,
    instructions: str | None = None,
    verbosity_level: LogLevel = LogLevel.OFF,
    **agent_kwargs: Any,
) -> NewsAgent:
    """A news agent ready to ``arun``: a ``NewsdeskModel`` (unless ``model`` is a smolagents model
    already), the news tools over ``store``, and settings fitted to the model's size.

    ``small`` (default: the model is an embedded ``local/...`` one) selects the short prompt,
    ``search_news`` only (returning the single best match), the search-then-answer plan, the
    query guard, cited sources, the search fallback, 3 steps and 128-token replies (see
    ``NewsAgent``). ``tools``: your own tools instead of the news tools. ``analysis_model``:
    what ``analyze_feed`` analyzes with (default: the agent's model).
    """
    if isinstance(model, Model):
        llm = model
        model_id = str(getattr(model, "model_id", "") or "")
    else:
        llm = NewsdeskModel(
            model,
            api_base=api_base,
            api_key=api_key,
            max_tokens=max_tokens if max_tokens is not None else (128 if _small(model) else None),
        )
        model_id = str(llm.model_id)
    if small is None:
        small = bool(getattr(llm, "small", model_id.startswith("local/")))
    if tools is None:
        box = NewsToolbox(
            store=store,
            model=analysis_model or (model_id or None),
            api_base=api_base,
            # The 135M model retells the *last* article it was shown: given one (the best
            # match) it answered 4 of 6 test questions right; given three, none (docs/AGENTS.md).
            search_limit=1 if small else 5,
        )
        tools = box.tools(SMALL_TOOLS if small else ALL_TOOLS)
    search = next((t for t in tools if t.name == "search_news"), None)
    if small:
        plan = [[search.name], ["final_answer"]] if search is not None else None
        return NewsAgent(
            tools,
            llm,
            tool_plan=plan,
            fallback=search,
            guard_queries=True,
            cite_sources=True,
            prompt_templates=_templates(SMALL_SYSTEM_PROMPT),
            instructions=instructions,
            max_steps=max_steps or 3,
            stream_outputs=stream_outputs,
            verbosity_level=verbosity_level,
            **agent_kwargs,
        )
    return NewsAgent(
        tools,
        llm,
        prompt_templates=_templates(),
        instructions=instructions or NEWS_INSTRUCTIONS,
        max_steps=max_steps or 6,
        stream_outputs=stream_outputs,
        verbosity_level=verbosity_level,
        **agent_kwargs,
    )


def _small(model: str | None) -> bool:
    from newsdesk._client import resolve_model
    from newsdesk._config import default_model

    return resolve_model(model or default_model()).startswith("local/")
