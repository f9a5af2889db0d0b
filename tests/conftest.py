"""Shared fixtures. Tests never reach the internet: every server they talk to is started here on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import CLEARED_ENV, isolated_env

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

pytest_plugins = ["tests.servers.plugin", "tests.servers.feed_plugin"]


@pytest.fixture(autouse=True)
def home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Every test gets its own NEWSDESK_HOME (yielded), its own user home and the test key:
    nothing reads or writes a real cache, store or config, in process or in the subprocesses a
    test starts (they inherit the environment)."""
    newsdesk_home = tmp_path_factory.mktemp("home")
    for var, value in isolated_env(newsdesk_home, tmp_path_factory.mktemp("user")).items():
        monkeypatch.setenv(var, value)
    for var in CLEARED_ENV:
        monkeypatch.delenv(var, raising=False)
    yield newsdesk_home
