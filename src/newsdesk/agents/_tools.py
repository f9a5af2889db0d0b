"""``async_tool``: an ``async def`` function as a smolagents tool.

smolagents' own ``@tool`` needs a plain ``def`` (it parses the source for a ``FunctionDef``) and
calls ``forward`` synchronously. ``AsyncTool.forward`` hands the coroutine to the run's event
loop (see ``_bridge``) and blocks only the agent's thread while it runs, so the tool can use the
same async clients as the rest of the program, and parallel tool calls of one step — which
smolagents runs in a thread each — overlap on that loop.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, overload

from newsdesk.agents._bridge import run_coroutine

try:
    from smolagents import Tool
    from smolagents._function_type_hints_utils import get_json_schema
except ModuleNotFoundError as exc:  # pragma: no cover - the extra is missing
    if exc.name != "smolagents":
        raise
    from newsdesk._exceptions import MissingExtraError

    raise MissingExtraError("newsdesk.agents", "agents") from exc

AsyncFn = Callable[..., Awaitable[Any]]


class AsyncTool(Tool):
    """A smolagents ``Tool`` whose work is a coroutine function.

    ``tool(query="x")`` (what agents do) runs it on the run's loop and returns the result;
    ``await tool.acall(query="x")`` runs it directly in async code.
    """

    # The signature check in Tool.validate_arguments reads ``forward``'s own annotations,
    # which live on the wrapped function here; inputs are checked against it in __init__.
    skip_forward_signature_validation = True

    def __init__(
        self,
        fn: AsyncFn,
        *,
        name: str,
        description: str,
        inputs: dict[str, dict[str, Any]],
        output_type: str,
    ) -> None:
        self.fn = fn
        self.name = name
        self.description = description
        self.inputs = inputs
        self.output_type = output_type
        self.__wrapped__ = fn
        self.__doc__ = fn.__doc__
        super().__init__()
        self.is_initialized = True

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return run_coroutine(lambda: self.fn(*args, **kwargs))

    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        """Await the tool in async code (no thread, no bridge)."""
        return await self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"AsyncTool({self.name!r})"


def _tool_from(fn: AsyncFn, name: str | None, description: str | None) -> AsyncTool:
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(
            f"async_tool needs an 'async def' function; {getattr(fn, '__name__', fn)!r} is not one "
            "(use smolagents.tool for a plain function)"
        )
    schema = get_json_schema(fn)["function"]
    inputs = schema["parameters"]["properties"]
    output = schema.get("return", {}).get("type", "any")
    if not isinstance(output, str):
        output = "any"
    if output == "null" and inputs:
        output = "any"
    return AsyncTool(
        fn,
        name=name or schema["name"],
        description=description or schema["description"] or "",
        inputs=inputs,
        output_type=output,
    )


@overload
def async_tool(fn: AsyncFn, /) -> AsyncTool: ...


@overload
def async_tool(
    *, name: str | None = None, description: str | None = None
) -> Callable[[AsyncFn], AsyncTool]: ...


def async_tool(
    fn: AsyncFn | None = None, /, *, name: str | None = None, description: str | None = None
) -> AsyncTool | Callable[[AsyncFn], AsyncTool]:
    """Turn an ``async def`` function into a smolagents tool.

    The docstring's first part is the description and its ``Args:`` section describes each
    argument; type hints give the input and output types (as with smolagents' ``@tool``)::

        @async_tool
        async def search(query: str) -> str:
            \"\"\"Search the news.

            Args:
                query: What to look for.
            \"\"\"
            async with httpx.AsyncClient() as client:
                ...

    Use ``@async_tool(name=..., description=...)`` to override either.
    """
    if fn is not None:
        return _tool_from(fn, name, description)
    return lambda f: _tool_from(f, name, description)
