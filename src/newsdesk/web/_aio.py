"""Async plumbing for the event handlers: closing streams for sure, and pacing UI updates.

Both live in ``newsdesk._concurrency`` (``aclosing``, ``paced``); these are the names the web
handlers use.
"""

from __future__ import annotations

from newsdesk._concurrency import aclosing as closing
from newsdesk._concurrency import paced

__all__ = ["closing", "paced"]
