"""Fixtures for the news tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _newsdesk_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Every test gets its own NEWSDESK_HOME: no test reads or writes a real cache or store."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("NEWSDESK_HOME", str(home))
    for var in ("NEWSDESK_MODEL", "NEWSDESK_FAST_MODEL", "NEWSDESK_STRONG_MODEL"):
        monkeypatch.delenv(var, raising=False)
    yield
