"""A webhook receiver on 127.0.0.1 for the alerts tests: records each POSTed JSON body, answers from a script.

Each request takes the next entry of ``script`` (then ``default``): an HTTP status code, or
``"hold"`` (signal ``entered``, wait for ``release``, then answer 200: a slow server), or
``(429, retry_after_s)``. ``answered`` is set once any response has been written.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

SECRET_PATH = "/services/T0IFD/B0ALERTS/s3cr3t-t0ken-xyz"


class WebhookServer:
    def __init__(self, script=(), default=200) -> None:
        self.script = list(script)
        self.default = default
        self.requests: list[dict] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.answered = threading.Event()
        self._cond = threading.Condition()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with owner._cond:
                    owner.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                    action = owner.script.pop(0) if owner.script else owner.default
                    owner._cond.notify_all()
                headers = {}
                if action == "hold":
                    owner.entered.set()
                    owner.release.wait(15)
                    action = 200
                elif isinstance(action, tuple):
                    action, retry_after = action
                    headers["Retry-After"] = str(retry_after)
                payload = b"ok" if action < 300 else b"error"
                try:
                    self.send_response(action)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    owner.answered.set()
                except OSError:
                    pass  # the client gave up (timeout test)

            def log_message(self, *args) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address) -> None:
                pass

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}{SECRET_PATH}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="webhook-server", daemon=True,
        )
        self._thread.start()

    def bodies(self) -> list[dict]:
        with self._cond:
            return [r["body"] for r in self.requests]

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.requests) >= count, timeout)

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


def refused_url() -> str:
    """A 127.0.0.1 URL nobody listens on (connection refused)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{SECRET_PATH}"
