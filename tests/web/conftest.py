"""Fixtures for the web app tests: one ``newsdesk web`` server process for the module's tests,
on a free 127.0.0.1 port, with its own NEWSDESK_HOME, pointed at the fake OpenAI server."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import CLEARED_ENV, NEWSDESK, cli_env, free_port, isolated_env
from tests.servers.plugin import OpenAIServerHandle

pytest.importorskip("gradio", reason="the web extra is not installed: pip install 'newsdesk[web]'")
pytest.importorskip("gradio_client", reason="gradio_client is not installed")

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
TEST_MODEL = "openai/test-model"
START_TIMEOUT = 120.0


class WebServer:
    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path, home: Path) -> None:
        self.url = url
        self.process = process
        self.log = log
        self.home = home

    def log_tail(self, chars: int = 6000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-chars:]
        return ""

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@contextlib.contextmanager
def start_web(
    api_base: str,
    *extra: str,
    allow_private: bool = True,
    env_overrides: dict[str, str] | None = None,
) -> Iterator[WebServer]:
    """``newsdesk web`` in a subprocess. ``allow_private``: pass ``--allow-private-sources``
    (the tests' feeds are served from 127.0.0.1, which the app refuses by default)."""
    home = Path(tempfile.mkdtemp(prefix="newsdesk-web-home-"))
    port = free_port()
    log = home / "server.log"
    # A session-wide process, so it cannot use the per-test home fixture: it gets its own.
    env = {
        **{k: v for k, v in cli_env().items() if k not in CLEARED_ENV},
        **isolated_env(home, home / "user"),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "PYTHONUNBUFFERED": "1",
        **(env_overrides or {}),
    }
    cmd = [
        str(NEWSDESK),
        "web",
        "--port",
        str(port),
        "--model",
        TEST_MODEL,
        "--api-base",
        api_base,
        "--cache",
        "off",
        *(["--allow-private-sources"] if allow_private else []),
        *extra,
    ]
    with log.open("wb") as fh:
        process = subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    server = WebServer(f"http://127.0.0.1:{port}", process, log, home)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(trust_env=False, timeout=2) as client:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"newsdesk web exited with {process.returncode}:\n{server.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    # 200, or 401 when the app asks for a login: either way it is serving.
                    if client.get(server.url + "/config").status_code in (200, 401):
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"newsdesk web did not start in {START_TIMEOUT:.0f} s:\n{server.log_tail()}"
                    )
                time.sleep(0.2)
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def web_server(openai_server_proc: OpenAIServerHandle) -> Iterator[WebServer]:
    """The app under test, shared by the web tests (each uses its own gradio_client session)."""
    from gradio_client import Client

    with start_web(openai_server_proc.url) as server:
        # One throwaway chat: LiteLLM's first call pays one-time setup that would blur timings.
        Client(server.url, verbose=False).predict(message="warm up", history=[], api_name="/chat")
        yield server


@pytest.fixture
def web(web_server: WebServer, openai_server: OpenAIServerHandle) -> WebServer:
    """The shared app, with the fake provider reset for this test."""
    if web_server.process.poll() is not None:
        pytest.fail("the web app died:\n" + web_server.log_tail(), pytrace=False)
    return web_server


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
