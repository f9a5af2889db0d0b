"""``QueueExecutor``: an ``AnalysisExecutor`` that hands each job to the worker processes behind
a Redis queue and awaits its result.

- Each ``analyze(job)`` enqueues one job and waits for its result (pub/sub, re-checked every
  ``poll`` seconds). Results come back as each job finishes, whatever order they were sent in.
- No compatible worker alive (registry of heartbeats) for ``no_worker_timeout`` seconds:
  ``NoWorkerError`` instead of waiting forever.
- Redis lost: the executor reconnects and, if the job vanished with it (a restart without
  persistence), sends it again; after ``reconnect_timeout`` without Redis, ``QueueError``.
- Cancelled (deadline, Ctrl-C) or closed: the job still waiting or running is aborted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from newsdesk._exceptions import NewsdeskError
from newsdesk.news._analyze import AnalysisResult
from newsdesk.news._executor import AnalysisJob
from newsdesk.news._prompt import PROMPT_VERSION
from newsdesk.scale._errors import NoWorkerError, QueueError
from newsdesk.scale._protocol import (
    QUEUE,
    TASK,
    QueueSettings,
    compatible,
    decode_result,
    job_payload,
    live_workers,
    make_queue,
    workers_key,
)
from newsdesk.scale._redact import check_redis_url, redact_text, redact_url
from newsdesk.scale._shared import _Clients

__all__ = ["QueueExecutor"]

log = logging.getLogger("newsdesk.scale")


class QueueExecutor:
    """Analyze on the workers serving ``url`` (``newsdesk worker --queue URL``)."""

    def __init__(
        self,
        url: str,
        *,
        queue: str = QUEUE,
        redeliver_after: float = 15.0,
        no_worker_timeout: float = 5.0,
        reconnect_timeout: float = 30.0,
        poll: float = 1.0,
    ) -> None:
        self.settings = QueueSettings(check_redis_url(url), queue, redeliver_after)
        self.url = url
        self.no_worker_timeout = no_worker_timeout
        self.reconnect_timeout = reconnect_timeout
        self.poll = poll
        self._clients = _Clients(url)
        self._queue: Any = None
        self._holder: tuple[asyncio.Task[None], asyncio.Event] | None = None
        self._connected_once = False
        self._failing_since: float | None = None
        self._worker_seen = 0.0  # monotonic time a compatible worker was last seen alive
        self._worker_checked = 0.0
        self._pending: set[str] = set()

    def __repr__(self) -> str:
        return f"QueueExecutor({redact_url(self.url)!r})"

    # -- connection ----------------------------------------------------------------------------

    async def _open(self) -> Any:
        if self._queue is None:
            # coredis (under streaq) ties a client's connections to the task that opened it:
            # one long-lived task holds the connection; the analyze() tasks only use it.
            loop = asyncio.get_running_loop()
            ready: asyncio.Future[Any] = loop.create_future()
            closing = asyncio.Event()
            holder = asyncio.create_task(self._hold(ready, closing))
            try:
                queue = await asyncio.shield(ready)
            except BaseException:
                closing.set()
                await asyncio.gather(holder, return_exceptions=True)
                raise
            self._queue, self._holder = queue, (holder, closing)
            self._connected_once = True
        return self._queue

    async def _hold(self, ready: asyncio.Future[Any], closing: asyncio.Event) -> None:
        try:
            queue = make_queue(self.settings)
            async with queue:  # connects and loads streaq's Redis functions
                ready.set_result(queue)
                await closing.wait()
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)

    async def _drop(self) -> None:
        holder, self._queue, self._holder = self._holder, None, None
        if holder is not None:
            task, closing = holder
            closing.set()
            await asyncio.gather(task, return_exceptions=True)

    def _ok(self) -> None:
        self._failing_since = None

    async def _lost(self, exc: BaseException) -> None:
        """Redis failed under us: drop the connection and wait a little, or give up."""
        await self._drop()
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        reason = redact_text(f"{type(exc).__name__}: {exc}", self.url)
        where = redact_url(self.url)
        if not self._connected_once:
            raise QueueError(f"cannot reach the queue's Redis at {where}: {reason}") from None
        if now - self._failing_since > self.reconnect_timeout:
            raise QueueError(
                f"lost the queue's Redis at {where} for {self.reconnect_timeout:g} s: {reason}"
            ) from None
        await asyncio.sleep(0.5)

    # -- workers -------------------------------------------------------------------------------

    async def _check_workers(self, *, wait: bool) -> None:
        """Return when a compatible worker is alive; raise NoWorkerError when none has been for
        ``no_worker_timeout`` (``wait``: poll until then; else judge from the last sighting)."""
        started = time.monotonic()
        while True:
            now = time.monotonic()
            if now - self._worker_checked < 1.0 and self._worker_seen >= self._worker_checked:
                return  # seen alive a moment ago
            try:
                raw = await self._clients.get().hgetall(workers_key(self.settings.queue))
            except Exception:
                return  # Redis trouble is the queue path's to report
            self._worker_checked = now
            live, _dead = live_workers(raw)
            if any(compatible(w) for w in live):
                self._worker_seen = now
                return
            since = max(self._worker_seen, started)
            if now - since >= self.no_worker_timeout:
                raise NoWorkerError(self._no_worker_message(live))
            if not wait:
                return
            await asyncio.sleep(0.25)

    def _no_worker_message(self, live: list[dict[str, Any]]) -> str:
        from newsdesk import __version__

        where = redact_url(self.url)
        if live:
            seen = ", ".join(
                sorted({f"newsdesk {w.get('newsdesk')} / prompt {w.get('prompt')}" for w in live})
            )
            return (
                f"{len(live)} worker(s) serve the queue at {where}, but on {seen}; this run needs "
                f"newsdesk {__version__} / prompt {PROMPT_VERSION}"
            )
        return (
            f"no newsdesk worker is serving the queue at {where} (waited "
            f"{self.no_worker_timeout:g} s): start one with `newsdesk worker --queue {where}`"
        )

    # -- jobs ----------------------------------------------------------------------------------

    async def _enqueue(self, task_id: str, payload: str) -> None:
        while True:
            try:
                queue = await self._open()
                task = queue.registry[TASK].enqueue(payload)
                task.id = (
                    task_id  # our id: sending it again after a Redis restart is a no-op otherwise
                )
                await task
                self._ok()
                return
            except NewsdeskError:
                raise
            except Exception as exc:
                await self._lost(exc)

    async def _wait(self, task_id: str, payload: str) -> Any:
        from streaq.task import TaskStatus

        while True:
            try:
                queue = await self._open()
                try:
                    res = await queue.result_by_id(task_id, timeout=self.poll)
                except TimeoutError:
                    res = None
                if res is not None:
                    self._ok()
                    return res.result if res.success else res.exception
                await self._check_workers(wait=False)
                status = await queue.status_by_id(task_id)
                if status == TaskStatus.NOT_FOUND:
                    # Redis lost the job (restarted without persistence): send it again.
                    await self._enqueue(task_id, payload)
                elif status == TaskStatus.DONE:
                    # Stored already: fetch it with time to spare. On a starved event loop the
                    # short wait above can lapse while still subscribing, every time.
                    res = await queue.result_by_id(task_id, timeout=max(30.0, self.poll))
                    self._ok()
                    return res.result if res.success else res.exception
                self._ok()
            except NewsdeskError:
                raise
            except Exception as exc:
                await self._lost(exc)

    async def _abort(self, task_id: str) -> None:
        if self._queue is not None:
            with contextlib.suppress(Exception):
                await self._queue.abort_by_id(task_id, timeout=0)

    async def ready(self) -> None:
        """Return once a compatible worker serves the queue; ``NoWorkerError`` (saying how to
        start one) after ``no_worker_timeout`` seconds without. A run calls it first, so a
        missing worker is one clear error rather than one failure per article."""
        try:
            await self._clients.get().ping()
        except Exception as exc:
            reason = redact_text(f"{type(exc).__name__}: {exc}", self.url)
            raise QueueError(
                f"cannot reach the queue's Redis at {redact_url(self.url)}: {reason}"
            ) from None
        await self._check_workers(wait=True)

    async def analyze(
        self, job: AnalysisJob, on_delta: Callable[[str], None] | None = None
    ) -> AnalysisResult:
        """Run ``job`` on a worker. ``on_delta`` is not called: a remote result arrives whole."""
        await self._check_workers(wait=True)
        payload = job_payload(job)
        for _ in range(3):
            task_id = uuid.uuid4().hex
            self._pending.add(task_id)
            try:
                await self._enqueue(task_id, payload)
                raw = await self._wait(task_id, payload)
            except BaseException:
                await asyncio.shield(self._abort(task_id))
                raise
            finally:
                self._pending.discard(task_id)
            if not _expired(raw):
                break
            # A stale second delivery of a job that had already finished (its worker was killed
            # after the job was claimed again) finds the job's data gone and records "expired"
            # over the real result. The analysis is idempotent and its answer is in the shared
            # cache: ask once more instead of reporting a failure that did not happen.
            log.info("newsdesk: a job's result was lost to a stale redelivery; asking again")
        return decode_result(raw)

    async def aclose(self) -> None:
        """Abort the jobs still out and disconnect."""
        for task_id in list(self._pending):
            await self._abort(task_id)
        await self._drop()


def _expired(raw: Any) -> bool:
    """streaq's failure record for a job whose data was gone when a delivery started."""
    if not isinstance(raw, dict) or "__exception__" not in raw:
        return False
    return "expired" in f"{raw.get('message')} {raw['__exception__']}".lower()
