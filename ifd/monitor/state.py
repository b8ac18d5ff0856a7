"""The monitor's memory (SQLite, WAL): which windows of data it processed and which signals it alerted.

Table ``processed_windows``: one row per (dataset, symbols, window start) once every signal of the
window was alerted; windows are [start, end) in UTC, ISO 8601 with a ``Z`` (whole days are
00:00Z to 00:00Z). Table ``alerted``: one row per signal key (algorithm, instrument_id, side,
ts_event), written only *after* its alert was dispatched. A process killed between the dispatch
and the row re-sends that one alert at the next cycle (at least once: never dropped, at worst
repeated once). Version 1 files (whole days in ``processed_days``) are upgraded in place.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from ifd.errors import IfdError

SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS processed_windows (
    dataset TEXT NOT NULL, symbols TEXT NOT NULL, start TEXT NOT NULL, end TEXT NOT NULL,
    signals INTEGER NOT NULL, alerts INTEGER NOT NULL, run_dir TEXT, processed_at TEXT NOT NULL,
    PRIMARY KEY (dataset, symbols, start)
);
CREATE TABLE IF NOT EXISTS alerted (
    algorithm TEXT NOT NULL, instrument_id TEXT NOT NULL, side TEXT NOT NULL, ts_event INTEGER NOT NULL,
    alert_id TEXT, status TEXT NOT NULL, alerted_at TEXT NOT NULL,
    PRIMARY KEY (algorithm, instrument_id, side, ts_event)
);
"""


@dataclass(frozen=True)
class SignalKey:
    """What makes a signal the same signal across runs."""

    algorithm: str
    instrument_id: str
    side: str
    ts_event: int

    @classmethod
    def of(cls, row: dict) -> SignalKey:
        return cls(str(row["algorithm"]), str(row["instrument_id"]), str(row["side"]), int(row["ts_event"]))


def stamp(moment: dt.datetime) -> str:
    """``2026-11-16T14:15:00Z``: the state's sortable UTC form of a window bound."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class MonitorState:
    """Open (creating) the state database at ``path``; use as a context manager."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            self._db.close()
            raise IfdError(f"{self.path}: monitor state schema version {version} is newer than this ifd's "
                           f"({SCHEMA_VERSION})")
        self._db.executescript(_SCHEMA)
        if version == 1:  # whole UTC days -> windows
            self._db.executescript(
                "BEGIN IMMEDIATE; INSERT OR IGNORE INTO processed_windows SELECT dataset, symbols,"
                " day || 'T00:00:00Z', date(day, '+1 day') || 'T00:00:00Z', signals, alerts, run_dir, processed_at"
                " FROM processed_days; DROP TABLE processed_days; COMMIT;",
            )
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def last_end(self, dataset: str, symbols: str) -> dt.datetime | None:
        """The end of the newest processed window, or None."""
        row = self._db.execute("SELECT MAX(end) FROM processed_windows WHERE dataset=? AND symbols=?",
                               (dataset, symbols)).fetchone()
        return _parse(row[0]) if row and row[0] else None

    def has_window_on(self, dataset: str, symbols: str, day: dt.date) -> bool:
        """Whether any window starting on ``day`` was processed."""
        return self._db.execute(
            "SELECT 1 FROM processed_windows WHERE dataset=? AND symbols=? AND substr(start, 1, 10)=?",
            (dataset, symbols, day.isoformat()),
        ).fetchone() is not None

    def mark_processed(self, dataset: str, symbols: str, start: dt.datetime, end: dt.datetime, signals: int,
                       alerts: int, run_dir: str | None) -> None:
        self._db.execute("INSERT OR REPLACE INTO processed_windows VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (dataset, symbols, stamp(start), stamp(end), signals, alerts, run_dir, _now()))

    def processed_windows(self) -> list[dict]:
        cur = self._db.execute("SELECT * FROM processed_windows ORDER BY start")
        return [dict(zip([c[0] for c in cur.description], row, strict=True)) for row in cur]

    def was_alerted(self, key: SignalKey) -> bool:
        return self._db.execute(
            "SELECT 1 FROM alerted WHERE algorithm=? AND instrument_id=? AND side=? AND ts_event=?",
            (key.algorithm, key.instrument_id, key.side, key.ts_event),
        ).fetchone() is not None

    def record_alerted(self, key: SignalKey, alert_id: str | None, status: str) -> None:
        """After the dispatch: ``status`` is ``sent``, ``suppressed:<why>`` or ``below_rules``."""
        self._db.execute("INSERT OR IGNORE INTO alerted VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (key.algorithm, key.instrument_id, key.side, key.ts_event, alert_id, status, _now()))

    def alerted_keys(self) -> list[SignalKey]:
        return [SignalKey(*row) for row in self._db.execute(
            "SELECT algorithm, instrument_id, side, ts_event FROM alerted ORDER BY ts_event, algorithm")]
