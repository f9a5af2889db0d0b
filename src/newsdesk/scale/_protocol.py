"""What producers and workers agree on: the queue (a streaq ``Worker`` over Redis streams), the
JSON on the wire, versions, and the registry of live workers.

Everything on the wire is JSON (not streaq's default pickle): a worker never unpickles what
someone else put in Redis. A job is ``{"job": AnalysisJob, "newsdesk": version}``; a result is
``{"ok": AnalysisResult}`` or ``{"error": {"type", "message"}}`` plus the worker's id.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from newsdesk import __version__
from newsdesk._exceptions import (
    BadResponse,
    ConfigError,
    MissingAPIKeyError,
    NewsdeskError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    StoreError,
    TruncatedAnswer,
    UnknownModelError,
    UserError,
)
from newsdesk.news._analyze import AnalysisResult
from newsdesk.news._executor import AnalysisJob
from newsdesk.news._prompt import PROMPT_VERSION
from newsdesk.scale._errors import QueueError
from newsdesk.scale._shared import PREFIX

QUEUE = "newsdesk-analysis"
TASK = "newsdesk.analyze"
HEARTBEAT_EVERY = 1.0  # seconds between a worker's "still here"
HEARTBEAT_TTL = (
    10.0  # a worker silent this long is gone (generous: a starved loop is not a dead worker)
)
MAX_TRIES = 5  # deliveries of one job before it is given up (a job that kills every worker)


def workers_key(queue: str = QUEUE) -> str:
    return f"{PREFIX}queue:{queue}:workers"


@dataclass(frozen=True)
class QueueSettings:
    """``redeliver_after``: a job whose worker went silent (killed, frozen) is given to another
    worker after about this long (streaq's idle timeout; a live worker renews its jobs at 90 %
    of it, so a running job is never taken away from it)."""

    url: str
    queue: str = QUEUE
    redeliver_after: float = 15.0


# ---------------------------------------------------------------- the wire


def _default(obj: Any) -> Any:
    # streaq puts the exception in a failed task's record; keep its name and message only.
    if isinstance(obj, BaseException):
        return {"__exception__": type(obj).__name__, "message": str(obj)}
    if isinstance(obj, bytes):
        return {"__bytes__": base64.b64encode(obj).decode()}
    raise TypeError(f"cannot send {type(obj).__name__} through the queue")


def dumps(obj: Any) -> str:
    return json.dumps(obj, default=_default, separators=(",", ":"))


def loads(raw: str | bytes) -> Any:
    return json.loads(raw)


def job_payload(job: AnalysisJob) -> str:
    return dumps({"job": job.model_dump(mode="json"), "newsdesk": __version__})


def compatibility_error(payload: dict[str, Any]) -> str | None:
    """Why this worker must not run the job, or None. Different code or prompt would give a
    result the run stores under the wrong version."""
    job = payload.get("job") or {}
    theirs = (payload.get("newsdesk"), job.get("prompt_version"))
    ours = (__version__, PROMPT_VERSION)
    if theirs != ours:
        return (
            f"version mismatch: the run is newsdesk {theirs[0]} / prompt {theirs[1]}, this worker "
            f"newsdesk {ours[0]} / prompt {ours[1]}"
        )
    return None


def result_payload(result: AnalysisResult, worker: str) -> str:
    data = result.model_dump(mode="json", exclude={"vector"})
    vector = base64.b64encode(result.vector).decode() if result.vector is not None else None
    return dumps({"ok": data, "vector": vector, "worker": worker})


def error_payload(exc: BaseException, worker: str) -> str:
    return dumps({"error": {"type": type(exc).__name__, "message": str(exc)}, "worker": worker})


# Errors re-raised on the producer's side as the same class (constructible from a message).
_ERRORS: dict[str, type[NewsdeskError]] = {
    cls.__name__: cls
    for cls in (
        UserError,
        ConfigError,
        UnknownModelError,
        MissingAPIKeyError,
        ProviderError,
        ProviderTimeout,
        RateLimited,
        ProviderUnavailable,
        BadResponse,
        TruncatedAnswer,
        StoreError,
    )
}


def decode_result(raw: Any) -> AnalysisResult:
    """The worker's answer as an ``AnalysisResult``, or its failure raised as a NewsdeskError."""
    if isinstance(raw, dict) and "__exception__" in raw:
        # streaq's own failure record (the job given up after MAX_TRIES deliveries, aborted ...)
        raise QueueError(
            f"the queue gave up on the job: {raw.get('message') or raw['__exception__']}"
        )
    if isinstance(raw, str):
        raw = loads(raw)
    if not isinstance(raw, dict):
        raise QueueError("the worker sent an unreadable result")
    if "error" in raw:
        err = raw["error"]
        cls = _ERRORS.get(str(err.get("type")), NewsdeskError)
        raise cls(str(err.get("message") or err.get("type")))
    vector = raw.get("vector")
    return AnalysisResult.model_validate(
        {**raw["ok"], "vector": base64.b64decode(vector) if vector else None}
    )


# ---------------------------------------------------------------- streaq


Handler = Callable[[str], Awaitable[str]]


async def _nobody(payload: str) -> str:  # the producer's copy of the task: never run
    raise RuntimeError("the producer does not run jobs")


def make_queue(
    settings: QueueSettings,
    handler: Handler | None = None,
    *,
    concurrency: int = 1,
    grace_period: int = 0,
    handle_signals: bool = False,
    worker_id: str | None = None,
) -> Any:
    """The streaq ``Worker`` for ``settings`` with the analysis task registered (a worker passes
    its ``handler``; a producer uses the same object only to enqueue and await)."""
    try:
        from streaq import Worker
    except ImportError as exc:
        from newsdesk._exceptions import MissingExtraError

        raise MissingExtraError("the job queue", "queue") from exc

    queue = Worker(
        redis_url=settings.url,
        redis_kwargs={"connect_timeout": 3},
        concurrency=concurrency,
        queue_name=settings.queue,
        serializer=dumps,
        deserializer=loads,
        idle_timeout=settings.redeliver_after,
        grace_period=grace_period,
        handle_signals=handle_signals,
        id=worker_id,
    )
    # ttl: a finished result waits this long in Redis for a producer that was reconnecting.
    queue.task(name=TASK, max_tries=MAX_TRIES, ttl=600, silent=True)(handler or _nobody)
    return queue


def worker_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def heartbeat_entry(worker_id: str, concurrency: int) -> str:
    return json.dumps(
        {
            "id": worker_id,
            "newsdesk": __version__,
            "prompt": PROMPT_VERSION,
            "concurrency": concurrency,
            "expires": time.time() + HEARTBEAT_TTL,
        }
    )


def live_workers(entries: dict[Any, Any]) -> tuple[list[dict[str, Any]], list[Any]]:
    """(live workers, fields of the dead ones) from the registry hash."""
    now = time.time()
    live: list[dict[str, Any]] = []
    dead: list[Any] = []
    for field, raw in entries.items():
        try:
            info = json.loads(raw)
            alive = float(info["expires"]) > now
        except (ValueError, KeyError, TypeError):
            alive = False
        if alive:
            live.append(info)
        else:
            dead.append(field)
    return live, dead


def compatible(info: dict[str, Any]) -> bool:
    return info.get("newsdesk") == __version__ and info.get("prompt") == PROMPT_VERSION
