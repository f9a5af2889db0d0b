"""Fixtures for the agent tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("smolagents")


@pytest.fixture(autouse=True)
def home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Every test gets its own NEWSDESK_HOME: no test reads or writes a real cache or store."""
    path = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("NEWSDESK_HOME", str(path))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    for var in ("NEWSDESK_MODEL", "NEWSDESK_FAST_MODEL", "NEWSDESK_STRONG_MODEL"):
        monkeypatch.delenv(var, raising=False)
    yield path
