"""Per-instrument activity baselines over the previous trading days, read straight from a catalog.

``build_baselines(catalog)`` reads the catalog's ``TradeTick`` Parquet files with pyarrow and numpy
(no NautilusTrader engine, not even its import; instrument definitions are read from the newest
definition file of each instrument) and writes, for a day ``D`` and a ``lookback`` of N trading days,
``<catalog>/baselines/baseline_<D>_<N>d_<window>s.parquet``; ``Baselines.load`` /
``Baselines.for_date`` read it back and ``Baselines.get(info, underlying_price)`` hands a
detector the ``BaselineStats`` of one instrument.

Definitions
-----------
* Trading day: the UTC date of ``ts_event``.  A day with no trade in the catalog is not a
  trading day.  The baseline for ``D`` uses the ``lookback`` trading days strictly before ``D``
  (``D`` itself never contributes); ``D`` defaults to the latest trading day in the catalog.
* Session of a day: from its first to its last trade of any instrument.  Windows are fixed clock
  buckets ``floor(ts_event / window_ns)``; every bucket from the first trade's to the last
  trade's counts, for every instrument *present* that day, zero-volume windows included.
  An instrument is present on a day when it has trades, or book / quote data
  (``order_book_deltas``, ``order_book_depth10``, ``quote_tick`` files) covering that day: a
  listed instrument that did not trade contributes its zero windows; one that was not in the
  data at all (expired, not yet listed, not downloaded) contributes nothing.
* Per window: ``volume`` (contracts, all trades), buy / sell volume (aggressor BUYER / SELLER;
  trades without aggressor count in volume only), ``pressure = buy / (buy + sell)`` (only
  windows with buy + sell > 0) and ``net premium = sum(price * multiplier * size * sign)``,
  sign +1 buyer, -1 seller, 0 none (USD for NQ options).
* Statistics over all windows of all days used: mean, sample standard deviation (ddof=1, 0.0
  for a single value), percentiles with linear interpolation between order statistics (numpy's
  default); ``net_premium_abs_p99`` is the 99th percentile of ``|net premium|``; ``days`` counts
  the days the instrument (or bucket) was present.

Fallback by moneyness
---------------------
Instruments with fewer than ``min_days`` (default 5) days of their own history (new strikes
after the underlying moved, new weeklies) get the statistics of their *moneyness bucket*,
keyed by ``(option kind, distance, dte bucket)``:

* ``distance = floor((strike - underlying) / strike_step + 0.5)`` in strike steps, with the
  underlying of that day and the chain's strike step (the most common gap between neighbouring
  listed strikes of that underlying that day);
* ``dte bucket``: days from the day's 00:00 UTC to expiration, bucketed at
  ``DTE_EDGES_DAYS = (1, 2, 5, 10, 31, 92)``: 0 = expires today (< 1 day), 1 = next day,
  2 = 2-5 days, 3 = 5-10, 4 = 10-31, 5 = 31-92, 6 = later.

The bucket pools every window of every option instrument-day of the lookback that fell in it.
History side: the underlying of a day is the median trade price of the option's underlying
future that day (``<underlying>.<venue>`` in the catalog); when the future has no trades in the
catalog, put-call parity on the options (``strike + median(call) - median(put)``, median over
strikes with both) stands in.

Lookup side: ``Baselines.get(info, underlying_price)`` takes the underlying price from the
caller - a strategy knows the future's last trade or mid - and ``now_ns`` (default: 00:00 UTC of
the baseline's date) for the DTE.  When ``underlying_price`` is None the last trade price of
that underlying on the newest history day is used (written into the baseline file), which is
fine for distances in strike steps unless the market gapped.  The strike step at lookup is the
one recorded for ``info.underlying`` on the newest history day (else the most common one).

Cache
-----
Per-day statistics live in ``<catalog>/baselines/daily/<YYYY-MM-DD>.parquet``: one row per
present instrument and window size, with ``n_windows``, sums and sums of squares, and the
per-window ``volumes`` / ``pressures`` / ``premiums`` as list columns (percentiles need them).
The file carries a fingerprint of the catalog files the day was computed from (relative path,
size and mtime of every trade / book / quote file covering the day); a build recomputes a day
whose fingerprint changed (the catalog gained or merged files for it) and reuses it otherwise.
Rows for several window sizes can share a day file.  Every file is written to a temporary name
and moved into place with ``os.replace``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ifd.detection.types import BaselineStats, InstrumentInfo
from catalogs.fixed_point import decode_fixed_point
from catalogs.fixed_point import read_trade_arrays
from ifd.errors import IfdError

DEFAULT_WINDOW_NS = 300_000_000_000
DEFAULT_LOOKBACK = 20
DEFAULT_MIN_DAYS = 5
BASELINES_DIR = "baselines"
DAILY_DIR = "daily"
CACHE_VERSION = 1
DAY_NS = 86_400_000_000_000
_EPOCH = dt.date(1970, 1, 1)
# ts_init (file names) may follow ts_event (day assignment) by the feed latency
TS_INIT_SLACK_NS = 60_000_000_000
DTE_EDGES_DAYS = (1.0, 2.0, 5.0, 10.0, 31.0, 92.0)
TRADE_FOLDER = "trade_tick"
PRESENCE_FOLDERS = ("order_book_deltas", "order_book_depth10", "quote_tick")
# NautilusTrader's catalog folders of instrument definitions (class name in snake case); importing
# them from catalogs.listing would load NautilusTrader (~200 MB) for a list of names.
INSTRUMENT_FOLDERS = (
    "option_contract",
    "futures_contract",
    "option_spread",
    "futures_spread",
    "equity",
    "index_instrument",
    "commodity",
    "cfd",
    "currency_pair",
    "crypto_future",
    "crypto_perpetual",
    "crypto_option",
    "binary_option",
    "betting_instrument",
    "synthetic_instrument",
)
META_KEY = b"ifd_baseline"
QUANTILES = (0.5, 0.9, 0.99)
MAX_CELLS = 50_000_000  # instrument x window cells of one day (memory guard for tiny windows)
AGGRESSOR_BUYER = 1
AGGRESSOR_SELLER = 2

Progress = Callable[[str], None]


# --- results ---------------------------------------------------------------------------------


@dataclass
class BaselineBuildResult:
    """What ``build_baselines`` wrote and which daily caches it computed or reused."""

    path: str
    date: str
    lookback: int
    window_ns: int
    days_used: list[str] = field(default_factory=list)
    days_computed: list[str] = field(default_factory=list)
    days_reused: list[str] = field(default_factory=list)
    instruments: int = 0
    moneyness_buckets: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "date": self.date,
            "lookback": self.lookback,
            "window_ns": self.window_ns,
            "days_used": self.days_used,
            "days_computed": self.days_computed,
            "days_reused": self.days_reused,
            "instruments": self.instruments,
            "moneyness_buckets": self.moneyness_buckets,
            "seconds": round(self.seconds, 3),
        }


# --- decoding --------------------------------------------------------------------------------


decode_fixed = decode_fixed_point  # the catalog's fixed-point decoding, one implementation


def read_trades(path: Path | str) -> dict[str, np.ndarray | str]:
    """One ``TradeTick`` Parquet file as numpy arrays: price, size, aggressor_side, ts_event."""
    return read_trade_arrays(path)


# --- catalog scanning --------------------------------------------------------------------------


@dataclass(frozen=True)
class _DataFile:
    path: Path
    rel: str  # path relative to the catalog root (fingerprints)
    folder: str  # instrument folder name (urisafe instrument id)
    start: int
    end: int
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class _InstrumentMeta:
    kind: str  # CALL | PUT | FUT | OTHER
    strike: float
    expiration_ns: int
    underlying: str
    multiplier: float
    venue: str


_STAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2})-(\d{2})-(\d{2})-(\d{9})Z")
_NAME = re.compile(rf"^({_STAMP.pattern})_({_STAMP.pattern})\.parquet$")


def _stamp_ns(text: str) -> int:
    y, mo, d, h, mi, sec, frac = (int(x) for x in _STAMP.fullmatch(text).groups())
    day = (dt.date(y, mo, d) - _EPOCH).days
    return day * DAY_NS + ((h * 60 + mi) * 60 + sec) * 1_000_000_000 + frac


def parse_interval(name: str) -> tuple[int, int] | None:
    """``(start, end)`` ns of a NautilusTrader catalog file name
    (``2026-11-16T14-30-01-652519547Z_2026-11-16T14-39-59-399699407Z.parquet``), else None."""
    match = _NAME.match(name)
    if match is None:
        return None
    return _stamp_ns(match.group(1)), _stamp_ns(match.group(9))


def _scan_folder(root: Path, folder: str) -> list[_DataFile]:
    base = root / "data" / folder
    if not base.is_dir():
        return []
    out = []
    for inst_dir in sorted(os.scandir(base), key=lambda e: e.name):
        if not inst_dir.is_dir():
            continue
        for entry in sorted(os.scandir(inst_dir.path), key=lambda e: e.name):
            if not entry.name.endswith(".parquet") or not entry.is_file():
                continue
            st = entry.stat()
            interval = parse_interval(entry.name)
            if interval is None:  # read the real range from the file
                ts = pq.read_table(entry.path, columns=["ts_init"]).column("ts_init")
                if len(ts) == 0:
                    continue
                interval = (int(pc.min(ts).as_py()), int(pc.max(ts).as_py()))
            rel = f"data/{folder}/{inst_dir.name}/{entry.name}"
            out.append(
                _DataFile(
                    Path(entry.path), rel, inst_dir.name, interval[0], interval[1], st.st_size, st.st_mtime_ns
                )
            )
    return out


def _day_start(day: dt.date) -> int:
    """00:00 UTC of ``day`` in ns since the epoch."""
    return (day - _EPOCH).days * DAY_NS


def _candidate_days(files: list[_DataFile]) -> list[dt.date]:
    days: set[int] = set()
    for f in files:
        days.update(range((f.start - TS_INIT_SLACK_NS) // DAY_NS, f.end // DAY_NS + 1))
    return [_EPOCH + dt.timedelta(days=d) for d in sorted(days)]


_OPTION_KINDS = {"CALL": "CALL", "PUT": "PUT", "1": "CALL", "2": "PUT"}
_DEFINITION_COLUMNS = (
    "id",
    "underlying",
    "option_kind",
    "strike_price",
    "expiration_ns",
    "multiplier",
    "ts_init",
)


def _read_definition(f: _DataFile, folder: str) -> tuple[str, _InstrumentMeta] | None:
    """Instrument id and metadata from one definition file (NautilusTrader's Arrow schema).

    String columns ``id``, ``underlying``, ``option_kind``, ``strike_price``, ``multiplier``; the
    newest row (``ts_init``) wins.  Read with pyarrow: ``catalog.instruments()`` would decode
    every day's copy of every definition in the catalog.
    """
    schema = pq.read_schema(f.path)
    columns = [c for c in _DEFINITION_COLUMNS if c in schema.names]
    if not {"id", "multiplier", "ts_init"} <= set(columns):
        return None
    rows = pq.read_table(f.path, columns=columns).to_pylist()
    if not rows:
        return None
    row = max(rows, key=lambda r: r["ts_init"])
    cls = (schema.metadata or {}).get(b"class", b"").decode()
    kind, strike = "OTHER", 0.0
    if row.get("option_kind") is not None:
        kind = _OPTION_KINDS.get(str(row["option_kind"]), "OTHER")
        strike = float(row["strike_price"])
    elif cls == "FuturesContract" or folder == "futures_contract":
        kind = "FUT"
    iid = str(row["id"])
    meta = _InstrumentMeta(
        kind=kind,
        strike=strike,
        expiration_ns=int(row.get("expiration_ns") or 0),
        underlying=str(row.get("underlying") or ""),
        multiplier=float(row["multiplier"]),
        venue=iid.rsplit(".", 1)[-1],
    )
    return iid, meta


def _newest_per_instrument(files: list[_DataFile]) -> list[_DataFile]:
    newest: dict[str, _DataFile] = {}
    for f in files:
        if f.folder not in newest or (f.end, f.rel) > (newest[f.folder].end, newest[f.folder].rel):
            newest[f.folder] = f
    return list(newest.values())


class _Catalog:
    """The files of a catalog the baselines read, scanned once per build.

    Instrument definitions are indexed by folder (newest file per instrument) and read only for
    the instruments of the days that are computed.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.trades = _scan_folder(root, TRADE_FOLDER)
        self.presence = [f for folder in PRESENCE_FOLDERS for f in _scan_folder(root, folder)]
        self.days = _candidate_days(self.trades)
        self._bounds = {
            "trades": (
                np.array([f.start for f in self.trades], np.int64),
                np.array([f.end for f in self.trades], np.int64),
            ),
            "presence": (
                np.array([f.start for f in self.presence], np.int64),
                np.array([f.end for f in self.presence], np.int64),
            ),
        }
        self._definitions: dict[str, tuple[_DataFile, str]] = {}
        for folder in INSTRUMENT_FOLDERS:
            for f in _newest_per_instrument(_scan_folder(root, folder)):
                self._definitions.setdefault(f.folder, (f, folder))
        self._loaded: dict[str, tuple[str, _InstrumentMeta] | None] = {}

    def load_definitions(self, folders: set[str]) -> None:
        """Read the definitions of these instrument folders (once per build)."""
        missing = sorted(k for k in folders if k not in self._loaded and k in self._definitions)
        with ThreadPoolExecutor(max_workers=4) as pool:
            found = pool.map(lambda k: _read_definition(*self._definitions[k]), missing)
            self._loaded.update(zip(missing, found, strict=True))

    def instrument_id(self, folder: str) -> str:
        """The instrument id behind a data folder name (folder names drop '/')."""
        got = self._loaded.get(folder)
        return got[0] if got is not None else folder

    def meta(self, instrument_id: str) -> _InstrumentMeta | None:
        got = self._loaded.get(instrument_id.replace("/", ""))
        return got[1] if got is not None else None

    def _covering(self, kind: str, files: list[_DataFile], day: dt.date) -> list[_DataFile]:
        lo = _day_start(day)
        starts, ends = self._bounds[kind]
        hit = (starts < lo + DAY_NS + TS_INIT_SLACK_NS) & (ends >= lo)
        return [files[i] for i in np.flatnonzero(hit)]

    def day_files(self, day: dt.date) -> tuple[list[_DataFile], list[_DataFile]]:
        return self._covering("trades", self.trades, day), self._covering("presence", self.presence, day)

    def fingerprint(self, day: dt.date) -> str:
        trades, presence = self.day_files(day)
        items = sorted((f.rel, f.size, f.mtime_ns) for f in trades + presence)
        return hashlib.sha256(json.dumps([CACHE_VERSION, items]).encode()).hexdigest()


def _open(catalog_path: Path | str) -> Path:
    root = Path(catalog_path)
    if not root.exists():
        raise IfdError(f"{root}: no such catalog")
    if not root.is_dir():
        raise IfdError(f"{root}: not a catalog (it is a file, expected a folder)")
    if not (root / "data").is_dir():
        raise IfdError(f"{root}: not a NautilusTrader catalog (no 'data' folder)")
    return root


def _parse_date(date: str | dt.date | None) -> dt.date | None:
    if date is None or isinstance(date, dt.date):
        return date
    try:
        return dt.date.fromisoformat(str(date))
    except ValueError:
        raise IfdError(f"bad date {date!r} (expected YYYY-MM-DD)") from None


def _check_params(lookback: int, window_ns: int) -> None:
    if isinstance(lookback, bool) or not isinstance(lookback, int) or lookback < 1:
        raise IfdError(f"lookback must be an integer >= 1 (got {lookback!r})")
    if isinstance(window_ns, bool) or not isinstance(window_ns, int) or window_ns < 1_000_000:
        raise IfdError(f"window_ns must be an integer >= 1,000,000 (1 ms) (got {window_ns!r})")


def window_label(window_ns: int) -> str:
    """``300s`` for whole seconds, else ``<n>ns``."""
    return f"{window_ns // 1_000_000_000}s" if window_ns % 1_000_000_000 == 0 else f"{window_ns}ns"


def baseline_path(catalog_path: Path | str, date: str, lookback: int, window_ns: int) -> Path:
    """Where the baseline for ``date`` over ``lookback`` days with ``window_ns`` windows lives."""
    name = f"baseline_{date}_{lookback}d_{window_label(window_ns)}.parquet"
    return Path(catalog_path) / BASELINES_DIR / name


# --- one day ---------------------------------------------------------------------------------


def dte_bucket(dte_days: np.ndarray | float) -> np.ndarray | int:
    """Bucket index of days-to-expiry (see ``DTE_EDGES_DAYS``)."""
    out = np.searchsorted(np.asarray(DTE_EDGES_DAYS), dte_days, side="right")
    return int(out) if np.ndim(out) == 0 else out


def _mode_step(strikes: np.ndarray) -> float:
    uniq = np.unique(np.round(strikes[np.isfinite(strikes)], 6))
    if len(uniq) < 2:
        return math.nan
    gaps = np.round(np.diff(uniq), 6)
    values, counts = np.unique(gaps, return_counts=True)
    return float(values[np.argmax(counts)])  # ties: the smaller gap (np.unique sorts)


def _read_day_trades(files: list[_DataFile], lo: int, hi: int) -> list[dict]:
    def load(f: _DataFile) -> dict:
        data = read_trades(f.path)
        keep = (data["ts_event"] >= lo) & (data["ts_event"] < hi)
        for k in ("price", "size", "aggressor_side", "ts_event"):
            data[k] = data[k][keep]
        data["folder"] = f.folder
        return data

    with ThreadPoolExecutor(max_workers=4) as pool:
        return [d for d in pool.map(load, files) if len(d["ts_event"])]


def _underlying_refs(
    ids: list[str],
    meta: list[_InstrumentMeta | None],
    code: np.ndarray,
    price: np.ndarray,
    ts: np.ndarray,
) -> tuple[dict[str, float], dict[str, float]]:
    """Per underlying symbol: the day's reference price (median) and last trade price."""
    order = np.argsort(code, kind="stable")
    bounds = np.searchsorted(code[order], np.arange(len(ids) + 1))
    med = np.full(len(ids), np.nan)
    last = np.full(len(ids), np.nan)
    for i in range(len(ids)):  # per instrument, not per trade
        sel = order[bounds[i] : bounds[i + 1]]
        if len(sel):
            med[i] = float(np.median(price[sel]))
            last[i] = float(price[sel][np.argmax(ts[sel])])
    index = {k: i for k, i in zip(ids, range(len(ids)), strict=True)}
    refs: dict[str, float] = {}
    lasts: dict[str, float] = {}
    underlyings = {(m.underlying, m.venue) for m in meta if m is not None and m.kind in ("CALL", "PUT")}
    for und, venue in sorted(underlyings):
        fut = index.get(f"{und}.{venue}")
        if fut is not None and np.isfinite(med[fut]):
            refs[und] = med[fut]
            lasts[und] = last[fut]
            continue
        # put-call parity: F ~ K + C - P, median over strikes/expiries with both
        pairs: dict[tuple[int, float], dict[str, float]] = {}
        for i, m in enumerate(meta):
            if m is not None and m.underlying == und and m.kind in ("CALL", "PUT") and np.isfinite(med[i]):
                pairs.setdefault((m.expiration_ns, m.strike), {})[m.kind] = med[i]
        est = [k[1] + v["CALL"] - v["PUT"] for k, v in pairs.items() if len(v) == 2]
        if est:
            refs[und] = float(np.median(est))
    return refs, lasts


def compute_day(cat: _Catalog, day: dt.date, window_ns: int) -> tuple[pa.Table, dict]:
    """One day's per-instrument window statistics (rows) and facts (metadata)."""
    lo = _day_start(day)
    trade_files, presence_files = cat.day_files(day)
    chunks = _read_day_trades(trade_files, lo, lo + DAY_NS)
    info = {"date": day.isoformat(), "trades": 0, "session_start_ns": None, "session_end_ns": None}
    if not chunks:
        return _empty_day_table(), info

    cat.load_definitions({c["folder"] for c in chunks} | {f.folder for f in presence_files})
    traded_ids = [c["instrument_id"] or cat.instrument_id(c["folder"]) for c in chunks]
    present = {cat.instrument_id(f.folder) for f in presence_files}
    ids = sorted(set(traded_ids) | present)
    pos = {k: i for i, k in enumerate(ids)}
    code = np.concatenate(
        [np.full(len(c["ts_event"]), pos[k], dtype=np.int64) for c, k in zip(chunks, traded_ids, strict=True)]
    )
    price = np.concatenate([c["price"] for c in chunks])
    size = np.concatenate([c["size"] for c in chunks])
    side = np.concatenate([c["aggressor_side"] for c in chunks])
    ts = np.concatenate([c["ts_event"] for c in chunks])

    meta = [cat.meta(k) for k in ids]
    mult = np.array([m.multiplier if m is not None else 1.0 for m in meta])
    bucket = ts // window_ns
    b0, b1 = int(bucket.min()), int(bucket.max())
    n_win = b1 - b0 + 1
    n_inst = len(ids)
    if n_inst * n_win > MAX_CELLS:
        raise IfdError(
            f"{day}: {n_inst} instruments x {n_win:,} windows of {window_label(window_ns)} is too many "
            f"(limit {MAX_CELLS:,}); use a longer window"
        )
    flat = code * n_win + (bucket - b0)
    cells = n_inst * n_win
    sign = np.where(side == AGGRESSOR_BUYER, 1.0, np.where(side == AGGRESSOR_SELLER, -1.0, 0.0))
    volume = np.bincount(flat, weights=size, minlength=cells).reshape(n_inst, n_win)
    buy = np.bincount(flat, weights=size * (sign > 0), minlength=cells).reshape(n_inst, n_win)
    sell = np.bincount(flat, weights=size * (sign < 0), minlength=cells).reshape(n_inst, n_win)
    premium = np.bincount(flat, weights=price * mult[code] * size * sign, minlength=cells).reshape(
        n_inst, n_win
    )
    trades = np.bincount(code, minlength=n_inst)
    sided = buy + sell
    has_p = sided > 0
    pressure = np.divide(buy, sided, out=np.zeros_like(buy), where=has_p)

    refs, lasts = _underlying_refs(ids, meta, code, price, ts)
    last_price = np.full(n_inst, np.nan)
    order = np.lexsort((ts, code))
    ends = np.flatnonzero(np.r_[code[order][1:] != code[order][:-1], True])
    last_price[code[order][ends]] = price[order][ends]

    steps: dict[str, float] = {}
    for und in refs.keys() | {m.underlying for m in meta if m is not None and m.kind in ("CALL", "PUT")}:
        strikes = np.array(
            [m.strike for m in meta if m is not None and m.underlying == und and m.kind in ("CALL", "PUT")]
        )
        steps[und] = _mode_step(strikes)

    kind = [m.kind if m is not None else "OTHER" for m in meta]
    strike = np.array([m.strike if m is not None else 0.0 for m in meta])
    expiration = np.array([m.expiration_ns if m is not None else 0 for m in meta], dtype=np.int64)
    underlying = [m.underlying if m is not None else "" for m in meta]
    is_option = np.array([k in ("CALL", "PUT") for k in kind])
    ref = np.array([refs.get(u, np.nan) if o else np.nan for u, o in zip(underlying, is_option, strict=True)])
    step = np.array(
        [steps.get(u, np.nan) if o else np.nan for u, o in zip(underlying, is_option, strict=True)]
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        dist = np.floor((strike - ref) / step + 0.5)
    dist_ok = is_option & np.isfinite(dist)
    dte = np.where(is_option, (expiration - lo) / DAY_NS, np.nan)

    offsets = pa.array(np.arange(0, cells + 1, n_win, dtype=np.int32))
    p_offsets = pa.array(np.r_[0, np.cumsum(has_p.sum(axis=1))].astype(np.int32))
    table = pa.table(
        {
            "instrument_id": pa.array(ids, pa.string()),
            "window_ns": pa.array(np.full(n_inst, window_ns, dtype=np.int64)),
            "kind": pa.array(kind, pa.string()),
            "strike": pa.array(strike),
            "expiration_ns": pa.array(expiration),
            "underlying": pa.array(underlying, pa.string()),
            "multiplier": pa.array(mult),
            "trades": pa.array(trades.astype(np.int64)),
            "last_price": pa.array(last_price, from_pandas=True),
            "n_windows": pa.array(np.full(n_inst, n_win, dtype=np.int64)),
            "volume_sum": pa.array(volume.sum(axis=1)),
            "volume_sumsq": pa.array((volume**2).sum(axis=1)),
            "buy_sum": pa.array(buy.sum(axis=1)),
            "sell_sum": pa.array(sell.sum(axis=1)),
            "pressure_n": pa.array(has_p.sum(axis=1).astype(np.int64)),
            "pressure_sum": pa.array(np.where(has_p, pressure, 0.0).sum(axis=1)),
            "pressure_sumsq": pa.array(np.where(has_p, pressure**2, 0.0).sum(axis=1)),
            "premium_sum": pa.array(premium.sum(axis=1)),
            "premium_sumsq": pa.array((premium**2).sum(axis=1)),
            "volumes": pa.ListArray.from_arrays(offsets, pa.array(volume.ravel())),
            "pressures": pa.ListArray.from_arrays(p_offsets, pa.array(pressure[has_p])),
            "premiums": pa.ListArray.from_arrays(offsets, pa.array(premium.ravel())),
            "underlying_price": pa.array(ref, from_pandas=True),
            "strike_step": pa.array(step, from_pandas=True),
            "distance_steps": pa.array(np.where(dist_ok, dist, 0).astype(np.int64), mask=~dist_ok),
            "dte_days": pa.array(dte, from_pandas=True),
            "dte_bucket": pa.array(
                np.where(is_option, dte_bucket(np.nan_to_num(dte)), 0).astype(np.int64), mask=~is_option
            ),
        }
    )
    info.update(
        trades=len(ts),
        session_start_ns=int(ts.min()),
        session_end_ns=int(ts.max()),
        first_window=b0,
        n_windows=n_win,
        underlying_prices=refs,
        underlying_last=lasts,
        strike_steps={k: v for k, v in steps.items() if np.isfinite(v)},
    )
    return table, info


_DAY_SCHEMA = pa.schema(
    [
        ("instrument_id", pa.string()),
        ("window_ns", pa.int64()),
        ("kind", pa.string()),
        ("strike", pa.float64()),
        ("expiration_ns", pa.int64()),
        ("underlying", pa.string()),
        ("multiplier", pa.float64()),
        ("trades", pa.int64()),
        ("last_price", pa.float64()),
        ("n_windows", pa.int64()),
        ("volume_sum", pa.float64()),
        ("volume_sumsq", pa.float64()),
        ("buy_sum", pa.float64()),
        ("sell_sum", pa.float64()),
        ("pressure_n", pa.int64()),
        ("pressure_sum", pa.float64()),
        ("pressure_sumsq", pa.float64()),
        ("premium_sum", pa.float64()),
        ("premium_sumsq", pa.float64()),
        ("volumes", pa.list_(pa.float64())),
        ("pressures", pa.list_(pa.float64())),
        ("premiums", pa.list_(pa.float64())),
        ("underlying_price", pa.float64()),
        ("strike_step", pa.float64()),
        ("distance_steps", pa.int64()),
        ("dte_days", pa.float64()),
        ("dte_bucket", pa.int64()),
    ]
)


def _empty_day_table() -> pa.Table:
    return _DAY_SCHEMA.empty_table()


# --- daily cache -----------------------------------------------------------------------------


def _atomic_write(table: pa.Table, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _daily_path(root: Path, day: dt.date) -> Path:
    return root / BASELINES_DIR / DAILY_DIR / f"{day.isoformat()}.parquet"


def _read_daily(path: Path) -> tuple[pa.Table, dict] | None:
    try:
        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {})[META_KEY])
    except (OSError, KeyError, ValueError, pa.ArrowException):
        return None  # missing or unreadable: recompute
    if meta.get("version") != CACHE_VERSION:
        return None
    return table, meta


def _day_rows(cat: _Catalog, day: dt.date, window_ns: int) -> tuple[pa.Table, dict, bool]:
    """The day's rows for ``window_ns`` and facts, from the cache when current; True if computed."""
    path = _daily_path(cat.root, day)
    fingerprint = cat.fingerprint(day)
    cached = _read_daily(path)
    table = None
    meta: dict = {}
    if cached is not None and cached[1].get("fingerprint") == fingerprint:
        table, meta = cached
        if str(window_ns) in meta.get("windows", {}):
            rows = table.filter(pc.equal(table.column("window_ns"), window_ns))
            return rows.cast(_DAY_SCHEMA), meta["windows"][str(window_ns)], False
    rows, info = compute_day(cat, day, window_ns)
    windows = dict(meta.get("windows", {})) if table is not None else {}
    windows[str(window_ns)] = info
    keep = (
        []
        if table is None
        else [table.filter(pc.not_equal(table.column("window_ns"), window_ns)).cast(_DAY_SCHEMA)]
    )
    out = pa.concat_tables([*keep, rows.cast(_DAY_SCHEMA)])
    new_meta = {
        "version": CACHE_VERSION,
        "date": day.isoformat(),
        "fingerprint": fingerprint,
        "windows": windows,
    }
    out = out.replace_schema_metadata({META_KEY: json.dumps(new_meta).encode()})
    _atomic_write(out, path)
    return rows.cast(_DAY_SCHEMA), info, True


# --- pooling ---------------------------------------------------------------------------------


def _group_stats(group: np.ndarray, values: np.ndarray, n_groups: int, quantiles=()) -> dict[str, np.ndarray]:
    """count, mean, std (ddof=1) and linear-interpolated quantiles of ``values`` per group."""
    count = np.bincount(group, minlength=n_groups).astype(np.int64)
    total = np.bincount(group, weights=values, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        dev = values - mean[group]
        ss = np.bincount(group, weights=dev * dev, minlength=n_groups)
        std = np.where(count > 1, np.sqrt(ss / np.maximum(count - 1, 1)), np.where(count == 1, 0.0, np.nan))
    out = {"count": count, "mean": mean, "std": std}
    if quantiles:
        ordered = values[np.lexsort((values, group))]  # by group, then value
        starts = np.r_[0, np.cumsum(count)[:-1]]
        last = np.maximum(count - 1, 0)
        pad = np.r_[ordered, np.nan]  # empty groups index the NaN
        for q in quantiles:
            pos = q * last
            low = np.floor(pos).astype(np.int64)
            high = np.minimum(low + 1, last)
            at_low = np.where(count > 0, starts + low, len(ordered))
            at_high = np.where(count > 0, starts + high, len(ordered))
            out[f"q{q}"] = pad[at_low] + (pos - low) * (pad[at_high] - pad[at_low])
    return out


def _flatten(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    arr = col.combine_chunks()
    values = pc.list_flatten(arr).to_numpy(zero_copy_only=False).astype(np.float64)
    parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False).astype(np.int64)
    return values, parents


def _pool(rows: pa.Table, row_group: np.ndarray, n_groups: int) -> dict[str, np.ndarray]:
    """Pool the per-window lists of ``rows`` by ``row_group`` (-1 = leave out)."""
    out: dict[str, np.ndarray] = {}
    for name, col, qs in (
        ("volume", "volumes", QUANTILES),
        ("pressure", "pressures", ()),
        ("premium", "premiums", ()),
    ):
        values, parents = _flatten(rows.column(col))
        group = row_group[parents]
        keep = group >= 0
        stats = _group_stats(group[keep], values[keep], n_groups, qs)
        for k, v in stats.items():
            out[f"{name}_{k}"] = v
        if name == "premium":
            abs_stats = _group_stats(group[keep], np.abs(values[keep]), n_groups, (0.99,))
            out["premium_abs_q0.99"] = abs_stats["q0.99"]
    return out


def _combine(rows: pa.Table, day_index: np.ndarray, window_ns: int) -> pa.Table:
    """Instrument rows and moneyness rows of the baseline file from the used days' rows."""
    ids = rows.column("instrument_id").to_numpy(zero_copy_only=False)
    inst_keys, inst_group = np.unique(ids, return_inverse=True)
    inst = _pool(rows, inst_group, len(inst_keys))
    inst_days = np.bincount(inst_group, minlength=len(inst_keys))
    inst_kind = {k: v for k, v in zip(ids, rows.column("kind").to_pylist(), strict=True)}

    dist = rows.column("distance_steps")
    has_bucket = pc.is_valid(dist).to_numpy(zero_copy_only=False)
    kinds = np.array(rows.column("kind").to_pylist(), dtype=object)
    dist_v = dist.fill_null(0).to_numpy().astype(np.int64)
    dte_v = rows.column("dte_bucket").fill_null(0).to_numpy().astype(np.int64)
    keys = [
        (k, d, b) for k, d, b in zip(kinds[has_bucket], dist_v[has_bucket], dte_v[has_bucket], strict=True)
    ]
    uniq = sorted(set(keys))
    key_pos = {k: i for i, k in enumerate(uniq)}
    m_group = np.full(len(ids), -1, dtype=np.int64)
    m_group[has_bucket] = [key_pos[k] for k in keys]
    mon = _pool(rows, m_group, len(uniq))
    if uniq:
        sel = m_group >= 0
        pairs = np.unique(np.stack([m_group[sel], day_index[sel]]), axis=1)
        mon_days = np.bincount(pairs[0], minlength=len(uniq))
    else:
        mon_days = np.zeros(0, dtype=np.int64)

    n_i, n_m = len(inst_keys), len(uniq)

    def cat(name: str) -> np.ndarray:
        return np.concatenate([inst[name], mon[name]])

    return pa.table(
        {
            "source": pa.array(["instrument"] * n_i + ["moneyness"] * n_m, pa.string()),
            "instrument_id": pa.array([*inst_keys.tolist(), *([None] * n_m)], pa.string()),
            "kind": pa.array([inst_kind[k] for k in inst_keys] + [k[0] for k in uniq], pa.string()),
            "distance_steps": pa.array([None] * n_i + [int(k[1]) for k in uniq], pa.int64()),
            "dte_bucket": pa.array([None] * n_i + [int(k[2]) for k in uniq], pa.int64()),
            "days": pa.array(np.concatenate([inst_days, mon_days]).astype(np.int64)),
            "window_ns": pa.array(np.full(n_i + n_m, window_ns, dtype=np.int64)),
            "n_windows": pa.array(cat("volume_count")),
            "volume_mean": pa.array(cat("volume_mean")),
            "volume_std": pa.array(cat("volume_std")),
            "volume_p50": pa.array(cat("volume_q0.5")),
            "volume_p90": pa.array(cat("volume_q0.9")),
            "volume_p99": pa.array(cat("volume_q0.99")),
            "pressure_n": pa.array(cat("pressure_count")),
            "pressure_mean": pa.array(cat("pressure_mean")),
            "pressure_std": pa.array(cat("pressure_std")),
            "net_premium_mean": pa.array(cat("premium_mean")),
            "net_premium_std": pa.array(cat("premium_std")),
            "net_premium_abs_p99": pa.array(cat("premium_abs_q0.99")),
        }
    )


# --- build -----------------------------------------------------------------------------------


def build_baselines(
    catalog_path: Path | str,
    date: str | None = None,
    lookback: int = DEFAULT_LOOKBACK,
    window_ns: int = DEFAULT_WINDOW_NS,
    progress: Progress | None = None,
) -> BaselineBuildResult:
    """Write the ``lookback``-day baseline for ``date`` (default: the catalog's latest trading day).

    Daily statistics are computed only for days without a current cache entry.  Raises
    ``IfdError`` for a path that is not a catalog, a catalog without trades, a bad date,
    ``lookback < 1`` or a date without any trading day before it.
    """
    started = time.perf_counter()
    say = progress or (lambda _msg: None)
    _check_params(lookback, window_ns)
    root = _open(catalog_path)
    target = _parse_date(date)
    cat = _Catalog(root)
    if not cat.days:
        raise IfdError(f"{root}: no TradeTick data in the catalog (nothing to build baselines from)")
    if target is None:
        target = _latest_trading_day(cat)
    candidates = [d for d in cat.days if d < target]
    result = BaselineBuildResult(path="", date=target.isoformat(), lookback=lookback, window_ns=window_ns)
    used: list[tuple[dt.date, pa.Table, dict]] = []
    for day in reversed(candidates):
        if len(used) == lookback:
            break
        rows, info, computed = _day_rows(cat, day, window_ns)
        (result.days_computed if computed else result.days_reused).append(day.isoformat())
        say(
            f"{day}: {'computed' if computed else 'cached'}, {info.get('trades', 0):,} trades, {rows.num_rows} instruments"
        )
        if info.get("trades", 0) > 0:
            used.append((day, rows, info))
    if not used:
        first, last = cat.days[0], cat.days[-1]
        raise IfdError(
            f"{root}: no trading day before {target} to build a baseline from "
            f"(catalog trades from {first} to {last})"
        )
    used.reverse()
    rows = pa.concat_tables([r for _, r, _ in used])
    day_index = np.concatenate([np.full(r.num_rows, i, dtype=np.int64) for i, (_, r, _) in enumerate(used)])
    table = _combine(rows, day_index, window_ns)
    steps: dict[str, float] = {}
    refs: dict[str, float] = {}
    for _, _, info in used:  # newest day last: its values win
        steps.update(info.get("strike_steps", {}))
        refs.update(info.get("underlying_prices", {}))
        refs.update(info.get("underlying_last", {}))
    meta = {
        "version": CACHE_VERSION,
        "date": target.isoformat(),
        "lookback": lookback,
        "window_ns": window_ns,
        "days_used": [d.isoformat() for d, _, _ in used],
        "strike_steps": steps,
        "reference_prices": refs,
        "dte_edges_days": list(DTE_EDGES_DAYS),
    }
    table = table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    path = baseline_path(root, target.isoformat(), lookback, window_ns)
    _atomic_write(table, path)
    sources = table.column("source").to_pylist()
    result.path = str(path)
    result.days_used = meta["days_used"]
    result.instruments = sources.count("instrument")
    result.moneyness_buckets = sources.count("moneyness")
    result.days_computed.sort()
    result.days_reused.sort()
    result.seconds = time.perf_counter() - started
    say(
        f"wrote {path.name}: {result.instruments} instruments, {result.moneyness_buckets} moneyness buckets "
        f"from {len(used)} days ({len(result.days_computed)} computed, {len(result.days_reused)} cached)"
    )
    return result


def _latest_trading_day(cat: _Catalog) -> dt.date:
    """The newest candidate day that really has trades (candidates come from file names)."""
    for day in reversed(cat.days):
        lo = _day_start(day)
        for f in cat.day_files(day)[0]:
            ts = pq.read_table(f.path, columns=["ts_event"]).column("ts_event").to_numpy()
            if ((ts >= lo) & (ts < lo + DAY_NS)).any():
                return day
    return cat.days[-1]


# --- lookup ----------------------------------------------------------------------------------


_STAT_FIELDS = (
    "volume_mean",
    "volume_std",
    "volume_p50",
    "volume_p90",
    "volume_p99",
    "pressure_mean",
    "pressure_std",
    "net_premium_mean",
    "net_premium_std",
    "net_premium_abs_p99",
)


class Baselines:
    """A baseline file in memory: own statistics per instrument and per moneyness bucket."""

    def __init__(
        self, table: pa.Table, meta: dict, path: Path | None = None, min_days: int = DEFAULT_MIN_DAYS
    ) -> None:
        self.path = path
        self.meta = meta
        self.min_days = min_days
        self.date = dt.date.fromisoformat(meta["date"])
        self.lookback = int(meta["lookback"])
        self.window_ns = int(meta["window_ns"])
        self.days_used: list[str] = list(meta.get("days_used", []))
        self.strike_steps: dict[str, float] = dict(meta.get("strike_steps", {}))
        self.reference_prices: dict[str, float] = dict(meta.get("reference_prices", {}))
        self._instruments: dict[str, dict] = {}
        self._buckets: dict[tuple[str, int, int], dict] = {}
        for row in table.to_pylist():
            if row["source"] == "instrument":
                self._instruments[row["instrument_id"]] = row
            else:
                self._buckets[(row["kind"], int(row["distance_steps"]), int(row["dte_bucket"]))] = row

    # construction

    @classmethod
    def load(cls, path: Path | str, min_days: int = DEFAULT_MIN_DAYS) -> Baselines:
        path = Path(path)
        if not path.is_file():
            raise IfdError(f"{path}: no such baseline file")
        try:
            table = pq.read_table(path)
            meta = json.loads((table.schema.metadata or {})[META_KEY])
        except (OSError, KeyError, ValueError, pa.ArrowException):
            raise IfdError(f"{path}: not an ifd baseline file") from None
        return cls(table, meta, path, min_days)

    @classmethod
    def for_date(
        cls,
        catalog_path: Path | str,
        date: str,
        lookback: int = DEFAULT_LOOKBACK,
        window_ns: int = DEFAULT_WINDOW_NS,
        min_days: int = DEFAULT_MIN_DAYS,
    ) -> Baselines:
        """The baseline built for ``date`` with these settings; IfdError when it was not built."""
        _check_params(lookback, window_ns)
        root = _open(catalog_path)
        day = _parse_date(date)
        path = baseline_path(root, day.isoformat(), lookback, window_ns)
        if not path.is_file():
            raise IfdError(
                f"{path}: no baseline for {day} ({lookback} days, {window_label(window_ns)} windows); "
                f"run: ifd baselines build --catalog {root} --date {day} --lookback {lookback}"
            )
        return cls.load(path, min_days)

    # lookup

    def __len__(self) -> int:
        return len(self._instruments)

    def instrument_ids(self) -> list[str]:
        return sorted(self._instruments)

    def instrument(self, instrument_id: str) -> BaselineStats | None:
        """The instrument's own statistics, whatever its number of days (None without history)."""
        row = self._instruments.get(instrument_id)
        return None if row is None else self._stats(instrument_id, "instrument", row)

    def bucket_key(
        self, info: InstrumentInfo, underlying_price: float | None = None, now_ns: int | None = None
    ) -> tuple[str, int, int] | None:
        """``(kind, distance in strike steps, dte bucket)`` of an option; None when unknown."""
        if info.kind not in ("CALL", "PUT"):
            return None
        price = (
            underlying_price if underlying_price is not None else self.reference_prices.get(info.underlying)
        )
        step = self.strike_steps.get(info.underlying) or self._common_step()
        if price is None or not step or not math.isfinite(price):
            return None
        distance = math.floor((info.strike - price) / step + 0.5)
        now = now_ns if now_ns is not None else _day_start(self.date)
        bucket = dte_bucket((info.expiration_ns - now) / DAY_NS)
        return info.kind, int(distance), int(bucket)

    def moneyness(self, key: tuple[str, int, int], instrument_id: str = "") -> BaselineStats | None:
        row = self._buckets.get(key)
        return None if row is None else self._stats(instrument_id, "moneyness", row)

    def get(
        self,
        info: InstrumentInfo,
        underlying_price: float | None = None,
        now_ns: int | None = None,
    ) -> BaselineStats | None:
        """Own stats with >= ``min_days`` days, else the moneyness bucket's, else None.

        ``underlying_price``: the underlying future's current price (the caller's last trade
        or mid); None falls back to the newest history day's last price of ``info.underlying``.
        ``now_ns``: the time DTE is measured from (default 00:00 UTC of the baseline date).
        """
        row = self._instruments.get(info.instrument_id)
        if row is not None and row["days"] >= self.min_days:
            return self._stats(info.instrument_id, "instrument", row)
        key = self.bucket_key(info, underlying_price, now_ns)
        return None if key is None else self.moneyness(key, info.instrument_id)

    def _common_step(self) -> float | None:
        steps = [s for s in self.strike_steps.values() if s and math.isfinite(s)]
        if not steps:
            return None
        values, counts = np.unique(np.round(steps, 6), return_counts=True)
        return float(values[np.argmax(counts)])

    def _stats(self, instrument_id: str, source: str, row: dict) -> BaselineStats:
        def num(name: str) -> float:
            value = row[name]
            return math.nan if value is None else float(value)

        return BaselineStats(
            instrument_id=instrument_id,
            source=source,
            days=int(row["days"]),
            window_ns=int(row["window_ns"]),
            **{name: num(name) for name in _STAT_FIELDS},
        )
