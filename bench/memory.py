"""Peak memory of a long run: does a run's RSS grow with its number of articles?

    python bench/memory.py                    # 1,000 / 3,000 / 10,000 articles, embeddings off;
                                              # writes the "memory" section of docs/BENCHMARKS.md
    python bench/memory.py --embeddings       # the same with the embedding step (slow: ~0.1 s CPU each)
    python bench/memory.py --sizes 10000 --no-write

Each size runs in its own subprocess (peak RSS is per process): N articles in feeds of 500 on a
local HTTP server, the fake OpenAI-compatible provider with 0 latency, concurrency 64, cache off,
a SQLite store, ``deltas=False``. Prints wall, CPU per article and ``ru_maxrss``; the goal is a
peak that does not grow with the number of articles, so the figure to read is the growth of the
peak over the run (peak minus the RSS after start-up) per 1,000 articles, ideally ~0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import bench._env  # noqa: E402, F401 - first: paths, environment, a private NEWSDESK_HOME

PER_FEED = 500


def one(n: int, embeddings: bool) -> dict[str, float]:
    from bench.pipeline import _Feeds, _rss, serve
    from newsdesk import Gateway, Limits
    from newsdesk._backend import import_litellm
    from newsdesk.news._models import Source
    from newsdesk.news._pipeline import PipelineOptions, run_pipeline
    from newsdesk.news._store import Store
    from tests.servers.plugin import start_openai_server

    import_litellm()
    feeds = _Feeds()
    count = (n + PER_FEED - 1) // PER_FEED
    for f in range(count):
        feeds.bodies[f"/m{f}.xml"] = _rss(f, min(PER_FEED, n - f * PER_FEED))
    base, server = serve(feeds)
    srcs = [Source(name=f"mem{f}", url=f"{base}/m{f}.xml") for f in range(count)]
    with start_openai_server(latency=0.0) as llm, tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "news.db")
        gw = Gateway(cache="off", limits=Limits(concurrency=64))
        opts = PipelineOptions(
            sources=srcs, model="openai/bench-model", api_base=llm.url, concurrency=64,
            embeddings=embeddings, deltas=False,
        )  # fmt: skip

        async def go() -> int:
            analyzed = 0
            async for ev in run_pipeline(opts, gateway=gw, store=store):
                if ev.event == "done":
                    analyzed = ev.analyzed
            return analyzed

        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0, c0 = time.perf_counter(), time.process_time()
        analyzed = asyncio.run(go())
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        gw.close()
        store.close()
    server.shutdown()
    return {
        "n": n, "analyzed": analyzed, "wall": wall, "cpu_ms": cpu / max(1, analyzed) * 1000,
        "rss_before_mb": rss0, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000, 10000])
    ap.add_argument("--embeddings", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.embeddings)))
        return 0
    load = os.getloadavg()[0]
    head = (
        "| articles | analyzed | wall | CPU per article | RSS after start-up | peak RSS "
        "| growth over the run |\n| --- | --- | --- | --- | --- | --- | --- |"
    )
    print(head, flush=True)
    rows = []
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--one", str(n)] + (
            ["--embeddings"] if args.embeddings else []
        )
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        rows.append(r)
        line = (
            f"| {r['n']} | {r['analyzed']} | {r['wall']:.1f} s | {r['cpu_ms']:.1f} ms "
            f"| {r['rss_before_mb']:.0f} MB | {r['peak_rss_mb']:.0f} MB "
            f"| {r['peak_rss_mb'] - r['rss_before_mb']:.0f} MB |"
        )
        rows[-1]["line"] = line
        print(line, flush=True)
    if len(rows) >= 2:
        lo, hi = rows[0], rows[-1]
        grow = (hi["peak_rss_mb"] - hi["rss_before_mb"]) - (lo["peak_rss_mb"] - lo["rss_before_mb"])
        per_k = grow / max(1, hi["n"] - lo["n"]) * 1000
        verdict = (
            f"Growth of the run's peak between {lo['n']} and {hi['n']} articles: {grow:.0f} MB, "
            f"**{per_k:.1f} MB per 1,000 articles** (ideal: ~0)."
        )
    else:
        verdict = ""
    print(verdict)
    if args.no_write:
        return 0
    from bench._report import write_section

    table = head + "\n" + "\n".join(r["line"] for r in rows)
    doc = __doc__ or ""
    body = (
        f"{doc.split(chr(10) + chr(10), 2)[2].strip()}\n\nEmbeddings "
        f"{'on' if args.embeddings else 'off'}. Load average when the run started: {load:.1f}."
        f"\n\n{table}\n\n{verdict}"
    )
    command = "python bench/memory.py" + (" --embeddings" if args.embeddings else "")
    if args.sizes != [1000, 3000, 10000]:
        command += " --sizes " + " ".join(map(str, args.sizes))
    write_section("memory", "Memory: peak RSS of a long run", command, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
