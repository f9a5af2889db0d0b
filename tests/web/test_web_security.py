"""A hostile web user against a running ``newsdesk web`` (issue #12), through gradio_client.

One app process for the module, set up as an operator would: a canary server key in the
environment, its own ``--api-base`` (the operator's provider), one ``--allow-api-base``, a login,
and private sources refused (the default). Three fake OpenAI servers on 127.0.0.1 play the
operator's provider, the allowed extra base, and a user's own server that records what
Authorization it was sent.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from gradio_client import Client

from newsdesk.news._fetch import REFUSED_PRIVATE
from newsdesk.web._security import NO_SERVER_KEY
from tests.servers.plugin import OpenAIServerHandle, start_openai_server
from tests.web.conftest import WebServer, start_web

pytestmark = pytest.mark.timeout(240)

CANARY = "sk-canary-7d1e0b9a4c"  # the server's own key: must reach only trusted bases
USER = ("ann", "s3cret")


def shown(markdown: str) -> str:
    """Roughly what a Markdown string displays: escapes undone."""
    import re

    return re.sub(r"\\(.)", r"\1", markdown)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def evil() -> Iterator[OpenAIServerHandle]:
    """A base a web user types in: it records every Authorization header it is sent."""
    with start_openai_server() as server:
        yield server


@pytest.fixture(scope="module")
def allowed() -> Iterator[OpenAIServerHandle]:
    """A second base the operator allowed with --allow-api-base."""
    with start_openai_server() as server:
        yield server


@pytest.fixture(scope="module")
def app(openai_server_proc: OpenAIServerHandle, allowed: OpenAIServerHandle) -> Iterator[WebServer]:
    with start_web(
        openai_server_proc.url,
        "--allow-api-base",
        allowed.url,
        "--auth",
        f"{USER[0]}:{USER[1]}",
        allow_private=False,
        env_overrides={"OPENAI_API_KEY": CANARY},
    ) as server:
        yield server


def login(app: WebServer) -> Client:
    return Client(app.url, auth=USER, verbose=False, download_files=False)


def keys_seen(server: OpenAIServerHandle) -> list[str | None]:
    return [r.get("_api_key_sha256") for r in server.stats()["last_requests"]]


def chat(c: Client, **kw: Any) -> None:
    c.predict(message="[[reply:ok]]", history=[], api_name="/chat", **kw)


def test_server_key_goes_only_to_trusted_bases(
    app: WebServer,
    openai_server: OpenAIServerHandle,
    allowed: OpenAIServerHandle,
    evil: OpenAIServerHandle,
) -> None:
    c = login(app)
    evil.reset()
    allowed.reset()

    chat(c, api_base=evil.url)  # a base the user typed: no server key
    chat(c, api_base=evil.url, user_key="sk-users-own")  # the user's own key goes there
    chat(c)  # the operator's --api-base: the server key
    chat(c, api_base=allowed.url + "/")  # --allow-api-base (spelled with a trailing slash)

    assert keys_seen(evil) == [sha(NO_SERVER_KEY), sha("sk-users-own")]
    assert keys_seen(openai_server) == [sha(CANARY)]
    assert keys_seen(allowed) == [sha(CANARY)]
    assert CANARY not in app.log_tail(200_000)


def test_news_tab_sends_no_server_key_to_a_user_base(
    app: WebServer, evil: OpenAIServerHandle
) -> None:
    evil.reset()
    out = (
        login(app)
        .submit(
            api_name="/news_run",
            demo_sel=["Harbor City Herald"],
            urls_text="",
            uploaded=None,
            api_base=evil.url,
            max_articles=2,
            conc=1,
            want_digest=False,
            want_reanalyze=True,
            want_embeddings=False,
        )
        .result(timeout=120)
    )
    assert "Analyzed" in out[0], out[0]
    seen = keys_seen(evil)
    assert seen, out[0]
    assert seen and set(seen) == {sha(NO_SERVER_KEY)}


def test_agent_tab_sends_no_server_key_to_a_user_base(
    app: WebServer, evil: OpenAIServerHandle
) -> None:
    c = login(app)
    if "/agent" not in str(c.view_api(print_info=False, return_format="dict")):
        pytest.skip("the agents extra is not installed: no Agent tab")
    evil.reset()
    c.predict(text="What happened?", history=[], api_base=evil.url, api_name="/agent")
    seen = keys_seen(evil)
    assert seen and sha(CANARY) not in seen


def test_news_tab_refuses_private_addresses_alike(
    app: WebServer, feed_server: Any, closed_port_url: str
) -> None:
    before = feed_server.hits("/feeds/rss?k=web-ssrf")
    out = (
        login(app)
        .submit(
            api_name="/news_run",
            demo_sel=[],
            urls_text=f"{feed_server.url}/feeds/rss?k=web-ssrf\n{closed_port_url}",
            uploaded=None,
            max_articles=0,
            conc=1,
            want_digest=False,
            want_reanalyze=True,
            want_embeddings=False,
        )
        .result(timeout=60)
    )
    status = shown(out[0])
    # Both sources fail with the same words: an open port looks like a closed one.
    assert status.count("refused: private address") == 2, status
    assert "connection refused" not in status and "HTML" not in status
    assert feed_server.hits("/feeds/rss?k=web-ssrf") == before
    assert REFUSED_PRIVATE.startswith("refused: private address")


def test_failed_logins_are_slowed_then_locked_out(app: WebServer) -> None:
    # Last in the module: it locks the user out for a moment.
    with httpx.Client(trust_env=False, timeout=30) as http:

        def attempt(password: str) -> tuple[int, float]:
            t0 = time.monotonic()
            r = http.post(app.url + "/login", data={"username": USER[0], "password": password})
            return r.status_code, time.monotonic() - t0

        results = [attempt("wrong") for _ in range(5)]
        assert all(code == 400 for code, _ in results)
        assert results[-1][1] > results[0][1] and results[-1][1] >= 1.0  # growing delay
        assert sum(t for _, t in results) >= 3.0  # 200 guesses now take minutes, not 0.46 s
        # Locked: even the right password is refused for now ...
        assert attempt(USER[1])[0] == 400
        time.sleep(1.3)
        # ... and accepted once the lockout has passed.
        assert attempt(USER[1])[0] == 200


# ---------------------------------------------------------------- the pure parts


def test_key_policy() -> None:
    from newsdesk.web._security import KeyPolicy, normalize_base

    policy = KeyPolicy.of(["http://Provider.test:80/v1/", None, ""])
    assert policy.trusts(None) and policy.trusts("")
    assert policy.trusts("http://provider.test/v1")
    assert not policy.trusts("http://provider.test/v1/../evil")
    assert not policy.trusts("http://provider.test.evil.test/v1")
    assert not policy.trusts("http://user:pw@provider.test/v1")
    assert not policy.trusts("notaurl")
    assert policy.api_key_for("http://provider.test/v1") is None  # LiteLLM uses the server's
    assert policy.api_key_for("http://mine.test/v1") == NO_SERVER_KEY
    assert policy.api_key_for("http://mine.test/v1", " sk-mine ") == "sk-mine"
    assert normalize_base("HTTPS://H.test:443/") == "https://h.test"


async def test_login_guard_locks_a_name_not_its_neighbours() -> None:
    from newsdesk.web._security import LoginGuard

    guard = LoginGuard(("ann", "pw"), free=3, delay=0.0, lockout=60.0)
    assert await guard.check("ann", "pw")
    for _ in range(3):
        assert not await guard.check("ann", "nope")
    assert guard.locked("ann")
    assert not await guard.check("ann", "pw")  # locked: the right password waits too
    assert not guard.locked("bob") and not await guard.check("bob", "pw")
