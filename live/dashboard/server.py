"""The dashboard's web server: aiohttp on its own thread and event loop, serving the latest snapshot.

``DashboardServer(host, port, token)``: ``bind()`` opens the listening socket (so a taken port
is refused before the node connects anywhere), ``start()`` serves on it from a daemon thread
with its own asyncio loop (never the node's), ``publish(snapshot)`` hands over a new snapshot
under a lock, ``stop()`` closes the socket and joins the thread. Routes:

- ``GET /``: the page (``page.html``: inline script and style, pinned by hash in the
  Content-Security-Policy; no external resources);
- ``GET /api/state``: the latest snapshot as JSON (``{"status": "starting"}`` before the first).

Access: ``access_token(host, token_env, env)`` decides at construction. On loopback
(127.0.0.1, ::1, localhost) no token is needed; any other address needs the token variable set
(16+ characters) or is refused. With a token every request needs ``Authorization: Bearer
<token>`` or ``?token=<token>`` (compared in constant time). The access log is off, so a
``?token=`` query is never logged.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import hmac
import json
import re
import socket
import threading
from collections.abc import Mapping
from importlib import resources

from aiohttp import web

from ifd.errors import IfdError

LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}
MIN_TOKEN_CHARS = 16
STOP_TIMEOUT_S = 5.0


def access_token(host: str, token_env: str, env: Mapping[str, str], *, require_token: bool = False) -> str | None:
    """The token requests must carry, or None (loopback, no token asked for); ``IfdError`` (one line,
    naming the variable) when the bind address or ``require_token`` needs one that is unset or short."""
    token = (env.get(token_env) or "").strip()
    needed = require_token or host not in LOOPBACK_HOSTS
    if not needed:
        return None
    why = f"binding {host}" if host not in LOOPBACK_HOSTS else "require_token = true"
    if not token:
        raise IfdError(f"dashboard: {why} needs a token: set {token_env} ({MIN_TOKEN_CHARS}+ characters), "
                       f"or bind 127.0.0.1")
    if len(token) < MIN_TOKEN_CHARS:
        raise IfdError(f"dashboard: {token_env} is too short for {why} (at least {MIN_TOKEN_CHARS} characters)")
    return token


def page_html() -> bytes:
    """The page (``live/dashboard/page.html``, package data)."""
    return resources.files("live.dashboard").joinpath("page.html").read_bytes()


def content_security_policy(page: bytes) -> str:
    """Only the page's own inline script and style (by hash), requests to this server, no frames."""
    text = page.decode()

    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", text, flags=re.S)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'"
                        for b in blocks)

    return (f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
            "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")


class DashboardServer:
    """Serves the page and the latest snapshot on ``host:port`` (0: an ephemeral port)."""

    def __init__(self, host: str, port: int, token: str | None = None, page: bytes | None = None) -> None:
        self.host = "127.0.0.1" if host == "localhost" else host
        self.port = port
        self._token = token.encode() if token else None
        self._page = page if page is not None else page_html()
        self._csp = content_security_policy(self._page)
        self._lock = threading.Lock()
        self._snapshot: dict | None = None
        self._version = 0
        self._encoded: tuple[int, bytes] = (-1, b"")
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # -- lifecycle (called from the node's thread) ------------------------------------------------

    @property
    def bound(self) -> bool:
        return self._sock is not None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def url(self) -> str:
        """``http://HOST:PORT/`` (the bound port once bound; no token in it)."""
        port = self._sock.getsockname()[1] if self._sock is not None else self.port
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port}/"

    def bind(self) -> None:
        """Open the listening socket; ``IfdError`` naming host:port when it is taken or not local."""
        if self._sock is not None:
            return
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT only, never a live listener
            sock.bind((self.host, self.port))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            where = f"{self.url.removeprefix('http://').rstrip('/')}"
            if exc.errno == errno.EADDRINUSE:
                raise IfdError(f"dashboard: {where} is already in use (set another [actors.config] port, "
                               "or 0 for any free one)") from None
            raise IfdError(f"dashboard: cannot listen on {where} ({exc.strerror or exc})") from None
        sock.setblocking(False)
        self._sock = sock

    def start(self, timeout_s: float = 10.0) -> None:
        """Serve on the bound socket from a daemon thread (binds first when needed)."""
        if self.running:
            return
        self.bind()
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="ifd-dashboard", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise IfdError(f"dashboard: server on {self.url} did not start within {timeout_s:g} s")
        if self._error is not None:
            raise IfdError(f"dashboard: server on {self.url} failed: {self._error}")

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop serving and release the port (idempotent)."""
        thread, loop = self._thread, self._loop
        if thread is not None and loop is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout_s)
        self._thread = None
        if self._sock is not None:
            self._sock.close()  # also when never started (bound at build, node never ran)
            self._sock = None

    def publish(self, snapshot: dict) -> None:
        """Make ``snapshot`` (JSON-able, not changed afterwards) the one served."""
        with self._lock:
            self._snapshot = snapshot
            self._version += 1

    # -- the server thread ------------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        runner = web.AppRunner(self._app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.SockSite(runner, self._sock).start())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
            loop.run_until_complete(runner.cleanup())
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._page_handler)
        app.router.add_get("/api/state", self._state_handler)
        return app

    def _authorized(self, request: web.Request) -> bool:
        if self._token is None:
            return True
        offered = request.query.get("token", "")
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            offered = value.strip()
        return hmac.compare_digest(offered.encode(), self._token)

    @web.middleware
    async def _guard(self, request: web.Request, handler) -> web.StreamResponse:
        if not self._authorized(request):
            response: web.StreamResponse = web.Response(
                status=401, text="dashboard: token required (Authorization: Bearer <token> or ?token=)\n",
                headers={"WWW-Authenticate": 'Bearer realm="ifd-dashboard"'},
            )
        else:
            response = await handler(request)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        return response

    async def _page_handler(self, request: web.Request) -> web.Response:
        return web.Response(body=self._page, content_type="text/html", charset="utf-8",
                            headers={"Content-Security-Policy": self._csp})

    async def _state_handler(self, request: web.Request) -> web.Response:
        with self._lock:
            snapshot, version = self._snapshot, self._version
            encoded = self._encoded
        if snapshot is None:
            body = b'{"status": "starting"}'
        elif encoded[0] == version:
            body = encoded[1]
        else:
            body = json.dumps(snapshot, allow_nan=False, separators=(",", ":")).encode()
            with self._lock:
                self._encoded = (version, body)
        return web.Response(body=body, content_type="application/json")
