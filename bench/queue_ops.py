"""Redis commands per job on the queue: the producer's (``QueueExecutor``) and the workers'.

A private ``redis-server``, the OpenAI-compatible test provider at a fixed latency, real
``newsdesk worker`` processes and a producer in this process. Redis's MONITOR names each
command's client address; this process's own connections (read from /proc) are the producer's,
the rest are the workers'. Linux only (it reads /proc).

    python bench/queue_ops.py --jobs 64 --workers 1
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import bench._env  # noqa: E402, F401 - first: paths, environment, a private NEWSDESK_HOME
from bench.scale import Bench  # noqa: E402
from newsdesk.scale import QueueExecutor  # noqa: E402
from tests.servers.plugin import start_openai_server  # noqa: E402
from tests.servers.redis_server import RedisProc  # noqa: E402


def _own_ports(redis_port: int) -> set[int]:
    """Local ports of this process's TCP connections to ``redis_port``."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                parts = line.split()
                local, remote, inode = parts[1], parts[2], parts[9]
                if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == redis_port:
                    ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


class Monitor:
    """Every command Redis runs, split into this process's and everyone else's."""

    def __init__(self, url: str) -> None:
        import redis

        self.port = int(url.rsplit(":", 1)[1].split("/")[0])
        self.client = redis.Redis.from_url(url)
        self.mine: set[int] = set()
        self.counts: dict[str, collections.Counter[str]] = {
            "producer": collections.Counter(),
            "workers": collections.Counter(),
        }
        self.seen: list[tuple[int, str]] = []
        self._stop = threading.Event()
        threading.Thread(target=self._watch_ports, daemon=True).start()
        threading.Thread(target=self._listen, daemon=True).start()

    def _watch_ports(self) -> None:
        while not self._stop.is_set():
            self.mine |= _own_ports(self.port)
            time.sleep(0.01)

    def _listen(self) -> None:
        with self.client.monitor() as m:
            for cmd in m.listen():
                if self._stop.is_set():
                    return
                name = str(cmd.get("command", "")).split(" ", 1)[0].strip('"').upper()
                self.seen.append((int(cmd.get("client_port") or 0), name))

    def take(self) -> tuple[collections.Counter[str], collections.Counter[str]]:
        """(producer, workers) commands since the last take."""
        time.sleep(0.3)  # let MONITOR catch up
        self.mine |= _own_ports(self.port)
        seen, self.seen = self.seen, []
        producer: collections.Counter[str] = collections.Counter()
        workers: collections.Counter[str] = collections.Counter()
        for port, name in seen:
            if name in ("MONITOR", ""):
                continue
            (producer if port in self.mine else workers)[name] += 1
        return producer, workers

    def stop(self) -> None:
        self._stop.set()


def _fmt(counter: collections.Counter[str], per: float) -> str:
    return ", ".join(f"{k} {v / per:.2f}" for k, v in counter.most_common())


async def main(args: argparse.Namespace) -> None:
    home = Path(tempfile.mkdtemp(prefix="newsdesk-bench-ops-"))
    redis_server = RedisProc(home).start()
    url = redis_server.url
    with start_openai_server(latency=args.latency) as provider:
        bench = Bench(home, url, provider.url)
        try:
            bench.start_workers(args.workers)
            bench.wait_live(args.workers)
            monitor = Monitor(url)
            ex = QueueExecutor(url, no_worker_timeout=60)
            await ex.ready()
            # warm up: the producer's connections exist before counting
            await ex.analyze(bench.jobs(1)[0])
            monitor.take()
            await asyncio.sleep(args.idle)
            _p, idle = monitor.take()
            idle_rate = sum(idle.values()) / args.idle
            jobs = bench.jobs(args.jobs)
            slots = asyncio.Semaphore(args.in_flight)

            async def one(job: object) -> None:
                async with slots:
                    await ex.analyze(job)  # type: ignore[arg-type]

            t0 = time.monotonic()
            await asyncio.gather(*(one(j) for j in jobs))
            wall = time.monotonic() - t0
            producer, workers = monitor.take()
            await ex.aclose()
            monitor.stop()
            n = len(jobs)
            p, w = sum(producer.values()), sum(workers.values())
            print(
                f"{n} jobs, {args.workers} worker(s), {args.in_flight} in flight, latency "
                f"{args.latency} s: {wall:.1f} s ({n / wall:.2f} jobs/s)\n"
                f"producer: {p / n:.1f} commands per job ({_fmt(producer, n)})\n"
                f"workers:  {w / n:.1f} commands per job ({_fmt(workers, n)})\n"
                f"workers idle: {idle_rate:.1f} commands/s ({_fmt(idle, args.idle)} per s)\n"
                f"total: {(p + w) / n:.1f} commands per job, {(p + w) / wall:.0f}/s"
            )
        finally:
            bench.stop_workers()
            redis_server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle workers counted")
    asyncio.run(main(parser.parse_args()))
