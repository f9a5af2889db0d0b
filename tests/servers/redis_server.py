"""A private ``redis-server`` on 127.0.0.1 (no persistence), for the scale-out tests (fixtures in
tests/scale/conftest.py) and ``bench/scale.py``: each gets its own, so one can be stopped,
restarted on the same port or given a password without touching anything else."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.helpers import free_port


def redis_binary() -> str | None:
    """The ``redis-server`` to run, or None when it is not installed."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    return binary if os.path.exists(binary) else None


class RedisProc:
    """A ``redis-server`` on 127.0.0.1 that can be stopped and started again on the same port."""

    def __init__(
        self, directory: Path, password: str | None = None, binary: str | None = None
    ) -> None:
        self.binary = binary or redis_binary() or "redis-server"
        self.directory, self.password = directory, password
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisProc:
        """Start it and return once it answers (a password-protected one answers NOAUTH)."""
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
                    return self
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
