"""A run killed with SIGKILL loses nothing it finished, and the next run does not redo it."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
from typing import Any

import pytest
from typer.testing import CliRunner

from newsdesk.cli._app import app
from tests.helpers import NEWSDESK, cli_env, run_cli
from tests.news.test_pipeline import item, rss, unique, words
from tests.servers.feed_server import FeedServer
from tests.servers.plugin import OpenAIServerHandle

pytestmark = pytest.mark.timeout(150)

MODEL = "openai/test-model"


def articles(slow_latency: float | None) -> list[dict[str, str]]:
    """Two articles the provider answers at once; four it sits on (when ``slow_latency``)."""
    out = [
        item(f"Quick story {i}", f"{words(f'q{i}')} [[latency:0.1]]", f"https://q.test/{i}")
        for i in range(2)
    ]
    for i in range(4):
        text = words(f"s{i}") + (f" [[latency:{slow_latency}]]" if slow_latency else " Edited.")
        out.append(item(f"Slow story {i}", text, f"https://s.test/{i}"))
    return out


def user_prompts(llm: OpenAIServerHandle) -> list[str]:
    return [
        next(m["content"] for m in reversed(r["messages"]) if m["role"] == "user")
        for r in llm.stats()["last_requests"]
    ]


def test_killed_run_keeps_finished_analyses_and_shows_interrupted(
    openai_server: OpenAIServerHandle, feed_server: FeedServer
) -> None:
    name = unique("crash")
    feed_server.set_feed(name, rss(articles(slow_latency=120)))
    url = f"{feed_server.url}/feeds/{name}"
    args = ["analyze", url, "--model", MODEL, "--api-base", openai_server.url, "--format", "jsonl",
            "--cache", "off", "--concurrency", "8"]  # fmt: skip

    proc = subprocess.Popen(
        [str(NEWSDESK), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=cli_env(),
    )  # fmt: skip
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    finished: list[dict[str, Any]] = []
    deadline = time.monotonic() + 90
    try:
        while len(finished) < 2:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, "the run ended early: " + (
                proc.stderr.read() if proc.stderr else ""
            )
            ev = json.loads(line)
            assert ev["event"] != "done", "the run finished before it could be killed"
            if ev["event"] == "analysis":
                finished.append(ev)
        # the slow four are still with the provider when the run dies
        assert openai_server.stats()["in_flight"] == 4
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert proc.returncode == -signal.SIGKILL
    assert sorted(e["title"] for e in finished) == ["Quick story 0", "Quick story 1"]

    # history, from the user's side: the killed run is "interrupted", not "running" for ever
    hist = run_cli("history", timeout=30, COLUMNS="150")
    assert hist.returncode == 0, hist.stderr
    (row,) = [line for line in hist.stdout.splitlines() if "openai/test-model" in line]
    assert "interrupted" in row

    # the next run: the provider is asked only about the articles that never finished
    openai_server.wait_idle(timeout=10)
    openai_server.reset()
    feed_server.set_feed(name, rss(articles(slow_latency=None)))  # the slow four answer at once now
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    analyses = {e["title"]: e for e in events if e["event"] == "analysis"}
    assert len(analyses) == 6
    for done in finished:
        again = analyses[done["title"]]
        assert again["cached"] is True and again["id"] == done["id"]
        assert again["summary"] == done["summary"]
    prompts = user_prompts(openai_server)
    assert len(prompts) == 4
    assert not [p for p in prompts if "Quick story" in p], "a finished analysis was redone"
    assert events[-1]["from_cache"] == 2

    with_status = CliRunner().invoke(app, ["history"], env={"COLUMNS": "150"})
    statuses = [line for line in with_status.stdout.splitlines() if "openai/test-model" in line]
    assert len(statuses) == 2
    assert (
        sum("interrupted" in s for s in statuses) == 1
        and sum("finished" in s for s in statuses) == 1
    )
