"""The News tab's run view says true things: it is a pure fold over the pipeline's events (plus
the moments they arrived), so these feed it events by hand."""

from __future__ import annotations

from newsdesk.news._events import (
    AnalysisDelta,
    AnalysisReady,
    ArticleFound,
    RunDone,
    RunStarted,
    SourceOk,
)
from newsdesk.news._models import ArticleAnalysis
from newsdesk.web._news import NewsRunView
from newsdesk.web._text import md_text

ANALYSIS = ArticleAnalysis(summary="S", topic="science", tone="positive", sentiment=0.5)


def _found(view: NewsRunView, source: str, *ids: str) -> None:
    for i in ids:
        view.apply(ArticleFound(source=source, id=i, url=f"https://x.test/{i}", title=f"T{i}"), 0)


def _ready(
    view: NewsRunView, source: str, i: str, *, at: float, cached: bool = False, latency: float = 0.0
) -> None:
    view.apply(
        AnalysisReady(
            source=source,
            id=i,
            url="u",
            title=f"T{i}",
            analysis=ANALYSIS,
            cached=cached,
            latency=latency,
            sources=[source],
        ),
        at,
    )


def test_one_at_a_time_is_not_called_concurrent_and_queue_time_is_separate() -> None:
    view = NewsRunView(["A"])
    view.apply(RunStarted(run_id="r", sources=["A"], model="local/smollm2"), 0)
    view.apply(SourceOk(source="A", url="https://a.test/feed", articles=3, new_articles=3), 0)
    _found(view, "A", "1", "2", "3")
    # Four slots, one model: each waits for the one before it (latency includes the wait).
    for k, i in enumerate(("1", "2", "3")):
        view.apply(AnalysisDelta(source="A", id=i, text="{"), 10.0 * k)
        _ready(view, "A", i, at=10.0 * k + 10, latency=10.0 * k + 10)
    view.apply(RunDone(run_id="r", analyzed=3, wall=30.0, sum_latency=60.0, saved=30.0), 30)
    summary = view.summary_markdown()
    assert "saved" not in summary and "saving" not in summary
    assert "in the model 30.0 s" in summary and "waiting in the queue 30.0 s" in summary
    assert "one at a time" in summary
    assert "3 by the model now, 0 remembered" in summary


def test_parallel_analyses_report_what_they_saved() -> None:
    view = NewsRunView(["A"])
    _found(view, "A", "1", "2")
    for i in ("1", "2"):
        view.apply(AnalysisDelta(source="A", id=i, text="{"), 0)
    _ready(view, "A", "1", at=4, latency=4)
    _ready(view, "A", "2", at=5, latency=5)
    view.apply(RunDone(run_id="r", analyzed=2, wall=5.0), 5)
    summary = view.summary_markdown()
    assert "up to 2 ran at once, saving 4.0 s" in summary


def test_a_rerun_says_remembered_not_new() -> None:
    view = NewsRunView(["A"])
    view.apply(SourceOk(source="A", url="https://a.test/feed", articles=2, new_articles=2), 0)
    _found(view, "A", "1", "2")
    _ready(view, "A", "1", at=1, cached=True)
    _ready(view, "A", "2", at=1, cached=True)
    view.apply(RunDone(run_id="r", analyzed=2, from_cache=2, articles=2), 1)
    status, summary = view.status_markdown(), view.summary_markdown()
    assert "new" not in status and "0 analyzed now, 2 remembered" in status
    assert "0 by the model now, 2 remembered" in summary and "nothing needed the model" in summary


def test_stop_is_not_an_error_and_clears_in_flight() -> None:
    view = NewsRunView(["A", "B"])
    _found(view, "A", "1", "2")
    view.apply(AnalysisDelta(source="A", id="1", text="half an analysis"), 0)
    view.stop()
    status = view.status_markdown()
    assert status.startswith("**Stopped: analyzed 0 of 2**") and "Error" not in status
    assert "in flight" not in status and view.inflight_text() == ""
    assert "stopped before it was read" in status  # B was never read
    assert view.summary_markdown().startswith("**Stopped.**")


def test_waiting_for_the_model_is_said() -> None:
    view = NewsRunView(["A"])
    _found(view, "A", "1")
    view.set_waiting(True)
    assert "Waiting for the model: 1 articles are queued" in view.status_markdown()
    view.apply(AnalysisDelta(source="A", id="1", text="{"), 1)
    assert "Waiting" not in view.status_markdown()


def test_errors_before_a_run_are_shown_once() -> None:
    view = NewsRunView([])
    view.fail("no sources: check a demo feed")
    assert "no sources" in view.status_markdown()
    assert "no sources" not in view.summary_markdown()


def test_url_sources_are_named_by_the_feed_title_with_the_url_shown() -> None:
    view = NewsRunView(
        ["127.0.0.1", "127.0.0.1 (2)", "Harbor"],
        urls={
            "127.0.0.1": "http://127.0.0.1:9/a",
            "127.0.0.1 (2)": "http://127.0.0.1:9/b",
            "Harbor": "demo/harbor.xml",
        },
    )
    view.apply(SourceOk(source="127.0.0.1", url="http://127.0.0.1:9/a", title="Comet Weekly"))
    view.apply(SourceOk(source="127.0.0.1 (2)", url="http://127.0.0.1:9/b", title="Comet Weekly"))
    view.apply(SourceOk(source="Harbor", url="demo/harbor.xml", title="Something else"))
    status = view.status_markdown()
    assert f"| Comet Weekly<br><small>{md_text('http://127.0.0.1:9/a')}</small> |" in status
    assert md_text("Comet Weekly (2)") in status and "| Harbor |" in status
    assert md_text("127.0.0.1 (2)") not in status


def test_cli_live_view_drops_fact_fragments() -> None:
    from newsdesk.cli._news_run import is_sentence

    assert not is_sentence("2.5, Kestrel Motors will")  # the tail of a broken list
    assert not is_sentence("- and the mayor said")
    assert not is_sentence("and the mayor said so")
    assert not is_sentence("Rates")
    assert is_sentence("Kestrel Motors will cut 1,200 jobs")
    assert is_sentence("1,200 jobs will go by March")
    assert is_sentence('"We will rebuild," the mayor said')
