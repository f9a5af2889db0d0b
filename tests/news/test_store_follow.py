"""Following the store: ``Store.analyses_after`` / ``NewsDesk.stored_after`` return what was
stored after a cursor, in commit order, and a reader polling while another process writes sees
every analysis exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from newsdesk.news import NewsDesk, Store, StoredBatch
from tests.news.test_store import MODEL, PROMPT, analysis, art

pytestmark = pytest.mark.timeout(60)


def save(store: Store, n: int | str, *, model: str = MODEL, summary: str = "S.") -> None:
    store.save_analysis(
        art(n), analysis(summary=summary), model=model, prompt_version=PROMPT, run_id="r1"
    )


def test_cursor_order_limit_and_replacement(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        assert store.analysis_cursor() == 0
        empty = store.analyses_after(0)
        assert empty == StoredBatch(cursor=0) and not empty.more
        for n in (3, 1, 2):  # stored order, not id order
            save(store, n)
        batch = store.analyses_after(0)
        assert [a.article_id for a in batch.analyses] == ["id-3", "id-1", "id-2"]
        assert batch.cursor == store.analysis_cursor() and not batch.more
        first = batch.analyses[0]
        assert (first.title, first.url, first.run_id) == ("Title 3", "https://example.test/3", "r1")
        # The cursor is exclusive: asking again with it gives nothing, and keeps it.
        again = store.analyses_after(batch.cursor)
        assert again.analyses == [] and again.cursor == batch.cursor

        # A limit cuts the batch and says so; the next call carries on where it stopped.
        part = store.analyses_after(0, limit=2)
        assert [a.article_id for a in part.analyses] == ["id-3", "id-1"] and part.more
        rest = store.analyses_after(part.cursor, limit=2)
        assert [a.article_id for a in rest.analyses] == ["id-2"] and not rest.more

        # An analysis stored again (re-analyzed: same content, model and prompt) comes again,
        # after everything before it, carrying its new text; so does another model's analysis.
        cursor = batch.cursor
        save(store, 3, summary="Revised.")
        save(store, 1, model="other/model")
        newer = store.analyses_after(cursor)
        assert [(a.article_id, a.model) for a in newer.analyses] == [
            ("id-3", MODEL),
            ("id-1", "other/model"),
        ]
        assert newer.analyses[0].analysis.summary == "Revised."
        assert newer.cursor > cursor
        # Re-storing the newest analysis still moves the cursor on (its rowid is not reused).
        cursor = newer.cursor
        save(store, 1, model="other/model", summary="Again.")
        assert [a.analysis.summary for a in store.analyses_after(cursor).analyses] == ["Again."]

        with pytest.raises(ValueError):
            store.analyses_after(-1)
        with pytest.raises(ValueError):
            store.analyses_after(0, limit=0)


def test_desk_stored_after_starts_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Store(path) as store:
        save(store, "old")
    with NewsDesk(store=path) as desk:
        start = desk.stored_after()
        assert start.analyses == [] and start.cursor > 0  # the old analysis is not replayed
        with Store(path) as other:  # another connection, as another process would have
            save(other, "new")
        batch = desk.stored_after(start.cursor)
        assert [a.article_id for a in batch.analyses] == ["id-new"]
        assert desk.stored_after(batch.cursor).analyses == []


WRITER = textwrap.dedent(
    """
    import sys, time
    from newsdesk.news import Store
    from tests.news.test_store import MODEL, PROMPT, analysis, art
    with Store(sys.argv[1]) as store:
        for i in range(int(sys.argv[2])):
            store.save_analysis(
                art(i), analysis(), model=MODEL, prompt_version=PROMPT, run_id="writer"
            )
            if i % 7 == 0:
                time.sleep(0.01)
    """
)


def test_nothing_lost_while_another_process_writes(tmp_path: Path) -> None:
    """A reader polling with a small limit while another process commits analyses one by one
    sees each exactly once, in the order they were stored."""
    path = tmp_path / "s.db"
    total = 150
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    with NewsDesk(store=path) as desk:
        cursor = desk.stored_after().cursor
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(total)], env=env)
        seen: list[str] = []
        while_writing = 0  # analyses read before the writer had finished
        deadline = time.monotonic() + 45
        try:
            while len(seen) < total and time.monotonic() < deadline:
                batch = desk.stored_after(cursor, limit=4)
                seen += [a.article_id for a in batch.analyses]
                cursor = batch.cursor
                if writer.poll() is None:
                    while_writing += len(batch.analyses)
                if not batch.more:
                    time.sleep(0.005)
            assert writer.wait(timeout=30) == 0
        finally:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
        seen += [a.article_id for a in desk.stored_after(cursor).analyses]
    assert seen == [f"id-{i}" for i in range(total)]
    assert while_writing > 0  # the reader really read while the writer wrote
