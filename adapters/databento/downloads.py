"""Cost-checked Databento historical downloads, one request per UTC day and schema, into the raw folder and the catalog.

``Downloader(budget).run(DownloadRequest(...))`` (``ifd data download``), with the official
``databento.Historical`` client:

1. Each UTC day from ``start`` to ``end`` (exclusive, as Databento's ``end``) is one request per
   schema: the instrument definitions of the same symbols first, then the data (``mbo``). A
   request already recorded ``done`` in the ledger whose file is in the raw folder is skipped
   with no API call at all; when every request is, the client is not even created.
2. Every other request is priced first: ``metadata.get_cost`` and ``metadata.get_billable_size``.
   A day on which none of the symbols resolve (a weekend, a holiday: Databento answers 422
   ``symbology_invalid_request``) or that has no records is recorded ``done`` with no file; when no
   day resolves at all the symbols are wrong, an error.
3. The whole plan's cost is checked against what is left of the day's and the month's budget
   (``configs/budget.toml``): over either, every request is recorded ``refused`` and nothing is
   downloaded (``BudgetRefused``, exit code 3). Then each request is checked again, atomically
   with reserving its estimate in the ledger (another download may have spent meanwhile).
4. ``timeseries.get_range`` streams into a temporary file under ``RAW/.partial/``; the file is
   verified (``adapters.databento.dbn_scan``: complete zstd frames, DBN metadata of the right
   dataset and schema, every record whole) and moved into place with ``os.replace``:
   ``RAW/<dataset>/<schema>/<YYYY-MM-DD>/<stype>-<symbols>.dbn.zst``. On any error (a connection
   dropped mid-body, an HTTP error, a file that does not decode) the temporary file is deleted,
   the request recorded ``failed`` with the cost of the complete records that did arrive, and
   the next run downloads that request again. Nothing half-written is ever in the raw folder.
5. The actual cost is what arrived: the uncompressed bytes of the records received at the
   schema's unit price from ``metadata.list_unit_prices`` (historical-streaming, USD per GB of
   1e9 bytes), next to the estimate in the ledger.
6. Each finished day's files are ingested into the catalog (``catalogs.ingest``, deduplicated) and
   marked ingested; a day downloaded but not ingested (an ingest that failed) is ingested on the
   next run, again without an API call.
7. Budget alerts (``adapters.databento.budget.budget_alerts``) after each request; a refusal also
   raises a warning alert.

One downloader per raw folder at a time (a lock file); partial files and ``started`` ledger rows
left by a process that was killed are cleaned up at the next start. The API key comes from
``DATABENTO_API_KEY`` (environment or ``.env``) and never reaches output, logs, the ledger or
files; ``DATABENTO_GATEWAY`` (or ``gateway=``) points the client at another server, e.g. the
loopback one in ``adapters.databento.historical_gateway``.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import os
import re
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import requests
from databento.common.error import BentoError, BentoHttpError, BentoWarning

from adapters.databento.budget import (
    BudgetConfig,
    BudgetRefused,
    budget_alerts,
    budget_status,
    refusal,
)
from adapters.databento.dbn_files import SUPPORTED_SCHEMAS
from adapters.databento.dbn_scan import scan_dbn
from adapters.databento.ledger import BYTES_PER_GB, Ledger, RequestKey, utc_now
from ifd.errors import IfdError

if TYPE_CHECKING:
    from ifd.alerts import AlertDispatcher

API_KEY_ENV = "DATABENTO_API_KEY"
GATEWAY_ENV = "DATABENTO_GATEWAY"
DEFAULT_RAW = Path("data/raw")
DEFAULT_CATALOG = Path("data/catalog")
FEED_MODE = "historical-streaming"
STYPES = ("parent", "raw_symbol", "instrument_id")
PARTIAL_DIR = ".partial"
LOCK_FILE = ".lock"
MAX_KEY_CHARS = 80
_SAFE = re.compile(r"[^A-Za-z0-9.+_-]")


# -- the request -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DownloadRequest:
    """What to download: dataset, schema (plus its definitions), symbols, UTC days ``start`` to ``end`` (exclusive)."""

    dataset: str
    schema: str
    symbols: tuple[str, ...]
    stype_in: str
    start: dt.date
    end: dt.date
    # Part of one UTC day instead of whole days: ("HH:MM-HH:MM" of the data, of the definitions).
    # The definitions window may start earlier (at 00:00 for a day's first window: the day's
    # instrument definitions are published at its start).
    window: tuple[str, str] | None = None

    @classmethod
    def intraday(cls, dataset: str, schema: str, symbols: tuple[str, ...], stype_in: str,
                 start: dt.datetime, end: dt.datetime, definitions_from: dt.datetime | None = None) -> DownloadRequest:
        """A request for [start, end) within one UTC day, with definitions from ``definitions_from``
        (default ``start``) to ``end``."""
        day = start.astimezone(dt.UTC).date()
        definitions_from = definitions_from or start
        midnight = dt.datetime.combine(day, dt.time(), dt.UTC)
        if not (midnight <= definitions_from <= start < end <= midnight + dt.timedelta(days=1)):
            raise IfdError(f"window {start.isoformat()}..{end.isoformat()}: must lie within one UTC day")
        return cls(dataset, schema, tuple(symbols), stype_in, day, day + dt.timedelta(days=1),
                   (window_text(start, end), window_text(definitions_from, end)))

    @classmethod
    def parse(cls, dataset: str, schema: str, symbols: str, stype_in: str, start: str,
              end: str | None = None) -> DownloadRequest:
        """Validated command-line values (``end`` defaults to the day after ``start``)."""
        if schema not in SUPPORTED_SCHEMAS:
            raise IfdError(f"--schema {schema}: not one the catalog ingests ({', '.join(SUPPORTED_SCHEMAS)})")
        if stype_in not in STYPES:
            raise IfdError(f"--stype {stype_in}: expected one of {', '.join(STYPES)}")
        names = tuple(sorted({s.strip() for s in symbols.split(",") if s.strip()}))
        if not names:
            raise IfdError("--symbols: give at least one symbol, e.g. NQ.OPT,NQ.FUT")
        if stype_in == "parent" and not all(s.endswith((".FUT", ".OPT")) or "." not in s for s in names):
            raise IfdError(f"--symbols {symbols}: parent symbols look like ROOT.FUT or ROOT.OPT")
        if not re.fullmatch(r"[A-Z0-9]+\.[A-Z0-9]+", dataset):
            raise IfdError(f"--dataset {dataset}: expected a Databento dataset code like GLBX.MDP3")
        first = _date("--start", start)
        last = _date("--end", end) if end else first + dt.timedelta(days=1)
        if last <= first:
            raise IfdError(f"--end {last} must be after --start {first} (the end day is exclusive)")
        return cls(dataset, schema, names, stype_in, first, last)

    def days(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range((self.end - self.start).days)]

    def schemas(self) -> tuple[str, ...]:
        """The definitions first (ingest needs them), then the data schema."""
        return ("definition",) if self.schema == "definition" else ("definition", self.schema)

    def keys(self, day: dt.date) -> list[RequestKey]:
        data, definitions = self.window or ("", "")
        return [RequestKey(self.dataset, schema, self.symbols, self.stype_in, day,
                           definitions if schema == "definition" and self.schema != "definition" else data)
                for schema in self.schemas()]

    def label(self) -> str:
        when = f"{self.start} {self.window[0]}" if self.window else f"{self.start}..{self.end - dt.timedelta(days=1)}"
        return f"{self.dataset} {'+'.join(self.schemas())} {','.join(self.symbols)} ({self.stype_in}) {when}"


def window_text(start: dt.datetime, end: dt.datetime) -> str:
    """``HH:MM-HH:MM`` of [start, end) within start's UTC day (an end at the next midnight is 24:00)."""
    start, end = start.astimezone(dt.UTC), end.astimezone(dt.UTC)
    if start.second or start.microsecond or end.second or end.microsecond:
        raise IfdError(f"window {start.isoformat()}..{end.isoformat()}: must start and end on whole minutes")
    stop = "24:00" if end.date() > start.date() and end.time() == dt.time() else end.strftime("%H:%M")
    return f"{start:%H:%M}-{stop}"


def _date(option: str, text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise IfdError(f"{option} {text!r}: expected a date YYYY-MM-DD (UTC)") from None


def symbols_key(symbols: tuple[str, ...], stype_in: str) -> str:
    """File stem of a symbol set: ``parent-NQ.FUT+NQ.OPT``; long sets end in a digest."""
    text = _SAFE.sub("_", f"{stype_in}-{'+'.join(symbols)}")
    if len(text) <= MAX_KEY_CHARS:
        return text
    digest = hashlib.sha256(",".join(symbols).encode()).hexdigest()[:16]
    return f"{text[:MAX_KEY_CHARS - 17]}~{digest}"


def raw_file(raw_root: Path, key: RequestKey) -> Path:
    """``RAW/<dataset>/<schema>/<YYYY-MM-DD>/<stype>-<symbols>[.HHMM-HHMM].dbn.zst`` (with the window's times)."""
    window = f".{key.window.replace(':', '')}" if key.window else ""
    name = f"{symbols_key(key.symbols, key.stype_in)}{window}.dbn.zst"
    return raw_root / key.dataset / key.schema / key.day.isoformat() / name


# -- the client ----------------------------------------------------------------------------------


def api_key(env: Mapping[str, str] = os.environ) -> str:
    """The Databento key from ``DATABENTO_API_KEY``; a one-line ``IfdError`` (without any value) when unset."""
    key = (env.get(API_KEY_ENV) or "").strip()
    if not key:
        raise IfdError(
            f"{API_KEY_ENV} is not set (the Databento API key, from the environment or .env; it is never logged)",
        )
    if any(c.isspace() for c in key):
        raise IfdError(f"{API_KEY_ENV} holds whitespace: not a Databento API key")
    return key


def historical_client(env: Mapping[str, str] = os.environ, gateway: str | None = None):
    """A ``databento.Historical`` client: the key from the environment, ``gateway`` or ``$DATABENTO_GATEWAY`` if set."""
    import databento

    key = api_key(env)
    target = gateway or (env.get(GATEWAY_ENV) or "").strip() or None
    try:
        return databento.Historical(key, gateway=target) if target else databento.Historical(key)
    except ValueError as exc:
        raise IfdError(f"Databento client: {str(exc).replace(key, '***')}") from None


# -- results -------------------------------------------------------------------------------------


@dataclass
class Planned:
    """One request to make: its key, price and ledger row."""

    key: RequestKey
    cost_usd: float = 0.0
    billable_bytes: int = 0
    no_data: str = ""  # why nothing is to be downloaded that day
    row_id: int | None = None


@dataclass
class DownloadReport:
    """What a run did, per request; JSON-ready through ``to_dict``."""

    request: DownloadRequest
    raw_root: str
    catalog: str | None
    requests: list[dict] = field(default_factory=list)
    ingested_files: int = 0
    catalog_rows: int = 0
    estimated_usd: float = 0.0
    actual_usd: float = 0.0
    budget: str = ""
    alerts: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, key: RequestKey, status: str, **values) -> None:
        where = {"day": key.day.isoformat(), **({"window": key.window} if key.window else {})}
        self.requests.append({**where, "schema": key.schema, "status": status, **values})
        self.requests.sort(key=lambda r: (r["day"], r["schema"] != "definition"))  # stable: a retry stays after

    def to_dict(self) -> dict:
        counts: dict[str, int] = {}
        for r in self.requests:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        return {
            "request": self.request.label(),
            "raw": self.raw_root,
            "catalog": self.catalog,
            "counts": counts,
            "estimated_usd": round(self.estimated_usd, 6),
            "actual_usd": round(self.actual_usd, 6),
            "ingested_files": self.ingested_files,
            "catalog_rows_written": self.catalog_rows,
            "budget": self.budget,
            "alerts": self.alerts,
            "seconds": round(self.seconds, 3),
            "requests": self.requests,
        }

    def format(self) -> str:
        lines = []
        for r in self.requests:
            money = ""
            if "estimated_usd" in r:
                money = f"  est ${r['estimated_usd']:,.4f}"
            if "actual_usd" in r:
                money += f"  actual ${r['actual_usd']:,.4f}"
            records = f"  {r['records']:,} records" if r.get("records") is not None else ""
            where = f"  {r['path']}" if r.get("path") else ""
            note = f"  ({r['note']})" if r.get("note") else ""
            lines.append(f"{r['day']}  {r['schema']:<10}  {r['status']:<10}{records}{money}{where}{note}")
        d = self.to_dict()
        lines.append(
            f"{d['counts'].get('downloaded', 0)} downloaded, {d['counts'].get('skipped', 0)} skipped (already "
            f"downloaded), {d['counts'].get('no data', 0)} without data; spent ${self.actual_usd:,.4f} (estimated "
            f"${self.estimated_usd:,.4f}); {self.ingested_files} file(s) ingested, {self.catalog_rows:,} catalog rows",
        )
        lines.append(f"budget: {self.budget}")
        return "\n".join(lines)


# -- the downloader ------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _received(temp: str | None) -> tuple[int, int] | None:
    if not temp or not Path(temp).exists():
        return None
    scan = scan_dbn(temp, partial=True)
    return scan.records, scan.record_bytes


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Downloader:
    """Cost-checked downloads into ``raw_root`` and ``catalog`` (None: no ingest) under ``budget``.

    ``client_factory`` makes the ``databento.Historical`` client, only when a request must be
    made; ``alerts`` is an ``ifd.alerts.AlertDispatcher`` (or None); ``clock`` gives UTC now.
    """

    def __init__(
        self,
        budget: BudgetConfig,
        *,
        raw_root: Path | str = DEFAULT_RAW,
        catalog: Path | str | None = DEFAULT_CATALOG,
        client_factory: Callable[[], object] = historical_client,
        alerts: AlertDispatcher | None = None,
        progress: Callable[[str], None] | None = None,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self.budget = budget
        self.raw_root = Path(raw_root)
        self.catalog = Path(catalog) if catalog is not None else None
        self.client_factory = client_factory
        self.alerts = alerts
        self.say = progress or (lambda _msg: None)
        self.clock = clock
        self._client = None
        self._key: str | None = None
        self._unit_prices: dict[str, float] | None = None

    @property
    def partial_dir(self) -> Path:
        return self.raw_root / PARTIAL_DIR

    # -- run ------------------------------------------------------------------------------

    def run(self, request: DownloadRequest) -> DownloadReport:
        """Download, verify, move and ingest every day of ``request`` within the budget (see the module doc)."""
        started = time.perf_counter()
        report = DownloadReport(request, str(self.raw_root), str(self.catalog) if self.catalog else None)
        self.raw_root.mkdir(parents=True, exist_ok=True)
        with self._lock(), Ledger(self.budget.ledger) as ledger:
            self._recover(ledger)
            try:
                pending, to_ingest = self._plan(request, ledger, report)
                if pending:
                    has_data = any(r["status"] == "skipped" and r.get("path") for r in report.requests)
                    self._price(pending, symbols_known=has_data)
                    self._check_plan(request, pending, ledger, report)
                    self._download(pending, ledger, report, to_ingest)
                else:
                    self._ingest_days(to_ingest, ledger, report)
            finally:
                self._budget_alerts(ledger, report)
                report.budget = budget_status(self.budget, self.clock(), ledger).describe()
                report.seconds = time.perf_counter() - started
        return report

    def _lock(self):
        """An exclusive lock on the raw folder for the run (a context manager)."""
        path = self.raw_root / LOCK_FILE
        fh = path.open("a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise IfdError(f"{self.raw_root}: another ifd data download is running on this folder") from None
        return fh  # closing it (end of the with block) releases the lock

    def _recover(self, ledger: Ledger) -> None:
        """Requests of killed downloaders become ``failed``; their partial files are deleted (we hold the lock)."""
        for row in ledger.recover_stale(_alive, _received):
            self.say(f"request #{row.id} ({row.schema} {row.day}) was interrupted in an earlier run: recorded failed")
        if self.partial_dir.is_dir():
            for leftover in self.partial_dir.iterdir():
                leftover.unlink(missing_ok=True)

    def _plan(self, request: DownloadRequest, ledger: Ledger,
              report: DownloadReport) -> tuple[list[Planned], dict[dt.date, list]]:
        """Requests still to make, and per day the done files not ingested yet; skips cost no API call."""
        pending: list[Planned] = []
        to_ingest: dict[dt.date, list] = {}
        for day in request.days():
            for key in request.keys(day):
                row = ledger.completed(key)
                path = raw_file(self.raw_root, key)
                if row is not None and row.path is None and row.records == 0:
                    report.add(key, "skipped", records=0, note="no data that day")
                elif row is not None and path.is_file():
                    report.add(key, "skipped", records=row.records, path=str(path))
                    if row.ingested_at is None and self.catalog is not None:
                        to_ingest.setdefault(day, []).append((row.id, path))
                else:
                    pending.append(Planned(key))
        return pending, to_ingest

    # -- API calls -------------------------------------------------------------------------

    def _api(self):
        if self._client is None:
            self._client = self.client_factory()
            self._key = getattr(self._client, "key", None)
        return self._client

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _call(self, what: str, fn: Callable, **params):
        """One client call; Databento's errors become one-line ``IfdError``s, warnings go to progress."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", BentoWarning)
            try:
                return fn(**params)
            except BentoHttpError as exc:
                raise _http_error(exc, what, self._scrub) from None
            except BentoError as exc:  # the client's error for a connection lost mid-body
                raise TransientError(self._scrub(f"{what}: the transfer was cut off ({exc})")) from None
            except requests.RequestException as exc:
                raise TransientError(
                    self._scrub(f"{what}: cannot reach Databento ({type(exc).__name__}: {exc})"),
                ) from None
            finally:
                for warning in caught:
                    if issubclass(warning.category, BentoWarning):
                        self.say(self._scrub(f"{what}: Databento warns: {warning.message}"))

    def _params(self, key: RequestKey) -> dict:
        start, end = key.bounds()
        return {"dataset": key.dataset, "start": _api_time(start), "end": _api_time(end), "symbols": list(key.symbols),
                "schema": key.schema, "stype_in": key.stype_in}

    def _price(self, pending: list[Planned], symbols_known: bool = False) -> None:
        """get_cost and get_billable_size of every pending request (metadata only: free).

        When no day resolves the symbols are wrong (an error), unless earlier runs found data for
        them (``symbols_known``): then the pending days just have none.
        """
        client = self._api()
        unresolved = []
        for item in pending:
            what = f"pricing {item.key.label()}"
            try:
                item.cost_usd = float(self._call(what, client.metadata.get_cost, **self._params(item.key)))
                item.billable_bytes = int(self._call(what, client.metadata.get_billable_size, **self._params(item.key)))
            except _Unresolved as exc:
                item.no_data = "none of the symbols resolve that day"
                unresolved.append(str(exc))
                continue
            if item.billable_bytes == 0:
                item.no_data = "no records that day"
        if len(unresolved) == len(pending) and not symbols_known:
            raise IfdError(unresolved[0])  # not one day resolves: the symbols are wrong

    def _unit_price(self, key: RequestKey, item: Planned) -> float:
        """USD per GB for ``key``'s schema (list_unit_prices; the quote's own ratio if the schema is not listed)."""
        if self._unit_prices is None:
            listing = self._call(f"unit prices of {key.dataset}", self._api().metadata.list_unit_prices,
                                 dataset=key.dataset)
            chosen = next((m for m in listing if m.get("mode") == FEED_MODE), listing[0] if listing else {})
            self._unit_prices = {str(k): float(v) for k, v in (chosen.get("unit_prices") or {}).items()}
        price = self._unit_prices.get(key.schema)
        if price is None and item.billable_bytes:
            price = item.cost_usd / item.billable_bytes * BYTES_PER_GB
        return float(price or 0.0)

    # -- budget ----------------------------------------------------------------------------

    def _check_plan(self, request: DownloadRequest, pending: list[Planned], ledger: Ledger,
                    report: DownloadReport) -> None:
        billable = [p for p in pending if not p.no_data]
        total = sum(p.cost_usd for p in billable)
        now = self.clock()
        what = f"{len(billable)} request(s) for {request.label()}"
        reason = refusal(self.budget, ledger.spend(now), total, what) if billable else None
        if reason:
            ledger.refuse([(p.key, p.cost_usd, p.billable_bytes) for p in billable], reason, now)
            for p in billable:
                report.add(p.key, "refused", estimated_usd=p.cost_usd)
            self._refusal_alert(reason)
            raise BudgetRefused(reason)
        for p in pending:
            if p.no_data:
                ledger.record_done(p.key, estimated_cost_usd=p.cost_usd, billable_bytes=p.billable_bytes,
                                   reason=f"no data: {p.no_data}", now=now)
                report.add(p.key, "no data", records=0, note=p.no_data)
        report.estimated_usd += total
        self.say(f"{what}: estimated ${total:,.4f}; {budget_status(self.budget, now, ledger).describe()}")

    def _refusal_alert(self, reason: str) -> None:
        if self.alerts is None:
            return
        from ifd.alerts import Alert

        self.alerts.dispatch(Alert.create("warning", "data_budget", "Databento download refused by the budget",
                                          reason, source="ifd data"))

    # -- downloads -------------------------------------------------------------------------

    def _download(self, pending: list[Planned], ledger: Ledger, report: DownloadReport,
                  to_ingest: dict[dt.date, list]) -> None:
        by_day: dict[dt.date, list[Planned]] = {}
        for item in pending:
            if not item.no_data:
                by_day.setdefault(item.key.day, []).append(item)
        for day in sorted(set(by_day) | set(to_ingest)):
            try:
                for item in by_day.get(day, []):
                    row_id, path = self._fetch(item, ledger, report)
                    if self.catalog is not None:
                        to_ingest.setdefault(day, []).append((row_id, path))
            finally:
                # What this day completed goes into the catalog even if a later request of it failed:
                # definitions first is the order of the requests, and ingest sorts them anyway.
                self._ingest_days({day: to_ingest.pop(day, [])}, ledger, report)
            self._budget_alerts(ledger, report)

    def _budget_alerts(self, ledger: Ledger, report: DownloadReport) -> None:
        report.alerts += [a.title for a in budget_alerts(self.budget, ledger, self.alerts, self.clock())]

    def _fetch(self, item: Planned, ledger: Ledger, report: DownloadReport) -> tuple[int, Path]:
        key = item.key
        final = raw_file(self.raw_root, key)
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        temp = self.partial_dir / f"{final.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part"
        unit_price = self._unit_price(key, item)
        row_id, reason = ledger.reserve(
            key, item.cost_usd, item.billable_bytes,
            lambda spend, cost: refusal(self.budget, spend, cost, key.label()),
            unit_price_usd_gb=unit_price, temp_path=temp, now=self.clock(),
        )
        if reason:
            report.add(key, "refused", estimated_usd=item.cost_usd)
            self._refusal_alert(reason)
            raise BudgetRefused(reason)
        what = f"downloading {key.label()}"
        self.say(f"{what} (estimated ${item.cost_usd:,.4f}, {item.billable_bytes:,} billable bytes)")
        try:
            self._call(what, self._api().timeseries.get_range, path=temp, **self._params(key))
            scan = scan_dbn(temp)
            if (scan.dataset, scan.schema) != (key.dataset, key.schema):
                raise IfdError(f"{what}: the file holds {scan.dataset} {scan.schema}, not {key.dataset} {key.schema}")
            final.parent.mkdir(parents=True, exist_ok=True)
            _fsync(temp)
            os.replace(temp, final)
            _fsync(final.parent)
        except BaseException as exc:
            got = _received(str(temp)) or (0, 0)
            temp.unlink(missing_ok=True)
            text = str(exc) if isinstance(exc, IfdError) else f"{what}: {type(exc).__name__}"
            ledger.finish(row_id, "failed", records=got[0], received_bytes=got[1],
                          actual_cost_usd=got[1] / BYTES_PER_GB * unit_price, reason=self._scrub(text))
            report.actual_usd += got[1] / BYTES_PER_GB * unit_price
            report.add(key, "failed", records=got[0], estimated_usd=item.cost_usd,
                       actual_usd=got[1] / BYTES_PER_GB * unit_price, note=self._scrub(text))
            if isinstance(exc, IfdError):
                raise type(exc)(f"{exc}; nothing of it was kept (recorded failed): run the command again "
                                "to resume") from None
            raise
        actual = scan.record_bytes / BYTES_PER_GB * unit_price
        ledger.finish(row_id, "done", records=scan.records, received_bytes=scan.record_bytes,
                      actual_cost_usd=actual, path=final)
        report.actual_usd += actual
        report.add(key, "downloaded", records=scan.records, estimated_usd=item.cost_usd, actual_usd=actual,
                   path=str(final))
        return row_id, final

    def _ingest_days(self, days: dict[dt.date, list], ledger: Ledger, report: DownloadReport) -> None:
        from catalogs.ingest import ingest

        for day in sorted(days):
            files = days[day]
            if not files or self.catalog is None:
                continue
            self.say(f"ingesting {day} ({len(files)} file(s)) into {self.catalog}")
            result = ingest([path for _, path in files], self.catalog, progress=self.say)
            ledger.mark_ingested([row_id for row_id, _ in files])
            report.ingested_files += len(files)
            report.catalog_rows += sum(result.rows_written.values())


def _api_time(moment: dt.datetime) -> str:
    """A date at midnight (the form whole-day requests always used), else ISO 8601 UTC to the minute."""
    if moment.time() == dt.time():
        return moment.date().isoformat()
    return moment.strftime("%Y-%m-%dT%H:%MZ")


class TransientError(IfdError):
    """A failure worth trying again later: the network, a transfer cut off, Databento 408 / 429 / 5xx."""


TRANSIENT_STATUSES = (408, 429)


class _Unresolved(IfdError):
    """Databento's 422 symbology_invalid_request: none of the symbols resolve on the requested day."""


def _http_error(exc: BentoHttpError, what: str, scrub: Callable[[str], str]) -> IfdError:
    detail = (exc.json_body or {}).get("detail") if isinstance(exc.json_body, dict) else None
    case = detail.get("case", "") if isinstance(detail, dict) else ""
    message = detail.get("message", "") if isinstance(detail, dict) else (exc.message or "")
    status = exc.http_status
    text = f"{what}: Databento answered {status}{' ' + case if case else ''}: {message or '<no message>'}"
    if status == 401:
        text += f" (check {API_KEY_ENV})"
    if exc.request_id:
        text += f" [request {exc.request_id}]"
    if status == 422 and case == "symbology_invalid_request":
        return _Unresolved(scrub(text))
    return (TransientError if status in TRANSIENT_STATUSES or status >= 500 else IfdError)(scrub(text))
