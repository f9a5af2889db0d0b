"""``newsdesk analyze`` / ``history`` / ``show`` as a user runs them.

In process (typer's runner) where only the output matters; as real subprocesses where the exit
code, stderr and the terminal rendering are the point, and for the run on the embedded model.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from newsdesk.cli._app import app
from newsdesk.news._models import ArticleAnalysis
from tests.helpers import run_cli
from tests.news.test_pipeline import answer, item, rss, unique, words
from tests.servers.feed_server import FeedServer
from tests.servers.plugin import OpenAIServerHandle

pytestmark = pytest.mark.timeout(120)

MODEL = "openai/test-model"

# The JSONL contract, as the README's table states it (plus "event" on every line).
CONTRACT: dict[str, set[str]] = {
    "source_ok": {
        "source",
        "url",
        "title",
        "articles",
        "new_articles",
        "not_modified",
        "warnings",
        "elapsed",
    },
    "source_error": {"source", "url", "reason"},
    "article": {"source", "id", "url", "title", "published", "sources", "duplicate_of"},
    "analysis": {
        "source",
        "id",
        "url",
        "title",
        "summary",
        "topic",
        "tone",
        "sentiment",
        "key_facts",
        "entities",
        "cached",
        "story",
        "sources",
        "model",
        "latency",
        "topic_by",
    },  # fmt: skip
    "analysis_error": {"source", "id", "url", "title", "reason"},
    "digest": {"source", "topic", "summary", "articles"},
    "done": {
        "source",
        "run_id",
        "sources_ok",
        "sources_failed",
        "articles",
        "duplicates",
        "analyzed",
        "from_cache",
        "failed",
        "prompt_tokens",
        "completion_tokens",
        "cost",
        "wall",
        "sum_latency",
        "saved",
        "failures",
    },  # fmt: skip
    "analysis_delta": {"source", "id", "text"},  # with --deltas
}


@pytest.fixture(scope="module", autouse=True)
def _warm() -> None:
    """LiteLLM's import and the embedding model's load are one-time costs of this process."""
    from newsdesk._backend import import_litellm
    from newsdesk.news import _embed

    import_litellm()
    _embed.default_embedder().load()


def cli(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result


def analyze(llm: OpenAIServerHandle, *args: str) -> Any:
    return cli("analyze", *args, "--model", MODEL, "--api-base", llm.url)


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def kinds(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == kind]


def feed(feed_server: FeedServer, items: list[dict[str, str]]) -> str:
    name = unique("cli")
    feed_server.set_feed(name, rss(items))
    return f"{feed_server.url}/feeds/{name}"


# --- the JSONL contract ----------------------------------------------------------------------


def test_jsonl_contract_every_event_type(
    openai_server: OpenAIServerHandle, feed_server: FeedServer
) -> None:
    story = words("cli-shared", 50)
    a = feed(
        feed_server,
        [
            item("Shared story", story, "https://a.test/shared"),
            item(
                "Business one",
                f"{words('cb1')} {answer('Biz one', topic='business')}",
                "https://a.test/1",
            ),
            item(
                "Sports one",
                f"{words('cs1')} {answer('Sport one', topic='sports')}",
                "https://a.test/2",
            ),
            item("Breaks the model", f"{words('cx')} [[status:500]]", "https://a.test/3"),
            item("Tag &lt;script&gt;x&lt;/script&gt; [b]y[/b]", words("ctag"), "https://a.test/4"),
        ],
    )
    b = feed(feed_server, [item("Shared story", story, "https://b.test/elsewhere")])
    bad = f"{feed_server.url}/always500?k={unique('k')}"
    openai_server.control(latency=0.3)
    r = analyze(
        openai_server, a, b, bad, "--format", "jsonl", "--digest", "--deltas", "--cache", "off"
    )
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    lines = [line for line in r.stdout.splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]  # every line parses
    seen = set()
    for ev in events:
        assert isinstance(ev, dict) and "event" in ev and "source" in ev, ev
        assert set(ev) - {"event"} == CONTRACT[ev["event"]], (
            ev["event"],
            set(ev) ^ CONTRACT[ev["event"]],
        )
        seen.add(ev["event"])
    assert seen == set(CONTRACT), set(CONTRACT) - seen
    assert events[-1]["event"] == "done"

    names = {e["source"] for e in kinds(events, "source_ok")}
    assert len(names) == 2
    (err,) = kinds(events, "source_error")
    assert "HTTP 500" in err["reason"]
    (shared,) = [e for e in kinds(events, "analysis") if e["title"] == "Shared story"]
    assert sorted(shared["sources"]) == sorted(names)
    (dup,) = [e for e in kinds(events, "article") if e["duplicate_of"]]
    assert dup["duplicate_of"] == shared["id"]
    (failed,) = kinds(events, "analysis_error")
    assert failed["title"] == "Breaks the model" and failed["reason"]
    for e in kinds(events, "analysis"):
        ArticleAnalysis.model_validate(e)  # the analysis fields are schema-valid
        assert e["entities"].keys() == {"people", "organizations", "places"}
    assert {d["topic"] for d in kinds(events, "digest")} == {
        e["topic"] for e in kinds(events, "analysis")
    }
    done = events[-1]
    assert done["sources_ok"] == 2 and done["sources_failed"] == 1 and done["duplicates"] == 1
    titles = {e["title"] for e in kinds(events, "analysis")}
    assert "Tag <script>x</script> [b]y[/b]" in titles  # text, carried as is
    assert (
        done["analyzed"] == 4
        and done["failed"] == 1
        and list(done["failures"].values()) == [err["reason"]]
    )
    deltas = kinds(events, "analysis_delta")
    assert {d["id"] for d in deltas} >= {e["id"] for e in kinds(events, "analysis")}


# --- store, history, show --------------------------------------------------------------------


def test_second_run_history_and_show(
    openai_server: OpenAIServerHandle, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = feed(
        feed_server,
        [
            item(
                "Bank merger agreed",
                f"{words('h1')} {answer('Merger', topic='business')}",
                "https://h.test/1",
                "Mon, 03 Mar 2025 09:00:00 GMT",
            ),
            item(
                "Cup final tonight",
                f"{words('h2')} {answer('Final', topic='sports')}",
                "https://h.test/2",
                "Wed, 05 Mar 2025 09:00:00 GMT",
            ),
        ],
    )
    b = feed(
        feed_server,
        [
            item(
                "Factory opens",
                f"{words('h3')} {answer('Factory', topic='business')}",
                "https://g.test/3",
                "Thu, 06 Mar 2025 09:00:00 GMT",
            )
        ],
    )
    first = analyze(openai_server, a, b, "--format", "jsonl", "--cache", "off")
    assert first.exit_code == 0, first.output
    calls = openai_server.stats()["calls"]
    assert calls == 3
    second = analyze(openai_server, a, b, "--format", "jsonl", "--cache", "off")
    assert second.exit_code == 0, second.output
    assert openai_server.stats()["calls"] == calls, "the second run called the model"
    ev1, ev2 = jsonl(first.stdout), jsonl(second.stdout)
    assert all(e["cached"] for e in kinds(ev2, "analysis")) and len(kinds(ev2, "analysis")) == 3
    assert all(e["not_modified"] for e in kinds(ev2, "source_ok"))
    assert ev2[-1]["from_cache"] == 3

    hist = cli("history")
    assert hist.exit_code == 0
    for run in (ev1[-1]["run_id"], ev2[-1]["run_id"]):
        assert run in hist.stdout
    assert hist.stdout.count("finished") == 2
    health = cli("history", "--sources")
    assert health.exit_code == 0 and "127.0.0.1" in health.stdout

    def show(*args: str) -> list[dict[str, Any]]:
        r = cli("show", *args, "--format", "jsonl")
        assert r.exit_code == 0, r.output
        return jsonl(r.stdout)

    assert sorted(r["title"] for r in show()) == [
        "Bank merger agreed",
        "Cup final tonight",
        "Factory opens",
    ]
    assert sorted(r["title"] for r in show("--topic", "business")) == [
        "Bank merger agreed",
        "Factory opens",
    ]
    source_b = kinds(ev1, "source_ok")
    name_b = next(e["source"] for e in source_b if e["url"] == b)
    assert [r["title"] for r in show("--source", name_b)] == ["Factory opens"]
    assert [r["title"] for r in show("--since", "2025-03-05")] == [
        "Factory opens",
        "Cup final tonight",
    ]
    assert show("--since", "7d") == []  # the stories were published in 2025
    rows = show("--topic", "sports")
    assert rows[0]["analysis"]["summary"] == "Final" and "vector" not in rows[0]
    monkeypatch.setenv("COLUMNS", "200")  # the table folds long cells on narrow terminals
    table = cli("show", "--topic", "business")
    assert (
        table.exit_code == 0 and "Bank merger agreed" in table.stdout and "Factory" in table.stdout
    )


# --- limit, digest, live view ----------------------------------------------------------------


def test_live_view_with_limit_and_digest(
    openai_server: OpenAIServerHandle, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    url = feed(
        feed_server,
        [
            item(
                f"Live story {i}",
                f"{words(f'lv{i}')} {answer(f'Live {i}', topic='science')}",
                f"https://lv.test/{i}",
            )
            for i in range(6)
        ],
    )
    r = analyze(
        openai_server, url, "--format", "live", "--limit", "3", "--digest", "--cache", "off"
    )
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "Run summary" in out
    assert re.search(r"analyzed\s+│?\s*3 \(0 from cache\)", out), out
    assert len(re.findall(r"✓ Live story \d", out)) == 3
    assert re.search(r"science.*\(3 articles\)", out)  # the digest line
    assert openai_server.stats()["calls"] == 4  # 3 analyses + 1 digest


# --- exit codes and errors, as a user sees them ----------------------------------------------


def test_exit_codes_and_no_tracebacks(
    openai_server: OpenAIServerHandle, feed_server: FeedServer, closed_port_url: str, tmp_path: Path
) -> None:
    good = feed(feed_server, [item("Exit story", words("exit"), "https://e.test/1")])
    common = [
        "--model",
        MODEL,
        "--api-base",
        openai_server.url,
        "--format",
        "jsonl",
        "--cache",
        "off",
    ]
    k = unique("k")

    # Runs that fail partly or wholly, in process: that exit code comes from the command itself
    # (test_live_view_shows_hostile_text_literally runs a whole failing-source run as a process).
    some = analyze(
        openai_server, good, f"{feed_server.url}/always500?k={k}", closed_port_url, "--cache", "off"
    )
    assert some.exit_code == 0, some.output
    events = jsonl(some.stdout)
    assert len(kinds(events, "source_error")) == 2 and len(kinds(events, "analysis")) == 1
    assert "Traceback" not in some.output

    none = analyze(
        openai_server, f"{feed_server.url}/bad-xml?k={k}", closed_port_url, "--cache", "off"
    )
    assert none.exit_code == 1, none.output
    assert jsonl(none.stdout)[-1]["sources_ok"] == 0

    usage = run_cli("analyze", good, "--format", "xml")
    assert usage.returncode == 2 and "--format" in usage.stderr and usage.stdout == ""
    missing = run_cli("analyze", str(tmp_path / "nope.toml"), *common)
    assert missing.returncode == 2 and missing.stderr.startswith("error:")
    topic = run_cli("show", "--topic", "gossip")
    assert topic.returncode == 2 and "unknown topic" in topic.stderr

    for p in (usage, missing, topic):
        assert "Traceback" not in p.stdout + p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) <= 1, p.stderr  # at most one line: "error: ..."


def test_live_view_shows_hostile_text_literally(
    openai_server: OpenAIServerHandle, feed_server: FeedServer, tmp_path: Path
) -> None:
    """Titles and source names are text: HTML is not stripped twice or run, rich markup in them
    is printed, not interpreted (and cannot crash the view)."""
    title = "Breaking <script>alert(1)</script> [bold red]pwned[/] [/link] news"
    # the feed's own HTML escapes the title, so the article's title literally contains the tags
    url = feed(
        feed_server,
        [item(title.replace("<", "&lt;").replace(">", "&gt;"), words("xss"), "https://x.test/1")],
    )
    evil = "Evil [/bold] [link=https://evil.test]src[/link] <b>"
    sources = tmp_path / "sources.toml"
    sources.write_text(
        f'[[source]]\nname = "Hostile"\nurl = "{url}"\n\n'
        f'[[source]]\nname = "{evil}"\nurl = "{feed_server.url}/always500?k={unique("x")}"\n'
        f'\n[[source]]\nname = "Scripts"\nurl = "{feed_server.url}/xss?k={unique("x")}"\n'
    )
    p = run_cli(
        "analyze", "--sources", str(sources), "--model", MODEL, "--api-base", openai_server.url,
        "--format", "live", "--cache", "off", COLUMNS="120",
    )  # fmt: skip
    out = p.stdout
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in out + p.stderr and p.stderr.strip() == "", p.stderr
    assert title in out, out  # literally, markup and tags and all
    assert evil in out  # the failed source's name, in the summary and the status lines
    assert "Breaking news" in out and "Second story" in out  # /xss: tags stripped by the parser
    assert "document.cookie" not in out and "onerror" not in out  # /xss's scripts are gone
    assert "\x1b[" not in out  # a pipe gets plain text


# --- the embedded model ----------------------------------------------------------------------


@pytest.mark.slow
def test_demo_on_the_embedded_model() -> None:
    t0 = time.perf_counter()
    p = run_cli("analyze", "--limit", "3", "--format", "jsonl", timeout=110)
    wall = time.perf_counter() - t0
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stdout + p.stderr
    events = jsonl(p.stdout)
    analyses = kinds(events, "analysis")
    assert len(analyses) + len(kinds(events, "analysis_error")) == 3
    assert len(analyses) == 3, kinds(events, "analysis_error")
    for e in analyses:
        a = ArticleAnalysis.model_validate(e)
        assert a.summary.strip() and e["topic_by"] == "embedding" and e["model"] == "local/smollm2"
        assert e["story"] and e["latency"] > 0
    done = events[-1]
    assert done["analyzed"] == 3 and done["sources_failed"] == 1  # the demo's broken feed
    assert wall < 100, wall


def test_no_embed_leaves_topic_and_tone_to_the_llm_and_gives_no_stories(
    openai_server: OpenAIServerHandle, feed_server: FeedServer
) -> None:
    story = words("noembed-shared", 50)
    a = feed(
        feed_server,
        [
            item("Embedless one", story, "https://ne.test/1"),
            item("Embedless two", words("noembed-other", 50), "https://ne.test/2"),
        ],
    )
    with_embed = jsonl(analyze(openai_server, a, "--format", "jsonl", "--cache", "off").stdout)
    plain = jsonl(
        analyze(
            openai_server,
            a,
            "--format",
            "jsonl",
            "--cache",
            "off",
            "--no-embeddings",
            "--reanalyze",
        ).stdout
    )
    embedded, bare = kinds(with_embed, "analysis"), kinds(plain, "analysis")
    assert len(embedded) == len(bare) == 2
    assert all(e["story"] for e in embedded)  # the embedding step groups stories
    assert all(e["story"] is None and e["topic_by"] == "llm" for e in bare)
    r = run_cli("analyze", a, "--no-embeddings", "--topic-by", "embedding")
    assert r.returncode != 0 and "needs the embedding step" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
