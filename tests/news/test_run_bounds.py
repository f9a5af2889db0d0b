"""Bounding ``newsdesk analyze`` (#12 items 5, 6, 11): deadline, request timeout and retries
against a provider that hangs; the API base checked at start; the exit code of a run whose
analyses all failed; Ctrl-C on a real subprocess; usage errors on one line."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import NEWSDESK, cli_env, run_cli
from tests.news.test_pipeline import answer, item, rss, unique, words
from tests.servers.feed_server import FeedServer
from tests.servers.plugin import OpenAIServerHandle

pytestmark = pytest.mark.timeout(300)

MODEL = "openai/test-model"


def feed(feed_server: FeedServer, items: list[dict[str, str]]) -> str:
    name = unique("bounds")
    feed_server.set_feed(name, rss(items))
    return f"{feed_server.url}/feeds/{name}"


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def analyze(llm: OpenAIServerHandle, *args: str, timeout: float = 120) -> Any:
    return run_cli(
        "analyze", *args, "--model", MODEL, "--api-base", llm.url, "--format", "jsonl",
        "--cache", "off", timeout=timeout, NO_COLOR="1",
    )  # fmt: skip


def test_deadline_reports_what_was_left_and_emits_done(
    openai_server: OpenAIServerHandle, feed_server: FeedServer
) -> None:
    url = feed(
        feed_server,
        [
            item("Quick one", f"{words('dl1')} {answer('Quick')}", "https://d.test/1"),
            item("Hangs", f"{words('dl2')} [[hang]]", "https://d.test/2"),
            item("Hangs too", f"{words('dl3')} [[hang]]", "https://d.test/3"),
        ],
    )
    r = analyze(openai_server, url, "--deadline", "8", "--request-timeout", "100")
    assert "Traceback" not in r.stderr
    evs = events(r.stdout)
    assert evs[-1]["event"] == "done"
    ids = [e["id"] for e in evs if e["event"] == "article"]
    ended = [e for e in evs if e["event"] in ("analysis", "analysis_error")]
    assert sorted(e["id"] for e in ended) == sorted(ids)  # every article reported once
    errors = {e["title"]: e["reason"] for e in ended if e["event"] == "analysis_error"}
    assert errors["Hangs"] == errors["Hangs too"] == "deadline reached (8 s)"
    done = evs[-1]
    assert done["analyzed"] + done["failed"] == 3 and done["failed"] >= 2
    # the deadline bounds the run, not the provider's hang (100 s a request); the run's wall
    # time also holds the embedding model's load, which the deadline does not count
    assert done["wall"] < 8 + 25, done["wall"]


async def test_deadline_in_the_library(
    openai_server: OpenAIServerHandle, feed_server: FeedServer, tmp_path: Any
) -> None:
    """The same through ``NewsDesk`` without the embedding step: what finished before the
    deadline is kept and stored; the rest is reported; the store is not left with a run
    "running"."""
    from newsdesk import Gateway
    from newsdesk.news import NewsDesk

    url = feed(
        feed_server,
        [
            item("Quick one", f"{words('dm1')} {answer('Quick')}", "https://m.test/1"),
            item("Hangs", f"{words('dm2')} [[hang]]", "https://m.test/2"),
        ],
    )
    gateway = Gateway(cache="off")
    with NewsDesk(
        gateway=gateway, store=tmp_path / "s.db", model=MODEL, api_base=openai_server.url
    ) as desk:
        evs, stamps = [], []
        async for e in desk.run([url], deadline=3, embeddings=False):
            evs.append(e)
            stamps.append(time.monotonic())
        took = stamps[-1] - stamps[0]  # from run_started (LiteLLM's import is before it)
        assert 3 <= took < 3 + 5, took
        assert [e.title for e in evs if e.event == "analysis"] == ["Quick one"]
        assert [(e.title, e.reason) for e in evs if e.event == "analysis_error"] == [
            ("Hangs", "deadline reached (3 s)")
        ]
        assert evs[-1].event == "done" and evs[-1].analyzed == 1 and evs[-1].failed == 1
        assert [r.title for r, _ in desk.search()] == ["Quick one"]
        assert desk.history()[0].status != "running"
    gateway.close()


def test_request_timeout_and_retries_reach_the_provider(
    openai_server: OpenAIServerHandle, feed_server: FeedServer
) -> None:
    url = feed(feed_server, [item("Hangs", f"{words('rt1')} [[hang]]", "https://r.test/1")])
    openai_server.reset()
    r = analyze(openai_server, url, "--request-timeout", "1", "--retries", "1")
    evs = events(r.stdout)
    (err,) = [e for e in evs if e["event"] == "analysis_error"]
    assert "1 s" in err["reason"], err
    assert openai_server.stats()["calls"] == 2  # the first try and one retry
    assert r.returncode == 3  # every analysis failed
    assert evs[-1]["event"] == "done"


def test_all_analyses_failed_exit_code(
    openai_server: OpenAIServerHandle, feed_server: FeedServer
) -> None:
    url = feed(
        feed_server,
        [
            item("Broken a", f"{words('af1')} [[status:500]]", "https://f.test/1"),
            item("Broken b", f"{words('af2')} [[status:500]]", "https://f.test/2"),
        ],
    )
    r = analyze(openai_server, url, "--retries", "0")
    assert r.returncode == 3, r.stderr
    done = events(r.stdout)[-1]
    assert done["event"] == "done" and done["failed"] == 2 and done["analyzed"] == 0
    # one good article among failures: exit 0 as before
    ok = feed(
        feed_server,
        [
            item("Broken c", f"{words('af3')} [[status:500]]", "https://f.test/3"),
            item("Fine", f"{words('af4')} {answer('Fine')}", "https://f.test/4"),
        ],
    )
    assert analyze(openai_server, ok, "--retries", "0").returncode == 0


@pytest.mark.parametrize(
    ("base", "says"),
    [
        ("notaurl", "is not an http(s) URL"),
        ("ftp://127.0.0.1/v1", "is not an http(s) URL"),
        ("http:///v1", "is not an http(s) URL"),
        ("http://user:s3cret-pass@127.0.0.1:9/v1", "must not carry credentials"),
    ],
)
def test_api_base_checked_at_start(base: str, says: str) -> None:
    r = run_cli("analyze", "--model", MODEL, "--api-base", base, "--format", "jsonl", NO_COLOR="1")
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert says in r.stderr
    assert "s3cret-pass" not in r.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["analyze", "--concurrency", "0"],
        ["analyze", "--no-such-flag"],
        ["analyze", "--deadline", "-1"],
        ["ask"],
        ["ask", "x", "--temperature", "9"],
    ],
)
def test_usage_errors_are_one_line(args: list[str]) -> None:
    r = run_cli(*args, NO_COLOR="1")
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "╭" not in r.stderr and "--help" in r.stderr


@pytest.mark.parametrize("fmt", ["jsonl", "live"])
def test_ctrl_c_prints_a_summary_and_emits_done(
    openai_server: OpenAIServerHandle, feed_server: FeedServer, fmt: str
) -> None:
    url = feed(
        feed_server,
        [
            item("Quick", f"{words('cc1')} {answer('Quick')}", "https://c.test/1"),
            *(
                item(f"Hangs {i}", f"{words(f'cc{i}x')} [[hang]]", f"https://c.test/h{i}")
                for i in range(3)
            ),
        ],
    )
    args = ["analyze", url, "--model", MODEL, "--api-base", openai_server.url, "--format", fmt,
            "--cache", "off"]  # fmt: skip
    proc = subprocess.Popen(
        [str(NEWSDESK), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(NO_COLOR="1", PYTHONWARNINGS="default"),
    )
    try:
        deadline = time.monotonic() + 150
        # wait until the run is under way: the quick analysis is done, the others hang
        while time.monotonic() < deadline:
            if openai_server.stats()["in_flight"] >= 3:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the run never got going")
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)  # threads finish first (embedding)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "never awaited" not in err and "Traceback" not in err, err
    line = re.search(r"interrupted: (\d+) analyzed .*, (\d+) not analyzed", err)
    assert line is not None, err
    analyzed, left = int(line[1]), int(line[2])
    assert analyzed + left == 4 and left >= 3, err
    if fmt == "jsonl":
        last = events(out)[-1]
        assert last["event"] == "done" and last["analyzed"] == analyzed
    else:
        assert "Run summary" in out
    # the run is recorded as ended, not left "running"
    hist = run_cli("history", NO_COLOR="1", COLUMNS="200")
    assert "cancelled" in hist.stdout, hist.stdout


async def test_syndicated_story_keeps_its_stored_copy_across_runs(
    openai_server: OpenAIServerHandle, tmp_path: Path
) -> None:
    """#12 item 9: two feeds carry one story; the second run parses them in the other order
    and still makes no provider call (the stored copy is kept, its analysis replayed)."""
    from newsdesk import Gateway
    from newsdesk.news import NewsDesk

    story = words("syndicated", 60)
    a, b = tmp_path / "a.xml", tmp_path / "b.xml"
    a.write_bytes(rss([item("Same story", f"{story} {answer('Same')}", "https://a.test/s")]))
    b.write_bytes(
        rss(
            [item("Same story", f"{story} Reported here too. {answer('Same')}", "https://b.test/s")]
        )
    )
    from newsdesk.news import NewsRun, Store
    from newsdesk.news._fetch import Fetcher

    class Late(Fetcher):
        """Reads the ``late`` feed only after the other one is parsed: the order is the test's."""

        late = ""

        async def fetch(self, source: Any, validators: Any = None) -> Any:
            if source.url == self.late:
                await asyncio.sleep(1.0)
            return await super().fetch(source, validators)

    gateway = Gateway(cache="off")  # only the store can save the call
    store = Store(tmp_path / "s.db")
    desk = NewsDesk(gateway=gateway, store=store, model=MODEL, api_base=openai_server.url)
    calls = []
    for late in (b, a):  # first run: a parsed first; second run: b first
        openai_server.reset()
        options = desk.prepare([str(a), str(b)], embeddings=False)
        async with Late() as fetcher:
            fetcher.late = str(late)
            run = NewsRun(options, gateway=gateway, store=store, fetcher=fetcher)
            evs = [e async for e in run.events()]
        calls.append(openai_server.stats()["calls"])
        done = evs[-1]
        assert done.event == "done" and done.analyzed == 1 and done.duplicates == 1, evs
        (kept,) = [e for e in evs if e.event == "analysis"]
        assert kept.url == "https://a.test/s"  # the copy analyzed first, both times
    store.close()
    gateway.close()
    assert calls == [1, 0]


async def test_web_agent_analyze_feed_is_guarded(
    openai_server: OpenAIServerHandle, feed_server: FeedServer, tmp_path: Path
) -> None:
    """The web app's ``analyze_feed`` (``private_sources=False``): local paths and private
    addresses are refused; the CLI's toolbox (default) still reads both."""
    from newsdesk.agents._news_tools import NewsToolbox

    guarded = NewsToolbox(
        store=tmp_path / "s.db", model=MODEL, api_base=openai_server.url, private_sources=False
    )
    assert "only http(s)" in await guarded.analyze_feed("/etc/passwd")
    out = await guarded.analyze_feed(f"{feed_server.url}/feeds/rss")
    assert "refused: private address" in out, out
