"""Errors of the scale-out layer (part of the ``NewsdeskError`` tree)::

NewsdeskError
└── QueueError            the queue could not run the job (Redis lost, job given up)
    └── NoWorkerError     no compatible worker is serving the queue
"""

from __future__ import annotations

from newsdesk._exceptions import NewsdeskError


class QueueError(NewsdeskError):
    """The job queue failed (not the analysis itself). The message never carries a password."""


class NoWorkerError(QueueError):
    """Nobody is there to run the jobs: start ``newsdesk worker --queue URL``."""
