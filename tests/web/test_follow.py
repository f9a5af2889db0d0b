"""The News tab follows a running ``newsdesk watch``: a real watch process writes to a store
file while the web app's own Follow handlers (taken from the built Gradio app, as the timer calls
them) read the same file and see the analyses the watch stores after Follow was pressed."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from newsdesk.news import Store
from newsdesk.web._news import row_detail
from newsdesk.web._text import md_text
from tests.helpers import watching
from tests.news.test_cli_watch import MODEL
from tests.news.test_pipeline import answer, item, rss, unique, words
from tests.servers.feed_server import FeedServer
from tests.servers.plugin import OpenAIServerHandle

pytestmark = pytest.mark.timeout(600)

HOSTILE = 'Fresh <img src=x onerror="alert(1)"> **news** [x](javascript:alert(1))'


def handlers(store: Path, api_base: str) -> dict[str, Any]:
    """The app's Follow / check / Stop following functions, by their API names."""
    from newsdesk.web import build_app

    demo = build_app(model=MODEL, api_base=api_base, store_path=store, cache="off")
    fns = {fn.api_name: fn.fn for fn in demo.fns.values() if isinstance(fn.api_name, str)}
    return {
        "demo": demo,
        **{k: fns[k] for k in ("news_follow", "news_follow_check", "news_unfollow")},
    }


def titles(out: tuple[Any, ...]) -> list[str]:
    table = out[4]  # state, timer, status, in flight, table, ...
    return [] if not hasattr(table, "columns") else list(table["title"])


def test_web_follows_a_running_watch(
    openai_server: OpenAIServerHandle, feed_server: FeedServer, tmp_path: Path
) -> None:
    name = unique("follow")
    first = [
        item(f"Old {i}", f"{words(f'f1{i}')} {answer(f'Old summary {i}')}", f"https://f.test/{i}")
        for i in range(2)
    ]
    feed_server.set_feed(name, rss(first))
    url = f"{feed_server.url}/feeds/{name}"
    store = tmp_path / "watch.db"
    with (
        watching(url, MODEL, openai_server.url, store) as (proc, lines),
        contextlib.ExitStack() as closing,
    ):
        for _ in range(2):  # patient: LiteLLM's import alone takes a minute on a loaded machine
            lines.until(lambda e: e["event"] == "analysis", timeout=300)
        lines.until(lambda e: e["event"] == "done")
        app = handlers(store, openai_server.url)
        closing.callback(app["demo"].newsdesk_context.store.close)

        # Follow: from the store's end, so the watch's earlier analyses are not replayed.
        out = asyncio.run(app["news_follow"]())
        follow = out[0]
        assert follow is not None and out[1].active is True  # the timer runs
        assert "Following the running watch" in out[2] and titles(out) == []
        out = asyncio.run(app["news_follow_check"](follow))
        assert out[0] is follow and "**0** new analyses" in out[2]

        # The feed gains an item: the watch's next poll analyzes it, the next check shows it.
        feed_server.set_feed(
            name,
            rss([*first, item(HOSTILE, f"{words('f-new')} {answer('Fresh summary')}", "https://f.test/new")]),
        )  # fmt: skip
        fresh_ev = lines.until(lambda e: e["event"] == "analysis", timeout=120)
        assert "**news** [x](javascript:alert(1))" in fresh_ev["title"]  # markup kept as text
        deadline = time.monotonic() + 30
        seen: list[str] = []
        while not seen and time.monotonic() < deadline:
            out = asyncio.run(app["news_follow_check"](follow))
            seen = titles(out)
            time.sleep(0.2)
        assert seen == [fresh_ev["title"]]  # only the new one, once; table cells are plain text
        status = out[2]
        with Store(store) as s:
            (fresh,) = [a for a in s.query() if a.title == fresh_ev["title"]]
        assert fresh.run_id and md_text(fresh.run_id) in status  # which run it came from
        assert "**1** new analysis since" in status and "last checked" in status
        assert "<img" not in status and "**news**" not in status
        # The detail view of the followed row is escaped like a run's.
        rows = out[-1]
        detail = row_detail(rows, rows[0].n)
        assert "Fresh summary" in detail and "\\*\\*news\\*\\*" in detail  # shown, not bold
        assert "<img" not in detail and "](javascript" not in detail

        # Checks with nothing new keep the table and only refresh the status.
        out = asyncio.run(app["news_follow_check"](follow))
        assert "**1** new analysis since" in out[2]

        # Stop following: the timer stops and a check still in flight ends the follow too.
        stopped = app["news_unfollow"](follow)
        assert stopped[0] is None and stopped[1].active is False
        assert "Stopped following" in stopped[2]
        late = asyncio.run(app["news_follow_check"](follow))
        assert late[0] is None and late[1].active is False  # and it leaves the page alone
        assert all(x == {"__type__": "update"} for x in late[2:])  # gr.skip()
        idle = asyncio.run(app["news_follow_check"](None))
        assert idle[0] is None and idle[1].active is False

        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err


def test_follow_view_replaces_caps_and_survives_store_errors(tmp_path: Path) -> None:
    """Pure parts: a re-analysis replaces its row in place, the table keeps the newest rows,
    and a store error is shown (escaped) while the cursor stays, so nothing is skipped."""
    from newsdesk.news import NewsDesk
    from newsdesk.web import _follow
    from tests.news.test_store_follow import save

    path = tmp_path / "s.db"
    with NewsDesk(store=path) as desk:
        follow = _follow.start_follow(desk)
        assert "No run in this store yet" in _follow.follow_markdown(follow)
        for n in range(4):
            save(desk.store, n)
        _follow.poll_follow(desk, follow)
        save(desk.store, 1, summary="Revised.")  # analyzed again after it was shown
        _follow.poll_follow(desk, follow)
        view = follow.view
        assert [(r.n, r.id) for r in view.rows] == [
            (1, "id-0"),
            (2, "id-1"),
            (3, "id-2"),
            (4, "id-3"),
        ]
        assert view.by_id["id-1"].analysis.summary == "Revised." and follow.received == 5
        assert {"table", "charts"} <= view.dirty

        old_cap = _follow.MAX_ROWS
        _follow.MAX_ROWS = 3
        try:
            save(desk.store, 9)
            _follow.poll_follow(desk, follow)
        finally:
            _follow.MAX_ROWS = old_cap
        assert [r.id for r in view.rows] == ["id-2", "id-3", "id-9"] and set(view.by_id) == {
            "id-2",
            "id-3",
            "id-9",
        }

        cursor = follow.cursor
        desk.store.close()  # every read now fails
        _follow.poll_follow(desk, follow)
        assert follow.cursor == cursor and follow.error
        text = _follow.follow_markdown(follow)
        assert "Error reading the store" in text and "trying again" in text
