"""pytest fixtures (and a plain context manager) for the fake OpenAI-compatible provider.

Why this exists
---------------
Provider behaviour - streaming, retries on 429/5xx, timeouts, malformed bodies, structured
output - has to be tested without the internet. ``tests/servers/openai_server.py`` is a small
OpenAI-compatible server; this module starts it in a **subprocess** (so its event loop, threads
and uvicorn signal handlers never interfere with the code under test) and hands tests a
:class:`OpenAIServerHandle` to script it.

Fixtures (register with ``pytest_plugins = ["tests.servers.plugin"]``):

``openai_server_proc`` (session)
    One server process for the whole session; killed at the end.
``openai_server`` (function)
    The same server, reset (settings, fault queue, counters) before each test.

Outside pytest (e.g. ``bench/``)::

    with start_openai_server(latency=0.05) as server:
        litellm.completion(model="openai/gpt-4o-mini", api_base=server.url, api_key="sk-test", ...)
        print(server.stats()["max_in_flight"])
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

SERVER_SCRIPT = Path(__file__).with_name("openai_server.py")
READY_TIMEOUT_S = 30.0


class OpenAIServerHandle:
    """A running test server: its URLs plus synchronous control helpers.

    ``url`` is the ``api_base`` to give LiteLLM (``http://127.0.0.1:PORT/v1``); ``base_url`` is
    the bare origin. ``control(**settings)`` posts to ``/_control`` (``reset``, ``latency``,
    ``chunk_delay``, ``faults``); ``stats()`` returns ``/_stats``; ``reset()`` clears everything.
    """

    def __init__(self, base_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/v1"
        self.process = process
        self.log_path = log_path
        self._client = httpx.Client(base_url=self.base_url, timeout=10.0, trust_env=False)

    # -- control ---------------------------------------------------------------------------------

    def control(self, **settings: Any) -> dict[str, Any]:
        """POST ``settings`` to ``/_control``; returns the server's current settings."""
        response = self._client.post("/_control", json=settings)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def reset(self) -> None:
        """Clear latency, chunk delay, queued faults and all counters."""
        self.control(reset=True)

    def fault(self, kind: str, count: int = 1, retry_after: float | None = None) -> None:
        """Queue ``count`` uses of a scripted fault (``500``/``503``/``429``/``malformed``/...)."""
        entry: dict[str, Any] = {"kind": str(kind), "count": count}
        if retry_after is not None:
            entry["retry_after"] = retry_after
        self.control(faults=[entry])

    def stats(self) -> dict[str, Any]:
        """``/_stats``: calls, completed, in_flight, max_in_flight, by_model, last_requests, ..."""
        response = self._client.get("/_stats")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def last_request(self) -> dict[str, Any]:
        """The most recent chat-completion request body (with ``_auth_*`` annotations)."""
        requests = self.stats()["last_requests"]
        if not requests:
            raise AssertionError("the test server has received no chat-completion request")
        last: dict[str, Any] = requests[-1]
        return last

    def wait_idle(self, timeout: float = 5.0) -> dict[str, Any]:
        """Poll until no request is in flight (e.g. after cancelling clients); returns stats."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if stats["in_flight"] == 0 or time.monotonic() > deadline:
                return stats
            time.sleep(0.02)

    @staticmethod
    def auth_sha256(api_key: str, scheme: str | None = "Bearer") -> str:
        """The ``_auth_sha256`` the server records for ``Authorization: <scheme> <api_key>``."""
        value = f"{scheme} {api_key}" if scheme else api_key
        return hashlib.sha256(value.encode()).hexdigest()

    @staticmethod
    def key_sha256(api_key: str) -> str:
        """The ``_api_key_sha256`` the server records for a bearer token."""
        return hashlib.sha256(api_key.encode()).hexdigest()

    # -- lifecycle -------------------------------------------------------------------------------

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def close(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s) and release resources."""
        self._client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        with contextlib.suppress(OSError):
            self.log_path.unlink()

    def __repr__(self) -> str:
        return f"OpenAIServerHandle(url={self.url!r}, pid={self.process.pid})"


def _spawn(host: str, latency: float, timeout: float) -> OpenAIServerHandle:
    fd, log_name = tempfile.mkstemp(prefix="newsdesk-openai-server-", suffix=".log")
    log_path = Path(log_name)
    cmd = [sys.executable, str(SERVER_SCRIPT), "--host", host, "--port", "0"]
    cmd += ["--latency", str(latency)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with os.fdopen(fd, "wb") as log_file:
        process = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=log_file, stdin=subprocess.DEVNULL, env=env
        )

    # Read stdout on a daemon thread: it reports the READY line and keeps draining the pipe.
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for raw in iter(process.stdout.readline, b""):
            lines.put(raw.decode(errors="replace").strip())
        lines.put(None)

    threading.Thread(target=pump, name="openai-server-stdout", daemon=True).start()

    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        try:
            line = lines.get(timeout=max(remaining, 0.0)) if remaining > 0 else None
        except queue.Empty:
            line = None
        if line is not None and line.startswith("READY "):
            return OpenAIServerHandle(line.split(" ", 1)[1], process, log_path)
        if line is None:  # EOF or timeout
            if process.poll() is None:
                process.kill()
                process.wait(timeout=5)
            log = log_path.read_text(errors="replace")[-4000:]
            with contextlib.suppress(OSError):
                log_path.unlink()
            raise RuntimeError(
                f"test OpenAI server did not become ready within {timeout:.0f} s "
                f"(exit code {process.returncode}); stderr:\n{log}"
            )


@contextlib.contextmanager
def start_openai_server(
    latency: float = 0.0, host: str = "127.0.0.1", timeout: float = READY_TIMEOUT_S
) -> Iterator[OpenAIServerHandle]:
    """Start the server in a subprocess, yield its handle, stop it on exit.

    ``latency`` is the server's baseline latency (it is also what ``reset()`` restores).
    """
    handle = _spawn(host, latency, timeout)
    try:
        yield handle
    finally:
        handle.close()


@pytest.fixture(scope="session")
def openai_server_proc() -> Iterator[OpenAIServerHandle]:
    """One fake OpenAI server process for the whole test session."""
    with start_openai_server() as handle:
        yield handle


@pytest.fixture
def openai_server(openai_server_proc: OpenAIServerHandle) -> OpenAIServerHandle:
    """The session's fake OpenAI server, reset for this test."""
    if not openai_server_proc.alive():
        pytest.fail(
            "the test OpenAI server died; its stderr:\n" + openai_server_proc.log_tail(),
            pytrace=False,
        )
    openai_server_proc.reset()
    return openai_server_proc
