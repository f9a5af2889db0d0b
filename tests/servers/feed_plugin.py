"""pytest fixtures for the local feed server. Register with ``pytest_plugins = ["tests.servers.feed_plugin"]``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import free_port
from tests.servers.feed_server import FeedServer, start_feed_server


@pytest.fixture(scope="session")
def feed_server() -> Iterator[FeedServer]:
    """One real HTTP feed server on 127.0.0.1 for the whole session (see feed_server.py for routes)."""
    with start_feed_server() as server:
        yield server


@pytest.fixture
def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_port()}/feed"
