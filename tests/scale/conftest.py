"""Fixtures for scale-out tests: a private ``redis-server`` per test (so one can be restarted or
given a password), real ``newsdesk worker`` processes, and the fake provider."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "streaq", reason="the queue extra is not installed: pip install 'newsdesk[queue]'"
)

from newsdesk.news._executor import AnalysisJob  # noqa: E402
from newsdesk.news._models import Article  # noqa: E402
from tests.helpers import free_port  # noqa: E402

MODEL = "openai/test-model"
SRC = Path(__file__).resolve().parents[2] / "src"


class RedisProc:
    """A ``redis-server`` on 127.0.0.1 that a test can stop and start again on the same port."""

    def __init__(self, binary: str, directory: Path, password: str | None = None) -> None:
        self.binary, self.directory, self.password = binary, directory, password
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        cmd = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
        ]
        if self.password:
            cmd += ["--requirepass", self.password]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.5) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start (exit code {self.proc.poll()})")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url)


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[RedisProc]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.path.exists(binary):
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisProc(binary, tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def make_redis(tmp_path: Path) -> Iterator[Any]:
    """``make_redis(password=...)``: another private Redis."""
    made: list[RedisProc] = []

    def make(password: str | None = None) -> RedisProc:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        server = RedisProc(binary, tmp_path, password)
        server.start()
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


class Workers:
    """Real ``newsdesk worker`` processes (the CLI, as a user runs it)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.procs: list[subprocess.Popen[str]] = []
        self.logs: list[Path] = []

    def start(
        self, url: str, *args: str, concurrency: int = 2, **env: str
    ) -> subprocess.Popen[str]:
        log = self.home / f"worker{len(self.procs)}.log"
        environ = {
            **os.environ,
            "OPENAI_API_KEY": "sk-test",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(SRC),
            "NEWSDESK_HOME": str(self.home),
            **env,
        }
        cmd = [
            sys.executable,
            "-c",
            "from newsdesk.cli import main; main()",
            "worker",
            "--queue",
            url,
            "--concurrency",
            str(concurrency),
            "--no-embeddings",
            "--verbose",
            *args,
        ]
        with open(log, "w") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, text=True, env=environ
            )
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    def log(self, proc: subprocess.Popen[str]) -> str:
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
