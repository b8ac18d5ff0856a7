"""The alert record every sink receives, and its levels."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from enum import IntEnum


class Level(IntEnum):
    """Alert levels, ordered (stdlib logging's values): a sink takes those at or above its ``min_level``."""

    INFO = 20
    WARNING = 30
    CRITICAL = 50

    @classmethod
    def parse(cls, value: str | Level) -> Level:
        """``"info"`` / ``"warning"`` / ``"critical"`` (any case) or a ``Level``; ``ValueError`` otherwise."""
        if isinstance(value, Level):
            return value
        try:
            return cls[str(value).strip().upper()]
        except KeyError:
            raise ValueError(f"must be one of info, warning, critical, got {value!r}") from None

    @property
    def label(self) -> str:
        return self.name.lower()


def iso_utc(ts_ns: int) -> str:
    """Nanoseconds since the epoch as ISO 8601 UTC with milliseconds (``2026-11-16T14:31:05.123Z``)."""
    moment = datetime.fromtimestamp(ts_ns / 1e9, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Alert:
    """One alert.

    ``key`` identifies "the same thing" for de-duplication (e.g. one option's flow of one
    algorithm); ``ts_ns`` is the alert time on the caller's clock (simulated in a backtest), which
    de-duplication and rate limits use, so a backtest alerts exactly as live would.
    ``fields`` are ordered (name, value) pairs shown as a table by the sinks.
    """

    level: Level
    kind: str
    key: str
    title: str
    text: str = ""
    fields: tuple[tuple[str, str], ...] = ()
    ts_ns: int = 0
    source: str = ""
    alert_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def create(
        cls,
        level: Level | str,
        kind: str,
        title: str,
        text: str = "",
        *,
        key: str | None = None,
        fields: Mapping[str, object] | None = None,
        ts_ns: int | None = None,
        source: str = "",
    ) -> Alert:
        """An alert with ``key`` defaulting to ``kind:title``, ``ts_ns`` to now, field values as text."""
        return cls(
            level=Level.parse(level),
            kind=kind,
            key=key if key is not None else f"{kind}:{title}",
            title=title,
            text=text,
            fields=tuple((str(name), str(value)) for name, value in (fields or {}).items()),
            ts_ns=time.time_ns() if ts_ns is None else int(ts_ns),
            source=source,
        )

    def to_dict(self) -> dict:
        """JSON-ready view (``fields`` as an object, ``level`` by name, ``ts`` as ISO 8601 UTC)."""
        return {
            "alert_id": self.alert_id,
            "ts_ns": self.ts_ns,
            "ts": iso_utc(self.ts_ns),
            "level": self.level.label,
            "kind": self.kind,
            "key": self.key,
            "title": self.title,
            "text": self.text,
            "fields": dict(self.fields),
            "source": self.source,
        }

    def one_line(self) -> str:
        """``ts LEVEL kind [source] title: text (name=value, ...)`` for the console and the log file."""

        def flat(text: str) -> str:
            return " ".join(text.split())  # one physical line whatever the text holds

        line = f"{iso_utc(self.ts_ns)} {self.level.name:<8} {flat(self.kind)}"
        if self.source:
            line += f" [{flat(self.source)}]"
        line += f" {flat(self.title)}"
        if self.text:
            line += f": {flat(self.text)}"
        if self.fields:
            line += " (" + ", ".join(f"{flat(name)}={flat(value)}" for name, value in self.fields) + ")"
        return line
