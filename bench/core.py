"""Core benchmark: concurrency, per-call overhead, single-flight, cache-hit latency, start-up.

    python bench/core.py              # measure, print, write docs/BENCHMARKS.md (section "core")
    python bench/core.py --no-write   # print only
    python bench/core.py --quick      # smaller N, for a smoke run

Every provider call goes to the test OpenAI-compatible server (tests/servers/openai_server.py),
started in a subprocess, so the figures include real HTTP through LiteLLM and nothing else.
Peers measured in the same run: a bare ``litellm.acompletion`` + semaphore loop, the openai SDK
(``AsyncOpenAI``) + semaphore, and LangChain's ``ChatOpenAI.abatch(max_concurrency=C)`` (openai
SDK underneath) when ``langchain-openai`` is installed (bench only: ``pip install langchain-openai``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import bench._env  # noqa: E402, F401 - first: paths, environment, a private NEWSDESK_HOME
from newsdesk import DiskStore, Gateway, Limits, MemoryStore, Request  # noqa: E402
from newsdesk._backend import import_litellm  # noqa: E402
from newsdesk._cache import cache_key  # noqa: E402
from newsdesk._response import Completion  # noqa: E402
from tests.servers.plugin import OpenAIServerHandle, start_openai_server  # noqa: E402

MODEL = "openai/bench-model"
KEY = "sk-bench"


def request(server: OpenAIServerHandle, text: str, **kw: Any) -> Request:
    return Request(
        model=MODEL,
        messages=[{"role": "user", "content": text}],
        api_base=server.url,
        api_key=KEY,
        timeout=60,
        **kw,
    )


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


# ---------------------------------------------------------------- 1. wall time vs ideal


async def wall_time(
    server: OpenAIServerHandle, n: int, c: int, latency: float, rounds: int = 2
) -> dict[str, Any]:
    """newsdesk's wall time against the ideal, and bare LiteLLM's under the same semaphore
    (alternating, best of ``rounds``) to show what this machine allows."""
    server.reset()
    server.control(latency=latency)
    ours: list[float] = []
    bare: list[float] = []
    sdk: list[float] = []
    chain: list[float] = []
    failed = 0
    for r in range(rounds):
        gc.collect()
        gw = Gateway(cache="off", limits=Limits(concurrency=c))
        reqs = [request(server, f"wall {r} {i}") for i in range(n)]
        t0 = time.perf_counter()
        outcomes = await gw.gather(reqs)
        ours.append(time.perf_counter() - t0)
        failed += sum(not o.ok for o in outcomes)
        gc.collect()
        bare.append(n / (await bare_litellm(server, n, c, f"wall {r}"))[0])
        gc.collect()
        sdk.append(n / (await openai_sdk(server, n, c, f"wall {r}"))[0])
        lc = await langchain_abatch(server, n, c, f"wall {r}")
        if lc is not None:
            chain.append(n / lc[0])
    max_in_flight = server.stats()["max_in_flight"]
    server.control(latency=0.0)
    return {
        "wall": min(ours),
        "bare": min(bare),
        "sdk": min(sdk),
        "chain": min(chain) if chain else None,
        "walls": ours,
        "bares": bare,
        "sdks": sdk,
        "chains": chain,
        "ideal": math.ceil(n / c) * latency,
        "failed": failed,
        "max_in_flight": max_in_flight,
    }


# ---------------------------------------------------------------- 2. overhead vs bare LiteLLM


async def bare_litellm(server: OpenAIServerHandle, n: int, c: int, tag: str) -> tuple[float, float]:
    """Requests per second and client CPU seconds per request."""
    litellm = import_litellm()
    sem = asyncio.Semaphore(c)

    async def one(i: int) -> None:
        async with sem:
            await litellm.acompletion(
                model=MODEL,
                messages=[{"role": "user", "content": f"bare {tag} {i}"}],
                api_base=server.url,
                api_key=KEY,
                timeout=60,
                num_retries=0,
                max_retries=0,
            )

    t0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - t0), (time.process_time() - cpu0) / n


async def openai_sdk(server: OpenAIServerHandle, n: int, c: int, tag: str) -> tuple[float, float]:
    """The openai SDK alone (what LangChain calls underneath): requests/s, CPU s/request."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=server.url, api_key=KEY, max_retries=0, timeout=60)
    sem = asyncio.Semaphore(c)

    async def one(i: int) -> None:
        async with sem:
            await client.chat.completions.create(
                model="bench-model", messages=[{"role": "user", "content": f"sdk {tag} {i}"}]
            )

    t0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(i) for i in range(n)))
    out = n / (time.perf_counter() - t0), (time.process_time() - cpu0) / n
    await client.close()
    return out


async def langchain_abatch(
    server: OpenAIServerHandle, n: int, c: int, tag: str
) -> tuple[float, float] | None:
    """LangChain ``abatch`` with ``max_concurrency``; None when langchain-openai is missing."""
    try:
        from langchain_openai import ChatOpenAI
    except ImportError:
        return None
    chat = ChatOpenAI(
        model="bench-model",
        base_url=server.url,
        api_key=KEY,
        max_retries=0,
        timeout=60,  # type: ignore[arg-type]
    )
    gc.collect()
    t0, cpu0 = time.perf_counter(), time.process_time()
    await chat.abatch([f"lc {tag} {i}" for i in range(n)], config={"max_concurrency": c})
    return n / (time.perf_counter() - t0), (time.process_time() - cpu0) / n


async def through_newsdesk(
    server: OpenAIServerHandle, n: int, c: int, tag: str
) -> tuple[float, float]:
    """Requests per second and client CPU seconds per request."""
    gw = Gateway(cache="off", limits=Limits(concurrency=c))
    reqs = [request(server, f"nd {tag} {i}") for i in range(n)]
    t0, cpu0 = time.perf_counter(), time.process_time()
    outcomes = await gw.gather(reqs)
    rate, cpu = n / (time.perf_counter() - t0), (time.process_time() - cpu0) / n
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok][:3]
    return rate, cpu


async def overhead(server: OpenAIServerHandle, n: int, c: int, rounds: int) -> dict[str, Any]:
    server.reset()
    await bare_litellm(server, 50, c, "warm")  # first-call costs out of the way
    await through_newsdesk(server, 50, c, "warm")
    bare: list[tuple[float, float]] = []
    ours: list[tuple[float, float]] = []
    sdk: list[tuple[float, float]] = []
    for r in range(rounds):  # alternate, take the best of each
        # Each round starts from the same GC state: with LiteLLM loaded, one full collection
        # (~400k objects, 0.3-0.5 s) landing in one round and not the other decides the ratio.
        gc.collect()
        bare.append(await bare_litellm(server, n, c, f"r{r}"))
        gc.collect()
        ours.append(await through_newsdesk(server, n, c, f"r{r}"))
        gc.collect()
        sdk.append(await openai_sdk(server, n, c, f"r{r}"))
    return {
        "sdk": max(x[0] for x in sdk),
        "sdk_cpu": min(x[1] for x in sdk),
        "bare": max(b[0] for b in bare),
        "newsdesk": max(o[0] for o in ours),
        "bare_all": [b[0] for b in bare],
        "newsdesk_all": [o[0] for o in ours],
        "bare_cpu": min(b[1] for b in bare),
        "newsdesk_cpu": min(o[1] for o in ours),
    }


# ---------------------------------------------------------------- 3. single-flight


async def single_flight(server: OpenAIServerHandle, n: int = 100) -> dict[str, float]:
    server.reset()
    gw = Gateway(cache="memory", limits=Limits(concurrency=50))
    req = request(server, "[[latency:0.3]] one question, asked a hundred times")
    responses = await asyncio.gather(*(gw.complete(req) for _ in range(n)))
    assert len({r.text for r in responses}) == 1
    return {"requests": n, "provider_calls": server.stats()["calls"]}


# ---------------------------------------------------------------- 4. cache-hit latency


async def timed(fn: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t0)
    return out


async def cache_hits(server: OpenAIServerHandle, n: int = 2000) -> dict[str, list[float]]:
    value = (
        Completion(text="A cached answer of a typical length. " * 8, model=MODEL)
        .model_dump_json()
        .encode()
    )
    key = cache_key("bench")
    mem = MemoryStore()
    await mem.set(key, value)
    tmp = Path(tempfile.mkdtemp(prefix="newsdesk-bench-disk-"))
    disk = DiskStore(tmp)
    await disk.set(key, value)
    results = {
        "memory store get": await timed(lambda: mem.get(key), n),
        "disk store get": await timed(lambda: disk.get(key), n),
    }
    disk.close()

    server.reset()
    for name, cache in (
        ("Gateway.complete, memory cache", "memory"),
        ("Gateway.complete, memory + disk", str(tmp / "gw")),
    ):
        gw = Gateway(cache=cache)
        req = request(server, f"cached via {name}")
        await gw.complete(req)  # miss: now stored
        results[name] = await timed(lambda gw=gw, req=req: gw.complete(req), n // 2)
        gw.close()
    if "disk" in cache:  # the disk layer alone, behind a cold memory layer
        gw = Gateway(cache=DiskStore(tmp / "gw"))
        req = request(server, "cached via Gateway.complete, memory + disk")
        results["Gateway.complete, disk only"] = await timed(lambda: gw.complete(req), n // 2)
        gw.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return results


# ---------------------------------------------------------------- 5. start-up


def startup(runs: int = 5) -> dict[str, float]:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    newsdesk = shutil.which("newsdesk") or str(Path(sys.executable).with_name("newsdesk"))
    cmds = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "newsdesk --help": [newsdesk, "--help"],
        "python -c 'import litellm'": [sys.executable, "-c", "import litellm"],
    }
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(runs):  # interleaved, so load spikes hit all three alike
        for name, cmd in cmds.items():
            t0 = time.perf_counter()
            subprocess.run(
                cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


# ---------------------------------------------------------------- report


def us(x: float) -> str:
    return f"{x * 1e6:.0f} µs" if x < 1e-3 else f"{x * 1e3:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="alternating rounds of the throughput test (best kept)",
    )
    args = parser.parse_args()
    n = 100 if args.quick else 500
    c = 50

    import_litellm()
    rows: list[tuple[str, str, str, str]] = []
    with start_openai_server() as server:

        async def run() -> tuple[Any, ...]:
            await through_newsdesk(
                server, 100, c, "warm-up"
            )  # first-call costs (connections, threads)
            w = await wall_time(server, n, c, 0.5)
            o = await overhead(server, n, c, args.rounds)
            s = await single_flight(server)
            h = await cache_hits(server, 400 if args.quick else 2000)
            return w, o, s, h

        w, o, s, h = asyncio.run(run())
    st = startup(3 if args.quick else 5)

    ratio = w["wall"] / w["ideal"]
    runs = ", ".join(f"{x:.2f}" for x in w["walls"])
    bare_runs = ", ".join(f"{x:.2f}" for x in w["bares"])
    sdk_runs = ", ".join(f"{x:.2f}" for x in w["sdks"])
    chain = w["chain"]
    peer = (
        f"; LangChain abatch(max_concurrency): {chain:.2f} s "
        f"(runs: {', '.join(f'{x:.2f}' for x in w['chains'])}) → {chain / w['ideal']:.2f}×"
        if chain is not None
        else "; LangChain: not installed"
    )
    rows.append(
        (
            f"1. wall time, N={n}, concurrency {c}, provider latency 0.5 s, cache off (best of {len(w['walls'])}, alternating)",
            f"{w['wall']:.2f} s (runs: {runs}; max in flight {w['max_in_flight']}, {w['failed']} failed)",
            f"ideal ⌈N/C⌉·L = {w['ideal']:.2f} s → {ratio:.2f}×; bare litellm.acompletion + Semaphore: "
            f"{w['bare']:.2f} s (runs: {bare_runs}) → {w['bare'] / w['ideal']:.2f}×; "
            f"openai SDK + Semaphore: {w['sdk']:.2f} s (runs: {sdk_runs}) → {w['sdk'] / w['ideal']:.2f}×"
            + peer,
            "≤ LangChain's ratio"
            + ("" if chain is None else (" ✓" if w["wall"] <= chain * 1.005 else " ✗")),
        )
    )
    rel = o["newsdesk"] / o["bare"]
    rows.append(
        (
            f"2. throughput, zero-latency provider, N={n}, concurrency {c}, cache off "
            f"(best of {args.rounds}, alternating)",
            f"{o['newsdesk']:.0f} req/s (runs: {', '.join(f'{x:.0f}' for x in o['newsdesk_all'])}); "
            f"client CPU {o['newsdesk_cpu'] * 1e3:.2f} ms/request",
            f"bare litellm.acompletion + Semaphore: {o['bare']:.0f} req/s "
            f"(runs: {', '.join(f'{x:.0f}' for x in o['bare_all'])}); client CPU {o['bare_cpu'] * 1e3:.2f} ms/request "
            f"→ {rel:.2f}× the rate, {o['bare_cpu'] / o['newsdesk_cpu']:.2f}× the CPU efficiency; "
            f"openai SDK + Semaphore: {o['sdk']:.0f} req/s, client CPU {o['sdk_cpu'] * 1e3:.2f} ms/request",
            "≥ 0.85×" + (" ✓" if rel >= 0.85 else " ✗"),
        )
    )
    rows.append(
        (
            "3. 100 identical concurrent requests",
            f"{s['provider_calls']} provider call(s)",
            "100 without single-flight",
            "exactly 1" + (" ✓" if s["provider_calls"] == 1 else " ✗"),
        )
    )
    targets = {"memory store get": 50e-6, "disk store get": 1e-3}
    for name, vals in h.items():
        p50, p95 = pct(vals, 0.50), pct(vals, 0.95)
        target = targets.get(name)
        verdict = (
            "" if target is None else (f"p50 ≤ {us(target)}" + (" ✓" if p50 <= target else " ✗"))
        )
        rows.append(
            (f"4. cache hit: {name}", f"p50 {us(p50)}, p95 {us(p95)}", f"{len(vals)} hits", verdict)
        )
    bare_py, lite = st["python -c pass"], st["python -c 'import litellm'"]
    rows.append(
        (
            "5. start-up: `newsdesk --help` (median of 5)",
            f"{st['newsdesk --help']:.2f} s",
            f"`python -c pass` {bare_py:.2f} s; `python -c 'import litellm'` {lite:.2f} s",
            "no LiteLLM import" + (" ✓" if st["newsdesk --help"] < lite / 2 else " ✗"),
        )
    )

    table = "| measurement | newsdesk | ideal / baseline | target |\n| --- | --- | --- | --- |\n"
    table += "\n".join(f"| {a} | {b} | {c_} | {d} |" for a, b, c_, d in rows)
    print(table)
    if args.no_write:
        return
    from bench._report import write_section

    notes = (
        "Client CPU is `time.process_time()` of the benchmark process (all its threads) per request; "
        "it includes the garbage collector, and a full collection with LiteLLM loaded scans ~400k "
        "objects (0.3-0.5 s), so whether one falls inside a 500-request round moves that figure by "
        "up to ~1 ms/request either way. "
        "The provider is `tests/servers/openai_server.py` in its own process on the same machine, so "
        "it competes for the same CPU cores as the client; on a 2-core machine that caps the zero-latency "
        "throughput of both columns alike. Cache-hit figures are per call, measured one call at a time "
        "in a running event loop (`Gateway.complete` includes request preparation, the cache key "
        "(sha256 of the canonical request), the store read, JSON decoding of the stored answer and "
        "building the `Response`)."
    )
    write_section(
        "core",
        "Core: concurrency, overhead, single-flight, cache, start-up",
        "python bench/core.py",
        table + "\n\n" + notes,
    )


if __name__ == "__main__":
    main()
