"""What the web app does to protect the server's secrets and network from its users.

Web users are untrusted (anyone on the machine at the default bind; anyone logged in with
``--auth``). Three rules live here, as small pure parts the tabs and ``serve`` hook in:

- ``KeyPolicy``: the server's API keys (``OPENAI_API_KEY``...) go only to a provider's own
  endpoint or to a base the operator allowed (``--api-base``, ``--allow-api-base``). A base a
  user typed gets no server key: the user's own key if they gave one, else a placeholder, so
  LiteLLM cannot fall back to the key in the server's environment.
- ``KeyGuardBackend``: that rule applied to every request of the web's ``Gateway`` (Chat, News),
  so a tab cannot forget it.
- ``LoginGuard``: failed logins are slowed and then locked out per user name.

Private addresses (SSRF) are refused by the fetcher itself: ``NewsDesk(private_sources=False)``.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from newsdesk._backend import Backend, StreamItem
    from newsdesk._request import Request
    from newsdesk._response import Completion

__all__ = ["NO_SERVER_KEY", "KeyPolicy", "KeyGuardBackend", "LoginGuard", "normalize_base"]

# Sent instead of a key to a base a user chose: LiteLLM reads the provider's key from the
# environment whenever ``api_key`` is empty, so "no key" has to be an explicit non-key.
NO_SERVER_KEY = "no-server-key"

_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_base(api_base: str) -> str:
    """One spelling per endpoint: lowercase scheme and host, no default port, no trailing slash.

    Anything that does not parse as an http(s) URL with a host normalizes to itself (stripped):
    it can still be compared, and it will never equal an allowed base by accident.
    """
    text = api_base.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return text
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host or parts.username or parts.password:
        return text
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = parts.path.rstrip("/")
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{path}{query}"


@dataclass(frozen=True)
class KeyPolicy:
    """Which API bases may receive the server's own API keys.

    ``None`` (the provider's own endpoint, as LiteLLM or the server's environment picks it) is
    always trusted; any other base only if the operator listed it.
    """

    allowed: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, bases: Iterable[str | None]) -> KeyPolicy:
        return cls(frozenset(normalize_base(b) for b in bases if b and b.strip()))

    def trusts(self, api_base: str | None) -> bool:
        """May a request to ``api_base`` carry the server's keys?"""
        if api_base is None or not api_base.strip():
            return True
        return normalize_base(api_base) in self.allowed

    def api_key_for(self, api_base: str | None, user_key: str | None = None) -> str | None:
        """The ``api_key`` to send: the user's own if given; None (LiteLLM uses the server's
        key) for a trusted base; otherwise a placeholder that is no key at all."""
        if user_key and user_key.strip():
            return user_key.strip()
        return None if self.trusts(api_base) else NO_SERVER_KEY


class KeyGuardBackend:
    """Applies a ``KeyPolicy`` to every request before it reaches the provider (wrap the
    innermost backend, so fallbacks and retries are covered too)."""

    def __init__(self, inner: Backend, policy: KeyPolicy) -> None:
        self.inner = inner
        self.policy = policy

    def _guard(self, request: Request) -> Request:
        if request.api_key is not None or request.model.startswith("local/"):
            return request
        from pydantic import SecretStr

        key = self.policy.api_key_for(request.api_base)
        if key is None:
            return request
        # model_copy does not validate: hand it the SecretStr the field holds.
        return request.model_copy(update={"api_key": SecretStr(key)})

    async def complete(self, request: Request) -> Completion:
        return await self.inner.complete(self._guard(request))

    async def stream(self, request: Request) -> AsyncIterator[StreamItem]:
        async for item in self.inner.stream(self._guard(request)):
            yield item


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0


class LoginGuard:
    """Checks ``--auth`` credentials; failed logins for a user name are slowed down, and after
    ``free`` failures the name is locked out for a period that doubles with each further failure
    (up to ``max_lockout`` seconds) — even the right password is refused while locked. A success
    clears the count.

    Pass ``guard.check`` (an async function: Gradio awaits it, so a delay never blocks the server)
    as Gradio's ``auth``.
    """

    def __init__(
        self,
        credentials: tuple[str, str],
        *,
        free: int = 5,
        delay: float = 0.25,
        max_delay: float = 2.0,
        lockout: float = 1.0,
        max_lockout: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        max_names: int = 10_000,
    ) -> None:
        from cachetools import LRUCache

        self._user, self._password = credentials
        self.free = free
        self.delay = delay
        self.max_delay = max_delay
        self.lockout = lockout
        self.max_lockout = max_lockout
        self._clock = clock
        # Bounded: an attacker trying a million user names must not grow the server's memory.
        self._failures: LRUCache[str, _Failures] = LRUCache(maxsize=max_names)

    def locked(self, username: str) -> bool:
        entry = self._failures.get(username)
        return entry is not None and entry.locked_until > self._clock()

    async def check(self, username: str, password: str) -> bool:
        entry = self._failures.get(username)
        if entry is not None and entry.locked_until > self._clock():
            await asyncio.sleep(self.delay)
            return False
        # Compare both fields in constant time, so timing does not tell a good name from a bad one.
        ok_user = hmac.compare_digest(username.encode(), self._user.encode())
        ok_password = hmac.compare_digest(password.encode(), self._password.encode())
        if ok_user and ok_password:
            self._failures.pop(username, None)
            return True
        entry = entry or _Failures()
        entry.count += 1
        self._failures[username] = entry
        await asyncio.sleep(min(self.max_delay, self.delay * entry.count))
        if entry.count >= self.free:
            # Counted from the answer, not the guess: the lockout must outlast the delay.
            extra = entry.count - self.free
            entry.locked_until = self._clock() + min(self.max_lockout, self.lockout * 2**extra)
        return False
