"""Peak memory of a long run: does a run's RSS grow with its number of articles?

    python bench/memory.py                    # 1,000 / 3,000 / 10,000 articles, embeddings off
    python bench/memory.py --embeddings       # the same with the embedding step (slow: ~0.1 s CPU each)
    python bench/memory.py --sizes 10000      # one size

Each size runs in its own subprocess (peak RSS is per process): N articles in feeds of 500 on a
local HTTP server, the fake OpenAI-compatible provider with 0 latency, concurrency 64, cache off,
a SQLite store, ``deltas=False``. Prints wall, CPU per article and ``ru_maxrss``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

PER_FEED = 500


def _rss(feed: int, n: int, vocab: list[str]) -> bytes:
    rng = random.Random(feed)
    items = []
    for i in range(n):
        text = " ".join(rng.choice(vocab) for _ in range(150)).capitalize() + "."
        title = f"Feed {feed} story {i}: " + " ".join(rng.choice(vocab) for _ in range(5))
        items.append(
            f"<item><title>{escape(title)}</title><link>https://mem{feed}.test/{i}</link>"
            f"<description>{escape(text)}</description></item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>Mem {feed}</title><link>https://mem{feed}.test/</link><description>m</description>"
        + "".join(items)
        + "</channel></rss>"
    ).encode()


def one(n: int, embeddings: bool) -> dict[str, float]:
    os.environ.setdefault("NEWSDESK_HOME", tempfile.mkdtemp(prefix="newsdesk-mem-"))
    from bench.pipeline import _VOCAB, _Feeds, _handler
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
        feeds.bodies[f"/m{f}.xml"] = _rss(f, min(PER_FEED, n - f * PER_FEED), _VOCAB)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(feeds))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
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
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.embeddings)))
        return 0
    print(
        f"{'articles':>9} {'analyzed':>9} {'wall s':>8} {'CPU ms/art':>11} {'RSS before':>11} {'peak RSS':>9}"
    )
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--one", str(n)] + (
            ["--embeddings"] if args.embeddings else []
        )
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"{r['n']:>9} {r['analyzed']:>9} {r['wall']:>8.1f} {r['cpu_ms']:>11.1f}"
            f" {r['rss_before_mb']:>9.0f}MB {r['peak_rss_mb']:>7.0f}MB",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
