"""A Databento *historical* HTTP API of ours on 127.0.0.1, serving DBN files.

The official ``databento.Historical`` client talks to it through its ``gateway`` parameter::

    with HistoricalGateway(HistoricalStore.from_paths([folder])) as gw:
        os.environ.update(gw.client_env())     # trust the gateway's certificate (see TLS)
        client = databento.Historical(gw.api_key, gateway=gw.url)
        store = client.timeseries.get_range("GLBX.MDP3", start=..., end=..., symbols="NQ.OPT",
                                            stype_in="parent", schema="mbo")

TLS: the client always turns the gateway into ``https://HOST:PORT`` (``validate_gateway``), so
the server speaks HTTPS with a self-signed certificate for 127.0.0.1, made once per process with
the ``openssl`` command (or pass :class:`TlsFiles`). Clients trust it through
``REQUESTS_CA_BUNDLE`` (``requests``, used by every synchronous client method) or, for the
``*_async`` methods, ``SSL_CERT_FILE`` set before ``aiohttp`` is imported (it builds its TLS
context at import); ``client_env()`` gives both, and ``NO_PROXY`` so no proxy is involved.

The store (:class:`HistoricalStore`) holds every record of the DBN files it was given, per
(dataset, schema), upgraded to DBN v3 and sorted by index timestamp (``ts_recv``, else
``ts_event``); it covers whole UTC days from each file's first to last day. Files may be the
real samples or ``ifd scenario generate`` output (a folder is searched recursively).

Endpoints (``/v0/...``, GET or POST, parameters from the query string and/or a form body):

==============================  ==============================================================
``timeseries.get_range``        200, DBN v3 (metadata + records), chunked; ``compression=zstd``
                                (what the client sends) or ``none``; ``encoding=dbn`` only
``metadata.get_record_count``   int: records get_range would return
``metadata.get_billable_size``  int: records x DBN v3 record size (uncompressed bytes)
``metadata.get_cost``           float USD: billable bytes / 1e9 x the schema's $/GB price
``metadata.get_dataset_range``  ``{"start", "end", "schema": {name: {"start", "end"}}}``
``metadata.list_datasets``      datasets overlapping ``start_date``..``end_date``
``metadata.list_schemas``       schemas of a dataset
``metadata.list_publishers``    publisher id, dataset, venue, description
``metadata.list_unit_prices``   ``[{"mode", "unit_prices": {schema: $/GB}}]``
``metadata.get_dataset_condition``  one ``available`` row per day of the dataset range
``symbology.resolve``           ``{"result": {symbol: [{"d0", "d1", "s"}]}, "not_found", ...}``
==============================  ==============================================================

Filtering: ``start`` inclusive, ``end`` exclusive on the index timestamp; ISO 8601 (UTC unless
an offset is given), a date, or integer nanoseconds; a missing ``end`` is ``start`` plus its
resolution (a date: one day; ``HH:MM``: a minute; nanoseconds: 1 ns). ``symbols`` (comma
separated, or ``ALL_SYMBOLS``) resolve on the UTC dates the request touches, through the files'
symbology: ``raw_symbol``, ``instrument_id``, and ``parent`` (``ROOT.FUT`` / ``ROOT.OPT`` /
``ROOT``: definitions whose ``asset`` is ROOT, futures and their spreads or options by
``security_type``; instruments without a definition by their raw symbol's root, so ``NQ.OPT``
holds ``NQZ6 C21000`` but not the weekly ``QN4X6 C21000``, which is ``QN4.OPT``, as at
Databento). The DBN metadata carries the request's dataset, schema, start, end, limit,
stype_in/out, symbols, ``not_found`` and the mappings (input symbol, or each raw symbol for
parent / ``ALL_SYMBOLS``, to instrument ids over the request's dates).

Errors have Databento's body ``{"detail": {"case", "message", "status_code", "docs",
"payload"}}`` and a ``request-id`` header; the client raises ``BentoClientError`` (4xx) or
``BentoServerError`` (5xx) with ``http_status`` and ``"<case>\\n<message>..."``:

* 401 ``auth_authentication_failed``: missing or wrong key (HTTP basic, the key as username).
* 422 ``symbology_invalid_request`` ("None of the symbols could be resolved"); when only some
  resolve the request succeeds, they are listed in ``not_found`` and an ``X-Warning`` header.
* 422 ``data_time_range_start_on_or_after_end``, ``data_start_before_available_start``,
  ``data_start_after_available_end``, ``data_end_after_available_end`` (against the schema's
  range), ``data_schema_not_fully_available`` (schema not in the store), ``dataset_unavailable``.
* 422 ``parameter_invalid`` / ``parameter_missing``: a malformed or missing parameter (bad date,
  schema, stype, limit, encoding, compression; more than 2,000 symbols). The real API answers
  these with 422 or 400 depending on the case; 422 is used for all of them here.
* 404 ``endpoint_not_found`` for anything else (``batch.*``, ``metadata.list_fields``).

Fault injection (:meth:`HistoricalGateway.inject`): delay an answer; answer with any status
(502 and 504 as a proxy would, in plain text, so the client says "The remote gateway timed
out." for 504; others with the JSON body above); or close the connection after N bytes of a
get_range body (whole chunks holding exactly N bytes, then no final chunk and no TLS
close_notify); once, K times or always, for one endpoint or all. Every request is counted per
endpoint and logged (:attr:`HistoricalGateway.requests`); :meth:`HistoricalGateway.quote`
prices a request without making one.

What the client does when the connection drops (``tests/test_historical_gateway.py``): it
raises ``BentoError("Error streaming response: ...")``; with ``path=`` it has opened that path
exclusively and leaves the bytes received so far there (the handle is not closed), and a
second call with the same path raises ``FileExistsError`` before any request. A downloader
should therefore stream to a temporary path, delete it on error and move it into place only
after ``get_range`` returned.

Not imitated: csv/json encodings, ``continuous`` symbology, batch jobs, ``list_fields``, the
``X-Warning`` wording, real unit prices and the API's exact billing unit.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import binascii
import dataclasses
import datetime as dt
import functools
import hashlib
import hmac
import http
import http.server
import json
import logging
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

import databento_dbn as dbn
import numpy as np
import pandas as pd
import zstandard
from databento.common.constants import (
    SCHEMA_STRUCT_MAP,
    SCHEMA_STRUCT_MAP_V1,
    SCHEMA_STRUCT_MAP_V2,
)

LOG = logging.getLogger(__name__)

API_VERSION = 0
DEFAULT_API_KEY = "db-IfdLoopbackHistoricalKey00000"
DEFAULT_UNIT_PRICE = 10.0  # USD per GB; illustrative, not Databento's price list
BYTES_PER_GB = 1_000_000_000
ALL_SYMBOLS = "ALL_SYMBOLS"
MAX_SYMBOLS = 2_000
CHUNK_SIZE = 64 * 1024
ZSTD_LEVEL = 3
HANDSHAKE_TIMEOUT_S = 10.0
NS_PER_DAY = 86_400 * 1_000_000_000

DOCS_KEYS = "https://databento.com/docs/portal/api-keys"
DOCS_DATASETS = "https://databento.com/docs/api-reference-historical/basics/datasets"
DOCS_SYMBOLOGY = "https://databento.com/docs/api-reference-historical/basics/symbology"
DOCS_TIMES = "https://databento.com/docs/standards-and-conventions/common-fields-enums-types"
DOCS_HISTORICAL = "https://databento.com/docs/api-reference-historical"

PUBLISHERS = {1: ("GLBX.MDP3", "GLBX", "CME Globex MDP 3.0")}
_STRUCT_MAPS = {1: SCHEMA_STRUCT_MAP_V1, 2: SCHEMA_STRUCT_MAP_V2, 3: SCHEMA_STRUCT_MAP}
_MONTHS = "FGHJKMNQUVXZ"
_FUT_RE = re.compile(rf"^([A-Z0-9]+?)[{_MONTHS}]\d{{1,2}}$")
_OPT_RE = re.compile(rf"^([A-Z0-9]+?)[{_MONTHS}]\d{{1,2}} [CP]-?\d+(\.\d+)?$")
_TIME_PART_RE = re.compile(r"^(\d{1,2})(:\d{2})?(:\d{2})?(\.\d+)?")


# -- errors ----------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answer in Databento's shape (``{"detail": {...}}``)."""

    def __init__(
        self,
        status: int,
        case: str,
        message: str,
        docs: str | None = DOCS_HISTORICAL,
        payload: Mapping[str, Any] | None = None,
        plain_text: bool = False,
    ) -> None:
        super().__init__(f"{status} {case}: {message}")
        self.status = status
        self.case = case
        self.message = message
        self.docs = docs
        self.payload = dict(payload or {})
        self.plain_text = plain_text  # a proxy's answer, not the API's JSON

    def body(self) -> dict[str, Any]:
        """The JSON body the API sends."""
        return {
            "detail": {
                "case": self.case,
                "message": self.message,
                "status_code": self.status,
                "docs": self.docs,
                "payload": self.payload,
            },
        }


def _invalid(name: str, value: object, why: str) -> ApiError:
    return ApiError(
        422,
        "parameter_invalid",
        f"Invalid value for `{name}`: {value!r}. {why}",
        payload={name: str(value)},
    )


# -- times -----------------------------------------------------------------------------------


def iso_ns(ns: int) -> str:
    """``2024-05-08T00:00:00.000000000Z`` for nanoseconds since the epoch (UTC)."""
    seconds, frac = divmod(int(ns), 1_000_000_000)
    stamp = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{frac:09d}Z"


def _pretty(ns: int) -> str:
    return str(pd.Timestamp(int(ns), tz="UTC"))


def _day_floor(ns: int) -> int:
    return int(ns) - int(ns) % NS_PER_DAY


def _day_ceil(ns: int) -> int:
    return -(-int(ns) // NS_PER_DAY) * NS_PER_DAY


def _date(ns: int) -> dt.date:
    return dt.datetime.fromtimestamp(int(ns) // 1_000_000_000, dt.UTC).date()


def _resolution_ns(text: str) -> int:
    _, sep, rest = text.replace(" ", "T", 1).partition("T")
    if not sep:
        return NS_PER_DAY
    match = _TIME_PART_RE.match(rest)
    if match is None:
        return 1
    _, minutes, seconds, fraction = match.groups()
    if fraction:
        return 10 ** max(0, 10 - len(fraction))  # ".5" -> 100 ms; 9 digits -> 1 ns
    if seconds:
        return 1_000_000_000
    return 60 * 1_000_000_000 if minutes else 3_600 * 1_000_000_000


def parse_time(name: str, text: str) -> tuple[int, int]:
    """Nanoseconds (UTC) of a time parameter and the step its resolution implies."""
    value = text.strip()
    if re.fullmatch(r"-?\d+", value):
        return int(value), 1
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise _invalid(name, text, "Expected an ISO 8601 datetime or UNIX nanoseconds.") from exc
    if stamp is pd.NaT:
        raise _invalid(name, text, "Expected an ISO 8601 datetime or UNIX nanoseconds.")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.value), _resolution_ns(value)


def parse_date(name: str, text: str) -> dt.date:
    """A ``YYYY-MM-DD`` parameter."""
    try:
        return dt.date.fromisoformat(text.strip()[:10])
    except ValueError as exc:
        raise _invalid(name, text, "Expected a date YYYY-MM-DD.") from exc


# -- store -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SymbolInterval:
    """``raw_symbol`` meant ``instrument_id`` on the UTC dates ``d0`` to ``d1`` (exclusive)."""

    raw_symbol: str
    instrument_id: int
    d0: dt.date
    d1: dt.date

    def overlaps(self, d0: dt.date, d1: dt.date) -> bool:
        return self.d0 < d1 and self.d1 > d0


@dataclasses.dataclass(frozen=True)
class InstrumentInfo:
    """What parent symbology needs from an instrument definition."""

    raw_symbol: str
    asset: str
    security_type: str
    instrument_class: str


@dataclasses.dataclass
class _Table:
    """Records of one (dataset, schema) in DBN v3 layout, sorted by index timestamp."""

    dtype: np.dtype
    index_field: str
    parts: list[np.ndarray] = dataclasses.field(default_factory=list)
    start_ns: int = 2**63 - 1
    end_ns: int = 0
    _records: np.ndarray | None = None

    def add(self, records: np.ndarray, start_ns: int, end_ns: int) -> None:
        self.parts.append(records)
        self.start_ns = min(self.start_ns, start_ns)
        self.end_ns = max(self.end_ns, end_ns)
        self._records = None

    @property
    def records(self) -> np.ndarray:
        if self._records is None:
            parts = sorted(self.parts, key=lambda a: int(a[self.index_field][0]) if len(a) else 0)
            merged = np.concatenate(parts) if parts else np.empty(0, dtype=self.dtype)
            ts = merged[self.index_field]
            if len(ts) > 1 and not bool(np.all(ts[1:] >= ts[:-1])):
                merged = merged[np.argsort(ts, kind="stable")]
            self._records = merged
        return self._records


@dataclasses.dataclass
class _Dataset:
    tables: dict[str, _Table] = dataclasses.field(default_factory=dict)
    intervals: set[SymbolInterval] = dataclasses.field(default_factory=set)
    by_symbol: dict[str, set[SymbolInterval]] = dataclasses.field(default_factory=dict)
    by_id: dict[int, set[SymbolInterval]] = dataclasses.field(default_factory=dict)
    instruments: dict[int, tuple[int, InstrumentInfo]] = dataclasses.field(default_factory=dict)
    publishers: set[int] = dataclasses.field(default_factory=set)

    def add_interval(self, iv: SymbolInterval) -> None:
        self.intervals.add(iv)
        self.by_symbol.setdefault(iv.raw_symbol, set()).add(iv)
        self.by_id.setdefault(iv.instrument_id, set()).add(iv)

    def lookup(self, symbol: str, stype_in: str, d0: dt.date, d1: dt.date) -> list[SymbolInterval]:
        """Intervals ``symbol`` resolves to on the dates ``d0`` to ``d1`` (exclusive)."""
        if stype_in == "raw_symbol":
            candidates: Iterable[SymbolInterval] = self.by_symbol.get(symbol, ())
        elif stype_in == "instrument_id":
            candidates = self.by_id.get(int(symbol), ()) if symbol.isdigit() else ()
        else:
            live = (iv for iv in self.intervals if iv.overlaps(d0, d1))
            return [iv for iv in live if self.is_child(symbol, iv)]
        return [iv for iv in candidates if iv.overlaps(d0, d1)]

    def is_child(self, parent: str, iv: SymbolInterval) -> bool:
        """Whether ``iv``'s instrument belongs to a parent symbol (``ROOT[.FUT|.OPT]``)."""
        root, _, kind = parent.upper().partition(".")
        known = self.instruments.get(iv.instrument_id)
        found = parent_of(iv.raw_symbol, known[1] if known else None)
        return found is not None and found[0] == root and (not kind or found[1] == kind)

    @property
    def start_ns(self) -> int:
        return min(t.start_ns for t in self.tables.values())

    @property
    def end_ns(self) -> int:
        return max(t.end_ns for t in self.tables.values())


def _text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).rstrip("\x00").strip()


def _v3_records(path: Path, metadata: dbn.Metadata, raw: bytes, offset: int) -> np.ndarray:
    """The file's records in DBN v3 layout (older definition / statistics records upgraded)."""
    schema = str(metadata.schema)
    v3 = np.dtype(SCHEMA_STRUCT_MAP[dbn.Schema(schema)]._dtypes)
    source = _STRUCT_MAPS.get(metadata.version, {}).get(dbn.Schema(schema))
    if source is not None and np.dtype(source._dtypes) == v3:
        body = memoryview(raw)[offset:]
        usable = len(body) - len(body) % v3.itemsize
        if usable != len(body):
            LOG.warning("%s: %d trailing bytes ignored", path, len(body) - usable)
        return np.frombuffer(body[:usable], dtype=v3).copy()
    decoder = dbn.DBNDecoder(upgrade_policy=dbn.VersionUpgradePolicy.UPGRADE_TO_V3)
    decoder.write(raw)
    records = [bytes(r) for r in decoder.decode() if not isinstance(r, dbn.Metadata)]
    return np.frombuffer(b"".join(records), dtype=v3).copy()


class HistoricalStore:
    """DBN records per (dataset, schema) with the files' symbology, ready to be queried."""

    def __init__(self) -> None:
        self._datasets: dict[str, _Dataset] = {}
        self._digests: set[str] = set()
        self._lock = threading.Lock()
        self.files: list[Path] = []
        self.skipped: list[tuple[Path, str]] = []
        self.available_until_ns: int | None = None  # set: the data published so far ends here

    @classmethod
    def from_paths(cls, paths: Iterable[Path | str]) -> Self:
        """A store of the given DBN files and every ``*.dbn`` / ``*.dbn.zst`` below folders."""
        store = cls()
        for path in map(Path, paths):
            if path.is_dir():
                found = sorted(path.rglob("*.dbn.zst")) + sorted(path.rglob("*.dbn"))
                for file in found:
                    store.add_file(file)
            else:
                store.add_file(path)
        return store

    def add_file(self, path: Path | str) -> bool:
        """Load one DBN file; False (and a reason in ``skipped``) when it cannot be served."""
        path = Path(path)
        raw = path.read_bytes()
        if raw[:4] == b"\x28\xb5\x2f\xfd":
            raw = zstandard.ZstdDecompressor().stream_reader(raw).read()
        if raw[:3] != b"DBN":
            return self._skip(path, "not a DBN file")
        offset = 8 + int.from_bytes(raw[4:8], "little")
        metadata = dbn.Metadata.decode(raw[:offset], upgrade_policy=dbn.VersionUpgradePolicy.AS_IS)
        if metadata.schema is None:
            return self._skip(path, "mixed schemas (live data)")
        if metadata.ts_out:
            return self._skip(path, "records carry ts_out")
        digest = hashlib.sha256(raw[offset:] + str(metadata.schema).encode()).hexdigest()
        if digest in self._digests:
            return self._skip(path, "same records as a file already loaded")
        records = _v3_records(path, metadata, raw, offset)
        with self._lock:
            self._digests.add(digest)
            self._add(metadata, records)
            self.files.append(path)
        return True

    def _skip(self, path: Path, reason: str) -> bool:
        LOG.info("historical store: skipping %s (%s)", path, reason)
        self.skipped.append((path, reason))
        return False

    def _add(self, metadata: dbn.Metadata, records: np.ndarray) -> None:
        data = self._datasets.setdefault(metadata.dataset, _Dataset())
        schema = str(metadata.schema)
        names = records.dtype.names or ()
        index_field = "ts_recv" if "ts_recv" in names else "ts_event"
        table = data.tables.setdefault(schema, _Table(records.dtype, index_field))
        ts = records[index_field]
        first = min([int(metadata.start)] + ([int(ts.min())] if len(ts) else []))
        last = max([int(metadata.end or metadata.start)] + ([int(ts.max()) + 1] if len(ts) else []))
        table.add(records, _day_floor(first), _day_ceil(last))
        data.publishers.update(np.unique(records["publisher_id"]).tolist())
        self._add_symbology(data, metadata, records, _date(first), _date(_day_ceil(last)))

    @staticmethod
    def _add_symbology(
        data: _Dataset,
        metadata: dbn.Metadata,
        records: np.ndarray,
        first: dt.date,
        end: dt.date,
    ) -> None:
        stype_in = str(metadata.stype_in) if metadata.stype_in is not None else ""
        if stype_in in ("raw_symbol", "parent", "instrument_id"):
            for key, entries in metadata.mappings.items():
                for entry in entries:
                    if not entry["symbol"]:
                        continue
                    raw_symbol, iid = key, entry["symbol"]
                    if stype_in == "instrument_id":
                        raw_symbol, iid = iid, key
                    data.add_interval(
                        SymbolInterval(raw_symbol, int(iid), entry["start_date"], entry["end_date"])
                    )
        if str(metadata.schema) != "definition":
            return
        for rec in records:
            iid, ts_recv = int(rec["instrument_id"]), int(rec["ts_recv"])
            info = InstrumentInfo(
                _text(rec["raw_symbol"]),
                _text(rec["asset"]),
                _text(rec["security_type"]),
                _text(rec["instrument_class"]),
            )
            known = data.instruments.get(iid)
            if known is None or known[0] <= ts_recv:
                data.instruments[iid] = (ts_recv, info)
            data.add_interval(SymbolInterval(info.raw_symbol, iid, first, end))

    # -- queries ---------------------------------------------------------------------------

    def datasets(self) -> list[str]:
        """Dataset codes in the store."""
        return sorted(self._datasets)

    def dataset(self, code: str) -> _Dataset:
        """One dataset, or a 422 ``dataset_unavailable``."""
        data = self._datasets.get(code)
        if data is None:
            raise ApiError(
                422,
                "dataset_unavailable",
                f"Dataset '{code}' is not available from this gateway "
                f"(available: {', '.join(self.datasets()) or 'none'}).",
                DOCS_DATASETS,
                {"dataset": code},
            )
        return data

    def schemas(self, dataset: str) -> list[str]:
        """Schemas of a dataset."""
        return sorted(self.dataset(dataset).tables)

    def available_range(self, dataset: str, schema: str | None = None) -> tuple[int, int]:
        """Inclusive start and exclusive end (ns, whole UTC days, or ``available_until_ns`` when set:
        data published intraday, as Databento's historical API has it minutes after the fact)."""
        start, end = self._available_range(dataset, schema)
        if self.available_until_ns is not None:
            end = max(start, min(end, self.available_until_ns))
        return start, end

    def _available_range(self, dataset: str, schema: str | None) -> tuple[int, int]:
        data = self.dataset(dataset)
        if schema is None:
            return data.start_ns, data.end_ns
        table = data.tables.get(schema)
        if table is None:
            raise ApiError(
                422,
                "data_schema_not_fully_available",
                f"Schema '{schema}' is not available for dataset {dataset} from this gateway "
                f"(available: {', '.join(sorted(data.tables))}).",
                DOCS_DATASETS,
                {"dataset": dataset, "schema": schema},
            )
        return table.start_ns, table.end_ns

    def table(self, dataset: str, schema: str) -> _Table:
        """The records of a (dataset, schema); merged lazily, once."""
        self.available_range(dataset, schema)
        table = self.dataset(dataset).tables[schema]
        with self._lock:
            _ = table.records
        return table

    def select(self, query: Query) -> Selection:
        """The records, mappings and unresolved symbols ``query`` asks for."""
        table = self.table(query.dataset, query.schema)
        resolution = self.resolve(
            query.dataset, query.symbols, query.stype_in, _date(query.start_ns), query.end_date
        )
        if not resolution.ids:
            raise ApiError(
                422,
                "symbology_invalid_request",
                "None of the symbols could be resolved",
                DOCS_SYMBOLOGY,
                {"symbols": list(query.symbols), "stype_in": query.stype_in},
            )
        records = table.records
        ts = records[table.index_field]
        lo = int(np.searchsorted(ts, np.uint64(query.start_ns), side="left"))
        hi = int(np.searchsorted(ts, np.uint64(query.end_ns), side="left"))
        window = records[lo:hi]
        if not resolution.all_instruments:
            wanted = np.fromiter(resolution.ids, dtype=np.uint32, count=len(resolution.ids))
            window = window[np.isin(window["instrument_id"], wanted)]
        if query.limit:
            window = window[: query.limit]
        return Selection(query, window, resolution.merged(), resolution.not_found)

    def resolve(
        self,
        dataset: str,
        symbols: Sequence[str],
        stype_in: str,
        d0: dt.date,
        d1: dt.date,
    ) -> Resolution:
        """Instrument ids of ``symbols`` on the dates ``d0`` to ``d1`` (exclusive)."""
        data = self.dataset(dataset)
        if stype_in not in ("raw_symbol", "instrument_id", "parent"):
            raise ApiError(
                422,
                "symbology_invalid_request",
                f"stype_in '{stype_in}' is not supported by this gateway "
                "(raw_symbol, instrument_id, parent).",
                DOCS_SYMBOLOGY,
                {"stype_in": stype_in},
            )
        out = Resolution()
        with self._lock:  # files may still be added while the gateway serves
            if ALL_SYMBOLS in symbols:
                out.all_instruments = True
                for iv in data.intervals:
                    if iv.overlaps(d0, d1):
                        out.add(iv.raw_symbol, iv, d0, d1, str(iv.instrument_id))
                return out
            found_per_symbol = [
                (symbol, data.lookup(symbol, stype_in, d0, d1)) for symbol in symbols
            ]
        for symbol, found in found_per_symbol:
            if not found:
                out.not_found.append(symbol)
            for iv in found:
                if stype_in == "instrument_id":
                    out.add(symbol, iv, d0, d1, iv.raw_symbol)
                elif stype_in == "parent":
                    out.add(iv.raw_symbol, iv, d0, d1, str(iv.instrument_id))
                else:
                    out.add(symbol, iv, d0, d1, str(iv.instrument_id))
        return out


@functools.lru_cache(maxsize=65_536)
def parent_of(raw_symbol: str, info: InstrumentInfo | None) -> tuple[str, str] | None:
    """(root, ``FUT`` or ``OPT``) of an instrument, from its definition or its raw symbol."""
    if info is not None and info.asset:
        if info.security_type in ("FUT",) or info.instrument_class in ("F", "S"):
            return info.asset, "FUT"
        if info.security_type in ("OOF", "OPT") or info.instrument_class in ("C", "P", "T", "M"):
            return info.asset, "OPT"
    leg = raw_symbol.split("-", 1)[0]
    if match := _FUT_RE.match(leg):
        return match.group(1), "FUT"
    if match := _OPT_RE.match(raw_symbol):
        return match.group(1), "OPT"
    return None


@dataclasses.dataclass
class Resolution:
    """Resolved instrument ids, the DBN metadata mappings and the unresolved symbols."""

    ids: set[int] = dataclasses.field(default_factory=set)
    mappings: dict[str, set[tuple[dt.date, dt.date, str]]] = dataclasses.field(
        default_factory=dict
    )
    not_found: list[str] = dataclasses.field(default_factory=list)
    all_instruments: bool = False

    def add(self, key: str, iv: SymbolInterval, d0: dt.date, d1: dt.date, out: str) -> None:
        self.ids.add(iv.instrument_id)
        clipped = (max(iv.d0, d0), min(iv.d1, d1), out)
        self.mappings.setdefault(key, set()).add(clipped)

    def merged(self) -> dict[str, list[tuple[dt.date, dt.date, str]]]:
        """Mappings per key, sorted, overlapping or touching intervals of one output joined."""
        return {key: _merge(intervals) for key, intervals in sorted(self.mappings.items())}


def _merge(intervals: Iterable[tuple[dt.date, dt.date, str]]) -> list[tuple[dt.date, dt.date, str]]:
    out: list[tuple[dt.date, dt.date, str]] = []
    for d0, d1, symbol in sorted(intervals, key=lambda iv: (iv[2], iv[0])):
        if out and out[-1][2] == symbol and d0 <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], d1), symbol)
        else:
            out.append((d0, d1, symbol))
    return sorted(out)


@dataclasses.dataclass(frozen=True)
class Query:
    """A validated data request (get_range, and the metadata endpoints that price one)."""

    dataset: str
    schema: str
    symbols: tuple[str, ...]
    stype_in: str
    stype_out: str
    start_ns: int
    end_ns: int
    limit: int | None = None

    @property
    def end_date(self) -> dt.date:
        return _date(_day_ceil(self.end_ns))


@dataclasses.dataclass(frozen=True)
class Selection:
    """What a query returns: records (v3 layout), mappings, unresolved symbols."""

    query: Query
    records: np.ndarray
    mappings: Mapping[str, list[tuple[dt.date, dt.date, str]]]
    not_found: list[str]

    @property
    def count(self) -> int:
        return len(self.records)

    @property
    def billable_size(self) -> int:
        return self.count * self.records.dtype.itemsize


# -- DBN encoding ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _MapInterval:
    start_date: dt.date
    end_date: dt.date
    symbol: str


@dataclasses.dataclass(frozen=True)
class _SymbolMapping:
    raw_symbol: str
    intervals: list[_MapInterval]


def metadata_bytes(selection: Selection) -> bytes:
    """Encoded DBN v3 metadata describing ``selection``'s request."""
    q = selection.query
    mappings = [
        _SymbolMapping(key, [_MapInterval(*iv) for iv in intervals])
        for key, intervals in selection.mappings.items()
    ]
    meta = dbn.Metadata(
        dataset=q.dataset,
        start=q.start_ns,
        stype_in=dbn.SType(q.stype_in),
        stype_out=dbn.SType(q.stype_out),
        schema=dbn.Schema(q.schema),
        symbols=list(q.symbols),
        partial=[],
        not_found=list(selection.not_found),
        mappings=mappings,
        end=q.end_ns,
        limit=q.limit or 0,
        ts_out=False,
    )
    return meta.encode()


def dbn_chunks(selection: Selection, compression: str, size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """The get_range body in pieces of about ``size`` bytes: DBN, zstd-compressed or not."""
    plain = _plain_chunks(selection, size)
    if compression == "none":
        yield from plain
        return
    cobj = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True).compressobj()
    pending = bytearray()
    for piece in plain:
        pending += cobj.compress(piece)
        if len(pending) >= size:
            yield bytes(pending)
            pending.clear()
    pending += cobj.flush()
    if pending:
        yield bytes(pending)


def _plain_chunks(selection: Selection, size: int) -> Iterator[bytes]:
    yield metadata_bytes(selection)
    body = np.ascontiguousarray(selection.records).view(np.uint8)
    for offset in range(0, len(body), size):
        yield body[offset : offset + size].tobytes()


# -- TLS -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    """The server's certificate (also the CA bundle clients trust: it is self-signed) and key."""

    cert: Path
    key: Path


def make_self_signed(folder: Path) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1 / localhost, made with the ``openssl`` command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl command is needed to make the gateway's certificate")
    folder.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(folder / "gateway-cert.pem", folder / "gateway-key.pem")
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(files.key), "-out", str(files.cert), "-days", "30",
            "-subj", "/CN=ifd historical gateway",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,digitalSignature,keyCertSign",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return files


@functools.cache
def default_tls() -> TlsFiles:
    """One certificate per process, in a temporary folder removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="ifd-hist-gw-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return make_self_signed(folder)


# -- faults and request log ------------------------------------------------------------------


@dataclasses.dataclass
class Fault:
    """A fault for the next ``times`` matching requests (``None``: every one).

    ``endpoint`` None matches every endpoint; ``delay_s`` delays the answer; ``status`` answers
    with that status (and Databento's error body) instead. A fault with ``drop_after_bytes``
    applies to get_range streams only (other fields ignored): the connection is closed once
    that many body bytes were sent.
    """

    endpoint: str | None = None
    delay_s: float = 0.0
    status: int | None = None
    drop_after_bytes: int | None = None
    times: int | None = 1


@dataclasses.dataclass(frozen=True)
class RequestRecord:
    """One request the gateway answered (the key is never recorded)."""

    endpoint: str
    method: str
    params: dict[str, str]
    status: int
    body_bytes: int
    dropped: bool
    seconds: float


# -- HTTP ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Stream:
    selection: Selection
    compression: str


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ifd-historical-gateway"
    timeout = 60
    server: _Server
    _streaming = False  # True once a get_range status line and headers went out
    _logged = False
    _entry: tuple[str, dict[str, str], float] = ("", {}, 0.0)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("%s " + format, self.address_string(), *args)

    def _params(self) -> dict[str, str]:
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            body = self.rfile.read(length).decode("utf-8", "replace")
            params.update(parse_qsl(body, keep_blank_values=True))
        return params

    def _dispatch(self) -> None:
        gw = self.server.gateway
        path = urlsplit(self.path).path
        endpoint = path.removeprefix(f"/v{API_VERSION}/")
        params = self._params()
        self._entry = (endpoint, params, time.monotonic())
        self._logged = self._streaming = False  # one handler may serve several requests
        fault = gw._begin(endpoint)
        try:
            if fault and fault.delay_s:
                time.sleep(fault.delay_s)
            if fault and fault.status:
                raise _fault_error(fault.status)
            gw._authenticate(self.headers.get("Authorization"))
            route = _ROUTES.get(endpoint) if path.startswith(f"/v{API_VERSION}/") else None
            if route is None:
                raise ApiError(404, "endpoint_not_found", f"Unknown endpoint '{path}'.")
            result = route(gw, params)
            if isinstance(result, _Stream):
                self._send_stream(result, gw._take_drop())
            else:
                self._send_json(200, result)
        except ApiError as exc:
            if exc.plain_text:
                self._send_text(exc.status, exc.message)
            else:
                self._send_json(exc.status, exc.body(), unauthorized=exc.status == 401)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError) as exc:
            LOG.debug("historical gateway: client of %s went away: %s", endpoint, exc)
            self.close_connection = True
            self._log(200 if self._streaming else 500, 0, dropped=self._streaming)
        except Exception:
            LOG.exception("historical gateway: %s failed", endpoint)
            if self._streaming:  # the status line is gone: all that is left is to hang up
                self._log(200, 0, dropped=True)
                self._drop()
            else:
                error = ApiError(500, "internal_server_error", "Internal error in the gateway.")
                self._send_json(500, error.body())

    def _log(self, status: int, sent: int, dropped: bool = False) -> None:
        """Log the request once, before its last bytes go out (tests read the log right after)."""
        if self._logged:
            return
        self._logged = True
        endpoint, params, started = self._entry
        seconds = time.monotonic() - started
        self.server.gateway._end(
            RequestRecord(endpoint, self.command, params, status, sent, dropped, seconds)
        )

    def _common_headers(self) -> None:
        self.send_header("request-id", uuid.uuid4().hex)

    def _send_json(self, status: int, payload: Any, unauthorized: bool = False) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self._common_headers()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if unauthorized:
            self.send_header("WWW-Authenticate", 'Basic realm="Databento"')
        self._log(status, len(body))
        self.end_headers()
        self.wfile.write(body)

    def _send_text(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self._common_headers()
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self._log(status, len(body))
        self.end_headers()
        self.wfile.write(body)

    def _send_stream(self, stream: _Stream, drop_after: int | None) -> None:
        self.send_response(200)
        self._common_headers()
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        if missing := stream.selection.not_found:
            warning = f"BentoWarning: symbols could not be resolved: {', '.join(missing)}"
            self.send_header("X-Warning", json.dumps([warning]))
        self.end_headers()
        self._streaming = True
        sent = 0
        for piece in dbn_chunks(stream.selection, stream.compression):
            if drop_after is not None and sent + len(piece) >= drop_after:
                self._log(200, drop_after, dropped=True)
                if piece := piece[: drop_after - sent]:
                    self._write_chunk(piece)
                self._drop()
                return
            self._write_chunk(piece)
            sent += len(piece)
        self._log(200, sent)
        self.wfile.write(b"0\r\n\r\n")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data))

    def _drop(self) -> None:
        """Close the TCP connection without TLS close_notify or the final chunk."""
        self.close_connection = True
        try:
            # SSLSocket.shutdown forgets the TLS layer first: no close_notify is sent.
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _fault_error(status: int) -> ApiError:
    if status in (502, 504):
        reason = http.HTTPStatus(status).phrase
        return ApiError(status, "gateway_error", f"{status} {reason}", plain_text=True)
    if status // 100 == 5:
        return ApiError(status, "internal_server_error", f"Injected server error {status}.")
    return ApiError(status, "injected_error", f"Injected error {status}.")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, gateway: HistoricalGateway, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", gateway.requested_port), _Handler)
        self.gateway = gateway
        self.socket = context.wrap_socket(
            self.socket, server_side=True, do_handshake_on_connect=False
        )

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs here, in the request's thread, not in the accept loop.
        try:
            request.settimeout(HANDSHAKE_TIMEOUT_S)
            request.do_handshake()
        except (OSError, ssl.SSLError) as exc:
            LOG.debug("historical gateway: TLS handshake failed: %s", exc)
            return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        LOG.debug("historical gateway: connection from %s: %s", client_address, sys.exc_info()[1])


# -- endpoints -------------------------------------------------------------------------------


def _param(params: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = params.get(name)
    if value is None or value == "":
        if default is None:
            raise ApiError(
                422, "parameter_missing", f"Missing required parameter `{name}`.", payload={}
            )
        return default
    return value


def _schema(params: Mapping[str, str]) -> str:
    value = _param(params, "schema", "trades")
    try:
        return str(dbn.Schema(value))
    except (ValueError, dbn.DBNError) as exc:
        raise _invalid("schema", value, "Unknown schema.") from exc


def _stype(params: Mapping[str, str], name: str, default: str) -> str:
    value = _param(params, name, default)
    try:
        return str(dbn.SType(value))
    except (ValueError, dbn.DBNError) as exc:
        raise _invalid(name, value, "Unknown symbology type.") from exc


def _symbols(params: Mapping[str, str]) -> tuple[str, ...]:
    value = _param(params, "symbols", ALL_SYMBOLS)
    symbols = tuple(s.strip() for s in value.split(",") if s.strip())
    if len(symbols) > MAX_SYMBOLS:
        raise _invalid("symbols", f"{len(symbols)} symbols", f"At most {MAX_SYMBOLS} per request.")
    return symbols or (ALL_SYMBOLS,)


def _limit(params: Mapping[str, str]) -> int | None:
    value = params.get("limit")
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise _invalid("limit", value, "Expected a positive integer.")
    return int(value)


def build_query(store: HistoricalStore, params: Mapping[str, str]) -> Query:
    """Validate request parameters into a :class:`Query` (422 :class:`ApiError` otherwise)."""
    dataset = _param(params, "dataset")
    store.dataset(dataset)
    schema = _schema(params)
    stype_in = _stype(params, "stype_in", "raw_symbol")
    stype_out = _stype(params, "stype_out", "instrument_id")
    if stype_out != "instrument_id":
        raise _invalid("stype_out", stype_out, "This gateway maps to instrument_id only.")
    symbols = _symbols(params)
    start_ns, step = parse_time("start", _param(params, "start"))
    end_text = params.get("end")
    end_ns = parse_time("end", end_text)[0] if end_text else start_ns + step
    _check_range(store, dataset, schema, start_ns, end_ns)
    return Query(dataset, schema, symbols, stype_in, stype_out, start_ns, end_ns, _limit(params))


def _check_range(store: HistoricalStore, dataset: str, schema: str, start: int, end: int) -> None:
    if start >= end:
        raise ApiError(
            422,
            "data_time_range_start_on_or_after_end",
            f"Invalid time range query, `start` {_pretty(start)} cannot be on or after "
            f"`end` {_pretty(end)}.",
            DOCS_TIMES,
            {"start": iso_ns(start), "end": iso_ns(end)},
        )
    first, last = store.available_range(dataset, schema)
    payload = {
        "dataset": dataset,
        "start": iso_ns(start),
        "end": iso_ns(end),
        "available_start": iso_ns(first),
        "available_end": iso_ns(last),
    }
    if start < first:
        raise ApiError(
            422,
            "data_start_before_available_start",
            f"`start` in query ('{_pretty(start)}') was before the available start of dataset "
            f"{dataset} ('{_pretty(first)}'). Try requesting with a later `start`.",
            DOCS_DATASETS,
            payload,
        )
    if start >= last:
        raise ApiError(
            422,
            "data_start_after_available_end",
            f"`start` in query ('{_pretty(start)}') was after the available end of dataset "
            f"{dataset} ('{_pretty(last)}'). Try requesting with an earlier `start`.",
            DOCS_DATASETS,
            payload,
        )
    if end > last:
        raise ApiError(
            422,
            "data_end_after_available_end",
            f"The dataset {dataset} has data available up to '{_pretty(last)}'. The `end` in the "
            f"query ('{_pretty(end)}') is after the available range. Try requesting with an "
            "earlier `end`.",
            DOCS_DATASETS,
            payload,
        )


def _get_range(gw: HistoricalGateway, params: Mapping[str, str]) -> _Stream:
    encoding = params.get("encoding") or "dbn"
    if encoding != "dbn":
        raise _invalid("encoding", encoding, "This gateway streams DBN only.")
    compression = params.get("compression") or "none"
    if compression not in ("zstd", "none"):
        raise _invalid("compression", compression, "Expected zstd or none.")
    return _Stream(gw.store.select(build_query(gw.store, params)), compression)


def _record_count(gw: HistoricalGateway, params: Mapping[str, str]) -> int:
    return gw.store.select(build_query(gw.store, params)).count


def _billable_size(gw: HistoricalGateway, params: Mapping[str, str]) -> int:
    return gw.store.select(build_query(gw.store, params)).billable_size


def _cost(gw: HistoricalGateway, params: Mapping[str, str]) -> float:
    return gw.cost(gw.store.select(build_query(gw.store, params)))


def _dataset_range(gw: HistoricalGateway, params: Mapping[str, str]) -> dict[str, Any]:
    dataset = _param(params, "dataset")
    start, end = gw.store.available_range(dataset)
    per_schema = {}
    for schema in gw.store.schemas(dataset):
        s_start, s_end = gw.store.available_range(dataset, schema)
        per_schema[schema] = {"start": iso_ns(s_start), "end": iso_ns(s_end)}
    return {"start": iso_ns(start), "end": iso_ns(end), "schema": per_schema}


def _list_datasets(gw: HistoricalGateway, params: Mapping[str, str]) -> list[str]:
    lo = params.get("start_date")
    hi = params.get("end_date")
    out = []
    for code in gw.store.datasets():
        start, end = gw.store.available_range(code)
        if lo and _date(end - 1) < parse_date("start_date", lo):
            continue
        if hi and _date(start) >= parse_date("end_date", hi):
            continue
        out.append(code)
    return out


def _list_schemas(gw: HistoricalGateway, params: Mapping[str, str]) -> list[str]:
    return gw.store.schemas(_param(params, "dataset"))


def _list_publishers(gw: HistoricalGateway, params: Mapping[str, str]) -> list[dict[str, Any]]:
    out = []
    for code in gw.store.datasets():
        for pid in sorted(gw.store.dataset(code).publishers):
            _, venue, description = PUBLISHERS.get(pid, (code, code.split(".")[0], code))
            out.append(
                {"publisher_id": pid, "dataset": code, "venue": venue, "description": description}
            )
    return out


def _unit_prices(gw: HistoricalGateway, params: Mapping[str, str]) -> list[dict[str, Any]]:
    schemas = set(gw.store.schemas(_param(params, "dataset"))) | set(gw.unit_prices)  # Databento lists every schema
    prices = {schema: gw.unit_price(schema) for schema in sorted(schemas)}
    modes = ("historical", "historical-streaming", "live")
    return [{"mode": mode, "unit_prices": prices} for mode in modes]


def _dataset_condition(gw: HistoricalGateway, params: Mapping[str, str]) -> list[dict[str, Any]]:
    dataset = _param(params, "dataset")
    start, end = gw.store.available_range(dataset)
    first, last = _date(start), _date(end - 1)
    if params.get("start_date"):
        first = max(first, parse_date("start_date", params["start_date"]))
    if params.get("end_date"):
        last = min(last, parse_date("end_date", params["end_date"]))  # inclusive here
    days = (last - first).days + 1
    modified = _date(end).isoformat()
    return [
        {
            "date": (first + dt.timedelta(days=i)).isoformat(),
            "condition": "available",
            "last_modified_date": modified,
        }
        for i in range(max(days, 0))
    ]


def _resolve(gw: HistoricalGateway, params: Mapping[str, str]) -> dict[str, Any]:
    dataset = _param(params, "dataset")
    stype_in = _stype(params, "stype_in", "raw_symbol")
    stype_out = _stype(params, "stype_out", "instrument_id")
    if stype_out != "instrument_id":
        raise _invalid("stype_out", stype_out, "This gateway maps to instrument_id only.")
    symbols = _symbols(params)
    d0 = parse_date("start_date", _param(params, "start_date"))
    end_text = params.get("end_date")
    d1 = parse_date("end_date", end_text) if end_text else d0 + dt.timedelta(days=1)
    resolution = gw.store.resolve(dataset, symbols, stype_in, d0, d1)
    result = {
        key: [{"d0": a.isoformat(), "d1": b.isoformat(), "s": s} for a, b, s in intervals]
        for key, intervals in resolution.merged().items()
    }
    missing = resolution.not_found
    return {
        "result": result,
        "symbols": list(symbols),
        "stype_in": stype_in,
        "stype_out": stype_out,
        "start_date": d0.isoformat(),
        "end_date": d1.isoformat(),
        "partial": [],
        "not_found": missing,
        "message": "OK" if not missing else "Not found",
        "status": 0 if not missing else (1 if result else 2),
    }


_ROUTES: dict[str, Callable[[HistoricalGateway, Mapping[str, str]], Any]] = {
    "timeseries.get_range": _get_range,
    "metadata.get_record_count": _record_count,
    "metadata.get_billable_size": _billable_size,
    "metadata.get_cost": _cost,
    "metadata.get_dataset_range": _dataset_range,
    "metadata.list_datasets": _list_datasets,
    "metadata.list_schemas": _list_schemas,
    "metadata.list_publishers": _list_publishers,
    "metadata.list_unit_prices": _unit_prices,
    "metadata.get_dataset_condition": _dataset_condition,
    "symbology.resolve": _resolve,
}
ENDPOINTS = tuple(_ROUTES)


# -- the gateway -----------------------------------------------------------------------------


class HistoricalGateway:
    """A threaded HTTPS server on 127.0.0.1 imitating Databento's historical API.

    ``unit_prices`` maps schema -> USD per GB (``default_unit_price`` for the others); both may
    be changed while it runs, e.g. to make a request "expensive".
    """

    def __init__(
        self,
        store: HistoricalStore,
        api_keys: Iterable[str] = (DEFAULT_API_KEY,),
        *,
        port: int = 0,
        unit_prices: Mapping[str, float] | None = None,
        default_unit_price: float = DEFAULT_UNIT_PRICE,
        tls: TlsFiles | None = None,
    ) -> None:
        self.store = store
        self.api_keys = tuple(api_keys)
        if not self.api_keys:
            raise ValueError("at least one API key is needed")
        self.requested_port = port
        self.unit_prices = dict(unit_prices or {})
        self.default_unit_price = default_unit_price
        self.tls = tls
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._requests: list[RequestRecord] = []
        self._faults: list[Fault] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind 127.0.0.1 (an ephemeral port unless one was given) and serve in a thread."""
        if self._server is not None:
            return self
        self.tls = self.tls or default_tls()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.tls.cert, self.tls.key)
        self._server = _Server(self, context)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="historical-gateway",
            daemon=True,
        )
        self._thread.start()
        LOG.info("historical gateway serving %s on %s", self.store.datasets(), self.url)
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the gateway is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The ``gateway`` to give ``databento.Historical``."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def api_key(self) -> str:
        """The first accepted key."""
        return self.api_keys[0]

    @property
    def ca_file(self) -> Path:
        """The certificate clients must trust (``REQUESTS_CA_BUNDLE``)."""
        return (self.tls or default_tls()).cert

    def client_env(self) -> dict[str, str]:
        """Environment for a ``databento.Historical`` client of this gateway."""
        ca = str(self.ca_file)
        return {
            "REQUESTS_CA_BUNDLE": ca,
            "SSL_CERT_FILE": ca,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }

    # -- pricing -----------------------------------------------------------------------------

    def unit_price(self, schema: str) -> float:
        """USD per GB of ``schema``."""
        return float(self.unit_prices.get(schema, self.default_unit_price))

    def cost(self, selection: Selection) -> float:
        """USD of a selection: billable bytes / 1e9 x the schema's unit price."""
        return selection.billable_size / BYTES_PER_GB * self.unit_price(selection.query.schema)

    def quote(self, **params: Any) -> Quote:
        """Records, billable bytes and USD of a get_range, without a request (not counted).

        ``params`` as given to ``timeseries.get_range`` (``symbols`` may be a list); raises
        :class:`ApiError` where the API would answer with an error.
        """
        form = {k: _form_value(v) for k, v in params.items() if v is not None}
        selection = self.store.select(build_query(self.store, form))
        return Quote(selection.count, selection.billable_size, self.cost(selection))

    # -- faults, counts, log ----------------------------------------------------------------

    def inject(self, fault: Fault) -> Fault:
        """Apply ``fault`` to the next matching requests (see :class:`Fault`)."""
        with self._lock:
            self._faults.append(fault)
        return fault

    def drop_after(self, n_bytes: int, times: int | None = 1) -> Fault:
        """Close the next get_range streams after ``n_bytes`` body bytes (``None``: always).

        Only requests that stream consume it: one refused with 4xx leaves it armed.
        """
        return self.inject(Fault("timeseries.get_range", drop_after_bytes=n_bytes, times=times))

    def fail_with(self, status: int, endpoint: str | None = None, times: int | None = 1) -> Fault:
        """Answer the next requests with ``status``."""
        return self.inject(Fault(endpoint, status=status, times=times))

    def delay(self, seconds: float, endpoint: str | None = None, times: int | None = None) -> Fault:
        """Delay answers by ``seconds``."""
        return self.inject(Fault(endpoint, delay_s=seconds, times=times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def count(self, endpoint: str | None = None) -> int:
        """Requests received for ``endpoint`` (all endpoints when None)."""
        with self._lock:
            return self._counts[endpoint] if endpoint else sum(self._counts.values())

    def counts(self) -> dict[str, int]:
        """Requests received per endpoint."""
        with self._lock:
            return dict(self._counts)

    @property
    def requests(self) -> list[RequestRecord]:
        """Every answered request, oldest first."""
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        """Forget counts, the request log and faults."""
        with self._lock:
            self._counts.clear()
            self._requests.clear()
            self._faults.clear()

    def _begin(self, endpoint: str) -> Fault | None:
        """Count a request; the delay / status fault that applies to it, if any."""
        with self._lock:
            self._counts[endpoint] += 1
            return self._take(
                lambda f: f.drop_after_bytes is None and f.endpoint in (None, endpoint)
            )

    def _take_drop(self) -> int | None:
        """Bytes after which to drop the get_range stream about to start, if a fault says so."""
        with self._lock:
            fault = self._take(lambda f: f.drop_after_bytes is not None)
        return fault.drop_after_bytes if fault else None

    def _take(self, applies: Callable[[Fault], bool]) -> Fault | None:
        for fault in self._faults:
            if not applies(fault):
                continue
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
            return fault
        return None

    def _end(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)

    def _authenticate(self, header: str | None) -> None:
        key = _basic_username(header)
        given = (key or "").encode()
        if key is None or not any(hmac.compare_digest(given, k.encode()) for k in self.api_keys):
            raise ApiError(401, "auth_authentication_failed", "Authentication failed.", DOCS_KEYS)


@dataclasses.dataclass(frozen=True)
class Quote:
    """What a get_range would return and cost."""

    record_count: int
    billable_size: int
    cost_usd: float


def _form_value(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Iterable):
        return ",".join(str(v) for v in value)
    return str(value)


def _basic_username(header: str | None) -> str | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0] or None


# -- command line ----------------------------------------------------------------------------


def _price(text: str) -> tuple[str, float]:
    schema, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected SCHEMA=USD_PER_GB, got {text!r}")
    return schema, float(value)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve DBN files as Databento's historical API on 127.0.0.1 until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m adapters.databento.historical_gateway",
        description="Rehearse Databento historical downloads offline: serve DBN files on "
        "127.0.0.1 with the historical HTTP API.",
    )
    parser.add_argument("--store", nargs="+", required=True, help="DBN files or folders")
    parser.add_argument("--port", type=int, default=0, help="port (default: an ephemeral one)")
    parser.add_argument("--key", default=DEFAULT_API_KEY, help="the API key clients must send")
    parser.add_argument(
        "--price", type=_price, action="append", default=[], help="SCHEMA=USD_PER_GB (repeatable)"
    )
    parser.add_argument("--default-price", type=float, default=DEFAULT_UNIT_PRICE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    store = HistoricalStore.from_paths(args.store)
    if not store.datasets():
        print("no servable DBN files found", file=sys.stderr)
        return 2
    gateway = HistoricalGateway(
        store,
        (args.key,),
        port=args.port,
        unit_prices=dict(args.price),
        default_unit_price=args.default_price,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with gateway:
        ready = {
            "url": gateway.url,
            "ca_file": str(gateway.ca_file),
            "datasets": {code: store.schemas(code) for code in store.datasets()},
            "files": len(store.files),
        }
        print(json.dumps(ready), flush=True)
        print(
            f"export REQUESTS_CA_BUNDLE={gateway.ca_file} NO_PROXY=127.0.0.1; then "
            f"databento.Historical(KEY, gateway='{gateway.url}')",
            file=sys.stderr,
            flush=True,
        )
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
