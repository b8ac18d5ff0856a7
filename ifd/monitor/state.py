"""The monitor's memory (SQLite, WAL): which UTC days it processed and which signals it alerted.

Table ``processed_days``: one row per (dataset, symbols, day) once every signal of the day was
alerted. Table ``alerted``: one row per signal key (algorithm, instrument_id, side, ts_event),
written only *after* its alert was dispatched. A process killed between the dispatch and the row
re-sends that one alert at the next cycle (at least once: never dropped, at worst repeated once).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Self

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS processed_days (
    dataset TEXT NOT NULL, symbols TEXT NOT NULL, day TEXT NOT NULL,
    signals INTEGER NOT NULL, alerts INTEGER NOT NULL, run_dir TEXT, processed_at TEXT NOT NULL,
    PRIMARY KEY (dataset, symbols, day)
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
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def last_day(self, dataset: str, symbols: str) -> dt.date | None:
        """The newest processed UTC day, or None."""
        row = self._db.execute("SELECT MAX(day) FROM processed_days WHERE dataset=? AND symbols=?",
                               (dataset, symbols)).fetchone()
        return dt.date.fromisoformat(row[0]) if row and row[0] else None

    def mark_processed(self, dataset: str, symbols: str, day: dt.date, signals: int, alerts: int,
                       run_dir: str | None) -> None:
        self._db.execute("INSERT OR REPLACE INTO processed_days VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (dataset, symbols, day.isoformat(), signals, alerts, run_dir, _now()))

    def processed_days(self) -> list[dict]:
        cur = self._db.execute("SELECT * FROM processed_days ORDER BY day")
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
