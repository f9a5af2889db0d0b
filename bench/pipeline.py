"""The news pipeline against local servers: overlap, time to first result, store reuse, overhead.

    python bench/pipeline.py              # measure, print, write the "pipeline" section of docs/BENCHMARKS.md
    python bench/pipeline.py --no-write   # print only
    python bench/pipeline.py --no-local   # skip the embedded-model run
    python bench/pipeline.py --quick      # one run of each, no overhead section

Setup: 8 RSS feeds x 32 articles (256, each ~1,100 characters like a real news article) on a
local HTTP server (two feeds answer after 1 s and 2 s, ETag/304 supported), the fake
OpenAI-compatible provider from tests/servers with 0.5 s latency per request, concurrency 32,
cache off. The provider runs use the embedding step (topic, tone, story and search vector) as
``newsdesk analyze`` always does; one run without it shows what it costs. The embedded-model run
(``local/smollm2``) is separate. CPU is ``time.process_time()`` of the whole process (all threads)
divided by the articles analyzed.

Measured, each the best of ``--repeat`` runs:

* the pipeline (fetching and analysis overlap; every analysis committed to a SQLite store);
* a bare baseline in the same process: the seed's approach, gather every source first, then
  analyze all articles with the same concurrency (same fetcher, same analysis function, no store);
* the ideal for the phased approach, slowest fetch + ceil(N/C) x L, and for an overlapped one;
* the second run over unchanged feeds: every feed a 304, every analysis from the store, 0 LLM calls;
* overhead: provider latency 0, the same 200 analysis requests through bare ``litellm.acompletion``
  (streamed, same kwargs), through the ``Gateway`` (``analyze_article``), and through the whole
  pipeline (fetch, parse, dedup, store included); wall and CPU per article;
* the bundled demo on the embedded model (``local/smollm2``), ``--limit 6``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import bench._env  # noqa: E402, F401 - first: paths, environment, a private NEWSDESK_HOME

os.environ["OPENAI_API_KEY"] = "sk-bench"

from newsdesk import Gateway, Limits  # noqa: E402
from newsdesk.news._analyze import analysis_request, analyze_article  # noqa: E402
from newsdesk.news._feeds import parse_feed  # noqa: E402
from newsdesk.news._fetch import Fetcher  # noqa: E402
from newsdesk.news._models import Article, Source  # noqa: E402
from newsdesk.news._pipeline import PipelineOptions, run_pipeline  # noqa: E402
from newsdesk.news._store import Store  # noqa: E402
from tests.servers.plugin import OpenAIServerHandle, start_openai_server  # noqa: E402

MODEL = "openai/bench-model"
FEEDS = 8
PER_FEED = 32
DELAYS = {0: 1.0, 1: 2.0}  # feed index -> seconds before it answers
LATENCY = 0.5
CONCURRENCY = 32

_VOCAB = (
    "council budget harbour bridge river mayor minister school hospital farmers market railway "
    "station museum library storm flood drought festival court judge police strike union factory "
    "airport tunnel port ferry orchestra stadium league coach striker election ballot senate "
    "parliament treaty border village valley mountain glacier forest wildlife reserve vaccine "
    "clinic nurse doctor research laboratory telescope satellite launch rocket startup software "
    "network outage battery charger solar turbine pipeline refinery exports imports tariff "
    "currency inflation savings pension housing rent tenants landlord bakery vineyard harvest"
).split()


# --- a feed server with per-feed delays ------------------------------------------------------


class _Feeds:
    def __init__(self) -> None:
        self.bodies: dict[str, bytes] = {}
        self.delays: dict[str, float] = {}
        self.hits: dict[str, int] = {}
        self.not_modified = 0
        self.sent: dict[str, float] = {}  # path -> when its body was last sent in full
        self.lock = threading.Lock()


def _handler(feeds: _Feeds) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = feeds.bodies.get(self.path)
            if body is None:
                self.send_error(404)
                return
            with feeds.lock:
                feeds.hits[self.path] = feeds.hits.get(self.path, 0) + 1
            time.sleep(feeds.delays.get(self.path, 0.0))
            etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
            if self.headers.get("If-None-Match") == etag:
                with feeds.lock:
                    feeds.not_modified += 1
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", etag)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            feeds.sent[self.path] = time.time()

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def _rss(feed: int, n: int = PER_FEED) -> bytes:
    """Feed ``feed``'s RSS: ``n`` articles of ~1,100 characters, the same for the same feed."""
    rng = random.Random(feed)
    items = []
    for i in range(n):
        text = " ".join(rng.choice(_VOCAB) for _ in range(150)).capitalize() + "."
        title = f"Feed {feed} story {i}: " + " ".join(rng.choice(_VOCAB) for _ in range(5))
        items.append(
            f"<item><title>{escape(title)}</title><link>https://bench{feed}.test/{i}</link>"
            f"<pubDate>Mon, 03 Mar 2025 09:00:00 GMT</pubDate>"
            f"<description>{escape(text)}</description></item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>Bench {feed}</title><link>https://bench{feed}.test/</link><description>b</description>"
        + "".join(items)
        + "</channel></rss>"
    ).encode()


def serve(feeds: _Feeds) -> tuple[str, ThreadingHTTPServer]:
    """Serve ``feeds`` on 127.0.0.1 from a thread: (base URL, server)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(feeds))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server


def start_feeds() -> tuple[str, _Feeds, ThreadingHTTPServer]:
    feeds = _Feeds()
    for f in range(FEEDS):
        feeds.bodies[f"/feed{f}.xml"] = _rss(f)
        feeds.delays[f"/feed{f}.xml"] = DELAYS.get(f, 0.0)
    base, server = serve(feeds)
    return base, feeds, server


def sources(base: str) -> list[Source]:
    return [Source(name=f"bench{f}", url=f"{base}/feed{f}.xml") for f in range(FEEDS)]


# --- the runs --------------------------------------------------------------------------------


def gateway() -> Gateway:
    return Gateway(cache="off", limits=Limits(concurrency=CONCURRENCY))


async def pipeline_run(
    srcs: list[Source], llm: OpenAIServerHandle, store: Store, *, embeddings: bool = True
) -> dict[str, Any]:
    gw = gateway()
    opts = PipelineOptions(
        sources=srcs, model=MODEL, api_base=llm.url, concurrency=CONCURRENCY,
        fetch_concurrency=16, embeddings=embeddings, deltas=False,
    )  # fmt: skip
    calls = llm.stats()["calls"]
    t0, c0 = time.perf_counter(), time.process_time()
    first = None
    slowest = 0.0
    done: Any = None
    async for ev in run_pipeline(opts, gateway=gw, store=store):
        if ev.event == "analysis" and first is None:
            first = time.perf_counter() - t0
        elif ev.event == "source_ok":
            slowest = max(slowest, ev.elapsed)
        elif ev.event == "done":
            done = ev
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    gw.close()
    assert done is not None and done.failed == 0 and done.sources_failed == 0, done
    return {
        "wall": wall, "cpu": cpu, "first": first, "slowest_fetch": slowest,
        "analyzed": done.analyzed, "from_cache": done.from_cache,
        "llm_calls": llm.stats()["calls"] - calls,
    }  # fmt: skip


async def baseline_run(srcs: list[Source], llm: OpenAIServerHandle) -> dict[str, Any]:
    """The seed's approach: gather every source, then analyze everything."""
    gw = gateway()
    t0, c0 = time.perf_counter(), time.process_time()
    async with Fetcher(concurrency=16) as fetcher:
        results = await asyncio.gather(*(fetcher.fetch(s) for s in srcs))
    articles: list[Article] = []
    for r, s in zip(results, srcs, strict=True):
        articles += parse_feed(r.body, s, content_type=r.content_type).articles
    fetched = time.perf_counter() - t0
    sem = asyncio.Semaphore(CONCURRENCY)
    first: list[float] = []

    async def one(a: Article) -> None:
        async with sem:
            await analyze_article(a, gw, model=MODEL, api_base=llm.url, llm_topic=True)
        if not first:
            first.append(time.perf_counter() - t0)

    await asyncio.gather(*(one(a) for a in articles))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    gw.close()
    return {
        "wall": wall,
        "cpu": cpu,
        "first": first[0],
        "fetched": fetched,
        "analyzed": len(articles),
    }


async def bare_litellm(articles: list[Article], llm: OpenAIServerHandle) -> dict[str, Any]:
    """The same analysis requests straight through litellm.acompletion (streamed, same kwargs)."""
    from newsdesk._backend import LiteLLMBackend, import_litellm

    litellm = import_litellm()
    backend = LiteLLMBackend()
    kws = []
    for a in articles:
        kw = backend._kwargs(analysis_request(a, model=MODEL, with_topic=True, api_base=llm.url))
        kw.update(stream=True, stream_options={"include_usage": True})
        kws.append(kw)
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(kw: dict[str, Any]) -> None:
        async with sem:
            resp = await litellm.acompletion(**kw)
            async for _chunk in resp:
                pass

    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(kw) for kw in kws))
    return {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}


async def gateway_only(
    articles: list[Article], llm: OpenAIServerHandle, *, deltas: bool = False
) -> dict[str, Any]:
    """``analyze_article`` alone; with ``deltas`` someone consumes the deltas (a stream)."""
    gw = gateway()
    sem = asyncio.Semaphore(CONCURRENCY)
    on_delta = (lambda _text: None) if deltas else None

    async def one(a: Article) -> None:
        async with sem:
            await analyze_article(
                a, gw, model=MODEL, api_base=llm.url, llm_topic=True, on_delta=on_delta
            )

    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(a) for a in articles))
    out = {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}
    gw.close()
    return out


async def local_demo(limit: int) -> dict[str, Any]:
    from newsdesk.news._sources import demo_sources

    gw = Gateway(cache="off", limits=Limits(concurrency=4))
    with Store(Path(os.environ["NEWSDESK_HOME"]) / "local.db") as store:
        opts = PipelineOptions(
            sources=demo_sources(), model="local/smollm2", limit=limit, deltas=False
        )
        t0 = time.perf_counter()
        first = None
        done: Any = None
        latencies: list[float] = []
        async for ev in run_pipeline(opts, gateway=gw, store=store):
            if ev.event == "analysis":
                latencies.append(ev.latency)
                if first is None:
                    first = time.perf_counter() - t0
            elif ev.event == "done":
                done = ev
        wall = time.perf_counter() - t0
    gw.close()
    assert done is not None
    return {
        "wall": wall, "first": first, "analyzed": done.analyzed, "failed": done.failed,
        "completion_tokens": done.completion_tokens, "prompt_tokens": done.prompt_tokens,
        "mean_latency": statistics.mean(latencies) if latencies else 0.0,
    }  # fmt: skip


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return min(runs, key=lambda r: r["wall"])


def med(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def run(coro: Callable[[], Coroutine[Any, Any, dict[str, Any]]]) -> dict[str, Any]:
    return asyncio.run(coro())


# --- main ------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument(
        "--no-write", action="store_true", help="print the section instead of writing it"
    )
    ap.add_argument("--no-local", action="store_true", help="skip the embedded-model run")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each measurement (best kept)")
    ap.add_argument("--local-limit", type=int, default=6)
    ap.add_argument("--quick", action="store_true", help="one run of each; no overhead section")
    args = ap.parse_args()
    if args.quick:
        args.repeat = 1

    from newsdesk._backend import import_litellm

    import_litellm()
    load = os.getloadavg()[0]
    base, feeds, server = start_feeds()
    srcs = sources(base)
    n = FEEDS * PER_FEED
    home = Path(os.environ["NEWSDESK_HOME"])
    with start_openai_server() as llm:
        # warm-up: first connections, LiteLLM's lazy imports
        run(
            lambda: gateway_only([parse_feed(feeds.bodies["/feed2.xml"], srcs[2]).articles[0]], llm)
        )

        llm.control(latency=LATENCY)
        pipe_runs, base_runs = [], []
        for i in range(args.repeat):
            with Store(home / f"pipe{i}.db") as store:  # a fresh store: nothing cached
                pipe_runs.append(run(lambda store=store: pipeline_run(srcs, llm, store)))
                if i == args.repeat - 1:
                    hits = dict(feeds.hits)
                    nm = feeds.not_modified
                    second = run(lambda store=store: pipeline_run(srcs, llm, store))
                    second["not_modified"] = feeds.not_modified - nm
                    second["fetches"] = sum(feeds.hits.values()) - sum(hits.values())
            base_runs.append(run(lambda: baseline_run(srcs, llm)))
        pipe, bare = best(pipe_runs), best(base_runs)
        paired = statistics.median(
            b["wall"] - p["wall"] for p, b in zip(pipe_runs, base_runs, strict=True)
        )
        with Store(home / "noembed.db") as store:
            no_embed = run(lambda store=store: pipeline_run(srcs, llm, store, embeddings=False))

        # overhead: latency 0, no feed delays
        llm.control(latency=0.0)
        for path in feeds.delays:
            feeds.delays[path] = 0.0
        articles = [
            a
            for f, s in enumerate(srcs)
            for a in parse_feed(feeds.bodies[f"/feed{f}.xml"], s).articles
        ]
        over_bare, over_gw, over_pipe, over_stream = [], [], [], []
        for i in range(0 if args.quick else args.repeat):
            over_bare.append(run(lambda: bare_litellm(articles, llm)))
            over_gw.append(run(lambda: gateway_only(articles, llm)))
            over_stream.append(run(lambda: gateway_only(articles, llm, deltas=True)))
            with Store(home / f"over{i}.db") as store:
                over_pipe.append(run(lambda store=store: pipeline_run(srcs, llm, store)))
        ob, og, op, os_ = (
            best(x) if x else None for x in (over_bare, over_gw, over_pipe, over_stream)
        )
    server.shutdown()

    local = None if args.no_local else run(lambda: local_demo(args.local_limit))

    waves = math.ceil(n / CONCURRENCY)
    ideal = waves * LATENCY
    slowest = max(DELAYS.values())
    ideal_phased = pipe["slowest_fetch"] + waves * LATENCY
    # overlapped: fast feeds' articles start at once; the slowest feed's last articles need
    # their own waves after it arrives
    ideal_overlap = max(waves * LATENCY, slowest + math.ceil(PER_FEED / CONCURRENCY) * LATENCY)

    def ms(x: float) -> str:
        return f"{x * 1000:.1f}"

    rows = [
        ("articles (feeds x articles)", f"{n} ({FEEDS} x {PER_FEED}); 2 feeds answer after 1 s and 2 s"),
        ("provider latency L, concurrency C", f"{LATENCY} s, {CONCURRENCY}; cache off, embeddings on"),
        ("ideal ⌈N/C⌉·L", f"{ideal:.2f} s"),
        ("ideal, phased: slowest fetch + ceil(N/C)·L", f"{ideal_phased:.2f} s ({pipe['slowest_fetch']:.2f} + {waves} x {LATENCY})"),
        ("ideal, overlapped", f"{ideal_overlap:.2f} s"),
        (f"**pipeline** wall, best / median of {args.repeat}", f"**{pipe['wall']:.2f} s** / {med(pipe_runs, 'wall'):.2f} s → **{pipe['wall'] / ideal:.2f}× ⌈N/C⌉·L** ({pipe['wall'] / ideal_overlap:.2f}× overlapped ideal)"),
        ("**pipeline CPU per article** (whole process, embeddings included)", f"**{ms(pipe['cpu'] / n)} ms** (goal ≤ 60 ms)"),
        ("same run with `--no-embeddings` (no embedding step)", f"{no_embed['wall']:.2f} s wall ({no_embed['wall'] / ideal:.2f}×), {ms(no_embed['cpu'] / n)} ms CPU per article"),
        ("baseline wall (gather all, then analyze; no embedding step), best / median", f"{bare['wall']:.2f} s / {med(base_runs, 'wall'):.2f} s (all fetched after {bare['fetched']:.2f} s)"),
        ("overlap wins by (median of back-to-back pairs)", f"{paired:.2f} s per run; best vs best {bare['wall'] - pipe['wall']:.2f} s ({bare['wall'] / pipe['wall']:.2f} x)"),
        ("time to first analysis: pipeline / baseline", f"{pipe['first']:.2f} s / {bare['first']:.2f} s"),
        ("second run (unchanged feeds)", f"{second['wall']:.2f} s: {second['llm_calls']} LLM calls, {second['from_cache']}/{second['analyzed']} from the store, {second['not_modified']}/{second['fetches']} fetches answered 304"),
    ]  # fmt: skip
    if ob is not None and og is not None and op is not None and os_ is not None:
        rows += [
            ("CPU floor: LiteLLM's own CPU per streamed request", f"{ms(ob['cpu'] / n)} ms (one core: LiteLLM alone caps this machine near {n / ob['cpu']:.0f} requests/s; C/L asks for {CONCURRENCY / LATENCY:.0f}/s)"),
            (f"overhead at L = 0, {n} analyses: bare litellm.acompletion (streamed)", f"{ob['wall']:.2f} s wall, {ms(ob['wall'] / n)} ms/article wall, {ms(ob['cpu'] / n)} ms/article CPU"),
            ("… through the Gateway (analyze_article, no deltas: one whole completion)", f"{og['wall']:.2f} s wall, {ms(og['wall'] / n)} ms/article, {ms(og['cpu'] / n)} ms CPU"),
            ("… the same, streamed with a delta consumer", f"{os_['wall']:.2f} s wall, {ms(os_['wall'] / n)} ms/article, {ms(os_['cpu'] / n)} ms CPU"),
            ("… the whole pipeline (fetch, parse, dedup, store, embeddings)", f"{op['wall']:.2f} s wall, {ms(op['wall'] / n)} ms/article, {ms(op['cpu'] / n)} ms CPU"),
            ("pipeline overhead per article over bare LiteLLM", f"{ms((op['wall'] - ob['wall']) / n)} ms wall, {ms((op['cpu'] - ob['cpu']) / n)} ms CPU (Gateway alone: {ms((og['wall'] - ob['wall']) / n)} ms wall, {ms((og['cpu'] - ob['cpu']) / n)} ms CPU)"),
        ]  # fmt: skip
    if local is not None:
        steady = (
            (local["analyzed"] - 1) / (local["wall"] - local["first"]) * 60
            if local["analyzed"] > 1 and local["first"]
            else 0.0
        )
        rows += [
            (f"embedded model (local/smollm2), demo, --limit {args.local_limit}", f"{local['wall']:.1f} s wall, {local['analyzed']} analyzed, {local['failed']} failed; first after {local['first'] or 0:.1f} s (model loads included)"),
            ("… articles/min", f"{local['analyzed'] / local['wall'] * 60:.1f} overall, {steady:.1f} after the first"),
            ("… tokens/s (completion)", f"{local['completion_tokens'] / local['wall']:.1f} over the run; {local['completion_tokens']} completion + {local['prompt_tokens']} prompt tokens; mean analysis latency {local['mean_latency']:.1f} s"),
        ]  # fmt: skip

    table = "| measure | value |\n| --- | --- |\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
    runs = "\n".join(
        f"| {i + 1} | {p['wall']:.2f} | {p['first']:.2f} | {b['wall']:.2f} | {b['first']:.2f} |"
        for i, (p, b) in enumerate(zip(pipe_runs, base_runs, strict=True))
    )
    body = (
        f"{__doc__.split(chr(10) + chr(10), 2)[2].strip()}\n\n"
        f"Load average when the run started: {load:.1f} (other work on the machine slows the "
        f"CPU-bound parts; the LiteLLM CPU floor row says how much).\n\n{table}\n\n"
        "Every run (s):\n\n| run | pipeline wall | pipeline first | baseline wall | baseline first |\n"
        f"| --- | --- | --- | --- | --- |\n{runs}\n"
    )
    print(table)
    print()
    print(
        "| run | pipeline wall | pipeline first | baseline wall | baseline first |\n| --- | --- | --- | --- | --- |\n"
        + runs
    )
    if args.no_write:
        return 0
    from bench._report import write_section

    write_section(
        "pipeline",
        "News pipeline: overlap, first result, store reuse, overhead",
        "python bench/pipeline.py",
        body,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
