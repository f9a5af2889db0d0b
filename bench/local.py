"""The embedded model (SmolLM2-135M, llama.cpp): batched decoding and the shared prompt prefix.

    python bench/local.py              # measure, print, write docs/BENCHMARKS.md (section "local")
    python bench/local.py --no-write   # print only
    python bench/local.py --quick      # fewer articles, no demo run

Every request is a real article analysis (the pipeline's own prompt and JSON schema) of the
bundled demo articles, through the Gateway and LiteLLM, with the cache off. In one run:

* aggregate completion tokens/s with 1, 2 and 4 analyses in flight (same articles each time);
* the same articles one at a time through llama-cpp-python's own ``create_chat_completion``
  (what ``local/smollm2`` did before batching), for reference;
* prompt tokens evaluated per article against the article's own tokens (the shared prefix
  counted once);
* ``newsdesk analyze`` on the demo, cold: a fresh home, a new process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._env import ROOT  # noqa: E402 - first: paths, environment, a private NEWSDESK_HOME
from bench._report import write_section  # noqa: E402
from newsdesk import Gateway, Limits  # noqa: E402
from newsdesk._backend import LiteLLMBackend  # noqa: E402
from newsdesk._local import _params, get_engine, get_llama, parallel, prepare  # noqa: E402
from newsdesk._local_engine import _lcp  # noqa: E402
from newsdesk.news._analyze import analysis_request  # noqa: E402
from newsdesk.news._feeds import parse_feed  # noqa: E402
from newsdesk.news._models import Article  # noqa: E402
from newsdesk.news._sources import DEMO_DIR, demo_sources  # noqa: E402

MODEL = "local/smollm2"


def demo_articles() -> list[Article]:
    out: list[Article] = []
    for source in demo_sources():
        path = (DEMO_DIR / source.url) if not Path(source.url).is_absolute() else Path(source.url)
        try:
            out.extend(parse_feed(path.read_bytes(), source).articles)
        except Exception:  # noqa: BLE001 - the demo has a deliberately broken feed
            continue
    return out


def requests_for(articles: list[Article]) -> list[Any]:
    # the embedded model's default in the pipeline: the embedding picks the topic
    return [analysis_request(a, model=MODEL, with_topic=False, cache="off") for a in articles]


async def run_batch(reqs: list[Any], concurrency: int) -> dict[str, Any]:
    gw = Gateway(cache="off", limits=Limits(concurrency=concurrency))
    sem = asyncio.Semaphore(concurrency)
    tokens = 0
    valid = 0
    texts: dict[int, str] = {}

    async def one(i: int, req: Any) -> None:
        nonlocal tokens, valid
        async with sem:
            resp = await gw.complete(req)
            tokens += resp.usage.completion_tokens
            valid += resp.value is not None and resp.attempts == 1
            texts[i] = resp.text

    # CPU time as well as wall time: other jobs share the cores, and CPU seconds per token
    # are far less disturbed by them than wall seconds.
    t0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(i, r) for i, r in enumerate(reqs)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    gw.close()
    return {
        "wall": wall, "cpu": cpu, "tokens": tokens, "tps": tokens / wall, "cpu_tps": tokens / cpu,
        "valid": valid, "texts": [texts[i] for i in range(len(reqs))],
    }  # fmt: skip


def chat_params(req: Any) -> dict[str, Any]:
    """What the ``local`` provider receives for ``req`` (the Gateway's LiteLLM arguments)."""
    kw = LiteLLMBackend()._kwargs(req)
    return _params(kw["messages"], kw)


def run_reference(reqs: list[Any]) -> dict[str, Any]:
    """One at a time through llama-cpp-python's create_chat_completion (the code before batching)."""
    from llama_cpp import Llama

    from newsdesk._local import _threads, model_path

    llama = Llama(
        model_path=str(model_path("smollm2")),
        n_ctx=2048,
        n_threads=_threads(),
        verbose=False,
        seed=0,
    )
    tokens = 0
    texts = []
    t0, cpu0 = time.perf_counter(), time.process_time()
    for req in reqs:
        out: Any = llama.create_chat_completion(**chat_params(req))
        tokens += out["usage"]["completion_tokens"]
        texts.append(out["choices"][0]["message"]["content"])
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    llama.close()
    return {
        "wall": wall, "cpu": cpu, "tokens": tokens, "tps": tokens / wall, "cpu_tps": tokens / cpu,
        "texts": texts,
    }  # fmt: skip


def prompt_accounting(reqs: list[Any]) -> dict[str, Any]:
    prompts = []
    for req in reqs:
        prompts.append(prepare("smollm2", chat_params(req))[0])
    shared = min(_lcp(prompts[0], p) for p in prompts[1:])
    return {
        "shared": shared,
        "own": sum(len(p) - shared for p in prompts) / len(prompts),
        "full": sum(len(p) for p in prompts) / len(prompts),
    }


def demo_cold(parallel_env: str | None) -> float:
    home = tempfile.mkdtemp(prefix="newsdesk-demo-")
    env = {**os.environ, "NEWSDESK_HOME": home, "PYTHONPATH": str(ROOT / "src")}
    if parallel_env is not None:
        env["NEWSDESK_LOCAL_PARALLEL"] = parallel_env
    exe = Path(sys.executable).with_name("newsdesk")
    t0 = time.perf_counter()
    proc = subprocess.run([str(exe), "analyze"], env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    shutil.rmtree(home, ignore_errors=True)
    if proc.returncode != 0:
        raise SystemExit(f"newsdesk analyze failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return wall


def _brief(r: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in r.items() if k != "texts"}


def load() -> str:
    return os.popen("uptime").read().strip()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("-n", type=int, default=12, help="articles per measurement")
    args = ap.parse_args()
    n = 4 if args.quick else args.n
    articles = demo_articles()[:n]
    reqs = requests_for(articles)
    load_before = load()

    t0 = time.perf_counter()
    get_llama("smollm2")
    engine = get_engine("smollm2")
    load_s = time.perf_counter() - t0
    acct = prompt_accounting(reqs)

    # warm-up: the first request fills the prefix cache (counted once per process)
    before = engine.stats.prompt_evaluated
    asyncio.run(run_batch(reqs[:1], 1))
    first_eval = engine.stats.prompt_evaluated - before

    results: dict[int, dict[str, Any]] = {}
    evaluated: dict[int, float] = {}
    for c in (1, 2, 4):
        before = engine.stats.prompt_evaluated
        results[c] = asyncio.run(run_batch(reqs, c))
        evaluated[c] = (engine.stats.prompt_evaluated - before) / len(reqs)
        print(f"{c} in flight: {_brief(results[c])}", file=sys.stderr)
    reference = run_reference(reqs) if not args.quick else None
    if reference:
        print(f"reference: {_brief(reference)}", file=sys.stderr)
    demo = None if args.quick else demo_cold(None)
    demo_one = None if args.quick else demo_cold("1")
    load_after = load()

    single, single_cpu = results[1]["tps"], results[1]["cpu_tps"]
    rows = [
        "| analyses in flight | wall (s) | CPU (s) | completion tokens | tokens/s (wall) | × one at a time "
        "| tokens per CPU-second | × one at a time | valid JSON, first try | text = 1 in flight |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def row(name: str, r: dict[str, Any], valid: str) -> str:
        same = sum(a == b for a, b in zip(r["texts"], results[1]["texts"], strict=True))
        return (
            f"| {name} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['tokens']} | {r['tps']:.1f} "
            f"| {r['tps'] / single:.2f}× | {r['cpu_tps']:.1f} | {r['cpu_tps'] / single_cpu:.2f}× "
            f"| {valid} | {same}/{len(reqs)} |"
        )

    for c, r in results.items():
        rows.append(row(str(c), r, f"{r['valid']}/{len(reqs)}"))
    if reference:
        rows.append(
            row("1, llama-cpp-python `create_chat_completion` (before batching)", reference, "—")
        )
    body = [
        f"{len(reqs)} demo articles, each a real analysis request (the pipeline's prompt and JSON schema, temperature 0, "
        f"max 360 tokens), through the Gateway with the cache off; the engine decodes up to {parallel()} sequences together "
        f"(`NEWSDESK_LOCAL_PARALLEL`), {os.environ.get('NEWSDESK_LOCAL_THREADS') or 'default'} llama.cpp threads. "
        f"Model + context load: {load_s:.2f} s.",
        "",
        *rows,
        "",
        "Prompt tokens per article (the shared prefix - chat template, system prompt, instructions - is the "
        f"longest common token prefix of these prompts: {acct['shared']} tokens):",
        "",
        "| | tokens per article |",
        "| --- | --- |",
        f"| whole prompt | {acct['full']:.0f} |",
        f"| the article's own part (prompt − shared prefix) | {acct['own']:.0f} |",
        f"| evaluated, first request of the process (fills the prefix cache) | {first_eval} |",
        *(f"| evaluated, {c} in flight | {evaluated[c]:.0f} |" for c in results),
    ]
    if demo is not None:
        body += [
            "",
            "`newsdesk analyze` on the bundled demo, cold (new process, fresh `NEWSDESK_HOME`: model load, "
            "embeddings, fetch, 24 analyses at the default `--concurrency 4`):",
            "",
            "| | wall (s) |",
            "| --- | --- |",
            f"| default (4 sequences) | {demo:.1f} |",
            f"| `NEWSDESK_LOCAL_PARALLEL=1` (one sequence, prefix reuse kept) | {demo_one:.1f} |",
        ]
    r4 = results[4]
    body += [
        "",
        f"4 in flight against 1: {r4['cpu_tps'] / single_cpu:.2f}× the tokens per CPU-second, "
        f"{r4['tps'] / single:.2f}× per wall-second. "
        + (
            "That is below the 1.5× the issue asked for: on this CPU llama.cpp spends about the same "
            "CPU time per token whether 1 or 4 sequences share a step (a bare `llama_decode` of 4 tokens "
            "took 2.9-3.6× one token, 1 thread), so batching buys every analysis streaming at once, "
            "not throughput; the prefix reuse is the saving that remains."
            if r4["cpu_tps"] / single_cpu < 1.5
            else "Batching pays on this machine."
        ),
    ]
    body += [
        "",
        f"Machine load (`uptime`) before: `{load_before}`; after: `{load_after}`. "
        "Other helpers' jobs share these 2 cores: compare ratios within this run, not absolute times.",
    ]
    text = "\n".join(body)
    print(text)
    if not args.no_write:
        write_section(
            "local",
            "Embedded model: batched decoding and the shared prefix",
            "python bench/local.py",
            text,
        )


if __name__ == "__main__":
    main()
