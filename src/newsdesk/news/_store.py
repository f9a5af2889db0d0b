"""The local SQLite store: what newsdesk fetched, analyzed and ran, kept across runs.

Design choices, and why:

* Every write is its own committed transaction. A run killed with SIGKILL loses nothing it
  had finished; there is no "flush at the end" to miss.
* WAL + ``synchronous=NORMAL``: readers never block the writer, and a commit survives a process
  crash (only an OS crash or power cut can lose the last few commits; the file stays consistent).
* Several processes may share one file (a CLI run next to the web UI), so writes start with
  ``BEGIN IMMEDIATE`` and wait on a busy timeout instead of failing with "database is locked".
* One connection per ``Store``, shared by the pipeline's worker threads (``asyncio.to_thread``)
  and serialised by a lock: SQLite calls are short, and one connection keeps the order of writes.
* Times are ISO-8601 UTC strings of a fixed width, so string order is time order in SQL.
* API keys never enter the store: no method takes one.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from newsdesk._config import data_dir
from newsdesk._exceptions import StoreError
from newsdesk.news._models import Article, ArticleAnalysis, Source

__all__ = [
    "RunRecord",
    "RunStatus",
    "SourceHealth",
    "Store",
    "StoredAnalysis",
    "StoredBatch",
    "SCHEMA_VERSION",
]

# Seconds a write waits for another process's write to finish before giving up.
BUSY_TIMEOUT = 10.0

RunStatus = Literal["running", "finished", "cancelled", "interrupted"]


_UPSERT_ARTICLE = (
    "INSERT INTO articles (id, data, source, url, title, published, sources, first_seen, "
    "last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(id) DO UPDATE SET data = excluded.data, source = excluded.source, "
    "url = excluded.url, title = excluded.title, published = excluded.published, "
    "sources = excluded.sources, last_seen = excluded.last_seen"
)


class SourceHealth(BaseModel):
    """How a source has been doing: when it last worked, when and why it last failed."""

    name: str
    url: str
    last_success: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    consecutive_failures: int = 0
    etag: str | None = None
    last_modified: str | None = None


class StoredAnalysis(BaseModel):
    """One stored analysis, with enough of its article to show it without another lookup."""

    article_id: str
    title: str
    url: str
    source: str
    sources: list[str] = Field(default_factory=list)
    published: datetime | None = None
    analysis: ArticleAnalysis
    model: str
    prompt_version: str
    content_hash: str
    story: str | None = None
    topic_by: str = "llm"
    run_id: str | None = None
    latency: float = 0.0
    created_at: datetime
    # Raw float32 bytes for semantic search: useless in JSON and large, so never dumped.
    vector: bytes | None = Field(default=None, exclude=True, repr=False)


class StoredBatch(BaseModel):
    """Analyses stored after a cursor, in the order they were stored, and the cursor to ask
    with next time (see ``Store.analyses_after``)."""

    analyses: list[StoredAnalysis] = Field(default_factory=list)
    cursor: int
    more: bool = False  # the limit cut the batch short: ask again now for the rest


class RunRecord(BaseModel):
    """One pipeline run. ``status`` is worked out when listed (see ``Store.list_runs``)."""

    id: str
    started_at: datetime
    finished_at: datetime | None = None
    model: str
    sources: list[str] = Field(default_factory=list)
    stats: dict[str, Any] = Field(default_factory=dict)
    pid: int | None = None
    status: RunStatus


# Each entry migrates the schema from version i to i + 1; append, never edit a released one.
_MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE sources (
            url TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            last_success TEXT,
            last_error TEXT,
            last_error_at TEXT,
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            etag TEXT,
            last_modified TEXT,
            article_ids TEXT NOT NULL DEFAULT '[]'
        )""",
        # ``data`` is the whole Article as JSON (so new model fields survive without a migration);
        # the other columns are copies written by the same statement, there to filter and sort on.
        """CREATE TABLE articles (
            id TEXT PRIMARY KEY,
            data TEXT NOT NULL,
            source TEXT NOT NULL,
            url TEXT NOT NULL,
            title TEXT NOT NULL,
            published TEXT,
            sources TEXT NOT NULL DEFAULT '[]',
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL
        )""",
        "CREATE INDEX articles_last_seen ON articles(last_seen)",
        # No foreign key on run_id: an analysis is worth keeping even without its run record.
        """CREATE TABLE analyses (
            content_hash TEXT NOT NULL,
            model TEXT NOT NULL,
            prompt_version TEXT NOT NULL,
            article_id TEXT NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
            topic TEXT NOT NULL,
            summary TEXT NOT NULL,
            analysis TEXT NOT NULL,
            story TEXT,
            topic_by TEXT NOT NULL,
            vector BLOB,
            latency REAL NOT NULL DEFAULT 0,
            run_id TEXT,
            created_at TEXT NOT NULL,
            PRIMARY KEY (content_hash, model, prompt_version)
        )""",
        "CREATE INDEX analyses_article ON analyses(article_id, created_at)",
        "CREATE INDEX analyses_topic ON analyses(topic)",
        "CREATE INDEX analyses_story ON analyses(story)",
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            model TEXT NOT NULL,
            sources TEXT NOT NULL DEFAULT '[]',
            stats TEXT NOT NULL DEFAULT '{}',
            pid INTEGER,
            host TEXT
        )""",
        "CREATE INDEX runs_started ON runs(started_at)",
    ],
]
SCHEMA_VERSION = len(_MIGRATIONS)

# The latest analysis of each article (an article re-analyzed by another model or prompt, or
# after its text changed, shows once, as its newest analysis).
_LATEST = """
    SELECT an.*, ar.title, ar.url, ar.source, ar.sources, ar.published,
           COALESCE(ar.published, an.created_at) AS sort_time
    FROM (
        SELECT *, ROW_NUMBER() OVER (
            PARTITION BY article_id ORDER BY created_at DESC, rowid DESC
        ) AS rn
        FROM analyses
    ) AS an
    JOIN articles AS ar ON ar.id = an.article_id
    WHERE an.rn = 1
"""


def _iso(dt: datetime) -> str:
    """Fixed-width UTC ISO-8601, so that comparing strings compares times.

    A naive datetime is taken to be UTC already (feeds without a zone are treated that way).
    """
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _now() -> datetime:
    return datetime.now(UTC)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def _merge(*lists: Sequence[str]) -> list[str]:
    """Concatenate keeping the first occurrence of each item, in order."""
    return list(dict.fromkeys(item for items in lists for item in items))


def _like(text: str) -> str:
    """A LIKE pattern matching ``text`` literally anywhere (``%`` and ``_`` escaped)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class Store:
    """The newsdesk database. Thread-safe; safe to open from several processes at once."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else data_dir() / "newsdesk.db"
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if isinstance(exc, FileExistsError):  # the "directory" is a regular file
                reason = "a file is in the way"
            raise StoreError(
                f"cannot create the store directory {self.path.parent}: {reason}"
            ) from exc
        try:
            # isolation_level=None: no implicit transactions; writes are either one autocommitted
            # statement or an explicit BEGIN IMMEDIATE ... COMMIT (see _write).
            self._conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store {self.path}: {exc}") from exc
        try:
            self._conn.row_factory = sqlite3.Row
            self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise StoreError(self._describe(exc, "open")) from exc
        except StoreError:
            self._conn.close()
            raise

    # ---- plumbing -------------------------------------------------------------------------

    def _describe(self, exc: sqlite3.Error, what: str) -> str:
        msg = str(exc)
        if "not a database" in msg or "malformed" in msg:
            return f"the store {self.path} is corrupt or not a newsdesk database ({msg})"
        if "readonly" in msg:
            return f"the store {self.path} is not writable ({msg})"
        if "unable to open" in msg:
            return f"the store {self.path} cannot be opened ({msg})"
        return f"store {what} failed on {self.path}: {msg}"

    @contextmanager
    def _guard(self, what: str) -> Iterator[sqlite3.Connection]:
        """Hold the lock and turn any sqlite3 error into a one-line StoreError."""
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise StoreError(self._describe(exc, what)) from exc

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One committed write transaction. IMMEDIATE takes the write lock up front, so a
        read-then-write cannot fail halfway with SQLITE_BUSY when another process writes."""
        with self._guard(what) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                # SQLite may already have rolled back (e.g. disk full); don't mask the cause.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self._write("migrate") as conn:
            # Read the version inside the write lock: two processes opening a new file at once
            # must not both create the tables.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the store {self.path} has schema version {version}, newer than this "
                    f"newsdesk understands ({SCHEMA_VERSION}); upgrade newsdesk"
                )
            for number in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[number]:
                    conn.execute(statement)
            if version != SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- sources --------------------------------------------------------------------------

    def _ensure_source(self, conn: sqlite3.Connection, source: Source) -> None:
        # The name can change in sources.toml while the URL stays: the URL is the identity.
        conn.execute(
            "INSERT INTO sources (url, name) VALUES (?, ?) "
            "ON CONFLICT(url) DO UPDATE SET name = excluded.name",
            (source.url, source.name),
        )

    def source_validators(self, url: str) -> tuple[str | None, str | None]:
        """The (ETag, Last-Modified) of the source's last successful fetch, for a conditional GET."""
        with self._guard("read source") as conn:
            row = conn.execute(
                "SELECT etag, last_modified FROM sources WHERE url = ?", (url,)
            ).fetchone()
        return (row["etag"], row["last_modified"]) if row else (None, None)

    def record_source_ok(
        self,
        source: Source,
        *,
        etag: str | None,
        last_modified: str | None,
        article_ids: list[str],
    ) -> None:
        """A successful (200) fetch: new validators, failure streak reset, the articles it carried."""
        with self._write("record source") as conn:
            self._ensure_source(conn, source)
            conn.execute(
                "UPDATE sources SET last_success = ?, consecutive_failures = 0, etag = ?, "
                "last_modified = ?, article_ids = ? WHERE url = ?",
                (_iso(_now()), etag, last_modified, json.dumps(article_ids), source.url),
            )

    def record_source_error(self, source: Source, reason: str) -> None:
        """A failed fetch. The validators and last articles stay: the next success replaces them."""
        with self._write("record source error") as conn:
            self._ensure_source(conn, source)
            conn.execute(
                "UPDATE sources SET last_error = ?, last_error_at = ?, "
                "consecutive_failures = consecutive_failures + 1 WHERE url = ?",
                (reason, _iso(_now()), source.url),
            )

    def source_health(self) -> list[SourceHealth]:
        with self._guard("read sources") as conn:
            rows = conn.execute("SELECT * FROM sources ORDER BY name, url").fetchall()
        return [
            SourceHealth(
                name=r["name"],
                url=r["url"],
                last_success=_parse(r["last_success"]),
                last_error=r["last_error"],
                last_error_at=_parse(r["last_error_at"]),
                consecutive_failures=r["consecutive_failures"],
                etag=r["etag"],
                last_modified=r["last_modified"],
            )
            for r in rows
        ]

    def last_articles(self, url: str) -> list[Article]:
        """The articles the source carried at its last successful fetch (for a 304 answer),
        in feed order. Ids never saved with ``upsert_article`` are skipped."""
        with self._guard("read last articles") as conn:
            row = conn.execute("SELECT article_ids FROM sources WHERE url = ?", (url,)).fetchone()
            if row is None:
                return []
            ids: list[str] = json.loads(row["article_ids"])
            rows = conn.execute(
                "SELECT articles.id, articles.data FROM json_each(?) AS j "
                "JOIN articles ON articles.id = j.value ORDER BY j.key",
                (json.dumps(ids),),
            ).fetchall()
        return [self._article(r) for r in rows]

    # ---- articles -------------------------------------------------------------------------

    @staticmethod
    def _article(row: sqlite3.Row) -> Article:
        return Article.model_validate_json(row["data"])

    def _upsert_article(self, conn: sqlite3.Connection, article: Article) -> None:
        row = conn.execute("SELECT sources FROM articles WHERE id = ?", (article.id,)).fetchone()
        merged = self._merged(article, json.loads(row["sources"]) if row else [])
        conn.execute(_UPSERT_ARTICLE, self._row(merged, _iso(_now())))

    @staticmethod
    def _merged(article: Article, old: list[str]) -> Article:
        # Sources only ever grow: a later sighting by one feed must not forget the others.
        return article.model_copy(
            update={"sources": _merge(old, [article.source], article.sources)}
        )

    @staticmethod
    def _row(merged: Article, now: str) -> tuple[Any, ...]:
        return (
            merged.id,
            merged.model_dump_json(),
            merged.source,
            merged.url,
            merged.title,
            _iso(merged.published) if merged.published else None,
            json.dumps(merged.sources),
            now,
            now,
        )

    def upsert_article(self, article: Article) -> None:
        """Insert or update by id; the stored ``sources`` is the union of old and new."""
        with self._write("save article") as conn:
            self._upsert_article(conn, article)

    def upsert_articles(self, articles: Sequence[Article]) -> None:
        """``upsert_article`` for many, in one committed transaction (a big feed's thousands of
        items would otherwise pay one commit each)."""
        if not articles:
            return
        with self._write("save articles") as conn:
            # one look-up and one executemany for the batch, not two statements per article
            rows = conn.execute(
                "SELECT id, sources FROM articles WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(list({a.id for a in articles})),),
            ).fetchall()
            known: dict[str, list[str]] = {r["id"]: json.loads(r["sources"]) for r in rows}
            now = _iso(_now())
            values = []
            for article in articles:
                # the same id twice in one batch: the later one merges the earlier's sources
                merged = self._merged(article, known.get(article.id, []))
                known[article.id] = merged.sources
                values.append(self._row(merged, now))
            conn.executemany(_UPSERT_ARTICLE, values)

    def get_article(self, article_id: str) -> Article | None:
        with self._guard("read article") as conn:
            row = conn.execute("SELECT data FROM articles WHERE id = ?", (article_id,)).fetchone()
        return self._article(row) if row else None

    def recent_articles(self, days: float = 7) -> list[Article]:
        """Articles seen in the last ``days`` days, oldest first (seeds deduplication)."""
        cutoff = _iso(_now() - timedelta(days=days))
        with self._guard("read articles") as conn:
            rows = conn.execute(
                "SELECT data FROM articles WHERE last_seen >= ? ORDER BY first_seen, id",
                (cutoff,),
            ).fetchall()
        return [self._article(r) for r in rows]

    # ---- analyses -------------------------------------------------------------------------

    @staticmethod
    def _stored(row: sqlite3.Row) -> StoredAnalysis:
        return StoredAnalysis(
            article_id=row["article_id"],
            title=row["title"],
            url=row["url"],
            source=row["source"],
            sources=json.loads(row["sources"]),
            published=_parse(row["published"]),
            analysis=ArticleAnalysis.model_validate_json(row["analysis"]),
            model=row["model"],
            prompt_version=row["prompt_version"],
            content_hash=row["content_hash"],
            story=row["story"],
            topic_by=row["topic_by"],
            run_id=row["run_id"],
            latency=row["latency"],
            created_at=datetime.fromisoformat(row["created_at"]),
            vector=row["vector"],
        )

    def get_analysis(
        self, content_hash: str, model: str, prompt_version: str
    ) -> StoredAnalysis | None:
        """The analysis of this content by this model and prompt, if one was saved."""
        with self._guard("read analysis") as conn:
            row = conn.execute(
                "SELECT an.*, ar.title, ar.url, ar.source, ar.sources, ar.published "
                "FROM analyses AS an JOIN articles AS ar ON ar.id = an.article_id "
                "WHERE an.content_hash = ? AND an.model = ? AND an.prompt_version = ?",
                (content_hash, model, prompt_version),
            ).fetchone()
        if row is None:
            return None
        try:
            return self._stored(row)
        except ValidationError:
            # Saved under older analysis rules that it no longer meets: a miss, re-analyze it.
            return None

    def save_analysis(
        self,
        article: Article,
        analysis: ArticleAnalysis,
        *,
        model: str,
        prompt_version: str,
        run_id: str | None,
        story: str | None = None,
        topic_by: str = "llm",
        vector: bytes | None = None,
        latency: float = 0.0,
    ) -> None:
        """Save (or replace) an analysis; the article is upserted in the same transaction."""
        with self._write("save analysis") as conn:
            self._upsert_article(conn, article)
            conn.execute(
                "INSERT OR REPLACE INTO analyses (content_hash, model, prompt_version, article_id, "
                "topic, summary, analysis, story, topic_by, vector, latency, run_id, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    article.content_hash,
                    model,
                    prompt_version,
                    article.id,
                    analysis.topic,
                    analysis.summary,
                    analysis.model_dump_json(),
                    story,
                    topic_by,
                    vector,
                    latency,
                    run_id,
                    _iso(_now()),
                ),
            )

    def query(
        self,
        *,
        topic: str | None = None,
        source: str | None = None,
        since: datetime | None = None,
        story: str | None = None,
        text: str | None = None,
        limit: int | None = 100,
    ) -> list[StoredAnalysis]:
        """Latest analysis per article, newest first by publication time (analysis time when the
        feed gave none). ``source`` matches any source that carried the article; ``text`` is a
        case-insensitive substring of the title or summary; ``since`` applies to the same time."""
        where: list[str] = []
        params: list[Any] = []
        if topic is not None:
            where.append("topic = ?")
            params.append(topic)
        if source is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(sources) WHERE json_each.value = ?)")
            params.append(source)
        if since is not None:
            where.append("sort_time >= ?")
            params.append(_iso(since))
        if story is not None:
            where.append("story = ?")
            params.append(story)
        if text:
            where.append("(title LIKE ? ESCAPE '\\' OR summary LIKE ? ESCAPE '\\')")
            params += [_like(text), _like(text)]
        sql = f"SELECT * FROM ({_LATEST})"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY sort_time DESC, created_at DESC LIMIT ?"
        params.append(-1 if limit is None else limit)
        with self._guard("query") as conn:
            rows = conn.execute(sql, params).fetchall()
        out: list[StoredAnalysis] = []
        for row in rows:
            try:
                out.append(self._stored(row))
            except ValidationError:
                continue  # saved under older rules (see get_analysis); the next run replaces it
        return out

    def analysis_cursor(self) -> int:
        """The cursor at the store's current end: ``analyses_after`` of it returns only what is
        stored from now on."""
        with self._guard("read cursor") as conn:
            return int(conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM analyses").fetchone()[0])

    def analyses_after(self, cursor: int, *, limit: int = 500) -> StoredBatch:
        """Every analysis stored (or stored again) after ``cursor``, oldest first, with the
        cursor of the last one returned. Call again with the returned cursor to follow the store
        while another process (a ``newsdesk watch``) writes to it.

        The cursor is the analyses table's rowid, which gives commit order: writes are
        serialised (``BEGIN IMMEDIATE``) and a new row gets the largest rowid so far plus one, also
        when it replaces an analysis (SQLite picks the rowid before deleting the old row). So a
        reader never skips a row committed after it looked. Nothing deletes analyses; if
        something ever did delete the newest ones, their rowids could be reused and missed."""
        if cursor < 0 or limit < 1:
            raise ValueError(
                "analyses_after takes a cursor of at least 0 and a limit of at least 1"
            )
        with self._guard("read new analyses") as conn:
            rows = conn.execute(
                "SELECT an.rowid AS seq, an.*, ar.title, ar.url, ar.source, ar.sources, "
                "ar.published FROM analyses AS an JOIN articles AS ar ON ar.id = an.article_id "
                "WHERE an.rowid > ? ORDER BY an.rowid LIMIT ?",
                (cursor, limit + 1),
            ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        out: list[StoredAnalysis] = []
        for row in rows:
            try:
                out.append(self._stored(row))
            except ValidationError:
                continue  # saved under older rules (see get_analysis): nothing to show
        return StoredBatch(analyses=out, cursor=rows[-1]["seq"] if rows else cursor, more=more)

    def vectors(self) -> tuple[list[str], list[bytes]]:
        """(article ids, vector bytes) of each article's latest analysis that has a vector,
        oldest first (the order a story index is rebuilt in)."""
        with self._guard("read vectors") as conn:
            rows = conn.execute(
                f"SELECT article_id, vector FROM ({_LATEST}) "
                "WHERE vector IS NOT NULL ORDER BY created_at, article_id"
            ).fetchall()
        return [r["article_id"] for r in rows], [bytes(r["vector"]) for r in rows]

    def set_story(self, article_id: str, story: str | None) -> None:
        """Put every analysis of the article in ``story`` (stories merge as articles arrive)."""
        with self._write("set story") as conn:
            conn.execute("UPDATE analyses SET story = ? WHERE article_id = ?", (story, article_id))

    # ---- runs -----------------------------------------------------------------------------

    def start_run(self, *, model: str, sources: list[str]) -> str:
        """Record a run's start; returns its id, e.g. ``20261123T201500-ab12cd`` (UTC, sortable
        to the second, with a random suffix so two runs started in one second stay distinct)."""
        now = _now()
        run_id = f"{now.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
        with self._write("start run") as conn:
            conn.execute(
                "INSERT INTO runs (id, started_at, model, sources, pid, host) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, _iso(now), model, json.dumps(sources), os.getpid(), socket.gethostname()),
            )
        return run_id

    def finish_run(self, run_id: str, stats: dict[str, Any]) -> None:
        with self._write("finish run") as conn:
            cur = conn.execute(
                "UPDATE runs SET finished_at = ?, stats = ? WHERE id = ?",
                (_iso(_now()), json.dumps(stats, default=str), run_id),
            )
            if cur.rowcount == 0:
                raise StoreError(f"no run {run_id!r} in the store {self.path}")

    def list_runs(self, limit: int = 20) -> list[RunRecord]:
        """Newest first. A finished run is "finished", or "cancelled" when it was stopped before
        its end. An unfinished run is "running" while the process that started it is
        alive and "interrupted" once it is gone (crashed or killed). A run started on another
        host cannot be checked and shows as "running"."""
        with self._guard("read runs") as conn:
            rows = conn.execute(
                "SELECT * FROM runs ORDER BY started_at DESC, id DESC LIMIT ?", (limit,)
            ).fetchall()
        host = socket.gethostname()
        out: list[RunRecord] = []
        for r in rows:
            status: RunStatus
            stats = json.loads(r["stats"])
            if r["finished_at"] is not None:
                # a run stopped before its end (a closed stream, Ctrl-C) records why
                status = "cancelled" if stats.get("cancelled") else "finished"
            elif r["host"] not in (None, host) or r["pid"] == os.getpid():
                status = "running"
            else:
                status = "running" if r["pid"] and _pid_alive(r["pid"]) else "interrupted"
            out.append(
                RunRecord(
                    id=r["id"],
                    started_at=datetime.fromisoformat(r["started_at"]),
                    finished_at=_parse(r["finished_at"]),
                    model=r["model"],
                    sources=json.loads(r["sources"]),
                    stats=stats,
                    pid=r["pid"],
                    status=status,
                )
            )
        return out
