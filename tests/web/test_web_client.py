"""The web app through its API (gradio_client), plus its pure helpers and the ``web`` command.

Every test talks to one ``newsdesk web`` process (see conftest) whose model is the fake OpenAI
server; feeds come from the local feed server. Each gradio ``Client`` is its own browser session.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client, handle_file

from newsdesk._exceptions import ConfigError
from newsdesk.news._models import TOPICS
from tests.web.conftest import WebServer, start_web

FEEDS = ("rss", "atom", "rdf", "json")  # 2 + 1 + 1 + 1 articles


def client(web: WebServer) -> Client:
    return Client(web.url, verbose=False, download_files=False)


def reply_text(history: list[dict[str, Any]]) -> str:
    from newsdesk.web._text import message_text

    if not history or history[-1]["role"] != "assistant":
        return ""
    return message_text(history[-1]["content"])


def chat(c: Client, message: str, **kw: Any) -> Any:
    return c.submit(message=message, history=[], api_name="/chat", **kw)


def news(c: Client, urls: list[str], **kw: Any) -> Any:
    args: dict[str, Any] = {
        "demo_sel": [],
        "urls_text": "\n".join(urls),
        "uploaded": None,
        "max_articles": 0,
        "conc": 1,
        "want_digest": False,
        "want_reanalyze": True,
        "want_embeddings": False,
    }
    args.update(kw)
    return c.submit(api_name="/news_run", **args)


def rows_of(table: Any) -> list[list[Any]] | None:
    """The rows in one streamed Dataframe output (None when that update skipped the table)."""
    if isinstance(table, dict) and "data" in table:
        return list(table["data"])
    return None


def shown(markdown: str) -> str:
    """Roughly what a Markdown string displays: escapes and entities undone."""
    import html
    import re

    return html.unescape(re.sub(r"\\(.)", r"\1", markdown))


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


# ---------------------------------------------------------------- chat


def test_chat_streams_from_the_provider(web: WebServer) -> None:
    job = chat(client(web), "hello [[chunk_delay:0.08]] one two three four five six seven eight")
    texts = [reply_text(history) for history, _box in job]
    assert any("waiting for the first token" in t for t in texts)  # said until it starts
    partial = [t for t in dict.fromkeys(texts) if t and "waiting for the first token" not in t]
    final = texts[-1]
    assert final == "Echo: hello one two three four five six seven eight"
    # Several partial replies before the final one, each extending the one before.
    assert len(partial) >= 4, partial
    for shorter, longer in zip(partial, partial[1:], strict=False):
        assert longer.startswith(shorter)
    history, box = job.outputs()[-1]
    assert box == ""  # the textbox is cleared for the next message
    assert [m["role"] for m in history] == ["user", "assistant"]


def test_chat_keeps_history_and_system_prompt(web: WebServer, openai_server: Any) -> None:
    c = client(web)
    first = chat(c, "first question").result()
    history, _ = first
    second = c.submit(
        message="second [[reply:ok]]", history=history, system_prompt="Be brief.", api_name="/chat"
    ).result()
    assert [m["role"] for m in second[0]] == ["user", "assistant", "user", "assistant"]
    assert reply_text(second[0]) == "ok"
    sent = openai_server.last_request()["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[0]["content"] == "Be brief."


@pytest.mark.parametrize(
    ("message", "model", "expected"),
    [
        ("boom [[status:400]]", "openai/test-model", "Error"),
        ("hi", "no-such-provider-xyz/whatever", "unknown model"),
    ],
)
def test_chat_errors_are_messages_not_tracebacks(
    web: WebServer, message: str, model: str, expected: str
) -> None:
    history, _ = chat(client(web), message, model=model).result(timeout=60)
    text = reply_text(history)
    assert expected in text
    assert "Traceback" not in text


def test_chat_stop_cancels_the_provider_call(web: WebServer, openai_server: Any) -> None:
    words = " ".join(f"w{i}" for i in range(60))
    job = chat(client(web), f"[[chunk_delay:0.2]] {words}")  # 12 s if nothing stops it
    wait_until(
        lambda: len({reply_text(h) for h, _ in job.outputs()} - {""}) >= 2,
        30,
        "two partial replies",
    )
    assert openai_server.stats()["in_flight"] == 1
    job.cancel()
    started = time.monotonic()
    stats = openai_server.wait_idle(timeout=5)
    assert stats["in_flight"] == 0, "the provider call is still streaming after Stop"
    assert time.monotonic() - started < 5
    final = reply_text(job.outputs()[-1][0])
    assert "w59" not in final  # the reply really stopped part-way


@pytest.mark.slow
def test_chat_streams_from_the_embedded_model(web: WebServer) -> None:
    job = chat(
        client(web), "Name three colours.", model="local/smollm2", api_base="", max_tok=24, temp=0.0
    )
    texts = [reply_text(history) for history, _ in job]
    distinct = [t for t in dict.fromkeys(texts) if t]
    assert texts[-1].strip() and "Error" not in texts[-1], texts[-1]
    assert len(distinct) >= 3, distinct  # at least two partial replies, then the final one


# ---------------------------------------------------------------- news


def test_news_run_fills_rows_progressively(
    web: WebServer, feed_server: Any, openai_server: Any
) -> None:
    openai_server.control(latency=0.4)
    urls = [f"{feed_server.url}/feeds/{name}" for name in FEEDS] + [f"{feed_server.url}/status/404"]
    job = news(client(web), urls)
    counts: list[int] = []
    outputs = list(job)
    for out in outputs:
        rows = rows_of(out[2])
        if rows is not None and (not counts or len(rows) != counts[-1]):
            counts.append(len(rows))
    assert counts[-1] == 5
    assert len(counts) >= 4, counts  # rows arrived a few at a time, not all at the end
    assert counts == sorted(counts)

    final_status = shown(next(o[0] for o in reversed(outputs) if isinstance(o[0], str)))
    assert "Analyzed 5 of 5" in final_status
    assert "HTTP 404" in final_status  # the failed source, with its reason
    summary = shown(next(o[6] for o in reversed(outputs) if isinstance(o[6], str) and o[6]))
    assert "Run summary" in summary and "4 ok, 1 failed" in summary

    final_rows = [r for o in outputs if (r := rows_of(o[2])) is not None][-1]
    titles = {r[1] for r in final_rows}
    assert (
        "Harbour bridge reopens after repairs" in titles and "Comet seen from the valley" in titles
    )
    for row in final_rows:
        assert row[3] in TOPICS
        assert -1 <= float(row[5]) <= 1
    # The topic chart comes as an update (its axis top follows the counts): the frame is "value".
    charts = [o[3].get("value", o[3]) for o in outputs if isinstance(o[3], dict)]
    topics = next(c for c in reversed(charts) if isinstance(c, dict) and c.get("data"))
    assert sum(n for _topic, n in topics["data"]) == 5


def test_news_sessions_run_independently(
    web: WebServer, feed_server: Any, openai_server: Any
) -> None:
    # Slow enough that run A is still short of its last row when it is stopped (at 0.3 s the
    # whole run could finish inside the window between "rows seen" and cancel).
    openai_server.control(latency=1.5)
    urls = [f"{feed_server.url}/feeds/{name}" for name in FEEDS]
    a, b = client(web), client(web)
    job_a = news(a, urls)
    job_b = news(b, urls)

    def rows_seen(job: Any) -> int:
        return max((len(rows_of(o[2]) or []) for o in job.outputs()), default=0)

    wait_until(
        lambda: rows_seen(job_a) >= 1 and rows_seen(job_b) >= 1, 60, "both runs to produce rows"
    )
    job_a.cancel()
    result_b = job_b.result(timeout=60)
    assert len(rows_of(result_b[2]) or []) == 5
    assert "Run summary" in result_b[6]
    assert rows_seen(job_a) < 5

    # The stopped run is recorded as cancelled, not left "running".
    c = client(web)

    def cancelled_runs() -> int:
        runs = c.predict(api_name="/history_refresh")[0]
        return sum(1 for row in runs["data"] if row[2] == "cancelled")

    wait_until(lambda: cancelled_runs() >= 1, 10, "the cancelled run to be recorded")


def test_news_rejects_local_paths_and_bad_models(web: WebServer, tmp_path: Path) -> None:
    c = client(web)
    status = shown(news(c, ["/etc/hostname"]).result(timeout=30)[0])
    assert "not an http(s) URL: '/etc/hostname'" in status
    toml = tmp_path / "sources.toml"
    toml.write_text('[[source]]\nname = "secret"\nurl = "/etc/hostname"\n')
    status = shown(news(c, [], uploaded=[handle_file(str(toml))]).result(timeout=30)[0])
    assert "local path" in status and "secret" in status
    status = shown(
        news(c, [], demo_sel=["Broken Wire"], model="no-such-provider-xyz/m").result(timeout=30)[0]
    )
    assert "unknown model" in status
    status = shown(news(c, []).result(timeout=30)[0])
    assert "no sources" in status


def test_news_accepts_uploaded_opml_and_makes_a_digest(
    web: WebServer, feed_server: Any, tmp_path: Path
) -> None:
    opml = tmp_path / "feeds.opml"
    opml.write_text(
        '<?xml version="1.0"?><opml version="2.0"><head><title>t</title></head><body>'
        f'<outline text="Gazette" xmlUrl="{feed_server.url}/feeds/rss"/></body></opml>'
    )
    out = news(client(web), [], uploaded=[handle_file(str(opml))], want_digest=True).result(
        timeout=60
    )
    assert "Gazette" in shown(out[0]) and "Analyzed 2 of 2" in out[0]
    assert len(rows_of(out[2]) or []) == 2
    assert "Digest by topic" in out[6]


def test_login_required_with_auth(openai_server_proc: Any) -> None:
    import httpx

    with start_web(openai_server_proc.url, "--auth", "ann:s3cret") as server:
        with httpx.Client(trust_env=False) as http:
            assert http.get(server.url + "/config").status_code == 401
            bad = http.post(server.url + "/login", data={"username": "ann", "password": "nope"})
            assert bad.status_code == 400
        c = Client(server.url, auth=("ann", "s3cret"), verbose=False)
        history, _ = c.predict(message="[[reply:in]]", history=[], api_name="/chat")
        assert reply_text(history) == "in"


# ---------------------------------------------------------------- history


def test_history_filters_stored_analyses(web: WebServer, feed_server: Any) -> None:
    c = client(web)
    out = news(c, [f"{feed_server.url}/feeds/{name}" for name in FEEDS]).result(timeout=60)
    rows = rows_of(out[2]) or []
    assert len(rows) == 5
    topic = rows[0][3]

    table, message, _detail = c.predict("(any)", "(any)", "", "", api_name="/history_search")
    assert len(table["data"]) >= 5 and "analyses" in message
    everything = table
    table, _m, _d = c.predict(topic, "(any)", "", "", api_name="/history_search")
    assert table["data"] and all(r[4] == topic for r in table["data"])
    source = everything["data"][0][2].split(", ")[0]  # stored name (News shows the feed's title)
    table, _m, _d = c.predict("(any)", source, "", "", api_name="/history_search")
    assert table["data"] and all(source in r[2] for r in table["data"])
    table, _m, _d = c.predict("(any)", "(any)", "2025-03-06", "", api_name="/history_search")
    # (an article without a date counts from when it was analyzed: today)
    published = {r[1][:10] for r in table["data"] if r[1]}
    assert published and all(p >= "2025-03-06" for p in published)
    table, _m, _d = c.predict("(any)", "(any)", "", "Comet", api_name="/history_search")
    assert any("Comet" in r[3] for r in table["data"])
    _t, message, _d = c.predict("(any)", "(any)", "last tuesday", "", api_name="/history_search")
    assert "Error" in message and "YYYY" in message and "“Since”" in message
    assert "--since" not in message and _t["data"] == []  # old results cleared

    runs, sources, _choices, _msg = c.predict(api_name="/history_refresh")
    assert runs["data"] and runs["data"][0][2] in ("finished", "cancelled")
    assert any(s[1].endswith("/feeds/rss") for s in sources["data"])
    urls = [s[1] for s in sources["data"]]
    assert all(u.startswith("http") or u in ("(bundled demo feed)", "(a file)") for u in urls)


# ---------------------------------------------------------------- helpers and the command


def test_md_text_escapes_markup() -> None:
    from newsdesk.web._text import md_link, md_text

    hostile = (
        "<script>alert(1)</script> *bold* [x](javascript:alert(2)) <img src=x onerror=alert(3)>"
    )
    out = md_text(hostile)
    assert "<" not in out and ">" not in out
    assert "\\*bold\\*" in out and "\\[x\\]" in out
    assert md_link("t", "javascript:alert(1)") == "t"
    assert md_link("t", "https://a.test/x (y)") == "[t](<https://a.test/x%20%28y%29>)"


def test_view_folds_events() -> None:
    from datetime import UTC, datetime

    from newsdesk.news._events import (
        AnalysisDelta,
        AnalysisReady,
        ArticleFound,
        SourceFailed,
        SourceOk,
    )
    from newsdesk.news._models import ArticleAnalysis
    from newsdesk.web._news import NewsRunView, row_detail

    view = NewsRunView(["A", "B", "C"])
    when = datetime(2025, 3, 3, 9, tzinfo=UTC)
    view.apply(SourceOk(source="A", url="u", articles=1, new_articles=1))
    view.apply(SourceFailed(source="C", url="u", reason="HTTP 500 <b>x</b>"))
    view.apply(
        ArticleFound(
            source="A",
            id="1",
            url="https://a.test/1",
            title="T <script>",
            published=when,
            sources=["A"],
        )
    )
    view.apply(AnalysisDelta(source="A", id="1", text='{"summary": "'))
    assert "T <script>" in view.inflight_text()
    analysis = ArticleAnalysis(summary="S", topic="science", tone="positive", sentiment=0.5)
    view.apply(
        AnalysisReady(
            source="A",
            id="1",
            url="https://a.test/1",
            title="T <script>",
            analysis=analysis,
            story="story-1",
            sources=["A"],
        )
    )
    # B's copy of the same article arrives later and is merged into the row.
    view.apply(
        ArticleFound(
            source="B",
            id="2",
            url="https://b.test/1",
            title="T",
            sources=["A", "B"],
            duplicate_of="1",
        )
    )
    assert view.table().values.tolist() == [
        [1, "T <script>", "A, B", "science", "positive", 0.5, "story-1", "S"]
    ]
    assert view.topic_frame().values.tolist() == [["science", 1]]
    assert sorted(view.source_frame()["source"]) == ["A", "B"]
    assert len(view.time_frame()) == 1
    status = view.status_markdown()
    assert "HTTP 500 &lt;b&gt;x&lt;/b&gt;" in status and "**failed**" in status
    detail = row_detail(view.rows, 1)
    assert "&lt;script&gt;" in detail and "<script>" not in detail and "A, B" in detail


def test_extra_tabs_get_the_shared_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gradio as gr

    from newsdesk.web import WebContext, build_app

    monkeypatch.setenv("NEWSDESK_HOME", str(tmp_path))
    seen: list[WebContext] = []

    def extra_tab(ctx: WebContext) -> None:
        seen.append(ctx)
        with gr.Tab("Extra"):
            gr.Textbox(label="Task")

    demo = build_app(
        model="openai/test-model",
        store_path=tmp_path / "db.sqlite",
        cache="off",
        extra_tabs=[extra_tab, extra_tab],  # given twice, built once
    )
    try:
        tabs = [
            c["props"].get("label")
            for c in demo.get_config_file()["components"]
            if c["type"] == "tabitem"
        ]
        # the built-in Agent tab (smolagents is installed with the test extras), then the extra one
        assert tabs == ["News", "Chat", "History", "Agent", "Extra"]  # opens on News
        ctx = seen[0]
        assert ctx.default_model == "openai/test-model" and ctx.store.path == tmp_path / "db.sqlite"
        assert ctx.gateway.store is None  # cache="off"
        assert isinstance(ctx.model, gr.Dropdown) and isinstance(ctx.api_base, gr.Textbox)
    finally:
        seen[0].store.close()


def test_web_command_checks_auth_and_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import newsdesk.web
    from newsdesk.cli._app import app
    from newsdesk.cli._web import is_loopback, parse_auth

    assert parse_auth("ann:p:w") == ("ann", "p:w")
    for bad in ("nopass", ":x", "ann:"):
        with pytest.raises(ConfigError, match="USER:PASS"):
            parse_auth(bad)
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1")

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(newsdesk.web, "serve", lambda **kw: calls.append(kw))
    runner = CliRunner()
    result = runner.invoke(app, ["web", "--host", "0.0.0.0", "--port", "7999"])
    assert result.exit_code == 0, result.output
    assert "without --auth" in result.output
    assert calls[-1]["host"] == "0.0.0.0" and calls[-1]["auth"] is None
    result = runner.invoke(app, ["web", "--auth", "ann:secret"])
    assert result.exit_code == 0 and "without --auth" not in result.output
    assert calls[-1]["host"] == "127.0.0.1" and calls[-1]["auth"] == ("ann", "secret")
    result = runner.invoke(app, ["web", "--auth", "nocolon"])
    assert isinstance(result.exception, ConfigError)
