"""Following a watch in a real browser: the News tab's timer picks up analyses another process
stores (here the test, writing to the app's store file as a watch would), the status names the
run, Stop following really stops the timer, and hostile titles stay text."""

from __future__ import annotations

import time

import pytest

from newsdesk.news import Article, ArticleAnalysis, Store
from tests.web.conftest import WebServer
from tests.web.test_web_browser import CHROMIUM, Page, browser, poll, ui

__all__ = ["browser", "ui"]  # fixtures, used by name

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed"),
]

TITLE = "Followed <script>window.__xss=9</script> story"


def store_analysis(store: Store, n: str, title: str, run_id: str) -> None:
    article = Article(
        id=f"follow-{n}",
        source="Watch feed",
        url=f"https://follow.test/{n}",
        title=title,
        text="body",
        content_hash=f"follow-hash-{n}",
        sources=["Watch feed"],
    )
    analysis = ArticleAnalysis.model_validate(
        {"summary": f"Summary {n}.", "topic": "science", "tone": "neutral", "sentiment": 0.2}
    )
    store.save_analysis(
        article, analysis, model="openai/test-model", prompt_version="p-follow", run_id=run_id
    )


def test_follow_shows_what_another_process_stores(ui: Page, web: WebServer) -> None:
    page = ui.page
    ui.open_news()
    with Store(web.home / "data" / "newsdesk.db") as store:
        run_id = store.start_run(model="openai/test-model", sources=["Watch feed"])
        page.click("#news-follow")
        poll(ui.status, lambda s: "Following the running watch" in s, timeout=15)
        store_analysis(store, "a", TITLE, run_id)
        table = page.locator("#news-results")
        poll(table.inner_text, lambda t: "window.__xss=9" in t, timeout=20)  # by the timer
        status = poll(ui.status, lambda s: "1 new analysis since" in s, timeout=10)[-1]
        assert run_id in status and "running since" in status
        page.locator("#news-results [role=gridcell]", has_text="Followed").first.click()
        detail = page.locator("#news-detail")
        poll(detail.inner_text, lambda t: "<script>window.__xss=9</script>" in t, timeout=10)
        ui.shot("news-follow")

        page.click("#news-unfollow")
        poll(ui.status, lambda s: "Stopped following" in s, timeout=15)
        store_analysis(store, "b", "Stored after the stop", run_id)
        time.sleep(7)  # two timer periods: nothing may come in any more
        assert "Stored after the stop" not in table.inner_text()
        store.finish_run(run_id, {"analyzed": 2})
    assert ui.dialogs == []
    assert page.evaluate("typeof window.__xss") == "undefined"
