"""Finding and stopping a running node: ``<pid dir>/<trader id>.pid`` and ``ifd live stop``.

A node run with a pid dir (``ifd live paper`` / ``ifd live limited`` use ``data/live``) writes
its process id there (temp file, then moved) and removes it when it exits. ``stop_node`` sends
that process SIGTERM, which the node treats as an emergency stop (``live.paper.run_paper``:
cancel every order, flatten every position, halt, exit), and waits for the process to end.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from ifd.errors import IfdError

DEFAULT_PID_DIR = Path("data/live")


def pid_file(pid_dir: Path | str, trader_id: str) -> Path:
    """Where a running node of ``trader_id`` keeps its process id."""
    return Path(pid_dir) / f"{trader_id}.pid"


def write_pid(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "started": time.time()}))
    tmp.replace(path)


def remove_pid(path: Path) -> None:
    """Remove ``path`` if it still names this process."""
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # an exited process its parent has not reaped yet (a zombie) has stopped too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def running_nodes(pid_dir: Path | str) -> dict[str, int]:
    """Trader id -> process id of the nodes with a pid file whose process is alive."""
    out = {}
    for path in sorted(Path(pid_dir).glob("*.pid")):
        try:
            pid = int(json.loads(path.read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _alive(pid):
            out[path.stem] = pid
    return out


def stop_node(pid_dir: Path | str, trader_id: str | None = None, timeout_s: float = 30.0) -> dict:
    """SIGTERM the running node (``trader_id``, or the only one running) and wait until it exits."""
    nodes = running_nodes(pid_dir)
    if trader_id is None:
        if not nodes:
            raise IfdError(f"no running node found in {pid_dir}")
        if len(nodes) > 1:
            raise IfdError(f"several nodes are running ({', '.join(nodes)}); name one with --trader-id")
        trader_id = next(iter(nodes))
    if trader_id not in nodes:
        raise IfdError(f"no running node {trader_id} in {pid_dir}")
    pid = nodes[trader_id]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        raise IfdError(f"node {trader_id} (pid {pid}) did not exit within {timeout_s:g} s after SIGTERM")
    return {"trader_id": trader_id, "pid": pid, "stopped": True}
