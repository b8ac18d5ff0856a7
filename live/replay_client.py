"""A NautilusTrader live data client that replays recorded data into a ``TradingNode``.

``ReplayDataClient`` (config ``ReplayDataClientConfig``, factory ``ReplayLiveDataClientFactory``)
streams a ParquetDataCatalog folder (instruments, ``OrderBookDelta``, ``TradeTick``) or Databento
DBN files (definitions, MBO with trades) into a live node as if they came from a feed:

- at connect every instrument is published (so it is in the cache before the strategies start);
- the strategies' subscriptions (``subscribe_order_book_deltas``, ``subscribe_trade_ticks``,
  ``subscribe_instrument(s)``) select what is forwarded; the replay starts ``start_delay_s``
  after the first market-data subscription (the strategies subscribe in ``on_start``, one
  instrument at a time) and data for instruments/types nobody subscribed to is dropped;
- ``speed`` 1.0 replays at real time (the gaps between ``ts_init``), N at N x, ``None`` or 0 as
  fast as the node takes it. Timestamps are the recorded ones (not rewritten to the wall clock).

Catalog data is streamed in ``ts_init`` order through the Rust backend session (one session over
both data types, read in chunks); DBN files are decoded whole with ``DatabentoDataLoader``.
Book deltas are published as ``OrderBookDeltas`` batches closed by the ``F_LAST`` flag.

Everything is handed to the node on its event loop in ``ts_init`` order, as a ``BacktestNode``
replays the same catalog, so the strategies see the same book at every trade: on the parity
session of ``tests/test_paper_parity.py`` the paper node's v1 and v3 signals and v3's quality
record equal the backtest's (and, checked once with a probe strategy, the top of book at each of
the real ESH4 session's 2,973 trades too).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from nautilus_trader.cache.cache import Cache
from nautilus_trader.common.component import LiveClock, MessageBus
from nautilus_trader.common.providers import InstrumentProvider
from nautilus_trader.config import InstrumentProviderConfig
from nautilus_trader.core.data import Data
from nautilus_trader.data.messages import (
    SubscribeInstrument,
    SubscribeInstruments,
    SubscribeOrderBook,
    SubscribeTradeTicks,
    UnsubscribeOrderBook,
    UnsubscribeTradeTicks,
)
from nautilus_trader.live.config import LiveDataClientConfig
from nautilus_trader.live.data_client import LiveMarketDataClient
from nautilus_trader.live.factories import LiveDataClientFactory
from nautilus_trader.model.data import OrderBookDelta, OrderBookDeltas, TradeTick
from nautilus_trader.model.enums import RecordFlag
from nautilus_trader.model.identifiers import ClientId, InstrumentId, Venue
from nautilus_trader.model.instruments import Instrument

REPLAY = "REPLAY"
CHUNK_SIZE = 100_000  # rows per Rust backend chunk
YIELD_EVERY = 500  # as fast as possible: let the engine drain its queue this often
F_LAST = int(RecordFlag.F_LAST)


class ReplayDataClientConfig(LiveDataClientConfig, frozen=True):
    """What to replay and how fast.

    Exactly one of ``catalog_path`` (a ParquetDataCatalog folder) or ``dbn_files`` (DBN paths:
    definition files and MBO files, any order). ``speed``: 1.0 real time, N x, None/0 max speed.
    ``start_delay_s``: wait after the first market-data subscription before replaying.
    ``venue``: the venue the client reports (the instruments keep their own ids).
    """

    catalog_path: str | None = None
    dbn_files: list[str] | None = None
    speed: float | None = None
    start_delay_s: float = 1.0
    instrument_ids: list[str] | None = None  # None: everything recorded
    venue: str = "GLBX"


def _loaded_dbn(files: list[str]) -> tuple[list[Instrument], list[Data]]:
    from nautilus_trader.adapters.databento.loaders import DatabentoDataLoader

    loader = DatabentoDataLoader()
    instruments: list[Instrument] = []
    streams: list[list[Data]] = []
    for path in files:
        # Definitions first: a file whose records are all instruments is a definition file.
        objs = loader.from_dbn_file(path, as_legacy_cython=True, include_trades=True)
        instruments.extend(o for o in objs if isinstance(o, Instrument))
        data = [o for o in objs if isinstance(o, OrderBookDelta | TradeTick)]
        if data:
            streams.append(data)
    merged = list(heapq.merge(*streams, key=lambda d: d.ts_init)) if len(streams) > 1 else (streams or [[]])[0]
    return instruments, merged


class ReplayDataClient(LiveMarketDataClient):
    """Streams recorded instruments, MBO book deltas and trades into a live node."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client_id: ClientId,
        msgbus: MessageBus,
        cache: Cache,
        clock: LiveClock,
        config: ReplayDataClientConfig,
    ) -> None:
        super().__init__(
            loop=loop,
            client_id=client_id,
            venue=Venue(config.venue),
            msgbus=msgbus,
            cache=cache,
            clock=clock,
            instrument_provider=InstrumentProvider(InstrumentProviderConfig()),
            config=config,
        )
        if bool(config.catalog_path) == bool(config.dbn_files):
            raise ValueError("ReplayDataClientConfig needs exactly one of catalog_path or dbn_files")
        if config.speed is not None and config.speed < 0:
            raise ValueError(f"speed must be >= 0 or None, got {config.speed}")
        self._config = config
        self._filter = {InstrumentId.from_str(i) for i in config.instrument_ids} if config.instrument_ids else None
        self._book_subs: set[InstrumentId] = set()
        self._trade_subs: set[InstrumentId] = set()
        self._dbn_data: list[Data] | None = None
        self._replay_task: asyncio.Task | None = None
        self.started = False
        self.finished = False
        self.published = {"order_book_deltas": 0, "trade_ticks": 0, "instruments": 0}
        self.replay_seconds: float | None = None

    # -- CONNECTION ---------------------------------------------------------------------------

    async def _connect(self) -> None:
        if self._config.catalog_path:
            from nautilus_trader.persistence.catalog.parquet import ParquetDataCatalog

            root = Path(self._config.catalog_path)
            if not root.is_dir():
                raise FileNotFoundError(f"replay catalog {root} does not exist")
            instruments = ParquetDataCatalog(str(root)).instruments()
        else:
            missing = [p for p in self._config.dbn_files or [] if not Path(p).is_file()]
            if missing:
                raise FileNotFoundError(f"replay DBN file(s) not found: {', '.join(missing)}")
            instruments, self._dbn_data = await asyncio.to_thread(_loaded_dbn, list(self._config.dbn_files))
        for instrument in instruments:
            if self._filter is not None and instrument.id not in self._filter:
                continue
            self._instrument_provider.add(instrument)
            self._handle_data(instrument)  # the data engine puts it in the cache
            self.published["instruments"] += 1
        self._log.info(f"Replay: {self.published['instruments']} instruments loaded")

    async def _disconnect(self) -> None:
        if self._replay_task is not None and not self._replay_task.done():
            self._replay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replay_task

    # -- SUBSCRIPTIONS ------------------------------------------------------------------------

    async def _subscribe_instruments(self, command: SubscribeInstruments) -> None:
        for instrument in self._instrument_provider.get_all().values():
            self._handle_data(instrument)

    async def _subscribe_instrument(self, command: SubscribeInstrument) -> None:
        instrument = self._instrument_provider.find(command.instrument_id)
        if instrument is None:
            self._log.error(f"Replay has no instrument {command.instrument_id}")
            return
        self._handle_data(instrument)

    async def _subscribe_order_book_deltas(self, command: SubscribeOrderBook) -> None:
        self._book_subs.add(command.instrument_id)
        self._ensure_replay()

    async def _subscribe_order_book_snapshots(self, command: SubscribeOrderBook) -> None:
        self._log.error("Replay serves only order book deltas (L3 MBO), not snapshots")

    async def _subscribe_trade_ticks(self, command: SubscribeTradeTicks) -> None:
        self._trade_subs.add(command.instrument_id)
        self._ensure_replay()

    async def _unsubscribe_order_book_deltas(self, command: UnsubscribeOrderBook) -> None:
        self._book_subs.discard(command.instrument_id)

    async def _unsubscribe_trade_ticks(self, command: UnsubscribeTradeTicks) -> None:
        self._trade_subs.discard(command.instrument_id)

    # -- REPLAY -------------------------------------------------------------------------------

    def _ensure_replay(self) -> None:
        if self._replay_task is None:
            self._replay_task = self.create_task(self._replay(), log_msg="replay")

    def _records(self) -> Iterator[Data]:
        if self._dbn_data is not None:
            data, self._dbn_data = self._dbn_data, None
            yield from data
            return
        from nautilus_trader.core.nautilus_pyo3 import DataBackendSession
        from nautilus_trader.model.data import capsule_to_list
        from nautilus_trader.persistence.catalog.parquet import ParquetDataCatalog
        from nautilus_trader.persistence.funcs import class_to_filename

        catalog = ParquetDataCatalog(str(self._config.catalog_path))
        ids = [str(i) for i in self._filter] if self._filter else None
        session = DataBackendSession(chunk_size=CHUNK_SIZE)
        present = set(catalog.list_data_types())
        for cls in (OrderBookDelta, TradeTick):
            if class_to_filename(cls) in present:
                session = catalog.backend_session(data_cls=cls, identifiers=ids, session=session)
        for chunk in session.to_query_result():
            yield from capsule_to_list(chunk)

    async def _replay(self) -> None:
        await asyncio.sleep(self._config.start_delay_s)
        speed = self._config.speed or None
        self.started = True
        self._log.info(f"Replay started (speed={'max' if speed is None else speed})")
        reader = _ChunkReader(self._records)
        reader.start()
        started = time.monotonic()
        pending: dict[InstrumentId, list[OrderBookDelta]] = {}
        try:
            await self._stream(reader, speed, started, pending)
        finally:
            reader.stop.set()  # the reader drops the catalog query on its own thread
        for instrument_id, batch in pending.items():  # a recording cut before F_LAST
            self._handle_data(OrderBookDeltas(instrument_id, batch))
            self.published["order_book_deltas"] += len(batch)
        self.replay_seconds = time.monotonic() - started
        self.finished = True
        self._log.info(f"Replay finished in {self.replay_seconds:.3f}s: {self.published}")

    async def _stream(self, reader: _ChunkReader, speed: float | None, started: float, pending: dict) -> None:
        first_ts: int | None = None
        since_yield = 0
        while True:
            chunk = await asyncio.to_thread(reader.next_chunk)
            if not chunk:
                break
            for record in chunk:
                if speed is not None:
                    if first_ts is None:
                        first_ts = record.ts_init
                    due = started + (record.ts_init - first_ts) / 1e9 / speed
                    wait = due - time.monotonic()
                    if wait > 0.0005:
                        await asyncio.sleep(wait)
                        since_yield = 0
                instrument_id = record.instrument_id
                if isinstance(record, OrderBookDelta):
                    if instrument_id not in self._book_subs:
                        continue
                    batch = pending.setdefault(instrument_id, [])
                    batch.append(record)
                    if record.flags & F_LAST:
                        self._handle_data(OrderBookDeltas(instrument_id, batch))
                        self.published["order_book_deltas"] += len(batch)
                        del pending[instrument_id]
                elif isinstance(record, TradeTick):
                    if instrument_id not in self._trade_subs:
                        continue
                    self._handle_data(record)
                    self.published["trade_ticks"] += 1
                since_yield += 1
                if since_yield >= YIELD_EVERY:
                    since_yield = 0
                    await asyncio.sleep(0)


class _ChunkReader(threading.Thread):
    """Reads the records in chunks on one thread of its own.

    The catalog's query result is a Rust object that must be used and dropped on the thread that
    created it (dropping it on another thread aborts the process, e.g. when a node stops in the
    middle of a replay), so one thread owns it from start to end and hands out plain lists.
    """

    def __init__(self, records: Callable[[], Iterator[Data]], chunk_size: int = 10_000) -> None:
        super().__init__(name="replay-reader", daemon=True)
        self._records = records
        self._chunk_size = chunk_size
        self._queue: queue.Queue = queue.Queue(maxsize=4)
        self.stop = threading.Event()

    def run(self) -> None:
        records = None
        try:
            records = self._records()
            while not self.stop.is_set():
                chunk = _take(records, self._chunk_size)
                if not self._put(chunk) or not chunk:
                    break
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)
        finally:
            del records

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def next_chunk(self) -> list[Data]:
        """The next chunk (blocking; an empty list at the end)."""
        while True:
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                if not self.is_alive() and self._queue.empty():
                    return []
                continue
            if isinstance(item, BaseException):
                raise item
            return item


def _take(records: Iterator[Data], n: int) -> list[Data]:
    out = []
    for record in records:
        out.append(record)
        if len(out) >= n:
            break
    return out


class ReplayLiveDataClientFactory(LiveDataClientFactory):
    """Creates ``ReplayDataClient`` instances for ``TradingNode.add_data_client_factory``."""

    @staticmethod
    def create(  # type: ignore[override]
        loop: asyncio.AbstractEventLoop,
        name: str,
        config: ReplayDataClientConfig,
        msgbus: MessageBus,
        cache: Cache,
        clock: LiveClock,
    ) -> ReplayDataClient:
        return ReplayDataClient(
            loop=loop, client_id=ClientId(name), msgbus=msgbus, cache=cache, clock=clock, config=config,
        )


def replay_clients(node) -> list[ReplayDataClient]:
    """The replay data clients registered in a built node."""
    engine = node.kernel.data_engine
    return [c for c in getattr(engine, "_clients", {}).values() if isinstance(c, ReplayDataClient)]


def replay_finished(node) -> bool:
    """Every replay client has published all its data and the data engine's queue is empty."""
    clients = replay_clients(node)
    return bool(clients) and all(c.finished for c in clients) and node.kernel.data_engine.data_qsize() == 0
