"""The alert history: every alert and its delivery status per sink, in SQLite (``ifd alerts ls``).

One file, WAL journal (a node writes while ``ifd alerts ls`` reads), the schema version in
``PRAGMA user_version``. Delivery statuses: ``sent``, ``queued`` (the webhook worker has it),
``failed`` (retries exhausted or a permanent HTTP error), ``dropped`` (webhook queue full),
``rate_limited`` and ``error`` (the sink raised). One connection serves the caller and the webhook
worker thread, behind a lock; writes are a few rows, committed at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from ifd.alerts.alert import Alert
from ifd.alerts.alert import Level
from ifd.alerts.alert import iso_utc
from ifd.sqlite_files import journal_mode, open_versioned, schema_version

SCHEMA_VERSION = 1
FINAL_STATUSES = ("sent", "failed", "dropped", "rate_limited", "error")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    alert_id    TEXT PRIMARY KEY,
    ts_ns       INTEGER NOT NULL,   -- alert time (the caller's clock: simulated in a backtest)
    level       INTEGER NOT NULL,   -- 20 info, 30 warning, 50 critical
    kind        TEXT NOT NULL,
    key         TEXT NOT NULL,
    title       TEXT NOT NULL,
    text        TEXT NOT NULL,
    fields      TEXT NOT NULL,      -- JSON object, in display order
    source      TEXT NOT NULL,
    recorded_ns INTEGER NOT NULL    -- wall clock when written
);
CREATE INDEX IF NOT EXISTS alerts_by_ts ON alerts (ts_ns);
CREATE TABLE IF NOT EXISTS deliveries (
    alert_id   TEXT NOT NULL,
    sink       TEXT NOT NULL,
    status     TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    error      TEXT NOT NULL DEFAULT '',
    updated_ns INTEGER NOT NULL,
    PRIMARY KEY (alert_id, sink)
);
"""


class AlertHistory:
    """An alert history file; ``readonly=True`` for queries (never creates the file)."""

    def __init__(self, path: Path | str, *, readonly: bool = False, busy_timeout_ms: int = 250) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        # Short busy timeout: a writer waiting on another process's lock must not hold up detection for long.
        self._db = open_versioned(
            self.path, schema=_SCHEMA, version=SCHEMA_VERSION, what="alert history",
            missing=f"{self.path}: no alert history (nothing alerted yet, or another --db)", readonly=readonly,
            busy_timeout_ms=busy_timeout_ms, synchronous="NORMAL",
        )

    @property
    def schema_version(self) -> int:
        with self._lock:
            return schema_version(self._db)

    @property
    def journal_mode(self) -> str:
        with self._lock:
            return journal_mode(self._db)

    # -- writes ---------------------------------------------------------------------------

    def record(self, alert: Alert, deliveries: Mapping[str, str] | None = None,
               errors: Mapping[str, str] | None = None) -> None:
        """Insert the alert and the first delivery status (and error text) of each sink, in one transaction.

        A status a worker already reported for this alert (it may finish first) is kept.
        """
        errors = errors or {}
        now = time.time_ns()
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute(
                    "INSERT OR IGNORE INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (alert.alert_id, alert.ts_ns, int(alert.level), alert.kind, alert.key, alert.title, alert.text,
                     json.dumps(dict(alert.fields)), alert.source, now),
                )
                self._db.executemany(
                    "INSERT OR IGNORE INTO deliveries (alert_id, sink, status, error, updated_ns)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(alert.alert_id, sink, status, errors.get(sink, ""), now)
                     for sink, status in (deliveries or {}).items()],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def set_delivery(self, alert_id: str, sink: str, status: str, attempts: int = 0, error: str = "") -> None:
        """Set one sink's delivery status of an alert (insert or replace)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO deliveries (alert_id, sink, status, attempts, error, updated_ns) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (alert_id, sink) DO UPDATE SET status = excluded.status, attempts = excluded.attempts,"
                " error = excluded.error, updated_ns = excluded.updated_ns",
                (alert_id, sink, status, int(attempts), error, time.time_ns()),
            )

    # -- reads ----------------------------------------------------------------------------

    def query(
        self,
        since_ns: int | None = None,
        min_level: Level | None = None,
        kind: str | None = None,
        limit: int = 50,
    ) -> list[dict]:
        """The most recent ``limit`` alerts matching, oldest first, each with its ``deliveries`` per sink."""
        where, args = [], []
        if since_ns is not None:
            where.append("ts_ns >= ?")
            args.append(int(since_ns))
        if min_level is not None:
            where.append("level >= ?")
            args.append(int(min_level))
        if kind:
            where.append("kind = ?")
            args.append(kind)
        sql = "SELECT * FROM alerts" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY ts_ns DESC, recorded_ns DESC LIMIT ?"
        with self._lock:
            cursor = self._db.execute(sql, [*args, int(limit)])
            names = [c[0] for c in cursor.description]
            rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
            rows.reverse()
            deliveries: dict[str, dict] = {r["alert_id"]: {} for r in rows}
            if rows:
                marks = ",".join("?" * len(rows))
                for alert_id, sink, status, attempts, error in self._db.execute(
                    f"SELECT alert_id, sink, status, attempts, error FROM deliveries WHERE alert_id IN ({marks})"
                    " ORDER BY sink",
                    list(deliveries),
                ):
                    deliveries[alert_id][sink] = {"status": status, "attempts": attempts, "error": error}
        out = []
        for row in rows:
            out.append({
                "alert_id": row["alert_id"],
                "ts_ns": row["ts_ns"],
                "ts": iso_utc(row["ts_ns"]),
                "level": Level(row["level"]).label,
                "kind": row["kind"],
                "key": row["key"],
                "title": row["title"],
                "text": row["text"],
                "fields": json.loads(row["fields"]),
                "source": row["source"],
                "deliveries": deliveries[row["alert_id"]],
            })
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()
