"""A real Redis server on 127.0.0.1 for the node-state tests.

``REDIS_HOST`` / ``REDIS_PORT`` (``.ci/run`` starts ``redis-server`` on 127.0.0.1:6379) are used
when that server answers PING; otherwise, when the ``redis-server`` binary is installed, a private
one is started on a free port (no persistence) for the test session. With neither, tests that need
Redis fail under CI=true and skip elsewhere.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from ifd.errors import IfdError
from live.state import StateSettings, check_redis


def answers(host: str, port: int) -> bool:
    try:
        check_redis(StateSettings(database="redis", host=host, port=port), timeout_s=1.0)
    except IfdError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_private(folder: Path) -> tuple[subprocess.Popen, int]:
    """Start ``redis-server`` on a free loopback port in ``folder``; returns (process, port)."""
    port = _free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if answers("127.0.0.1", port):
            return proc, port
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"redis-server did not start on 127.0.0.1:{port}")


def available() -> bool:
    return shutil.which("redis-server") is not None


def configured() -> tuple[str, int]:
    return os.environ.get("REDIS_HOST", "127.0.0.1"), int(os.environ.get("REDIS_PORT", "6379"))
