"""The local sinks: the console and a rotating log file. (The webhook is ``ifd.alerts.webhook``.)

A sink has a ``name``, a ``min_level``, a ``max_per_minute`` (0: no limit) and ``emit(alert)``,
which delivers or queues the alert and returns its first delivery status (``sent``, ``queued``
or ``dropped``); it may raise, and the dispatcher isolates it. ``close(timeout_s)`` releases it.
"""

from __future__ import annotations

import logging
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Protocol
from typing import TextIO

from ifd.alerts.alert import Alert
from ifd.alerts.alert import Level


class Sink(Protocol):
    name: str
    min_level: Level
    max_per_minute: int

    def emit(self, alert: Alert) -> str: ...

    def close(self, timeout_s: float = 0.0) -> None: ...


class ConsoleSink:
    """One line per alert on stderr (default) or stdout."""

    def __init__(self, min_level: Level = Level.WARNING, stream: str | TextIO = "stderr",
                 max_per_minute: int = 0, name: str = "console") -> None:
        self.name, self.min_level, self.max_per_minute = name, min_level, max_per_minute
        self._stream = stream

    def emit(self, alert: Alert) -> str:
        # Looked up at each alert, so a redirected sys.stderr (pytest, a daemon) is followed.
        stream = getattr(sys, self._stream) if isinstance(self._stream, str) else self._stream
        stream.write(alert.one_line() + "\n")
        stream.flush()
        return "sent"

    def close(self, timeout_s: float = 0.0) -> None:
        pass


class _RaisingRotatingFileHandler(RotatingFileHandler):
    """The stdlib handler prints a traceback and carries on when a write fails; the dispatcher wants to know."""

    def handleError(self, record: logging.LogRecord) -> None:
        raise  # called from the handler's except block: re-raises the write error


class LogFileSink:
    """One line per alert in a size-rotated file: ``path``, ``path.1`` ... ``path.<backup_count>``."""

    def __init__(self, path: Path | str, max_bytes: int = 5_000_000, backup_count: int = 5,
                 min_level: Level = Level.INFO, max_per_minute: int = 0, name: str = "log_file") -> None:
        self.name, self.min_level, self.max_per_minute = name, min_level, max_per_minute
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handler = _RaisingRotatingFileHandler(
            self.path, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8", delay=True,
        )
        self._handler.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, alert: Alert) -> str:
        record = logging.makeLogRecord(
            {"msg": alert.one_line(), "levelno": int(alert.level), "levelname": alert.level.name, "name": "ifd.alerts"},
        )
        self._handler.handle(record)  # takes the handler's lock, rotates when the next line would overflow
        return "sent"

    def close(self, timeout_s: float = 0.0) -> None:
        self._handler.close()
