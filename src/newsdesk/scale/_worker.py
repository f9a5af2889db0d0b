"""``run_worker``: one worker process serving the analysis queue.

It owns its ``Gateway`` (API keys from this process's environment: a job never carries one),
shares the Redis cache, single-flight and RPM/TPM limits with every other process, and runs
``concurrency`` analyses at once on one event loop through a ``LocalExecutor``. SIGTERM/SIGINT:
it takes no new job, gives the running ones ``grace_period`` seconds, and hands back the rest
(another worker picks them up at once). Redis lost: it reconnects until stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from newsdesk._backend import aimport_litellm
from newsdesk._client import Gateway
from newsdesk._exceptions import ConfigError, NewsdeskError
from newsdesk._wrappers import Limits
from newsdesk.news._embedding import load_embedding
from newsdesk.news._executor import AnalysisJob, LocalExecutor
from newsdesk.scale._cancel import cancel_requested, stop_task
from newsdesk.scale._errors import QueueError
from newsdesk.scale._protocol import (
    HEARTBEAT_EVERY,
    QUEUE,
    QueueSettings,
    compatibility_error,
    error_payload,
    heartbeat_entry,
    live_workers,
    loads,
    make_queue,
    result_payload,
    worker_identity,
    workers_key,
)
from newsdesk.scale._redact import check_redis_url, redact_text, redact_url
from newsdesk.scale._shared import _Clients, shared_gateway

__all__ = ["run_worker"]

Log = Callable[[str], None]


def _quiet(_line: str) -> None:
    pass


async def _heartbeat(clients: _Clients, queue: str, worker_id: str, concurrency: int) -> None:
    """Tell producers this worker is alive (and which versions it runs), every second."""
    key = workers_key(queue)
    while not cancel_requested():  # (a cancel can be lost in redis-py: see _cancel)
        with contextlib.suppress(Exception):
            client = clients.get()
            await client.hset(key, worker_id, heartbeat_entry(worker_id, concurrency))
            _live, dead = live_workers(await client.hgetall(key))
            if dead:
                await client.hdel(key, *dead)
        await asyncio.sleep(HEARTBEAT_EVERY)


def _handler(executor: LocalExecutor, worker_id: str, log: Log, verbose: bool) -> Any:
    async def analyze(payload: str) -> str:
        started = time.perf_counter()
        try:
            data = loads(payload)
            if (why := compatibility_error(data)) is not None:
                raise ConfigError(why)
            job = AnalysisJob.model_validate(data["job"])
            result = await executor.analyze(job)
        except NewsdeskError as exc:
            if verbose:
                log(f"failed: {exc}")
            return error_payload(exc, worker_id)
        except (ValueError, KeyError, TypeError) as exc:
            return error_payload(QueueError(f"unreadable job: {type(exc).__name__}"), worker_id)
        except Exception as exc:  # a bug costs this job, never the worker
            return error_payload(
                NewsdeskError(f"unexpected {type(exc).__name__}: {exc}"), worker_id
            )
        if verbose:
            log(
                f"done {job.article.id[:12]} {job.article.title[:60]!r} in {time.perf_counter() - started:.2f} s"
                + (" (cached)" if result.cached else "")
            )
        return result_payload(result, worker_id)

    return analyze


async def run_worker(
    queue_url: str,
    concurrency: int = 4,
    *,
    cache: str | None = None,
    rpm: float | None = None,
    tpm: float | None = None,
    rate_window: float = 60.0,
    redeliver_after: float = 15.0,
    grace_period: int = 30,
    embeddings: bool = True,
    queue: str = QUEUE,
    gateway: Gateway | None = None,
    log: Log = _quiet,
    verbose: bool = False,
) -> None:
    """Serve the queue at ``queue_url`` until SIGTERM/SIGINT. ``cache``: an ``open_cache`` spec
    (default: the queue's Redis, shared by all workers); ``rpm``/``tpm``: limits for all workers
    together (per ``rate_window`` seconds)."""
    check_redis_url(queue_url)
    if concurrency < 1:
        raise ConfigError("concurrency must be at least 1")
    where = redact_url(queue_url)
    # Both block for seconds: done before the queue starts, so no job's lease lapses meanwhile.
    await aimport_litellm()
    embedding = await asyncio.to_thread(load_embedding, embeddings)
    shared_url = (
        cache if cache and cache.startswith(("redis://", "rediss://", "unix://")) else queue_url
    )
    gw = gateway or shared_gateway(
        shared_url,
        cache=cache,
        limits=Limits(concurrency=concurrency, rpm=rpm, tpm=tpm),
        rate_window=rate_window,
    )
    executor = LocalExecutor(gw, embedding=embedding)
    worker_id = worker_identity()
    settings = QueueSettings(queue_url, queue, redeliver_after)
    clients = _Clients(queue_url)
    beat = asyncio.create_task(_heartbeat(clients, queue, worker_id, concurrency))
    log(
        f"worker {worker_id} serving {where} (concurrency {concurrency}"
        + (", embeddings" if embedding is not None else ", no embeddings")
        + (f", rpm {rpm:g}" if rpm else "")
        + (f", tpm {tpm:g}" if tpm else "")
        + ")"
    )
    try:
        while True:
            streaq_worker = make_queue(
                settings,
                _handler(executor, worker_id, log, verbose),
                concurrency=concurrency,
                grace_period=grace_period,
                handle_signals=True,
                worker_id=worker_id,
            )
            try:
                await streaq_worker.run_async()
                break  # a signal stopped it
            except Exception as exc:
                reason = redact_text(f"{type(exc).__name__}: {exc}", queue_url)
                log(f"lost the queue at {where} ({reason}); reconnecting in 1 s")
                await asyncio.sleep(1.0)
    finally:
        await stop_task(beat, 5.0)
        with contextlib.suppress(Exception):
            await clients.get().hdel(workers_key(queue), worker_id)
        await executor.aclose()
        await gw.aclose()
        log(f"worker {worker_id} stopped")
