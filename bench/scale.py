"""Scale-out: throughput with 1, 2 and 4 worker processes, a global rpm limit across 3 workers,
and the time a SIGKILLed worker's jobs take to finish elsewhere.

Everything is real and local: a private ``redis-server``, the OpenAI-compatible test provider
(tests/servers) at a fixed latency, ``newsdesk worker`` processes (each ``--concurrency 4``,
no embeddings: the provider's latency is the unit of work), and a ``QueueExecutor`` producer.

    python bench/scale.py                    # print the figures
    python bench/scale.py --write            # and write them into docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import bench._env  # noqa: E402, F401 - first: paths, environment, a private NEWSDESK_HOME
from newsdesk.news import AnalysisJob, Article  # noqa: E402
from newsdesk.scale import QueueExecutor  # noqa: E402
from newsdesk.scale._protocol import live_workers, workers_key  # noqa: E402
from tests.servers.plugin import start_openai_server  # noqa: E402
from tests.servers.redis_server import RedisProc  # noqa: E402
from tests.servers.worker import start_worker  # noqa: E402

MODEL = "openai/bench-model"


class Bench:
    def __init__(self, home: Path, redis_url: str, provider: str) -> None:
        self.home, self.url, self.provider = home, redis_url, provider
        self.workers: list[subprocess.Popen[bytes]] = []

    def start_workers(self, n: int, *args: str) -> list[subprocess.Popen[bytes]]:
        started = []
        for _ in range(n):
            proc = start_worker(
                self.url, "--cache", "off", "--redeliver-after", "2", *args, concurrency=4,
                home=self.home, log=self.home / f"worker{len(self.workers)}.log",
                api_key="sk-bench",
            )  # fmt: skip
            self.workers.append(proc)
            started.append(proc)
        return started

    def wait_live(self, count: int, timeout: float = 600) -> None:
        import redis

        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout
        while len(live_workers(client.hgetall(workers_key()))[0]) < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"{count} workers did not start; see {self.home}")
            time.sleep(0.2)
        client.close()
        time.sleep(1.5)

    def stop_workers(self) -> None:
        for p in self.workers:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.workers:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.workers.clear()

    def jobs(self, n: int) -> list[AnalysisJob]:
        tag = uuid.uuid4().hex[:8]  # unique text: no cache or single-flight hit between phases
        return [
            AnalysisJob(
                article=Article(
                    id=f"{tag}{i:08d}".ljust(24, "0"),
                    source="bench",
                    url=f"https://bench.test/{tag}/{i}",
                    title=f"Bench {tag} {i}",
                    text=f"Council {tag} {i} approved the harbour budget.",
                    content_hash=f"{tag}{i}",
                ),
                model=MODEL,
                api_base=self.provider,
                llm_topic=True,
            )
            for i in range(n)
        ]

    async def run(self, jobs: list[AnalysisJob]) -> tuple[float, list[float]]:
        """(wall seconds, each job's finish time relative to the start)."""
        ex = QueueExecutor(self.url, redeliver_after=2, no_worker_timeout=60)
        await ex.ready()
        t0 = time.monotonic()
        finished: list[float] = []
        # In flight at once: 4 per worker, as `newsdesk analyze --queue -c N` would hold.
        slots = asyncio.Semaphore(4 * max(1, len(self.workers)))

        async def one(job: AnalysisJob) -> None:
            async with slots:
                await ex.analyze(job)
            finished.append(time.monotonic() - t0)

        await asyncio.gather(*(one(j) for j in jobs))
        wall = time.monotonic() - t0
        await ex.aclose()
        return wall, sorted(finished)


def redis_ops(url: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    n = int(client.info("stats")["total_commands_processed"])
    client.close()
    return n


async def main(args: argparse.Namespace) -> str:
    lines: list[str] = []
    home = Path(tempfile.mkdtemp(prefix="newsdesk-bench-scale-"))
    redis_server = RedisProc(home).start()
    url = redis_server.url
    load = os.getloadavg()[0]
    with start_openai_server(latency=args.latency) as provider:
        bench = Bench(home, url, provider.url)
        try:
            # -- throughput: 1, then 2, then 4 workers (each step adds workers) ---------------------
            rates: dict[int, float] = {}
            ops_per_job = 0.0
            for n in (1, 2, 4) if "throughput" in args.phases else ():
                bench.start_workers(n - len(bench.workers))
                bench.wait_live(n)
                jobs = bench.jobs(args.jobs_per_worker * n)
                before = redis_ops(url)
                wall, _ = await bench.run(jobs)
                ops = redis_ops(url) - before
                rates[n] = len(jobs) / wall
                ops_per_job = ops / len(jobs)
                print(
                    f"{n} worker(s): {len(jobs)} jobs in {wall:.1f} s = {rates[n]:.2f} jobs/s, "
                    f"{ops / wall:.0f} Redis ops/s ({ops_per_job:.1f} per job)",
                    file=sys.stderr,
                )
            if not rates and "kill" in args.phases:
                bench.start_workers(3)
                bench.wait_live(3)
            lines.append(
                f"Provider latency {args.latency} s; each worker `--concurrency 4`, no embeddings, "
                f"cache off; {args.jobs_per_worker} jobs per worker. Load average at start: {load:.1f} "
                "(other work was running on this 2-core machine: absolute rates are low, compare the ratios).\n"
            )
            if rates:
                lines.append("| workers | jobs/s | vs 1 worker |")
                lines.append("|---|---|---|")
                for n, r in rates.items():
                    lines.append(f"| {n} | {r:.2f} | {r / rates[1]:.2f}× |")
                lines.append(
                    f"\nRedis commands per job (producer + worker + streaq): {ops_per_job:.1f}.\n"
                )

            # -- a SIGKILLed worker: its jobs finish elsewhere ---------------------------------------
            if "kill" in args.phases:
                jobs = bench.jobs(12 * len(bench.workers))
                task = asyncio.create_task(bench.run(jobs))
                while provider.stats()["in_flight"] < 4 * len(bench.workers) - 2:  # noqa: ASYNC110 (another process)
                    await asyncio.sleep(0.05)
                victim = bench.workers.pop(0)
                victim.kill()
                killed = time.monotonic()
                wall, finished = await task
                victim.wait()
                after_kill = time.monotonic() - killed
                lines.append(
                    f"SIGKILL of one of {len(bench.workers) + 1} busy workers (`--redeliver-after 2`): "
                    f"all {len(jobs)} jobs done {after_kill:.1f} s after the kill "
                    f"(run {wall:.1f} s); every job returned exactly once.\n"
                )
                print(lines[-1], file=sys.stderr)
                bench.stop_workers()

            # -- a global rpm limit across 3 workers ------------------------------------------------
            if "rpm" in args.phases:
                bench.stop_workers()  # the limited ones only
                window, limit = args.rate_window, args.rpm
                bench.start_workers(3, "--rpm", str(limit), "--rate-window", str(window))
                bench.wait_live(3)
                jobs = bench.jobs(args.rate_jobs)
                provider.reset()
                provider.control(latency=args.latency)
                wall, _finished = await bench.run(jobs)
                # Calls in any `window` seconds never exceed the limit: counted where the provider
                # stamps each request's arrival (the producer sees results later, and in bunches
                # when its listener catches up, so its completion times would miscount).
                stamps = sorted(r["_received"] for r in provider.stats()["last_requests"])
                arrived = [t - stamps[0] for t in stamps]
                worst = max(sum(1 for t in arrived if s <= t < s + window) for s in arrived)
                # the limiter counts when a worker is let through; the request reaches the
                # provider a little later (LiteLLM's preparation, a thread hop), and that delay
                # varies, so arrivals are also counted in windows 5 % shorter (as the tests do)
                worst95 = max(
                    sum(1 for t in arrived if s <= t < s + 0.95 * window) for s in arrived
                )
                # a moving window lets `limit` through at once, then `limit` per window: the
                # long-run rate is what comes after the first `limit` calls
                rate = (len(arrived) - limit) / arrived[-1] if arrived[-1] > 0 else float("nan")
                allowed = limit / window
                calls = provider.stats()["calls"]
                lines.append(
                    f"Global limit {limit:g} requests per {window:g} s ({allowed:.2f}/s) across 3 workers: "
                    f"{len(jobs)} jobs ({calls} provider calls) in {wall:.1f} s; after the first "
                    f"{limit:g} calls {rate:.2f} calls/s = {rate / allowed * 100:.0f} % of the limit; "
                    f"most arrivals at the provider in any {window:g} s: {worst}, in any "
                    f"{0.95 * window:g} s: {worst95} (limit {limit:g})."
                )
                print(lines[-1], file=sys.stderr)
        finally:
            bench.stop_workers()
            redis_server.stop()
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--jobs-per-worker", type=int, default=32)
    parser.add_argument("--rpm", type=float, default=30, help="requests per --rate-window")
    parser.add_argument("--rate-window", type=float, default=10)
    parser.add_argument("--rate-jobs", type=int, default=90)
    parser.add_argument("--phases", default="throughput,kill,rpm", help="comma-separated subset")
    parser.add_argument(
        "--write", action="store_true", help="write the figures into docs/BENCHMARKS.md"
    )
    a = parser.parse_args()
    body = asyncio.run(main(a))
    print(body)
    if a.write:
        from bench._report import write_section

        write_section(
            "scale",
            "Scale-out: workers, global rate limit, SIGKILL recovery",
            "python bench/scale.py --write",
            body,
        )
