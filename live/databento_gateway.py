"""A small Databento live (raw TCP) gateway that replays DBN files on loopback.

It speaks the text control protocol of the Databento live subscription gateway
(greeting, CRAM challenge, authentication, subscriptions, ``start_session``) and
then streams DBN v3 (Metadata + records), so the official clients (the
``databento`` Python ``Live`` client, and later NautilusTrader's live client) can
be pointed at it instead of the real service.

Honoured per session:

* CRAM authentication against ``api_keys`` (the key is never logged); a wrong key,
  an unknown dataset, ``encoding`` other than ``dbn`` or a ``compression`` other
  than ``none`` get ``success=0|error=...`` and the socket is closed.
* ``ts_out=1``: each record gets the 8-byte send timestamp appended, Metadata says so.
* Subscriptions: ``schema``, ``stype_in`` (``raw_symbol``, ``instrument_id``,
  ``parent`` as ``ROOT.FUT``/``ROOT.OPT`` resolved through definitions),
  ``symbols`` (incl. ``ALL_SYMBOLS``), ``start`` (records with index ts < start are
  skipped unless ``ignore_start=True``), ``snapshot=1`` (the file's records are sent
  from its start, so the client builds the book from the first record on; recorded
  sample files may begin with a book snapshot; for a session joining a running
  market see below). Subscriptions sent after ``start_session`` are streamed too.
* Per subscription: one ``SymbolMappingMsg`` per instrument, then its instrument
  definitions when a definition file is available, then the records of all
  subscriptions merged in index-timestamp order (``ts_recv``, else ``ts_event``).
* ``trades`` built from MBO ``T`` records when there is no trades file.
* Unknown schema (no file, not derivable): Metadata, then an ``ErrorMsg``
  (``INVALID_SUBSCRIPTION``) and the socket is closed. Unresolved symbols get an
  ``ErrorMsg`` (``SYMBOL_RESOLUTION_FAILED``) but the session goes on.
* After the replay: ``SystemMsg`` heartbeats every ``heartbeat_interval_s`` until
  the client closes or :meth:`DatabentoGateway.stop`.
* ``speed=None`` streams as fast as possible; ``speed=x`` sends each record x times
  faster than its index ts after the session's first record.
* ``drop_after_records=N`` closes the socket after N records (counted after the
  Metadata, mappings and definitions included) in the first ``drop_sessions``
  sessions.

One market (``sync_schemas``, e.g. ``("mbo", "trades")``): by default each session is
replayed on its own, so a client holding a trades session and an MBO session (as
NautilusTrader's does, the MBO one opened seconds later) gets every trade before the
book it traded against. With ``sync_schemas`` the sessions of a dataset carrying
those schemas are replayed as one market, as the real gateway serves one live feed:

* a session's mappings and definitions are sent at once, its records are held (with
  heartbeats, further subscriptions accepted) until a session for every synced
  schema has started, or ``sync_timeout_s`` after the first;
* then one thread merges all their records in (index ts, place in the file) order,
  a derived trade at the place of its MBO ``T`` record (before the book updates of
  its match), and writes each to its session, all paced on one clock origin at
  ``speed`` (None: as fast as possible);
* where the stream passes from one session to another it waits ``sync_gap_s`` after
  the last send, so that a client reading each session on its own thread gets the
  records in stream order as long as it keeps up within that gap;
* a session starting after that (a reconnect, a late subscription) joins at the
  market's position: the records before it at once when it asked for them
  (``snapshot=1`` or ``start``), else none, then the rest on the market's clock but
  not merged with the others.

Not implemented: zstd compression, ``slow_reader_behavior``, subscription acks,
``end_of_interval`` system messages, unsubscribe, other stype_in (continuous,
smart symbology), symbology date intervals (mappings are per file).
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import hmac
import logging
import secrets
import select
import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Self

import databento_dbn as dbn

LOG = logging.getLogger(__name__)

ALL_SYMBOLS = "ALL_SYMBOLS"
LSG_VERSION = "0.1.0-ifd-replay"
BUCKET_ID_LENGTH = 5
READ_STEP_S = 0.2
AUTH_TIMEOUT_S = 30.0
DEFAULT_HEARTBEAT_S = 30
SEND_BATCH = 512
PACE_SLACK_S = 0.0002  # a record due sooner than this is sent now


def cram_response(challenge: str, key: str) -> str:
    """The response a client holding ``key`` must send to ``challenge``."""
    digest = hashlib.sha256(f"{challenge}|{key}".encode()).hexdigest()
    return f"{digest}-{key[-BUCKET_ID_LENGTH:]}"


def parse_control_line(line: str) -> dict[str, str]:
    """Parse ``key=value|key=value`` (trailing newline optional) into a dict."""
    out: dict[str, str] = {}
    for token in line.strip().split("|"):
        if token:
            key, _, value = token.partition("=")
            out[key] = value
    return out


def format_control_line(**fields: Any) -> bytes:
    return (
        "|".join(f"{k}={v}" for k, v in fields.items() if v is not None) + "\n"
    ).encode()


def index_ts(record: Any) -> int:
    ts = getattr(record, "ts_recv", None)
    return int(ts if ts is not None else record.ts_event)


@dataclasses.dataclass
class Subscription:
    schema: str
    stype_in: str
    symbols: list[str]
    start: int | None = None
    snapshot: bool = False
    id: str | None = None


@dataclasses.dataclass
class SessionInfo:
    """What the gateway saw of one connection (for tests and logs)."""

    session_id: int
    peer: str
    dataset: str | None = None
    authenticated: bool = False
    ts_out: bool = False
    heartbeat_interval_s: int = DEFAULT_HEARTBEAT_S
    client: str | None = None
    subscriptions: list[Subscription] = dataclasses.field(default_factory=list)
    started: bool = False
    records_sent: int = 0
    heartbeats_sent: int = 0
    error: str | None = None
    closed: bool = False
    dropped: bool = False
    synced: bool = False  # its records went out in a market's merged stream


class _DatasetData:
    """Lazily loaded records and symbology of one dataset."""

    def __init__(self, dataset: str, files: Mapping[str, list[Path]]) -> None:
        self.dataset = dataset
        self.files = files  # schema -> paths
        self._records: dict[str, list[Any]] = {}
        self._ranks: dict[str, list[int]] = {}
        self._lock = threading.RLock()
        self._symbology: tuple[dict[int, str], dict[int, list[Any]]] | None = None

    def schemas(self) -> set[str]:
        available = set(self.files)
        if "mbo" in available:
            available.add("trades")
        return available

    def records(self, schema: str) -> list[Any]:
        with self._lock:
            if schema not in self._records:
                if schema in self.files:
                    recs: list[Any] = []
                    for path in self.files[schema]:
                        recs.extend(_load_records(path))
                    recs.sort(key=index_ts)
                    ranks = list(range(len(recs)))
                elif schema == "trades" and "mbo" in self.files:
                    mbo = self.records("mbo")
                    recs = trades_from_mbo(mbo)
                    ranks = [i for i, rec in enumerate(mbo) if _is_trade(rec)]
                else:
                    raise KeyError(schema)
                self._records[schema] = recs
                self._ranks[schema] = ranks
            return self._records[schema]

    def ranks(self, schema: str) -> list[int]:
        """Each record's place in its file (a derived trade: its MBO ``T`` record's place).

        Ties of the index timestamp across sessions are broken by it, so a trade goes out
        before the book updates that follow its ``T`` record in the MBO file.
        """
        self.records(schema)
        return self._ranks[schema]

    def symbology(self) -> tuple[dict[int, str], dict[int, list[Any]]]:
        """(instrument_id -> raw symbol, instrument_id -> definition records)."""
        if self._symbology is None:
            raw: dict[int, str] = {}
            for paths in self.files.values():
                for path in paths:
                    mappings = _load_metadata(
                        path
                    ).mappings  # {raw: [{"symbol": id, ...}]}
                    for raw_symbol, intervals in mappings.items():
                        for interval in intervals:
                            symbol = str(interval["symbol"])
                            if symbol.isdigit():
                                raw.setdefault(int(symbol), raw_symbol)
            defs: dict[int, list[Any]] = {}
            if "definition" in self.files:
                for rec in self.records("definition"):
                    defs.setdefault(rec.instrument_id, []).append(rec)
                    raw[rec.instrument_id] = rec.raw_symbol
            self._symbology = (raw, defs)
        return self._symbology


def _load_metadata(path: Path) -> Any:
    import databento

    return databento.DBNStore.from_file(path).metadata


def _load_records(path: Path) -> list[Any]:
    import databento

    return list(databento.DBNStore.from_file(path))


def _is_trade(record: Any) -> bool:
    return record.action in (dbn.Action.TRADE, "T")


def trades_from_mbo(records: Iterable[Any]) -> list[Any]:
    """TradeMsg records (depth 0) built from the MBO ``T`` (trade) records."""
    out = []
    for rec in records:
        if not _is_trade(rec):
            continue
        out.append(
            dbn.TradeMsg(
                rec.publisher_id,
                rec.instrument_id,
                rec.ts_event,
                rec.price,
                rec.size,
                dbn.Action.TRADE,
                rec.side if isinstance(rec.side, dbn.Side) else dbn.Side(rec.side),
                0,
                rec.ts_recv,
                int(rec.flags),
                rec.ts_in_delta,
                rec.sequence,
            )
        )
    return out


class DatabentoGateway:
    """Replays DBN files to Databento live clients over raw TCP.

    ``files``: a list of DBN paths (dataset and schema are read from each file's
    Metadata) or a mapping ``{(dataset, schema): path or [paths]}``.
    ``speed``: None streams as fast as possible, ``x`` paces at x times the records' pace.
    ``sync_schemas``: the sessions carrying these schemas replay one market (see the module
    docstring), ``sync_gap_s`` apart when the stream passes from one session to another,
    starting after ``sync_timeout_s`` at the latest when a schema's session never comes.
    """

    def __init__(
        self,
        files: Mapping[tuple[str, str], Any] | Iterable[str | Path],
        api_keys: Iterable[str],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        heartbeat_interval_s: int | None = None,
        speed: float | None = None,
        drop_after_records: int | None = None,
        drop_sessions: int = 1,
        ignore_start: bool = False,
        sync_schemas: Iterable[str] = (),
        sync_gap_s: float = 0.0,
        sync_timeout_s: float = 60.0,
    ) -> None:
        self.api_keys = [k for k in api_keys]
        if not self.api_keys:
            raise ValueError("at least one API key is required")
        self.host = host
        self.port = port
        self.heartbeat_interval_s = heartbeat_interval_s
        self.speed = speed or None  # 0: as fast as possible, like None
        self.drop_after_records = drop_after_records
        self.drop_sessions = drop_sessions
        self.ignore_start = ignore_start
        if speed is not None and speed < 0:
            raise ValueError(f"speed must be >= 0 or None, got {speed}")
        if sync_gap_s < 0 or sync_timeout_s <= 0:
            raise ValueError("sync_gap_s must be >= 0 and sync_timeout_s > 0")
        self.sync_schemas = frozenset(sync_schemas)
        self.sync_gap_s = sync_gap_s
        self.sync_timeout_s = sync_timeout_s
        by_dataset: dict[str, dict[str, list[Path]]] = {}
        if isinstance(files, Mapping):
            for (dataset, schema), paths in files.items():
                items = [paths] if isinstance(paths, (str, Path)) else list(paths)
                by_dataset.setdefault(dataset, {}).setdefault(str(schema), []).extend(
                    Path(p) for p in items
                )
        else:
            for p in files:
                meta = _load_metadata(Path(p))
                by_dataset.setdefault(meta.dataset, {}).setdefault(
                    str(meta.schema), []
                ).append(Path(p))
        self.datasets = {
            ds: _DatasetData(ds, schemas) for ds, schemas in by_dataset.items()
        }
        self.markets = (
            {ds: _Market(self, ds) for ds in self.datasets} if self.sync_schemas else {}
        )
        self.sessions: list[SessionInfo] = []
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> int:
        """Bind, listen and serve in background threads; returns the bound port."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(16)
        listener.settimeout(READ_STEP_S)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._stop.clear()
        thread = threading.Thread(
            target=self._accept_loop, name="dbn-gateway-accept", daemon=True
        )
        thread.start()
        self._threads.append(thread)
        LOG.info("databento replay gateway listening on %s:%d", self.host, self.port)
        return self.port

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            _close(conn)
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        LOG.info("databento replay gateway stopped")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            listener = self._listener
            if listener is None:
                break
            try:
                conn, addr = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            with self._lock:
                info = SessionInfo(
                    session_id=len(self.sessions) + 1, peer=f"{addr[0]}:{addr[1]}"
                )
                self.sessions.append(info)
                self._conns.add(conn)
            thread = threading.Thread(
                target=self._serve,
                args=(conn, info),
                name=f"dbn-gateway-{info.session_id}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    # ------------------------------------------------------------------ session
    def _serve(self, conn: socket.socket, info: SessionInfo) -> None:
        reader = _LineReader(conn, self._stop)
        try:
            self._session(conn, reader, info)
        except (OSError, _Closed) as exc:
            LOG.info("session %d ended: %s", info.session_id, type(exc).__name__)
        except Exception:  # pragma: no cover - logged, never raised into the thread
            LOG.exception("session %d failed", info.session_id)
        finally:
            info.closed = True
            with self._lock:
                self._conns.discard(conn)
            _close(conn)

    def _session(
        self, conn: socket.socket, reader: _LineReader, info: SessionInfo
    ) -> None:
        challenge = secrets.token_urlsafe(24)
        conn.sendall(format_control_line(lsg_version=LSG_VERSION))
        conn.sendall(format_control_line(cram=challenge))
        auth = parse_control_line(reader.readline(AUTH_TIMEOUT_S))
        info.dataset = auth.get("dataset")
        info.client = auth.get("client")
        error = self._check_auth(challenge, auth)
        if error is not None:
            info.error = error
            LOG.warning("session %d refused: %s", info.session_id, error)
            conn.sendall(format_control_line(success=0, error=error))
            return
        info.authenticated = True
        info.ts_out = auth.get("ts_out", "0") == "1"
        hb = auth.get("heartbeat_interval_s")
        info.heartbeat_interval_s = self.heartbeat_interval_s or (
            int(hb) if hb else DEFAULT_HEARTBEAT_S
        )
        conn.sendall(format_control_line(success=1, session_id=info.session_id))
        LOG.info(
            "session %d authenticated dataset=%s client=%s",
            info.session_id,
            info.dataset,
            info.client,
        )

        pending: list[Subscription] = []
        while not info.started:
            msg = parse_control_line(reader.readline(None))
            if "schema" in msg:
                pending.append(self._subscription(msg, info))
            elif "start_session" in msg:
                info.started = True
            else:
                LOG.warning(
                    "session %d: ignoring control message keys=%s",
                    info.session_id,
                    sorted(msg),
                )

        streamer = _Streamer(self, conn, info)
        streamer.send_metadata(pending)
        streamer.stream(pending, reader)
        streamer.heartbeat_loop(reader)

    def _check_auth(self, challenge: str, auth: dict[str, str]) -> str | None:
        response = auth.get("auth", "")
        if not any(
            hmac.compare_digest(cram_response(challenge, k), response)
            for k in self.api_keys
        ):
            return "Authentication failed."
        dataset = auth.get("dataset")
        if dataset not in self.datasets:
            return f"Unknown dataset '{dataset}'."
        if auth.get("encoding", "dbn") != "dbn":
            return f"Unsupported encoding '{auth.get('encoding')}', only dbn."
        if auth.get("compression", "none") not in ("none", ""):
            return f"Unsupported compression '{auth.get('compression')}', only none."
        return None

    def _subscription(self, msg: dict[str, str], info: SessionInfo) -> Subscription:
        start = msg.get("start")
        sub = Subscription(
            schema=msg["schema"],
            stype_in=msg.get("stype_in", "raw_symbol"),
            symbols=[s for s in msg.get("symbols", ALL_SYMBOLS).split(",") if s],
            start=int(start) if start not in (None, "") else None,
            snapshot=msg.get("snapshot", "0") == "1",
            id=msg.get("id"),
        )
        info.subscriptions.append(sub)
        LOG.info(
            "session %d subscription schema=%s stype_in=%s symbols=%s start=%s snapshot=%s",
            info.session_id,
            sub.schema,
            sub.stype_in,
            ",".join(sub.symbols[:10]),
            sub.start,
            sub.snapshot,
        )
        return sub


class _Closed(Exception):
    """The peer closed the connection or the gateway is stopping."""


class _LineReader:
    def __init__(self, conn: socket.socket, stop: threading.Event) -> None:
        self.conn = conn
        self.stop = stop
        self.buffer = b""

    def readline(self, timeout: float | None) -> str:
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.buffer:
            if self.stop.is_set():
                raise _Closed("stopping")
            if deadline is not None and time.monotonic() > deadline:
                raise _Closed("timeout waiting for a control message")
            data = self.poll(READ_STEP_S)
            if data is None:
                continue
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode("utf-8", errors="replace")

    def poll(self, timeout: float) -> bytes | None:
        """Bytes read within ``timeout`` (None if none); raises _Closed on EOF."""
        readable, _, _ = select.select([self.conn], [], [], timeout)
        if not readable:
            return None
        data = self.conn.recv(65536)
        if not data:
            raise _Closed("peer closed")
        return data

    def lines(self) -> list[str]:
        out = []
        while b"\n" in self.buffer:
            line, _, self.buffer = self.buffer.partition(b"\n")
            out.append(line.decode("utf-8", errors="replace"))
        return out


# (index ts, rank, record): sorted by (index ts, rank), the order of a market's merged stream
Item = tuple[int, int, Any]


def _order(item: Item) -> tuple[int, int]:
    return item[0], item[1]


@dataclasses.dataclass(frozen=True)
class _Clock:
    """Replay time: record index ts ``ts`` is due at monotonic ``wall``, ``speed`` x faster after."""

    wall: float
    ts: int
    speed: float

    def due(self, ts: int) -> float:
        return self.wall + (ts - self.ts) / 1e9 / self.speed


class _Streamer:
    """Encodes and sends the DBN stream of one authenticated session."""

    def __init__(
        self, gateway: DatabentoGateway, conn: socket.socket, info: SessionInfo
    ) -> None:
        self.gw = gateway
        self.conn = conn
        self.info = info
        self.data = gateway.datasets[info.dataset or ""]
        self.mapped: set[int] = set()
        self.defined: set[int] = set()
        self.streamed: set[tuple[str, int]] = set()
        self.last_heartbeat = time.monotonic()
        drop = gateway.drop_after_records
        self.drop_at = (
            drop
            if drop is not None and info.session_id <= gateway.drop_sessions
            else None
        )

    def send_metadata(self, subs: list[Subscription]) -> None:
        schemas = {s.schema for s in subs}
        stypes = {s.stype_in for s in subs}
        starts = [s.start for s in subs if s.start]
        meta = dbn.Metadata(
            dataset=self.data.dataset,
            start=min(starts) if starts else time.time_ns(),
            stype_in=dbn.SType(stypes.pop()) if len(stypes) == 1 else None,
            stype_out=dbn.SType.INSTRUMENT_ID,
            schema=dbn.Schema(schemas.pop()) if len(schemas) == 1 else None,
            ts_out=self.info.ts_out,
            version=3,
        )
        self.conn.sendall(meta.encode())

    def encode(self, record: Any) -> bytes:
        raw = bytes(record)
        if self.info.ts_out:
            raw = bytes([raw[0] + 2]) + raw[1:] + struct.pack("<Q", time.time_ns())
        return raw

    def send(self, records: list[Any]) -> None:
        """Send ``records`` at once (in batches); closes the socket at ``drop_after_records``."""
        batch: list[bytes] = []
        for rec in records:
            if self.gw._stop.is_set():
                raise _Closed("stopping")
            if (
                self.drop_at is not None
                and self.info.records_sent + len(batch) >= self.drop_at
            ):
                self._flush(batch)
                self.info.dropped = True
                LOG.warning(
                    "session %d: dropping connection after %d records",
                    self.info.session_id,
                    self.info.records_sent,
                )
                _close(self.conn)
                raise _Closed("drop_after_records")
            batch.append(self.encode(rec))
            if len(batch) >= SEND_BATCH:
                self._flush(batch)
        self._flush(batch)

    def send_paced(self, records: list[Any], clock: _Clock | None) -> None:
        """Send each record when ``clock`` says it is due (at once without a clock)."""
        if clock is None:
            self.send(records)
            return
        first = 0
        for i, rec in enumerate(records):
            wait = clock.due(index_ts(rec)) - time.monotonic()
            if wait > PACE_SLACK_S:
                self.send(records[first:i])
                first = i
                if self.gw._stop.wait(wait):
                    raise _Closed("stopping")
        self.send(records[first:])

    def _flush(self, batch: list[bytes]) -> None:
        if batch:
            self.conn.sendall(b"".join(batch))
            self.info.records_sent += len(batch)
            batch.clear()

    def error(self, message: str, code: Any) -> None:
        self.send([dbn.ErrorMsg(time.time_ns(), message, True, code)])

    def heartbeat(self) -> None:
        self.send(
            [dbn.SystemMsg(time.time_ns(), "Heartbeat", dbn.SystemCode.HEARTBEAT)]
        )
        self.info.heartbeats_sent += 1
        self.last_heartbeat = time.monotonic()

    def heartbeat_due(self) -> bool:
        return time.monotonic() - self.last_heartbeat >= self.info.heartbeat_interval_s

    def resolve(self, sub: Subscription) -> tuple[list[int], list[str]]:
        raw, defs = self.data.symbology()
        if ALL_SYMBOLS in sub.symbols:
            return sorted(raw), []
        ids: list[int] = []
        missing: list[str] = []
        by_symbol: dict[str, list[int]] = {}
        for iid, sym in raw.items():
            by_symbol.setdefault(sym, []).append(iid)
        for symbol in sub.symbols:
            found: list[int] = []
            if sub.stype_in == "raw_symbol":
                found = by_symbol.get(symbol, [])
            elif sub.stype_in == "instrument_id" and symbol.isdigit():
                found = [int(symbol)] if int(symbol) in raw else []
            elif sub.stype_in == "parent":
                root, _, kind = symbol.rpartition(".")
                classes = {"FUT": {"F"}, "OPT": {"C", "P"}}.get(kind, set())
                for iid, recs in defs.items():
                    d = recs[-1]
                    if str(d.instrument_class) in classes and root in (
                        d.asset,
                        d.group,
                    ):
                        found.append(iid)
            (ids.extend(found) if found else missing.append(symbol))
        return sorted(set(ids)), missing

    def stream(self, subs: list[Subscription], reader: _LineReader) -> None:
        """Serve ``subs``: mappings and definitions at once, then their records."""
        items = self.prepare(subs)
        market = self.gw.markets.get(self.data.dataset)
        if market is not None and market.carries(subs):
            market.join(self, subs, items, reader)
        else:
            records = [rec for _, _, rec in items]
            speed = self.gw.speed
            clock = (
                _Clock(time.monotonic(), index_ts(records[0]), speed)
                if speed and records
                else None
            )
            self.send_paced(records, clock)

    def prepare(self, subs: list[Subscription]) -> list[Item]:
        """Send the mappings and definitions of ``subs``; returns their records in stream order."""
        mappings: list[Any] = []
        definitions: list[Any] = []
        items: list[Item] = []
        for sub in subs:
            if sub.schema not in self.data.schemas():
                message = f"Unknown schema '{sub.schema}' for dataset {self.data.dataset} in this replay gateway."
                self.info.error = message
                LOG.warning("session %d: %s", self.info.session_id, message)
                self.error(message, dbn.ErrorCode.INVALID_SUBSCRIPTION)
                _close(self.conn)
                raise _Closed("invalid subscription")
            raw, defs = self.data.symbology()
            ids, missing = self.resolve(sub)
            if missing:
                self.error(
                    f"Failed to resolve symbol(s) {','.join(missing)} ({sub.stype_in}).",
                    dbn.ErrorCode.SYMBOL_RESOLUTION_FAILED,
                )
            records = self.data.records(sub.schema)
            ranks = self.data.ranks(sub.schema)
            wanted = {i for i in ids if (sub.schema, i) not in self.streamed}
            self.streamed.update((sub.schema, i) for i in wanted)
            start = None if self.gw.ignore_start else sub.start
            selected = [
                (index_ts(r), rank, r)
                for r, rank in zip(records, ranks, strict=True)
                if r.instrument_id in wanted and (start is None or index_ts(r) >= start)
            ]
            items.extend(selected)
            first_ts = (
                selected[0][2].ts_event
                if selected
                else (index_ts(records[0]) if records else 0)
            )
            for iid in sorted(wanted - self.mapped):
                self.mapped.add(iid)
                sym = raw.get(iid, str(iid))
                mappings.append(
                    dbn.SymbolMappingMsg(
                        self.gw_publisher(records),
                        iid,
                        first_ts,
                        dbn.SType(sub.stype_in)
                        if sub.stype_in != "instrument_id"
                        else dbn.SType.INSTRUMENT_ID,
                        sym
                        if ALL_SYMBOLS in sub.symbols or sub.stype_in != "parent"
                        else sub.symbols[0],
                        dbn.SType.RAW_SYMBOL,
                        sym,
                        first_ts,
                        dbn.UNDEF_TIMESTAMP,
                    )
                )
            if sub.schema != "definition":
                for iid in sorted(wanted - self.defined):
                    if iid in defs:
                        self.defined.add(iid)
                        definitions.extend(defs[iid])
        items.sort(key=_order)
        self.send(mappings)
        self.send(definitions)
        LOG.info(
            "session %d: %d mappings, %d definitions, %d records to replay",
            self.info.session_id,
            len(mappings),
            len(definitions),
            len(items),
        )
        return items

    @staticmethod
    def gw_publisher(records: list[Any]) -> int:
        return int(records[0].publisher_id) if records else 0

    def heartbeat_loop(self, reader: _LineReader) -> None:
        self.last_heartbeat = time.monotonic()
        while not self.gw._stop.is_set():
            data = reader.poll(min(READ_STEP_S, self.info.heartbeat_interval_s))
            if data is not None:
                reader.buffer += data
            late = [
                self.gw._subscription(msg, self.info)
                for msg in map(parse_control_line, reader.lines())
                if "schema" in msg
            ]
            if late:
                self.stream(late, reader)
                self.last_heartbeat = time.monotonic()
            if self.heartbeat_due():
                self.heartbeat()


def _tagged(items: list[Item], tag: int) -> Iterator[tuple[int, int, int, Any]]:
    for ts, rank, rec in items:
        yield ts, rank, tag, rec


@dataclasses.dataclass(eq=False)
class _Participant:
    """A session's records in a market's merged stream."""

    streamer: _Streamer
    schemas: set[str]
    items: list[Item]
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    closed: bool = False


class _Market:
    """The sessions of one dataset carrying the gateway's ``sync_schemas``, replayed as one market.

    Sessions join (``join``) with their records; when a session for each synced schema has
    joined (or ``sync_timeout_s`` after the first), one thread merges every participant's
    records in (index ts, rank) order and writes each to its session, paced on one clock.
    """

    def __init__(self, gateway: DatabentoGateway, dataset: str) -> None:
        self.gw = gateway
        self.dataset = dataset
        self.schemas = gateway.sync_schemas
        self.lock = threading.Lock()
        self.started = threading.Event()
        self.finished = threading.Event()
        self.participants: list[_Participant] = []
        self.first_join: float | None = None
        self.clock: _Clock | None = None
        self.position_ts = 0  # index ts of the last record sent
        self.last_flush = 0.0
        self.stats: dict[str, Any] = {
            "sessions": [],
            "schemas": [],
            "records": 0,
            "switches": 0,
            "first_ts": None,
            "last_ts": None,
            "wall_s": None,
        }

    def carries(self, subs: list[Subscription]) -> bool:
        return any(sub.schema in self.schemas for sub in subs)

    def join(
        self,
        streamer: _Streamer,
        subs: list[Subscription],
        items: list[Item],
        reader: _LineReader,
    ) -> None:
        """Deliver ``items`` of ``streamer``'s session: in the merged stream when it has not
        started yet, else on this thread against the market's clock (a late session)."""
        with self.lock:
            participant = None
            if not self.started.is_set():
                participant = _Participant(
                    streamer, {s.schema for s in subs} & self.schemas, list(items)
                )
                self.participants.append(participant)
                self.first_join = self.first_join or time.monotonic()
                streamer.info.synced = True
                self._maybe_start()
        if participant is None:
            self._follow(streamer, subs, items)
            return
        try:
            late = self._wait_for_start(participant, reader)
            while not participant.done.wait(READ_STEP_S):
                if self.gw._stop.is_set():
                    raise _Closed("stopping")
        except BaseException:
            with self.lock:
                participant.closed = True
                if not self.started.is_set():
                    self.participants.remove(participant)
            raise
        if participant.closed:
            raise _Closed("closed during the market replay")
        if late:  # subscribed while the market was starting: served as a late session
            self._follow(streamer, late, streamer.prepare(late))

    def _wait_for_start(
        self, participant: _Participant, reader: _LineReader
    ) -> list[Subscription]:
        """Until the market starts: take further subscriptions, send heartbeats."""
        streamer = participant.streamer
        late: list[Subscription] = []
        while not self.started.is_set():
            if self.gw._stop.is_set():
                raise _Closed("stopping")
            data = reader.poll(READ_STEP_S)
            if data is not None:
                reader.buffer += data
            late.extend(
                self.gw._subscription(msg, streamer.info)
                for msg in map(parse_control_line, reader.lines())
                if "schema" in msg
            )
            with self.lock:
                if self.started.is_set():
                    break
                if late:
                    participant.items.extend(streamer.prepare(late))
                    participant.items.sort(key=_order)
                    participant.schemas |= {s.schema for s in late} & self.schemas
                    late = []
                if streamer.heartbeat_due():
                    streamer.heartbeat()
                self._maybe_start()
        return late

    def _maybe_start(self) -> None:
        """Start when every synced schema has a session (or on timeout); holds ``lock``."""
        if self.started.is_set() or not self.participants or self.first_join is None:
            return
        joined = set().union(*(p.schemas for p in self.participants))
        waited = time.monotonic() - self.first_join
        if not self.schemas <= joined and waited < self.gw.sync_timeout_s:
            return
        if not self.schemas <= joined:
            LOG.warning(
                "%s market: no session for %s after %.0f s, starting without",
                self.dataset,
                ",".join(sorted(self.schemas - joined)),
                waited,
            )
        firsts = [p.items[0][0] for p in self.participants if p.items]
        self.position_ts = min(firsts) if firsts else 0
        self.stats["first_ts"] = self.position_ts
        speed = self.gw.speed
        self.clock = (
            _Clock(time.monotonic(), self.position_ts, speed) if speed else None
        )
        self.stats["sessions"] = [p.streamer.info.session_id for p in self.participants]
        self.stats["schemas"] = sorted(joined)
        self.started.set()
        thread = threading.Thread(
            target=self._run, name=f"dbn-gateway-market-{self.dataset}", daemon=True
        )
        thread.start()
        self.gw._threads.append(thread)

    def _run(self) -> None:
        participants = list(self.participants)
        streams = [_tagged(p.items, i) for i, p in enumerate(participants)]
        current: _Participant | None = None
        batch: list[Any] = []
        started = time.monotonic()
        LOG.info(
            "%s market: sessions %s, speed %s, started",
            self.dataset,
            self.stats["sessions"],
            self.gw.speed or "max",
        )
        try:
            for ts, _, i, rec in heapq.merge(*streams, key=_order):
                participant = participants[i]
                if participant.closed:
                    continue
                due = self.clock.due(ts) if self.clock is not None else 0.0
                if participant is not current:
                    self._flush(current, batch)
                    if current is not None:
                        due = max(due, self.last_flush + self.gw.sync_gap_s)
                        self.stats["switches"] += 1
                    current = participant
                wait = due - time.monotonic()
                if wait > PACE_SLACK_S:
                    self._flush(current, batch)
                    if self.gw._stop.wait(wait):
                        return
                batch.append(rec)
                self.position_ts = ts
                if len(batch) >= SEND_BATCH:
                    self._flush(current, batch)
            self._flush(current, batch)
        finally:
            self.stats["wall_s"] = round(time.monotonic() - started, 3)
            self.stats["last_ts"] = self.position_ts
            for participant in participants:
                participant.done.set()
            self.finished.set()
            LOG.info("%s market: finished %s", self.dataset, self.stats)

    def _flush(self, participant: _Participant | None, batch: list[Any]) -> None:
        if participant is None or not batch:
            return
        try:
            if not participant.closed:
                participant.streamer.send(batch)
                self.stats["records"] += len(batch)
        except (_Closed, OSError) as exc:
            LOG.info(
                "session %d left the market: %s",
                participant.streamer.info.session_id,
                exc,
            )
            participant.closed = True
            participant.done.set()
        batch.clear()
        self.last_flush = time.monotonic()

    def _follow(
        self, streamer: _Streamer, subs: list[Subscription], items: list[Item]
    ) -> None:
        """A session joining the running (or finished) market: the records before the market's
        position at once when it asked for them (``snapshot=1`` or a ``start``), else none;
        the rest paced on the market's clock."""
        now = self.position_ts
        history = any(s.snapshot or s.start is not None for s in subs)
        past = [rec for ts, _, rec in items if ts < now] if history else []
        LOG.info(
            "session %d joins the %s market at ts %d: %d records before it%s",
            streamer.info.session_id,
            self.dataset,
            now,
            len(past),
            " sent at once" if history else " skipped",
        )
        streamer.send(past)
        streamer.send_paced([rec for ts, _, rec in items if ts >= now], self.clock)


def _close(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        conn.close()
    except OSError:
        pass
