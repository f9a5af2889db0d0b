"""``newsdesk worker`` as a real process, as a user starts one on each worker machine: for the
scale-out tests (tests/scale/conftest.py) and ``bench/scale.py``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def start_worker(
    url: str, *args: str, concurrency: int, home: Path, log: Path, api_key: str, **env: str
) -> subprocess.Popen[bytes]:
    """A worker serving the queue at ``url`` with ``concurrency`` slots and no embedding step
    (the provider's latency is the unit of work), this checkout's newsdesk, its own
    ``NEWSDESK_HOME`` and ``api_key``; its output goes to ``log``."""
    environ = {
        **os.environ,
        "OPENAI_API_KEY": api_key,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(SRC),
        "NEWSDESK_HOME": str(home),
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
        *args,
    ]
    with open(log, "wb") as out:  # the worker has its own copy of the descriptor
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=environ)
