"""The Databento budget ledger: every historical data request, its estimated and actual cost, in SQLite.

One file (default ``data/databento_ledger.sqlite``, set in ``configs/budget.toml``), WAL journal
(a download writes while ``ifd data budget`` or a starting live node reads), the schema version in
``PRAGMA user_version``. One row per data request (one dataset, schema, symbol set, symbology and
UTC day, or a window of that day), written in three steps:

- ``reserve``: in one ``BEGIN IMMEDIATE`` transaction the spend of the current UTC day and month is
  read, the caller's budget check decides, and the row is inserted as ``started`` (its estimate
  then counts as spent, so two downloaders cannot both spend the last dollars) or ``refused``;
- ``finish``: ``done`` (the file is in the raw folder) or ``failed``, with the bytes actually
  received and their cost;
- ``mark_ingested``: the day's files are in the catalog.

Spend is counted on the UTC day and month the request was made (``created_at``), not on the
data's day: ``done`` and ``failed`` rows count their actual cost (their estimate when it is
unknown), ``started`` rows their estimate, ``refused`` rows nothing. The API key is never
stored; ``reason`` texts are scrubbed by the caller.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ifd.sqlite_files import journal_mode, open_versioned, schema_version

SCHEMA_VERSION = 2
BYTES_PER_GB = 1_000_000_000  # Databento prices data in USD per GB of uncompressed DBN
STATUSES = ("started", "done", "refused", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id                 INTEGER PRIMARY KEY,
    dataset            TEXT NOT NULL,
    schema             TEXT NOT NULL,
    symbols            TEXT NOT NULL,      -- comma separated, sorted
    stype_in           TEXT NOT NULL,
    day                TEXT NOT NULL,      -- the data's UTC day: start day 00:00Z, end day + 1 00:00Z
    status             TEXT NOT NULL CHECK (status IN ('started', 'done', 'refused', 'failed')),
    estimated_cost_usd REAL,               -- metadata.get_cost before the request
    billable_bytes     INTEGER,            -- metadata.get_billable_size before the request
    received_bytes     INTEGER,            -- uncompressed record bytes actually received
    records            INTEGER,            -- records actually received
    unit_price_usd_gb  REAL,               -- USD per GB (metadata.list_unit_prices, historical-streaming)
    actual_cost_usd    REAL,               -- received_bytes / 1e9 x unit price
    path               TEXT,               -- done: the file in the raw folder; started: its temp file
    reason             TEXT NOT NULL DEFAULT '',  -- refusal or failure, one line
    pid                INTEGER NOT NULL,   -- the process that made the request
    created_at         TEXT NOT NULL,      -- UTC ISO 8601: when the request was made (its spend day)
    updated_at         TEXT NOT NULL,
    ingested_at        TEXT,               -- when the file went into the catalog
    window             TEXT NOT NULL DEFAULT ''  -- '': the whole UTC day; HH:MM-HH:MM: part of it; live: streamed
);
CREATE INDEX IF NOT EXISTS requests_by_key ON requests (dataset, schema, symbols, stype_in, day, status);
CREATE INDEX IF NOT EXISTS requests_by_time ON requests (created_at);
CREATE TABLE IF NOT EXISTS budget_alerts (
    period    TEXT NOT NULL,               -- 2026-11 (a month) or 2026-11-21 (a day)
    threshold TEXT NOT NULL,               -- e.g. month-80%, month-100%, day-100%
    fired_at  TEXT NOT NULL,
    PRIMARY KEY (period, threshold)
);
"""

# Version 1 had no window column: every request was a whole UTC day.
_MIGRATIONS = {2: "ALTER TABLE requests ADD COLUMN window TEXT NOT NULL DEFAULT ''"}

# What a row adds to the spend of its day and month.
_SPENT = """CASE status WHEN 'started' THEN COALESCE(estimated_cost_usd, 0)
    WHEN 'refused' THEN 0 ELSE COALESCE(actual_cost_usd, estimated_cost_usd, 0) END"""


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(moment: dt.datetime) -> str:
    """``2026-11-21T09:14:03.123456Z``: sortable, and its first 10 / 7 characters are the day / month."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class RequestKey:
    """What one data request asks for: a dataset, schema, symbol set and symbology, over one UTC day
    or, with ``window`` ("HH:MM-HH:MM", end up to 24:00), over that part of it (``"live"``: what a
    node streamed from the live gateway that day; never downloaded, only counted)."""

    dataset: str
    schema: str
    symbols: tuple[str, ...]
    stype_in: str
    day: dt.date
    window: str = ""

    @property
    def symbols_text(self) -> str:
        return ",".join(self.symbols)

    def bounds(self) -> tuple[dt.datetime, dt.datetime]:
        """The requested [start, end) in UTC."""
        midnight = dt.datetime.combine(self.day, dt.time(), dt.UTC)
        if not self.window:
            return midnight, midnight + dt.timedelta(days=1)
        start, end = (midnight + dt.timedelta(hours=int(t[:2]), minutes=int(t[3:])) for t in self.window.split("-"))
        return start, end

    def label(self) -> str:
        when = f"{self.day.isoformat()}{' ' + self.window if self.window else ''}"
        return f"{self.dataset} {self.schema} {self.symbols_text} ({self.stype_in}) {when}"


@dataclass(frozen=True)
class Spend:
    """USD spent (or reserved) on one UTC day and in its month."""

    day: str
    month: str
    day_usd: float
    month_usd: float


@dataclass(frozen=True)
class LedgerRow:
    id: int
    dataset: str
    schema: str
    symbols: str
    stype_in: str
    day: str
    status: str
    estimated_cost_usd: float | None
    billable_bytes: int | None
    received_bytes: int | None
    records: int | None
    unit_price_usd_gb: float | None
    actual_cost_usd: float | None
    path: str | None
    reason: str
    pid: int
    created_at: str
    updated_at: str
    ingested_at: str | None
    window: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Ledger:
    """A ledger file; ``readonly=True`` never creates or changes it."""

    def __init__(self, path: Path | str, *, readonly: bool = False, busy_timeout_ms: int = 10_000) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.Lock()
        self._db = open_versioned(
            self.path, schema=_SCHEMA, version=SCHEMA_VERSION, what="budget ledger",
            missing=f"{self.path}: no budget ledger (nothing downloaded yet)", readonly=readonly,
            busy_timeout_ms=busy_timeout_ms, synchronous="FULL",  # money: every commit reaches the disk
            migrations=_MIGRATIONS,
        )

    @classmethod
    def open_if_exists(cls, path: Path | str) -> Ledger | None:
        """The ledger read-only, or None when there is no file yet (nothing was ever spent)."""
        return cls(path, readonly=True) if Path(path).is_file() else None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        with self._lock:
            return schema_version(self._db)

    @property
    def journal_mode(self) -> str:
        with self._lock:
            return journal_mode(self._db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- spend ----------------------------------------------------------------------------

    def _spend(self, db: sqlite3.Connection, now: dt.datetime) -> Spend:
        stamp = iso(now)
        day, month = stamp[:10], stamp[:7]
        day_usd, month_usd = db.execute(
            f"SELECT COALESCE(SUM(CASE WHEN substr(created_at, 1, 10) = ? THEN {_SPENT} END), 0),"
            f" COALESCE(SUM({_SPENT}), 0) FROM requests WHERE created_at >= ? AND created_at < ?",
            (day, f"{month}-01", _next_month(month)),
        ).fetchone()
        return Spend(day, month, float(day_usd), float(month_usd))

    def spend(self, now: dt.datetime | None = None) -> Spend:
        """What was spent (or reserved) on ``now``'s UTC day and in its month."""
        with self._lock:
            return self._spend(self._db, now or utc_now())

    # -- writes -----------------------------------------------------------------------------

    def reserve(
        self,
        key: RequestKey,
        estimated_cost_usd: float,
        billable_bytes: int,
        check: Callable[[Spend, float], str | None],
        *,
        unit_price_usd_gb: float | None = None,
        temp_path: Path | None = None,
        now: dt.datetime | None = None,
    ) -> tuple[int, str | None]:
        """Insert a ``started`` row, or a ``refused`` one when ``check(spend, cost)`` gives a reason.

        Returns ``(row id, refusal reason or None)``; check and insert are one transaction.
        """
        now = now or utc_now()
        with self._transaction() as db:
            reason = check(self._spend(db, now), estimated_cost_usd)
            row_id = self._insert(db, key, "refused" if reason else "started", estimated_cost_usd, billable_bytes,
                                  reason or "", None if reason else temp_path, now, unit_price_usd_gb)
        return row_id, reason

    def refuse(self, items: Iterable[tuple[RequestKey, float, int]], reason: str,
               now: dt.datetime | None = None) -> list[int]:
        """Record requests refused before any was made: ``(key, estimated cost, billable bytes)``."""
        now = now or utc_now()
        with self._transaction() as db:
            return [self._insert(db, key, "refused", cost, size, reason, None, now) for key, cost, size in items]

    def _insert(self, db: sqlite3.Connection, key: RequestKey, status: str, cost: float | None,
                size: int | None, reason: str, path: Path | None, now: dt.datetime,
                unit_price: float | None = None) -> int:
        stamp = iso(now)
        cursor = db.execute(
            "INSERT INTO requests (dataset, schema, symbols, stype_in, day, window, status, estimated_cost_usd,"
            " billable_bytes, unit_price_usd_gb, path, reason, pid, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key.dataset, key.schema, key.symbols_text, key.stype_in, key.day.isoformat(), key.window, status, cost,
             size, unit_price, str(path) if path else None, reason, os.getpid(), stamp, stamp),
        )
        return int(cursor.lastrowid)

    def finish(
        self,
        row_id: int,
        status: str,
        *,
        received_bytes: int | None = None,
        records: int | None = None,
        unit_price_usd_gb: float | None = None,
        actual_cost_usd: float | None = None,
        path: Path | str | None = None,
        reason: str = "",
        now: dt.datetime | None = None,
    ) -> None:
        """Close a ``started`` request as ``done`` or ``failed`` with what was actually received."""
        if status not in ("done", "failed"):
            raise ValueError(f"finish: status must be done or failed, got {status!r}")
        with self._transaction() as db:
            db.execute(
                "UPDATE requests SET status = ?, received_bytes = ?, records = ?,"
                " unit_price_usd_gb = COALESCE(?, unit_price_usd_gb),"
                " actual_cost_usd = ?, path = ?, reason = ?, updated_at = ? WHERE id = ? AND status = 'started'",
                (status, received_bytes, records, unit_price_usd_gb, actual_cost_usd,
                 str(path) if path else None, reason, iso(now or utc_now()), row_id),
            )

    def record_done(self, key: RequestKey, *, estimated_cost_usd: float = 0.0, billable_bytes: int = 0,
                    reason: str = "", now: dt.datetime | None = None) -> int:
        """A request that needed no data request (nothing to download that day): ``done``, 0 records, no file."""
        now = now or utc_now()
        with self._transaction() as db:
            row_id = self._insert(db, key, "done", estimated_cost_usd, billable_bytes, reason, None, now)
            db.execute("UPDATE requests SET received_bytes = 0, records = 0, actual_cost_usd = 0 WHERE id = ?",
                       (row_id,))
        return row_id

    def record_live(self, key: RequestKey, *, records: int, received_bytes: int, unit_price_usd_gb: float,
                    cost_usd: float, reason: str = "", now: dt.datetime | None = None) -> int:
        """Live streaming spend (``key.window`` "live"): a ``done`` row with the bytes and their cost, no file."""
        now = now or utc_now()
        with self._transaction() as db:
            row_id = self._insert(db, key, "done", cost_usd, received_bytes, reason, None, now, unit_price_usd_gb)
            db.execute("UPDATE requests SET received_bytes = ?, records = ?, actual_cost_usd = ? WHERE id = ?",
                       (received_bytes, records, cost_usd, row_id))
        return row_id

    def mark_ingested(self, row_ids: Iterable[int], now: dt.datetime | None = None) -> None:
        ids = list(row_ids)
        if not ids:
            return
        with self._transaction() as db:
            db.executemany("UPDATE requests SET ingested_at = ? WHERE id = ?",
                           [(iso(now or utc_now()), row_id) for row_id in ids])

    def recover_stale(self, alive: Callable[[int], bool],
                      received: Callable[[str | None], tuple[int, int] | None]) -> list[LedgerRow]:
        """Close ``started`` rows of processes that are gone as ``failed`` (interrupted).

        ``received(temp path)`` gives the (records, bytes) that reached the temp file, when it can
        tell; their cost at the row's unit price is then the actual cost, else the estimate stands
        (the conservative view).
        """
        stale = [row for row in self.rows(status="started") if not alive(row.pid)]
        for row in stale:
            got = received(row.path)
            actual = None
            records = size = None
            if got is not None and row.unit_price_usd_gb is not None:
                records, size = got
                actual = size / BYTES_PER_GB * row.unit_price_usd_gb
            with self._transaction() as db:
                db.execute(
                    "UPDATE requests SET status = 'failed', received_bytes = ?, records = ?, actual_cost_usd = ?,"
                    " reason = ?, updated_at = ? WHERE id = ? AND status = 'started'",
                    (size, records, actual, "interrupted: the downloading process ended mid-request",
                     iso(utc_now()), row.id),
                )
        return stale

    def mark_alert(self, period: str, threshold: str, now: dt.datetime | None = None) -> bool:
        """True the first time ``(period, threshold)`` is marked: an alert fires once per period."""
        with self._transaction() as db:
            cursor = db.execute("INSERT OR IGNORE INTO budget_alerts VALUES (?, ?, ?)",
                                (period, threshold, iso(now or utc_now())))
            return cursor.rowcount == 1

    # -- reads ------------------------------------------------------------------------------

    def rows(self, *, status: str | None = None, key: RequestKey | None = None) -> list[LedgerRow]:
        """Requests, oldest first, optionally of one status and / or one request key."""
        where, args = [], []
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if key is not None:
            where.append("dataset = ? AND schema = ? AND symbols = ? AND stype_in = ? AND day = ? AND window = ?")
            args += [key.dataset, key.schema, key.symbols_text, key.stype_in, key.day.isoformat(), key.window]
        sql = "SELECT * FROM requests" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        with self._lock:
            return [LedgerRow(*row) for row in self._db.execute(sql, args).fetchall()]

    def completed(self, key: RequestKey) -> LedgerRow | None:
        """The latest ``done`` request for ``key``, if any."""
        done = self.rows(status="done", key=key)
        return done[-1] if done else None

    def periods(self, length: int) -> list[dict]:
        """Per UTC day (``length`` 10) or month (7) of request time: spend, estimates, bytes, counts by status."""
        sql = f"""
            SELECT substr(created_at, 1, {int(length)}) AS period,
                   SUM({_SPENT}) AS spent_usd,
                   SUM(CASE WHEN status != 'refused' THEN COALESCE(estimated_cost_usd, 0) ELSE 0 END) AS estimated_usd,
                   SUM(CASE WHEN status = 'refused' THEN COALESCE(estimated_cost_usd, 0) ELSE 0 END) AS refused_usd,
                   SUM(COALESCE(received_bytes, 0)) AS received_bytes,
                   SUM(status = 'done') AS done, SUM(status = 'failed') AS failed,
                   SUM(status = 'refused') AS refused, SUM(status = 'started') AS started
            FROM requests GROUP BY period ORDER BY period"""
        with self._lock:
            cursor = self._db.execute(sql)
            names = [c[0] for c in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _next_month(month: str) -> str:
    year, mon = int(month[:4]), int(month[5:7])
    return f"{year + mon // 12:04d}-{mon % 12 + 1:02d}-01"
