"""``NewsDesk``: the news side's public face — what the CLI, the web app and the agents use.

It holds the gateway, the store and the defaults, and does what every front end needs: turn what
a user named into sources, check the model and the options, run the pipeline as one typed event
stream (the run closes its own record, also when stopped), search stored analyses, list runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, get_args

from pydantic import SecretStr

from newsdesk._client import Gateway
from newsdesk._exceptions import ConfigError
from newsdesk.news._events import Event
from newsdesk.news._executor import AnalysisExecutor
from newsdesk.news._models import Source
from newsdesk.news._pipeline import NewsRun, PipelineOptions, TopicMode
from newsdesk.news._run_store import AsyncStore
from newsdesk.news._search import Found, check_topic, parse_since, search_store
from newsdesk.news._sources import demo_sources, resolve_sources
from newsdesk.news._store import RunRecord, SourceHealth, Store, StoredBatch

SourceSpec = str | Path | Source
"""A feed URL, a feed/OPML/TOML file, or a ``Source``."""

_RUN_OPTIONS = frozenset(f.name for f in dataclasses.fields(PipelineOptions)) - {"sources"}


class NewsDesk:
    """Runs, searches and history over one store, with one gateway and a default model.

    ``gateway``: None uses the process-wide ``default_gateway()``. ``store``: a ``Store``, a
    path, or None for the default file in the user data directory (opened on first use; closed
    by ``close()`` when the desk opened it). ``model`` / ``api_base``: defaults for runs (None:
    ``NEWSDESK_MODEL`` or the embedded model). ``executor``: who analyzes the articles (None:
    in this process). ``private_sources``: False makes every run's fetcher refuse loopback,
    private, link-local and metadata addresses (what a server facing untrusted users needs).
    """

    def __init__(
        self,
        *,
        gateway: Gateway | None = None,
        store: Store | str | Path | None = None,
        model: str | None = None,
        api_base: str | None = None,
        executor: AnalysisExecutor | None = None,
        private_sources: bool = True,
    ) -> None:
        self._gateway = gateway
        self.private_sources = private_sources
        self._store = store if isinstance(store, Store) else None
        self._store_path = None if isinstance(store, Store) else store
        self._owns_store = not isinstance(store, Store)
        self._model = model
        self.api_base = api_base
        self.executor = executor
        self._runs: set[NewsRun] = set()

    # ---- parts ----------------------------------------------------------------------------

    @property
    def gateway(self) -> Gateway:
        if self._gateway is None:
            from newsdesk._client import default_gateway

            self._gateway = default_gateway()
        return self._gateway

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self._store_path)
        return self._store

    @property
    def model(self) -> str:
        from newsdesk._config import default_model

        return self._model or default_model()

    # ---- runs -----------------------------------------------------------------------------

    def sources(self, specs: Iterable[SourceSpec] | None = None) -> list[Source]:
        """The sources named by ``specs`` (names made unique); none: the bundled demo feeds."""
        given = list(specs or [])
        return resolve_sources(given) if given else demo_sources()

    def prepare(
        self, sources: Iterable[SourceSpec] | None = None, **options: Any
    ) -> PipelineOptions:
        """Resolve the sources and check the model and options, ready for ``run``. Raises a
        ``UserError`` saying what is wrong. Blocking: checking a remote model imports LiteLLM."""
        from newsdesk._backend import check_model

        unknown = sorted(set(options) - _RUN_OPTIONS)
        if unknown:
            raise TypeError(f"unknown run option(s) {unknown}; known: {sorted(_RUN_OPTIONS)}")
        model = options.pop("model", None) or self.model
        api_base = options.pop("api_base", self.api_base)
        _check_options(options)
        check_api_base(api_base)
        chosen = self.sources(sources)
        if not chosen:
            raise ConfigError("no sources to run")
        check_model(model, api_base=api_base)
        return PipelineOptions(sources=chosen, model=model, api_base=api_base, **options)

    async def run(
        self,
        sources: Iterable[SourceSpec] | PipelineOptions | None = None,
        *,
        api_key: str | SecretStr | None = None,
        **options: Any,
    ) -> AsyncIterator[Event]:
        """Run the pipeline and yield its events: ``run_started``, then per source
        ``source_ok``/``source_error``, ``article`` and ``analysis``/``analysis_error`` as they
        complete, ``digest``, and ``done`` last. ``options`` are ``PipelineOptions`` fields
        (``limit``, ``concurrency``, ``digest``, ``topic_mode``…); or pass ``prepare()``'s
        result. Closing the stream (or cancelling its task) stops the run. ``api_key``: a key
        of the caller's own for this run's requests (never stored, logged or in a cache key)."""
        if isinstance(sources, PipelineOptions):
            if options:
                raise TypeError("give either prepared options or keyword options, not both")
            prepared = sources
        else:
            prepared = await asyncio.to_thread(self.prepare, sources, **options)
        store = await asyncio.to_thread(lambda: self.store)
        run = NewsRun(
            prepared,
            gateway=self.gateway,
            store=AsyncStore(store),
            executor=self.executor,
            allow_private=self.private_sources,
            api_key=SecretStr(api_key) if isinstance(api_key, str) else api_key,
        )
        self._runs.add(run)
        try:
            async with contextlib.aclosing(run.events()) as events:
                async for event in events:
                    yield event
        finally:
            self._runs.discard(run)

    def cancel(self) -> None:
        """Stop every run of this desk in progress (from any thread); finished work stays."""
        for run in list(self._runs):
            run.cancel()

    # ---- what is stored -------------------------------------------------------------------

    def search(
        self,
        *,
        topic: str | None = None,
        source: str | None = None,
        since: str | datetime | None = None,
        story: str | None = None,
        query: str | None = None,
        limit: int = 30,
    ) -> list[Found]:
        """Stored analyses, newest first; with ``query``, ranked by meaning. ``since``: a
        datetime, a date ("2025-03-01") or days back ("7d"). Blocking (SQLite, embedding)."""
        check_topic(topic)
        when = parse_since(since)
        return search_store(
            self.store,
            topic=topic,
            source=source,
            since=when,
            story=story,
            query=query,
            limit=limit,
        )

    def stored_after(self, cursor: int | None = None, *, limit: int = 500) -> StoredBatch:
        """Analyses stored after ``cursor`` (by any process on this store, e.g. a running
        ``newsdesk watch``), oldest first, with their articles' title, URL and sources, and the
        cursor to pass next time. ``cursor=None`` starts at the store's current end (no analyses,
        just the cursor). ``more`` says the limit cut the batch short. Blocking (SQLite)."""
        if cursor is None:
            return StoredBatch(cursor=self.store.analysis_cursor())
        return self.store.analyses_after(cursor, limit=limit)

    def history(self, limit: int = 20) -> list[RunRecord]:
        """Past runs, newest first."""
        return self.store.list_runs(limit=limit)

    def source_health(self) -> list[SourceHealth]:
        """How each source has been doing: last success, last error, failures in a row."""
        return self.store.source_health()

    # ---- closing --------------------------------------------------------------------------

    def close(self) -> None:
        """Close the store if the desk opened it (the gateway and executor are the caller's)."""
        if self._owns_store and self._store is not None:
            self._store.close()
            self._store = None

    async def aclose(self) -> None:
        self.cancel()
        await asyncio.to_thread(self.close)

    def __enter__(self) -> NewsDesk:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> NewsDesk:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def _check_options(options: dict[str, Any]) -> None:
    topic_modes = get_args(TopicMode)
    if "topic_mode" in options and options["topic_mode"] not in topic_modes:
        raise ConfigError(
            f"topic_mode must be one of {', '.join(topic_modes)}, not {options['topic_mode']!r}"
        )
    for name in ("concurrency", "fetch_concurrency"):
        if name in options and (not isinstance(options[name], int) or options[name] < 1):
            raise ConfigError(f"{name} must be a whole number of at least 1")
    limit = options.get("limit")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ConfigError("limit must be a whole number of at least 1 (or None: no limit)")
    for name in ("fetch_timeout", "deadline", "request_timeout"):
        value = options.get(name)
        if value is not None and not (isinstance(value, int | float) and value > 0):
            raise ConfigError(f"{name} must be a positive number of seconds")
    retries = options.get("retries")
    if retries is not None and (not isinstance(retries, int) or not 0 <= retries <= 10):
        raise ConfigError("retries must be a whole number from 0 to 10")


def check_api_base(api_base: str | None) -> None:
    """An API base must be an http(s) URL with a host and no credentials in it (the key goes
    in the ``Authorization`` header; httpx refuses both at once). Raises ``ConfigError``."""
    if api_base is None:
        return
    from urllib.parse import urlsplit

    shown = api_base if len(api_base) <= 80 else api_base[:77] + "..."
    try:
        parts = urlsplit(api_base.strip())
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ConfigError(f"API base {shown!r} is not a URL") from None
    if parts.username is not None or parts.password is not None:
        # never echo it: the URL carries a password
        raise ConfigError(
            "API base must not carry credentials (user:password@); give the key in the "
            "provider's environment variable (e.g. OPENAI_API_KEY) instead"
        )
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(
            f"API base {shown!r} is not an http(s) URL with a host, e.g. http://127.0.0.1:8000/v1"
        )
