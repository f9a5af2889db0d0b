"""Fixtures for scale-out tests: a private ``redis-server`` per test (tests/servers/redis_server.py:
so one can be restarted or given a password), real ``newsdesk worker`` processes, and the fake
provider."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from subprocess import Popen
from typing import Any

import pytest

pytest.importorskip(
    "streaq", reason="the queue extra is not installed: pip install 'newsdesk[queue]'"
)

from newsdesk.news._executor import AnalysisJob  # noqa: E402
from newsdesk.news._models import Article  # noqa: E402
from tests.servers.redis_server import RedisProc, redis_binary  # noqa: E402
from tests.servers.worker import start_worker  # noqa: E402

MODEL = "openai/test-model"


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[RedisProc]:
    if redis_binary() is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisProc(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def make_redis(tmp_path: Path) -> Iterator[Any]:
    """``make_redis(password=...)``: another private Redis."""
    made: list[RedisProc] = []

    def make(password: str | None = None) -> RedisProc:
        made.append(RedisProc(tmp_path, password).start())
        return made[-1]

    yield make
    for server in made:
        server.stop()


class Workers:
    """Real ``newsdesk worker`` processes (the CLI, as a user runs it)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.procs: list[Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(self, url: str, *args: str, concurrency: int = 2, **env: str) -> Popen[bytes]:
        log = self.home / f"worker{len(self.procs)}.log"
        proc = start_worker(
            url, "--verbose", *args, concurrency=concurrency, home=self.home, log=log,
            api_key="sk-test", **env,
        )  # fmt: skip
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    def log(self, proc: Popen[bytes]) -> str:
        return self.logs[self.procs.index(proc)].read_text(errors="replace")

    def all_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs)

    def wait_ready(self, server: RedisProc, count: int, timeout: float = 240) -> None:
        """Until ``count`` workers have registered (and had a moment to start reading jobs).
        Generous: a worker imports LiteLLM first, and several at once on a busy 2-core machine
        take a while."""
        from newsdesk.scale._protocol import live_workers, workers_key

        deadline = time.monotonic() + timeout
        client = server.client()
        try:
            while True:
                live, _ = live_workers(client.hgetall(workers_key()))
                if len(live) >= count:
                    break
                for p in self.procs:
                    if p.poll() is not None and p.returncode not in (0, -signal.SIGKILL):
                        raise AssertionError(f"a worker exited ({p.returncode}):\n{self.log(p)}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"{count} workers did not start:\n{self.all_logs()}")
                time.sleep(0.1)
        finally:
            client.close()
        time.sleep(1.0)  # the heartbeat starts just before streaq reads its first jobs

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    w = Workers(tmp_path)
    yield w
    w.stop_all()


def article(i: int, text: str = "", tag: str = "") -> Article:
    body = text or f"Council {tag}{i} approved the harbour budget on Monday in Porto."
    return Article(
        id=f"{tag}art{i:04d}".ljust(24, "0"),
        source="wire",
        url=f"https://news.test/{tag}{i}",
        title=f"Story {tag}{i}",
        text=body,
        content_hash=f"h{tag}{i}",
    )


def job(i: int, server_url: str, **kw: Any) -> AnalysisJob:
    text = kw.pop("text", "")
    tag = kw.pop("tag", "")
    return AnalysisJob(article=article(i, text, tag), model=MODEL, api_base=server_url, **kw)


def requests_for(stats: dict[str, Any], marker: str) -> list[dict[str, Any]]:
    return [r for r in stats["last_requests"] if marker in json.dumps(r.get("messages"))]


@pytest.fixture(scope="session", autouse=True)
def _litellm_imported() -> None:
    from newsdesk._backend import import_litellm

    import_litellm()
