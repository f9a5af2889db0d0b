"""``newsdesk watch`` as a user runs it: a real process polling the local feed server, which
answers 304 while the feed is unchanged and new items when it changes; SIGTERM stops it with a
summary and every article analyzed once."""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest

from newsdesk._exceptions import ConfigError
from newsdesk.cli._watch import parse_every
from tests.helpers import run_cli, watching
from tests.news.test_pipeline import answer, item, rss, unique, words
from tests.servers.feed_server import FeedServer
from tests.servers.plugin import OpenAIServerHandle

pytestmark = pytest.mark.timeout(600)

MODEL = "openai/test-model"


def test_parse_every() -> None:
    assert parse_every("15m") == 900
    assert parse_every("1s") == 1
    assert parse_every("1.5h") == 5400
    assert parse_every("90") == 90
    for bad in ("", "0s", "-5m", "soon", "5 weeks"):
        with pytest.raises(ConfigError):
            parse_every(bad)


def test_watch_polls_analyzes_only_new_and_stops_cleanly(
    openai_server: OpenAIServerHandle, feed_server: FeedServer, tmp_path: Any
) -> None:
    name = unique("watch")
    first = [
        item(
            f"First {i}", f"{words(f'w1{i}')} {answer(f'First summary {i}')}", f"https://w.test/{i}"
        )
        for i in range(2)
    ]
    feed_server.set_feed(name, rss(first))
    url = f"{feed_server.url}/feeds/{name}"
    store = tmp_path / "watch.db"
    with watching(url, MODEL, openai_server.url, store) as (proc, lines):
        for _ in range(2):  # patient: LiteLLM's import alone takes a minute on a loaded machine
            lines.until(lambda e: e["event"] == "analysis", timeout=300)
        # The next poll finds the feed unchanged: a 304, and nothing analyzed again.
        lines.until(lambda e: e["event"] == "source_ok" and e["not_modified"])
        calls = openai_server.stats()["calls"]
        feed_server.set_feed(
            name,
            rss(
                [
                    *first,
                    item(
                        "Fresh news",
                        f"{words('w-new')} {answer('Fresh summary')}",
                        "https://w.test/new",
                    ),
                ]
            ),
        )
        fresh = lines.until(lambda e: e["event"] == "analysis")
        assert fresh["title"] == "Fresh news" and fresh["summary"] == "Fresh summary"
        lines.until(lambda e: e["event"] == "done")
        assert openai_server.stats()["calls"] == calls + 1  # only the new article went to the model
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "watch stopped after" in err and "3 new article(s) analyzed" in err
    analyses = [e for e in lines.seen if e["event"] == "analysis"]
    assert sorted(e["title"] for e in analyses) == ["First 0", "First 1", "Fresh news"]  # each once
    # The store has each article's analysis once, whatever the number of polls.
    shown = run_cli("show", "--format", "jsonl", "--store", str(store))
    assert shown.returncode == 0, shown.stderr
    titles = sorted(json.loads(line)["title"] for line in shown.stdout.splitlines() if line.strip())
    assert titles == ["First 0", "First 1", "Fresh news"]


def test_watch_bad_interval_is_a_clear_error() -> None:
    r = run_cli("watch", "https://feed.test/rss", "--every", "soon")
    assert r.returncode != 0
    assert "--every" in r.stderr and "Traceback" not in r.stderr


def test_watch_no_embeddings_leaves_topic_to_the_llm_and_gives_no_stories(
    openai_server: OpenAIServerHandle, feed_server: FeedServer, tmp_path: Any
) -> None:
    name = unique("watch-noembed")
    feed_server.set_feed(
        name,
        rss(
            [
                item(f"Plain {i}", f"{words(f'ne{i}')} {answer(f'Plain summary {i}')}",
                     f"https://wne.test/{i}")
                for i in range(2)
            ]
        ),
    )  # fmt: skip
    r = run_cli(
        "watch", f"{feed_server.url}/feeds/{name}", "--polls", "1", "--format", "jsonl",
        "--no-embeddings", "--model", MODEL, "--api-base", openai_server.url, "--cache", "off",
        "--store", str(tmp_path / "noembed.db"), timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    analyses = [e for e in events if e["event"] == "analysis"]
    assert sorted(e["title"] for e in analyses) == ["Plain 0", "Plain 1"]
    # With the embedding step every analysis has a story id (tests/news/test_cli_analyze.py).
    assert all(e["story"] is None and e["topic_by"] == "llm" for e in analyses)
    bad = run_cli("watch", "https://feed.test/rss", "--no-embeddings", "--topic-by", "embedding")
    assert bad.returncode != 0 and "needs the embedding step" in bad.stderr
    assert "Traceback" not in bad.stderr + bad.stdout
