"""``QueueExecutor``: an ``AnalysisExecutor`` that hands each job to the worker processes behind
a Redis queue and awaits its result.

- One listener per executor, whatever the number of jobs out: a single task holds the streaq
  connection and one pub/sub connection, subscribes to each job's result channel (streaq
  publishes every result there) and hands each result to the ``analyze()`` waiting for it.
  Every ``poll`` seconds while jobs are out it checks, for all of them at once, the results
  stored in Redis (a message missed while reconnecting), that Redis still holds the run's marker
  key (a restart without persistence) and that a worker is alive. A job costs the producer
  about three Redis commands (subscribe, enqueue, unsubscribe), not one poll per second.
- Results come back as each job finishes, whatever order they were sent in.
- No compatible worker alive (registry of heartbeats) for ``no_worker_timeout`` seconds:
  ``NoWorkerError`` instead of waiting forever.
- Redis lost: the listener reconnects, subscribes again, fetches what finished meanwhile and,
  if Redis forgot the jobs (a restart without persistence), sends them again; after
  ``reconnect_timeout`` without Redis, ``QueueError``.
- Cancelled (deadline, Ctrl-C) or closed: the jobs still waiting or running are aborted in the
  queue (streaq's abort set, one command for all the jobs cancelled at that moment): a queued
  one is never run, a running one is stopped on its worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from newsdesk._exceptions import NewsdeskError
from newsdesk.news._analyze import AnalysisResult
from newsdesk.news._executor import AnalysisJob
from newsdesk.news._prompt import PROMPT_VERSION
from newsdesk.scale._cancel import cancel_requested, raise_if_cancelled, stop_task
from newsdesk.scale._errors import NoWorkerError, QueueError
from newsdesk.scale._protocol import (
    QUEUE,
    TASK,
    QueueSettings,
    compatible,
    decode_result,
    job_payload,
    live_workers,
    loads,
    make_queue,
    workers_key,
)
from newsdesk.scale._redact import check_redis_url, redact_text, redact_url
from newsdesk.scale._shared import PREFIX, _Clients

__all__ = ["QueueExecutor"]

log = logging.getLogger("newsdesk.scale")

MARKER_TTL = 86_400  # the run's marker key outlives any pause between two checks


class _Reconnect(Exception):
    """The listener must open a fresh connection (Redis forgot its state, or a job's command
    failed on the current one)."""


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
        # the listener: one task holding (streaq queue, pub/sub) while connected
        self._listener: asyncio.Task[None] | None = None
        self._conn: tuple[Any, Any] | None = None
        self._ready: asyncio.Future[None] | None = None  # resolved when _conn is usable
        self._restart = False
        self._closing = False
        self._connected_once = False
        self._failing_since: float | None = None
        # jobs out: task id -> the future its analyze() awaits, and the payload to send again
        self._waiting: dict[str, asyncio.Future[Any]] = {}
        self._payloads: dict[str, str] = {}
        self._unsubscribe: set[str] = set()  # finished jobs' channels, dropped in one command
        self._to_abort: set[str] = set()
        self._abort_flush: asyncio.Task[None] | None = None
        self._marker = f"{PREFIX}queue:{queue}:producer:{uuid.uuid4().hex}"
        self._marker_set = False
        self._resend = False  # Redis forgot the jobs: send them again on the next connection
        self._sent: set[str] = set()  # jobs enqueued at least once
        self._worker_seen = 0.0  # monotonic time a compatible worker was last seen alive
        self._worker_checked = 0.0
        self._connected_at = 0.0  # workers get no_worker_timeout to show up after a reconnect

    def __repr__(self) -> str:
        return f"QueueExecutor({redact_url(self.url)!r})"

    # -- streaq's keys -------------------------------------------------------------------------

    @staticmethod
    def _channel(queue: Any, task_id: str) -> str:
        from streaq.constants import REDIS_CHANNEL

        return f"{queue.prefix}{REDIS_CHANNEL}{task_id}"

    @staticmethod
    def _abort_key(queue: Any) -> str:
        from streaq.constants import REDIS_ABORT

        return f"{queue.prefix}{REDIS_ABORT}"

    # -- the connection and its listener -------------------------------------------------------

    async def _connection(self) -> tuple[Any, Any]:
        """The current (queue, pub/sub), once the listener has it; ``QueueError`` if the
        listener gave up on Redis."""
        while True:
            if self._conn is not None:
                return self._conn
            if self._listener is None or self._listener.done():
                self._closing = False
                self._ready = asyncio.get_running_loop().create_future()
                self._listener = asyncio.create_task(self._listen_forever())
            assert self._ready is not None
            await asyncio.shield(self._ready)

    def _set_ready(self, exc: BaseException | None = None) -> None:
        ready = self._ready
        if ready is None or ready.done():
            ready = self._ready = asyncio.get_running_loop().create_future()
        if exc is None:
            ready.set_result(None)
        else:
            ready.set_exception(exc)
            ready.exception()  # retrieved: nobody may be waiting for it right now

    def _unready(self) -> None:
        self._conn = None
        if self._ready is None or self._ready.done():
            self._ready = asyncio.get_running_loop().create_future()

    async def _listen_forever(self) -> None:
        """Connect, listen; on trouble reconnect, until closed or ``reconnect_timeout``."""
        from coredis.patterns.pubsub import PubSub
        from coredis.retry import NoRetryPolicy

        while True:
            try:
                # coredis ties a client's connections to the task that opened it: this task
                # holds both; the analyze() tasks only use them.
                queue = make_queue(self.settings)
                async with queue:  # connects and loads streaq's Redis functions
                    pubsub = PubSub(
                        queue.redis.connection_pool,
                        ignore_subscribe_messages=True,
                        # a lost connection ends the listener (which reconnects and catches
                        # up) rather than being quietly re-made with messages lost meanwhile
                        retry_policy=NoRetryPolicy(),
                        subscription_timeout=5,
                        unsubscription_timeout=5,
                        max_idle_seconds=5,
                    )
                    async with pubsub:
                        await self._resume(queue, pubsub)
                        self._conn = (queue, pubsub)
                        self._connected_once = True
                        self._failing_since = None
                        self._set_ready()
                        await self._listen(queue, pubsub)
                return  # closed
            except _Reconnect:
                self._unready()
                continue
            except Exception as exc:
                self._unready()
                if cancel_requested():
                    # anyio's task groups (coredis's pool and pub/sub) turn a cancel of this
                    # task into their children's errors: reconnecting here would outlive the
                    # cancel, and a loop shutting down would wait for this task forever.
                    raise asyncio.CancelledError from exc
                try:
                    self._check_failing(exc)
                except QueueError as err:
                    self._fail_all(err)
                    self._set_ready(err)
                    return
                await asyncio.sleep(0.5)
            finally:
                self._unready()

    def _check_failing(self, exc: BaseException) -> None:
        """Redis failed under us: wait a little more, or ``QueueError``."""
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        reason = _reason(exc, self.url)
        where = redact_url(self.url)
        if not self._connected_once:
            raise QueueError(f"cannot reach the queue's Redis at {where}: {reason}") from None
        if now - self._failing_since > self.reconnect_timeout:
            raise QueueError(
                f"lost the queue's Redis at {where} for {self.reconnect_timeout:g} s: {reason}"
            ) from None

    async def _resume(self, queue: Any, pubsub: Any) -> None:
        """On a (new) connection: listen for every job out, then catch up on what finished
        or was forgotten while we were away."""
        self._connected_at = time.monotonic()
        ids = list(self._waiting)
        if ids:
            await pubsub.subscribe(*(self._channel(queue, i) for i in ids))
        self._unsubscribe.clear()  # a new connection has only the channels above
        await self._sweep(queue, resumed=True)

    async def _listen(self, queue: Any, pubsub: Any) -> None:
        prefix = len(self._channel(queue, ""))
        next_sweep = time.monotonic() + self.poll
        while True:
            raise_if_cancelled()  # (lost in a redis-py call of the sweep: see _cancel)
            if self._closing:
                # unsubscribed before leaving: pub/sub's exit waits for the acks otherwise
                if pubsub.channels:
                    await pubsub.unsubscribe(*list(pubsub.channels))
                return
            if self._restart:
                self._restart = False
                raise _Reconnect
            if self._unsubscribe:
                channels = [self._channel(queue, i) for i in self._unsubscribe]
                self._unsubscribe.clear()
                await pubsub.unsubscribe(*channels)
            wait = min(0.5, max(0.0, next_sweep - time.monotonic()))
            msg = await pubsub.get_message(timeout=wait)
            if msg is not None and msg["type"] == "message":
                self._settle(str(msg["channel"])[prefix:], msg["data"])
            if time.monotonic() >= next_sweep:
                if self._waiting:
                    await self._sweep(queue)
                next_sweep = time.monotonic() + self.poll

    async def _sweep(self, queue: Any, *, resumed: bool = False) -> None:
        """For all jobs out at once: results already stored (a message missed), Redis's memory
        (our marker key gone: it restarted without persistence, so send the jobs it forgot
        again) and the workers (none alive: fail the jobs with ``NoWorkerError``)."""
        ids = [i for i, fut in self._waiting.items() if not fut.done()]
        async with queue.redis.pipeline(transaction=False) as pipe:
            stored = pipe.mget([queue.results_key + i for i in ids]) if ids else None
            previous = pipe.set(self._marker, "1", ex=MARKER_TTL, get=True)
        if stored is not None:
            for task_id, raw in zip(ids, await stored, strict=True):
                if raw:
                    self._settle(task_id, raw)
        forgotten = self._marker_set and await previous is None
        self._marker_set = True
        if forgotten and not resumed:
            # The functions streaq loaded went with Redis's memory: reconnect, which loads
            # them again and comes back here to send the jobs.
            self._resend = True
            raise _Reconnect
        if forgotten or (resumed and self._resend):
            self._resend = False
            await self._send_again(queue)
        if ids:
            try:
                await self._check_workers(wait=False)
            except NoWorkerError as exc:
                self._fail_all(exc)

    async def _send_again(self, queue: Any) -> None:
        """Send the jobs Redis no longer has (neither queued nor finished), under their ids."""
        ids = [i for i, fut in self._waiting.items() if not fut.done() and i in self._sent]
        if not ids:
            return
        async with queue.redis.pipeline(transaction=False) as pipe:
            held = [pipe.exists([queue.task_key + i, queue.results_key + i]) for i in ids]
        lost = [i for i, h in zip(ids, held, strict=True) if not await h]
        if not lost:
            return
        log.info("newsdesk: Redis forgot %d queued job(s); sending them again", len(lost))
        tasks = []
        for task_id in lost:
            task = queue.registry[TASK].enqueue(self._payloads[task_id])
            task.id = task_id
            tasks.append(task)
        await queue.enqueue_many(tasks)

    def _settle(self, task_id: str, raw: Any) -> None:
        fut = self._waiting.get(task_id)
        if fut is None or fut.done():
            return
        try:
            record = loads(raw)
            fut.set_result(record["r"])  # streaq's record: "r" is the result or the failure
        except (ValueError, KeyError, TypeError):
            fut.set_exception(QueueError("the queue sent an unreadable result"))

    def _fail_all(self, exc: QueueError) -> None:
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(type(exc)(str(exc)))

    # -- workers -------------------------------------------------------------------------------

    async def _check_workers(self, *, wait: bool) -> None:
        """Return when a compatible worker is alive; raise NoWorkerError when none has been for
        ``no_worker_timeout`` (``wait``: poll until then; else judge from the last sighting)."""
        started = time.monotonic()
        while True:
            raise_if_cancelled()
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
            # waiting: give workers no_worker_timeout from now; else judge from the last
            # sighting (jobs are out: a worker was alive when they were sent) or from the
            # last reconnect (a restarted Redis lost the registry until the next heartbeats)
            since = max(self._worker_seen, started if wait else self._connected_at)
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

    async def _submit(self, task_id: str, payload: str) -> None:
        """Listen for the job's result, then enqueue it (in that order: a result published
        before we listen would be missed until the next sweep)."""
        failing: float | None = None
        while True:
            conn = await self._connection()
            queue, pubsub = conn
            try:
                await pubsub.subscribe(self._channel(queue, task_id))
                task = queue.registry[TASK].enqueue(payload)
                task.id = task_id  # our id: sending it again after a Redis restart is a no-op
                self._sent.add(task_id)
                await task
                return
            except NewsdeskError:
                raise
            except Exception as exc:
                now = time.monotonic()
                failing = failing or now
                if now - failing > self.reconnect_timeout:
                    reason = _reason(exc, self.url)
                    raise QueueError(
                        f"lost the queue's Redis at {redact_url(self.url)} for "
                        f"{self.reconnect_timeout:g} s: {reason}"
                    ) from None
                if self._conn is conn:
                    self._restart = True  # the listener opens a fresh connection
                await asyncio.sleep(0.5)

    def _forget(self, task_id: str) -> None:
        self._waiting.pop(task_id, None)
        self._payloads.pop(task_id, None)
        self._sent.discard(task_id)
        self._unsubscribe.add(task_id)

    def _abort_soon(self, task_id: str) -> asyncio.Task[None]:
        """Abort ``task_id`` in the queue, together with the others cancelled at this moment
        (a deadline cancels a whole run's jobs at once)."""
        self._to_abort.add(task_id)
        if self._abort_flush is None or self._abort_flush.done():
            self._abort_flush = asyncio.create_task(self._flush_aborts())
        return self._abort_flush

    async def _flush_aborts(self) -> None:
        await asyncio.sleep(0)  # the other jobs cancelled in this same moment join in
        ids = list(self._to_abort)
        self._to_abort.clear()
        conn = self._conn
        if not ids or conn is None:
            return  # no Redis: nothing can be aborted; their results expire unread
        queue = conn[0]
        key = self._abort_key(queue)
        try:
            async with asyncio.timeout(5):
                # streaq's abort: a worker skips a queued job in the set and stops a running
                # one. A job that had finished, or was never sent, must not stay in the set.
                async with queue.redis.pipeline(transaction=False) as pipe:
                    pipe.sadd(key, ids)
                    done = [pipe.exists([queue.results_key + i]) for i in ids]
                    queued = [pipe.exists([queue.task_key + i]) for i in ids]
                stale = [
                    i for i, d, q in zip(ids, done, queued, strict=True) if await d or not await q
                ]
                if stale:
                    await queue.redis.srem(key, stale)
        except Exception as exc:
            log.info("newsdesk: could not abort %d job(s) in the queue: %s", len(ids), exc)

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
        self,
        job: AnalysisJob,
        on_delta: Callable[[str], None] | None = None,
        *,
        llm_slot: AbstractAsyncContextManager[Any] | None = None,
    ) -> AnalysisResult:
        """Run ``job`` on a worker, holding ``llm_slot`` (the run's provider slot) until its
        result is back. ``on_delta`` is not called: a remote result arrives whole."""
        async with llm_slot if llm_slot is not None else contextlib.nullcontext():
            return await self._run_on_worker(job)

    async def _run_on_worker(self, job: AnalysisJob) -> AnalysisResult:
        await self._check_workers(wait=True)
        raise_if_cancelled()  # a cancelled run sends nothing more
        payload = job_payload(job)
        loop = asyncio.get_running_loop()
        for _ in range(3):
            task_id = uuid.uuid4().hex
            fut: asyncio.Future[Any] = loop.create_future()
            self._waiting[task_id] = fut
            self._payloads[task_id] = payload
            try:
                await self._submit(task_id, payload)
                raw = await fut
            except BaseException:
                # cancelled (which cancels the future too) or failed on our side: the job may
                # still be queued or running, so abort it; a job with its result is finished
                if not (fut.done() and not fut.cancelled() and fut.exception() is None):
                    await asyncio.shield(self._abort_soon(task_id))
                raise
            finally:
                self._forget(task_id)
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
        out = [i for i, fut in self._waiting.items() if not fut.done()]
        for task_id in out:
            self._abort_soon(task_id)
        if self._abort_flush is not None:
            await asyncio.gather(self._abort_flush, return_exceptions=True)
        self._fail_all(QueueError("the queue executor was closed"))
        listener, self._listener = self._listener, None
        if listener is not None:
            self._closing = True
            await asyncio.wait({listener}, timeout=3)  # it notices within 0.5 s
            # (if it was still connecting or waiting to reconnect)
            await stop_task(listener, 3)
        self._conn = None


def _reason(exc: BaseException, url: str) -> str:
    """``Type: message`` of the first real error (anyio wraps the pub/sub task's in a group),
    without the URL's password."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return redact_text(f"{type(exc).__name__}: {exc}", url)


def _expired(raw: Any) -> bool:
    """streaq's failure record for a job whose data was gone when a delivery started."""
    if not isinstance(raw, dict) or "__exception__" not in raw:
        return False
    return "expired" in f"{raw.get('message')} {raw['__exception__']}".lower()
