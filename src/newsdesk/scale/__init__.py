"""Scale-out: analyze on many worker processes and machines through a Redis job queue (streaq),
with the cache, single-flight and RPM/TPM limits shared through the same Redis.

    from newsdesk.scale import QueueExecutor       # the run's side: enqueue, await results
    from newsdesk.scale import run_worker          # the worker's side (``newsdesk worker``)

Needs the ``queue`` extra (``pip install 'newsdesk[queue]'``) and Redis >= 7.
"""

from newsdesk.scale._errors import NoWorkerError, QueueError
from newsdesk.scale._executor import QueueExecutor
from newsdesk.scale._redact import redact_url
from newsdesk.scale._shared import GlobalLimitBackend, RedisSingleFlightBackend, shared_gateway
from newsdesk.scale._worker import run_worker

__all__ = [
    "GlobalLimitBackend",
    "NoWorkerError",
    "QueueError",
    "QueueExecutor",
    "RedisSingleFlightBackend",
    "redact_url",
    "run_worker",
    "shared_gateway",
]
