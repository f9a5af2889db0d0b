"""Helpers the test files share (fixtures live in ``conftest.py``; these are plain functions)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# The console script installed beside this interpreter (CI does not put the venv on PATH).
NEWSDESK = Path(sys.executable).with_name("newsdesk")


def free_port() -> int:
    """A 127.0.0.1 port nothing listens on right now (the OS picked it, then it was released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Settings a developer's shell may carry that would change what a test sees: newsdesk's own
# (model choice, prompt trimming, debug tracebacks) and providers' keys and endpoints (a real key
# must never be sent anywhere by a test, and an OPENAI_API_BASE would redirect "openai/" calls).
CLEARED_ENV = (
    "NEWSDESK_MODEL",
    "NEWSDESK_FAST_MODEL",
    "NEWSDESK_STRONG_MODEL",
    "NEWSDESK_NO_TRIM",
    "NEWSDESK_DEBUG",
    "OPENAI_API_BASE",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "OPENROUTER_API_KEY",
    "GEMINI_API_KEY",
    "MISTRAL_API_KEY",
    "GROQ_API_KEY",
)
TEST_KEY = "sk-test"  # the key "openai/" models get from the environment in tests


def isolated_env(newsdesk_home: Path, user_home: Path) -> dict[str, str]:
    """The variables that give a process its own newsdesk home and its own user home. The XDG
    directories are set, not derived from HOME: a shell that sets them would otherwise still
    point programs at the real home."""
    return {
        "NEWSDESK_HOME": str(newsdesk_home),
        "HOME": str(user_home),
        "XDG_CACHE_HOME": str(user_home / ".cache"),
        "XDG_CONFIG_HOME": str(user_home / ".config"),
        "XDG_DATA_HOME": str(user_home / ".local" / "share"),
        "XDG_STATE_HOME": str(user_home / ".local" / "state"),
        "OPENAI_API_KEY": TEST_KEY,
    }


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a ``newsdesk`` subprocess: this test's (isolated home, test key),
    unbuffered so output arrives as it is printed, plus ``extra``."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


def run_cli(*args: str, timeout: float = 90, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``newsdesk`` script as a user would, capturing its text output."""
    return subprocess.run(
        [str(NEWSDESK), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(**extra_env),
    )


class JsonLines:
    """A process's stdout of JSON lines, read in a thread so a test can wait for an event with
    a timeout. ``seen``: every event read so far."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        assert proc.stdout is not None
        out = proc.stdout
        threading.Thread(target=lambda: [self.lines.put(line) for line in out], daemon=True).start()

    def until(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 120) -> dict[str, Any]:
        """The next event for which ``pred`` is true (the ones before it are in ``seen``)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"not seen in {timeout} s; events so far: {self.seen}"
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line.strip():
                ev = json.loads(line)
                self.seen.append(ev)
                if pred(ev):
                    return ev


@contextlib.contextmanager
def watching(
    url: str, model: str, api_base: str, store: Path, *args: str
) -> Iterator[tuple[subprocess.Popen[str], JsonLines]]:
    """``newsdesk watch URL --every 1s --format jsonl --cache off`` as a user runs it, and its
    events as they come; killed on the way out if it is still running."""
    proc = subprocess.Popen(
        [str(NEWSDESK), "watch", url, "--every", "1s", "--format", "jsonl", "--model", model,
         "--api-base", api_base, "--cache", "off", "--store", str(store), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
    )  # fmt: skip
    try:
        yield proc, JsonLines(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
