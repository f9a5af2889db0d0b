"""What one call costs in CPU on newsdesk's path, beside bare LiteLLM and the openai SDK, and where
LiteLLM spends it.

    python bench/litellm_overhead.py              # measure, print, write the "litellm_overhead" section
    python bench/litellm_overhead.py --no-write   # print only
    python bench/litellm_overhead.py --quick      # fewer calls and rounds

The provider is the fake OpenAI-compatible server (tests/servers/openai_server.py, its own process)
answering at once, so what is measured is the client: ``time.process_time()`` of this process (all
its threads: LiteLLM prepares each request in a worker thread) per call. Calls run ``--concurrency``
at a time (1 by default: one after another). Each path runs ``--calls`` calls per round, the paths
alternate, each keeps its best round (the machine is shared: the best round is the one least
disturbed). Paths:

* the openai SDK (``AsyncOpenAI.chat.completions.create``), the floor: what LiteLLM sends through;
* bare ``litellm.acompletion`` with newsdesk's arguments;
* newsdesk's seam, ``LiteLLMBackend.complete``, with the shortcuts of ``newsdesk._lean`` and, in the
  same run, without them (as before they existed);
* the whole ``Gateway.complete`` (cache off: validation, limits, retries, the response object).

The models: ``openai/bench-model``, which LiteLLM has no price for (like a local server, Ollama or
the embedded model), and ``openai/gpt-4o-mini``, which it prices (the server answers any name).
Then cProfile of the newsdesk seam, with and without the shortcuts (alternating, best of 3): LiteLLM's
internals by cumulative CPU time of the event-loop thread per call (profiled times are inflated;
compare the rows, not with the CPU table).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import os
import pstats
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import bench._env  # noqa: E402, F401 - first: paths, environment, a private NEWSDESK_HOME
from newsdesk import Gateway, Request  # noqa: E402
from newsdesk import _backend as backend_module  # noqa: E402
from newsdesk._backend import LiteLLMBackend, import_litellm  # noqa: E402
from tests.servers.plugin import OpenAIServerHandle, start_openai_server  # noqa: E402

KEY = "sk-bench"
UNPRICED = "openai/bench-model"
PRICED = "openai/gpt-4o-mini"
Call = Callable[[int], Awaitable[Any]]


@contextlib.contextmanager
def shortcuts_off() -> Any:
    """LiteLLMBackend as it was before ``newsdesk._lean``: LiteLLM's logging and pricing in full."""
    saved = backend_module.lean_call
    backend_module.lean_call = lambda litellm, kw: contextlib.nullcontext(False)  # type: ignore[assignment]
    try:
        yield
    finally:
        backend_module.lean_call = saved


def paths(server: OpenAIServerHandle, model: str) -> dict[str, Call]:
    litellm = import_litellm()
    from openai import AsyncOpenAI

    sdk = AsyncOpenAI(base_url=server.url, api_key=KEY, max_retries=0, timeout=60)
    ours = LiteLLMBackend()
    gateway = Gateway(cache="off")

    def request(i: int) -> Request:
        return Request(
            model=model,
            messages=[{"role": "user", "content": f"overhead {i}"}],
            api_base=server.url,
            api_key=KEY,
            timeout=60,
        )

    async def openai_sdk(i: int) -> Any:
        return await sdk.chat.completions.create(
            model=model.split("/", 1)[1], messages=[{"role": "user", "content": f"sdk {i}"}]
        )

    async def bare(i: int) -> Any:
        return await litellm.acompletion(**ours._kwargs(request(i)))

    async def seam(i: int) -> Any:
        return await ours.complete(request(i))

    async def seam_before(i: int) -> Any:
        with shortcuts_off():
            return await ours.complete(request(i))

    async def whole(i: int) -> Any:
        return await gateway.complete(request(i))

    return {
        "openai SDK": openai_sdk,
        "bare litellm.acompletion": bare,
        "newsdesk LiteLLMBackend.complete, without the shortcuts": seam_before,
        "newsdesk LiteLLMBackend.complete": seam,
        "newsdesk Gateway.complete (cache off)": whole,
    }


async def cpu_per_call(call: Call, n: int, c: int, tag: int) -> float:
    sem = asyncio.Semaphore(c)

    async def one(i: int) -> None:
        async with sem:
            await call(tag * n + i)

    gc.collect()
    cpu0 = time.process_time()
    await asyncio.gather(*(one(i) for i in range(n)))
    return (time.process_time() - cpu0) / n


async def measure(
    server: OpenAIServerHandle, model: str, n: int, c: int, rounds: int
) -> dict[str, list[float]]:
    calls = paths(server, model)
    for call in calls.values():  # first-call costs (connections, clients, look-ups) out of the way
        for i in range(10):
            await call(-1 - i)
    out: dict[str, list[float]] = {name: [] for name in calls}
    for r in range(rounds):
        for name, call in calls.items():
            out[name].append(await cpu_per_call(call, n, c, r))
    return out


async def profile(server: OpenAIServerHandle, n: int, shortcuts: bool) -> dict[str, float]:
    """Cumulative CPU seconds per call of LiteLLM's functions on ``LiteLLMBackend.complete``. The
    profiler's clock is the event-loop thread's CPU time, which other processes on a busy machine
    do not inflate (LiteLLM's worker-thread part is not in it)."""
    call = paths(server, UNPRICED)["newsdesk LiteLLMBackend.complete"]
    with contextlib.nullcontext() if shortcuts else shortcuts_off():
        for i in range(10):
            await call(-1 - i)
        prof = cProfile.Profile(time.thread_time)
        prof.enable()
        for i in range(n):
            await call(i)
        prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    out: dict[str, float] = {}
    for (path, line, func), (_cc, _nc, _tt, cum, _callers) in stats.items():
        if "/litellm/" not in path:
            continue
        name = f"{path.split('/litellm/', 1)[1]}:{line} {func}"
        out[name] = cum / n
    return out


async def profiles(
    server: OpenAIServerHandle, n: int, rounds: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Without and with the shortcuts, alternating; each function's least time over the rounds."""
    before: dict[str, float] = {}
    after: dict[str, float] = {}
    for _ in range(rounds):
        for shortcuts, best in ((False, before), (True, after)):
            for name, t in (await profile(server, n, shortcuts)).items():
                best[name] = min(t, best.get(name, t))
    return before, after


INTERNALS = (
    # what the issue asked to look at, named as LiteLLM 1.110 names them
    ("utils.py", "wrapper_async", "the whole `acompletion` (its `@client` wrapper)"),
    ("utils.py", "function_setup", "logging object set-up (`function_setup`)"),
    (
        "llms/openai/openai.py",
        "make_openai_chat_completion_request",
        "the HTTP call (openai SDK inside)",
    ),
    ("response_metadata.py", "set_hidden_params", "response metadata (`set_hidden_params`)"),
    (
        "litellm_logging.py",
        "response_cost_calculator",
        "cost calculation (`Logging.response_cost_calculator`)",
    ),
    ("utils.py", "get_model_info", "model-info look-ups (`get_model_info`)"),
    ("litellm_logging.py", "_record_zero_cost_diagnostic", "zero-cost diagnostic"),
    ("litellm_logging.py", "async_success_handler", "success logging (`async_success_handler`)"),
    ("litellm_logging.py", "get_standard_logging_object_payload", "standard logging payload"),
    (
        "convert_dict_to_response.py",
        "convert_to_model_response_object",
        "response re-validation (`convert_to_model_response_object`)",
    ),
    ("core_helpers.py", "process_response_headers", "header parsing (`process_response_headers`)"),
)


def internals_table(before: dict[str, float], after: dict[str, float]) -> str:
    def pick(stats: dict[str, float], file: str, func: str) -> float:
        return max(
            (
                v
                for k, v in stats.items()
                if k.split(":")[0].endswith(file) and k.endswith(" " + func)
            ),
            default=0.0,
        )

    whole_before = pick(before, "utils.py", "wrapper_async") or 1.0
    rows = [
        "| LiteLLM internals on `LiteLLMBackend.complete` (unpriced model; cProfile, cumulative "
        "event-loop-thread CPU per call, best of 3) "
        "| without the shortcuts | with them |",
        "| --- | --- | --- |",
    ]
    for file, func, label in INTERNALS:
        b, a = pick(before, file, func), pick(after, file, func)
        rows.append(
            f"| {label} | {b * 1e3:.2f} ms ({b / whole_before:.0%}) | {a * 1e3:.2f} ms ({a / whole_before:.0%}) |"
        )
    return "\n".join(rows)


def cpu_table(results: dict[str, dict[str, list[float]]]) -> str:
    models = list(results)
    rows = [
        "| path | " + " | ".join(f"CPU ms/call, `{m}`" for m in models) + " |",
        "| --- |" + " --- |" * len(models),
    ]
    sdk = {m: min(results[m]["openai SDK"]) for m in models}
    for name in results[models[0]]:
        cells = []
        for m in models:
            best = min(results[m][name])
            rounds = ", ".join(f"{x * 1e3:.2f}" for x in results[m][name])
            cells.append(f"**{best * 1e3:.2f}** ({best / sdk[m]:.1f}× the SDK; rounds: {rounds})")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--calls", type=int, default=None, help="calls per path and round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    n = args.calls or (100 if args.quick else 300)
    rounds = args.rounds or (3 if args.quick else 5)
    c = args.concurrency

    import_litellm()
    with start_openai_server() as server:

        async def run() -> tuple[
            dict[str, dict[str, list[float]]], dict[str, float], dict[str, float]
        ]:
            results = {m: await measure(server, m, n, c, rounds) for m in (UNPRICED, PRICED)}
            before, after = await profiles(server, n // 2, 3)
            return results, before, after

        results, before, after = asyncio.run(run())

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    body = (
        cpu_table(results)
        + "\n\n"
        + internals_table(before, after)
        + "\n\n"
        + f"{n} calls per path and round, {c} at a time, best of {rounds} alternating rounds; "
        f"load average {load:.1f} at the end on {os.cpu_count()} cores (a shared machine: the "
        "absolute figures move with the load, the rows of one run compare). CPU is "
        "`time.process_time()` of the client process per call (LiteLLM prepares each request in "
        "a worker thread, counted too); the provider runs in its own process and is not counted. "
        '"The shortcuts" are `newsdesk._lean`: with no LiteLLM callback, budget or LiteLLM cache '
        "configured and no per-request callbacks, metadata or pricing, newsdesk's calls skip "
        "LiteLLM's success logging and stop re-pricing a model LiteLLM has no price for; every "
        "call still goes through `litellm.acompletion`, and a priced model is priced as before."
    )
    print(body)
    if args.no_write:
        return
    from bench._report import write_section

    write_section(
        "litellm_overhead",
        "LiteLLM's per-call overhead on newsdesk's path",
        "python bench/litellm_overhead.py",
        body,
    )


if __name__ == "__main__":
    main()
