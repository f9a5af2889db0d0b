"""Fetch feed bytes over HTTP (httpx) or from local files, politely and within hard limits.

Limits, because a source is someone else's server: a global and a per-host concurrency cap,
connect/read timeouts plus a total deadline (a body dripping one byte a second never trips a
read timeout), a body-size cap enforced while streaming, and a redirect cap. Transient
failures (5xx, 429, dropped connections) are retried with exponential backoff and jitter,
honouring ``Retry-After``. Every failure becomes a ``SourceError`` with a one-line reason.

``allow_private=False`` (the web app's setting) refuses loopback, private, link-local and
cloud-metadata addresses: the host name is resolved, every address checked, and the connection
made to the checked address itself (so a DNS answer that changes between check and connect
cannot slip through), for the first request and for every redirect hop.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import random
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import httpcore
import httpx

from newsdesk._exceptions import MissingExtraError, SourceError
from newsdesk.news._models import Source

__all__ = [
    "Fetcher",
    "FetchResult",
    "Validators",
    "USER_AGENT",
    "REFUSED_PRIVATE",
    "is_public_address",
]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("newsdesk")
    except PackageNotFoundError:  # running from a source checkout
        return "0.0.0"


USER_AGENT = f"newsdesk/{_version()} (+https://pypi.org/project/newsdesk)"
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Validators:
    """What the last successful fetch said about the body, for a conditional GET."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass
class FetchResult:
    source: Source
    status: int
    body: bytes
    etag: str | None
    last_modified: str | None
    not_modified: bool
    content_type: str | None
    elapsed: float
    attempts: int
    final_url: str | None = None

    @property
    def validators(self) -> Validators:
        """Validators to pass to the next fetch of the same source."""
        return Validators(etag=self.etag, last_modified=self.last_modified)


class _Retryable(Exception):
    """One attempt failed in a way worth another try. ``wait`` is the server's Retry-After."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


class _Fatal(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _fmt_seconds(value: float) -> str:
    return f"{value:g} s" if value == int(value) else f"{value:.1f} s"


def _fmt_bytes(n: int) -> str:
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20} MB"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MB"
    if n >= 1 << 10:
        return f"{n >> 10} KB"
    return f"{n} bytes"


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date; None if unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now_ts = time.time() if now is None else now
    return max(0.0, when.timestamp() - now_ts)


def _local_path(url: str) -> Path | None:
    """The file a source URL names (``file://`` or a plain path), or None for a remote URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return Path(url2pathname(unquote(parts.path)))
    if scheme in ("http", "https"):
        return None
    if not scheme or len(scheme) == 1:  # no scheme, or a Windows drive letter
        return Path(url).expanduser()
    return None


# --- private addresses (SSRF) ------------------------------------------------------------------

# One message whatever the port's state: a refusal must not tell a web user which ports are open.
REFUSED_PRIVATE = "refused: private address (loopback, private network, link-local or metadata)"


def is_public_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for an address on the public internet; False for loopback, private ranges (RFC 1918,
    fc00::/7), link-local (169.254/16: cloud metadata at 169.254.169.254), shared/CGNAT,
    unspecified, reserved and multicast addresses."""
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv4 address wrapped in IPv6 (::ffff:127.0.0.1, 2002:7f00:1::) is judged as IPv4.
        inner = ip.ipv4_mapped or ip.sixtofour
        if inner is not None:
            return is_public_address(inner)
    return ip.is_global and not ip.is_multicast


_AddressCheck = Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], bool]


class _PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, but every TCP connection goes to a resolved and checked
    address. Checking here (not on the URL) covers every redirect hop and DNS rebinding alike."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend, allowed: _AddressCheck) -> None:
        self._inner = inner
        self._allowed = allowed

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        # Any private answer refuses the host: a name that resolves to both is not trusted.
        if not addresses or not all(
            self._allowed(ipaddress.ip_address(a.split("%", 1)[0])) for a in addresses
        ):
            raise _Fatal(REFUSED_PRIVATE)
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        raise _Fatal(REFUSED_PRIVATE)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _checked_transport(limits: httpx.Limits, allowed: _AddressCheck) -> httpx.AsyncHTTPTransport:
    transport = httpx.AsyncHTTPTransport(limits=limits)
    # httpx has no parameter for httpcore's network backend; the pool holds it in one attribute.
    pool = transport._pool
    pool._network_backend = _PublicOnlyBackend(pool._network_backend, allowed)
    return transport


class Fetcher:
    """Fetches sources concurrently within limits. Use as ``async with Fetcher() as f:``.

    ``timeout`` is the total deadline for one fetch including retries and waits; a source's own
    ``timeout`` replaces it. ``attempts`` counts the first try. ``allow_private=False`` refuses
    loopback/private/link-local/metadata addresses (default: allowed; a run gets it from
    ``NewsDesk(private_sources=False)``); ``address_check`` replaces the public-address test (an
    address it returns False for is refused). Local files are read either way.
    """

    def __init__(
        self,
        *,
        concurrency: int = 16,
        per_host: int = 4,
        connect_timeout: float = 10.0,
        read_timeout: float = 20.0,
        timeout: float = 60.0,
        max_bytes: int = 5 * 1024 * 1024,
        max_redirects: int = 5,
        attempts: int = 3,
        backoff_base: float = 0.5,
        backoff_max: float = 10.0,
        retry_after_max: float = 60.0,
        user_agent: str = USER_AGENT,
        transport: httpx.AsyncBaseTransport | None = None,
        allow_private: bool = True,
        address_check: _AddressCheck | None = None,
    ) -> None:
        if concurrency < 1 or per_host < 1 or attempts < 1:
            raise ValueError("concurrency, per_host and attempts must be at least 1")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.attempts = attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        self.user_agent = user_agent
        self._per_host = per_host
        self._global = asyncio.Semaphore(concurrency)
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self.allow_private = allow_private
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        if address_check is None and not self.allow_private:
            address_check = is_public_address
        if transport is None and address_check is not None:
            transport = _checked_transport(limits, address_check)
        self._client = httpx.AsyncClient(
            follow_redirects=True,
            max_redirects=max_redirects,
            timeout=httpx.Timeout(
                connect=connect_timeout, read=read_timeout, write=read_timeout, pool=None
            ),
            limits=limits,
            headers={"User-Agent": user_agent, "Accept": _ACCEPT},
            transport=transport,
            # A proxy from the environment would resolve and connect for us, unchecked.
            trust_env=address_check is None,
        )

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    # --- public --------------------------------------------------------------------------------

    async def fetch(self, source: Source, validators: Validators | None = None) -> FetchResult:
        """The source's bytes (or ``not_modified=True`` on a 304). Raises ``SourceError``."""
        deadline = source.timeout or self.timeout
        local = _local_path(source.url)
        try:
            if local is not None:
                started = time.monotonic()
                async with asyncio.timeout(deadline):
                    return await self._read_file(source, local, validators, started)
            # The deadline starts once this fetch has its connection slot: time spent queued
            # behind other sources (a host full of hanging feeds) is not this source's fault.
            # The slot is held through retries so a retry does not queue again.
            async with self._slot(source.url):
                started = time.monotonic()
                async with asyncio.timeout(deadline):
                    return await self._fetch_http(source, validators, started, deadline)
        except TimeoutError:
            raise SourceError(source.name, f"timed out after {_fmt_seconds(deadline)}") from None

    async def fetch_article_text(self, url: str) -> str:
        """The main text of the web page at ``url`` (for ``--full-text``), via trafilatura.

        Only an absolute http(s) URL is fetched: an article link is feed content, and a link like
        ``http/../../x.html`` must never be read as a local file and sent to a provider."""
        parts = urlsplit(url.strip())
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise SourceError(
                url, "not fetching full text: the link is not an absolute http(s) URL"
            )
        try:
            import trafilatura
        except ImportError:
            raise MissingExtraError("--full-text", "fulltext") from None
        source = Source(name=url, url=url)
        result = await self.fetch(source)
        try:
            text = await asyncio.to_thread(
                trafilatura.extract,
                result.body,
                url=url,
                include_comments=False,
                include_tables=False,
            )
        except Exception as exc:  # trafilatura/lxml on hostile HTML: report, don't crash the run
            raise SourceError(
                url, f"could not extract article text ({type(exc).__name__})"
            ) from None
        if not text or not text.strip():
            raise SourceError(url, "no article text found on the page")
        return str(text).strip()

    # --- HTTP ----------------------------------------------------------------------------------

    def _host_limit(self, url: str) -> asyncio.Semaphore:
        host = (urlsplit(url).hostname or "").lower()
        sem = self._hosts.get(host)
        if sem is None:
            sem = self._hosts[host] = asyncio.Semaphore(self._per_host)
        return sem

    @asynccontextmanager
    async def _slot(self, url: str) -> AsyncIterator[None]:
        # Host first: waiting for a busy host must not hold one of the global slots.
        async with self._host_limit(url), self._global:
            yield

    async def _fetch_http(
        self, source: Source, validators: Validators | None, started: float, deadline: float
    ) -> FetchResult:
        headers: dict[str, str] = {}
        if validators is not None:
            if validators.etag:
                headers["If-None-Match"] = validators.etag
            if validators.last_modified:
                headers["If-Modified-Since"] = validators.last_modified
        last_reason = ""
        for attempt in range(1, self.attempts + 1):
            try:
                return await self._attempt(source, headers, started, attempt)
            except _Fatal as exc:
                raise SourceError(source.name, exc.reason) from None
            except _Retryable as exc:
                last_reason = exc.reason
                if attempt == self.attempts:
                    break
                wait = self._backoff(attempt)
                if exc.wait is not None:
                    # The server knows when it will be ready; a cap keeps a hostile or
                    # confused "Retry-After: 86400" from parking a fetch for a day.
                    wait = min(exc.wait, self.retry_after_max)
                left = deadline - (time.monotonic() - started)
                if wait >= left:
                    # Sleeping past the deadline would end in a bare "timed out"; say why instead.
                    raise SourceError(
                        source.name,
                        f"{last_reason} after {attempt} attempt{'s' if attempt > 1 else ''}; no time left to retry",
                    ) from None
                await asyncio.sleep(wait)
        raise SourceError(
            source.name,
            f"{last_reason} after {self.attempts} attempt{'s' if self.attempts > 1 else ''}",
        )

    def _backoff(self, attempt: int) -> float:
        # Exponential, with jitter so many fetchers retrying one host do not stampede together.
        base = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return base * random.uniform(0.5, 1.5)

    async def _attempt(
        self, source: Source, headers: dict[str, str], started: float, attempt: int
    ) -> FetchResult:
        try:
            async with self._client.stream("GET", source.url, headers=headers) as resp:
                status = resp.status_code
                if status == 304:
                    return self._result(source, resp, b"", started, attempt, not_modified=True)
                if status in _RETRY_STATUS:
                    wait = parse_retry_after(resp.headers.get("Retry-After"))
                    raise _Retryable(f"HTTP {status}", wait if status in (429, 503) else None)
                if status >= 400:
                    raise _Fatal(f"HTTP {status}{_phrase(resp)}")
                if status >= 300:
                    raise _Fatal(f"HTTP {status} redirect without a usable Location")
                body = await self._read_body(resp)
                return self._result(source, resp, body, started, attempt, not_modified=False)
        except (_Retryable, _Fatal):
            raise
        except httpx.TooManyRedirects:
            raise _Fatal(f"too many redirects (more than {self.max_redirects})") from None
        except httpx.ConnectTimeout:
            raise _Retryable(
                f"connect timed out after {_fmt_seconds(self.connect_timeout)}"
            ) from None
        except httpx.ReadTimeout:
            raise _Retryable(
                f"no data for {_fmt_seconds(self.read_timeout)} (read timeout)"
            ) from None
        except httpx.ConnectError as exc:
            reason, retry = _connect_reason(exc)
            raise (_Retryable(reason) if retry else _Fatal(reason)) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            raise _Retryable("connection dropped by the server") from None
        except httpx.UnsupportedProtocol:
            raise _Fatal("unsupported URL scheme (redirected away from http/https?)") from None
        except (httpx.InvalidURL, httpx.LocalProtocolError) as exc:
            raise _Fatal(f"invalid URL or request: {exc}") from None
        except httpx.DecodingError:
            raise _Fatal("could not decode the response body (bad Content-Encoding)") from None
        except httpx.HTTPError as exc:
            raise _Retryable(f"network error ({type(exc).__name__})") from None

    async def _read_body(self, resp: httpx.Response) -> bytes:
        declared = resp.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise _Fatal(f"body larger than {_fmt_bytes(self.max_bytes)}")
        chunks: list[bytes] = []
        size = 0
        # aiter_bytes yields decompressed data, so the cap also stops a gzip bomb.
        async for chunk in resp.aiter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise _Fatal(f"body larger than {_fmt_bytes(self.max_bytes)}")
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _result(
        source: Source,
        resp: httpx.Response,
        body: bytes,
        started: float,
        attempt: int,
        *,
        not_modified: bool,
    ) -> FetchResult:
        return FetchResult(
            source=source,
            status=resp.status_code,
            body=body,
            etag=resp.headers.get("ETag"),
            last_modified=resp.headers.get("Last-Modified"),
            not_modified=not_modified,
            content_type=resp.headers.get("Content-Type"),
            elapsed=time.monotonic() - started,
            attempts=attempt,
            final_url=str(resp.url),
        )

    # --- local files ---------------------------------------------------------------------------

    async def _read_file(
        self, source: Source, path: Path, validators: Validators | None, started: float
    ) -> FetchResult:
        try:
            body, mtime = await asyncio.to_thread(_read_limited, path, self.max_bytes)
        except _Fatal as exc:
            raise SourceError(source.name, exc.reason) from None
        # The file's mtime plays Last-Modified, so an unchanged file is "not modified" too.
        last_modified = email.utils.formatdate(mtime, usegmt=True)
        not_modified = bool(validators and validators.last_modified == last_modified)
        return FetchResult(
            source=source,
            status=304 if not_modified else 200,
            body=b"" if not_modified else body,
            etag=None,
            last_modified=last_modified,
            not_modified=not_modified,
            content_type=None,
            elapsed=time.monotonic() - started,
            attempts=1,
            final_url=path.as_uri() if path.is_absolute() else str(path),
        )


_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/rdf+xml, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, text/html;q=0.7, */*;q=0.5"
)


def _phrase(resp: httpx.Response) -> str:
    phrase = resp.reason_phrase
    return f" {phrase}" if phrase else ""


def _connect_reason(exc: httpx.ConnectError) -> tuple[str, bool]:
    """A short reason for a failed connection, and whether trying again could help."""
    # httpx's message is often just "All connection attempts failed"; the cause chain holds
    # the OSError that says what actually happened.
    chain: list[BaseException] = []
    node: BaseException | None = exc
    while node is not None and len(chain) < 10:
        chain.append(node)
        node = node.__cause__ or node.__context__
    for err in chain:
        if isinstance(err, socket.gaierror):
            return "could not resolve the host name", False
        if isinstance(err, ssl.SSLError):
            return f"TLS error: {getattr(err, 'reason', None) or 'handshake failed'}", False
        if isinstance(err, ConnectionRefusedError):
            return "connection refused", True
    text = " ".join(str(e) for e in chain).lower()
    if "name or service not known" in text or "nodename nor servname" in text:
        return "could not resolve the host name", False
    if "certificate" in text:
        return "TLS error: certificate verification failed", False
    if "refused" in text:
        return "connection refused", True
    if "unreachable" in text:
        return "network unreachable", True
    first = str(exc).splitlines()[0][:120] if str(exc) else ""
    return "connection failed" + (f": {first}" if first else ""), True


def _read_limited(path: Path, max_bytes: int) -> tuple[bytes, float]:
    try:
        st = path.stat()
        if not path.is_file():
            raise _Fatal(f"not a regular file: {path}")
        if st.st_size > max_bytes:
            raise _Fatal(f"file larger than {_fmt_bytes(max_bytes)}")
        with path.open("rb") as fh:
            # Read one byte past the cap: a file that grew since stat() is caught too.
            body = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise _Fatal(f"file not found: {path}") from None
    except PermissionError:
        raise _Fatal(f"permission denied: {path}") from None
    except IsADirectoryError:
        raise _Fatal(f"not a regular file: {path}") from None
    except OSError as exc:
        raise _Fatal(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(body) > max_bytes:
        raise _Fatal(f"file larger than {_fmt_bytes(max_bytes)}")
    return body, st.st_mtime
