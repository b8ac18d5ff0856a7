"""The NautilusTrader side of the order-book check, and the comparison itself.

`nautilus_snapshots` replays Databento definitions + MBO through a real
`BacktestEngine` (venue GLBX, L3_MBO). A probe actor subscribes to the order book
deltas of every instrument (managed, so the *data engine* keeps a book in the
cache) and, at clock alerts set at the checkpoints, reads `cache.order_book(...)`:
the book strategies see, not the simulated venue's matching-engine book (that one
is private to the venue and never put in the cache).

`compare_books` runs that and the independent reference in `book_reference` at the
same checkpoints and reports every difference. It is instrument-generic: one
definition file and one MBO file may each hold any number of instruments.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import numpy as np
from nautilus_trader.adapters.databento.loaders import DatabentoDataLoader
from nautilus_trader.backtest.engine import BacktestEngine
from nautilus_trader.backtest.config import BacktestEngineConfig
from nautilus_trader.common.actor import Actor
from nautilus_trader.common.config import ActorConfig
from nautilus_trader.common.events import TimeEvent
from nautilus_trader.config import LoggingConfig
from nautilus_trader.core.datetime import unix_nanos_to_dt
from nautilus_trader.data.config import DataEngineConfig
from nautilus_trader.model.book import OrderBook
from nautilus_trader.model.currencies import USD
from nautilus_trader.model.data import OrderBookDelta, OrderBookDeltas
from nautilus_trader.model.enums import AccountType, BookType, OmsType
from nautilus_trader.model.identifiers import InstrumentId, TraderId, Venue
from nautilus_trader.model.instruments import Instrument
from nautilus_trader.model.objects import Money

from tests.support.book_reference import (
    Side,
    Snapshot,
    SnapshotKey,
    load_mbo_records,
    read_dbn,
    reference_snapshots_from_records,
)

VENUE = Venue("GLBX")
BOOK_CHANGING_ACTIONS = (b"A", b"C", b"M", b"R")
NANOS = Decimal(10) ** 9


# -- checkpoints ----------------------------------------------------------------------------------


def choose_checkpoints(
    mbo: Path | str | np.ndarray,
    n: int = 120,
    seed: int = 0,
    early: int = 5,
) -> list[int]:
    """Pick up to `n` checkpoint times spread across the whole file.

    Every checkpoint lies strictly between two distinct consecutive ts_recv values,
    so "records with ts_recv < t" is unambiguous for both sides (no half-applied
    packet, no timer/data tie). The first `early` gaps (right after the opening
    records, e.g. a snapshot) are always taken; the rest are one random gap per
    equal run of consecutive gaps, so busy periods (many distinct ts_recv) get more
    checkpoints than quiet hours, and the last run reaches the end of the file.
    """
    records = mbo if isinstance(mbo, np.ndarray) else load_mbo_records(mbo)
    ts = records["ts_recv"].astype(np.int64)
    distinct = np.unique(ts)
    if len(distinct) < 2:
        return []
    widths = np.diff(distinct)
    gaps = np.nonzero(widths >= 2)[0]  # gap k lies between distinct[k] and distinct[k + 1]
    if len(gaps) == 0:
        return []
    rng = np.random.default_rng(seed)
    if len(gaps) <= n:
        chosen = gaps.tolist()
    else:
        head = gaps[: min(early, n)].tolist()
        rest = gaps[len(head) :]
        strata = np.array_split(rest, n - len(head)) if n > len(head) else []
        chosen = head + [int(rng.choice(stratum)) for stratum in strata]
    checkpoints = []
    for k in sorted(set(chosen)):
        low, high = int(distinct[k]) + 1, int(distinct[k + 1]) - 1
        checkpoints.append(int(rng.integers(low, high + 1)))
    return checkpoints


# -- NautilusTrader side --------------------------------------------------------------------------


def _price_nanos(price: object) -> int:
    """A Nautilus Price as the DBN fixed-point integer (1e-9 units), exactly."""
    return int(Decimal(str(price)) * NANOS)


def book_top(book: OrderBook, depth: int) -> Snapshot:
    """Top `depth` levels per side of a Nautilus book as (price 1e-9, size, count)."""

    def side(levels: list) -> Side:
        out: Side = []
        for level in levels[:depth]:
            orders = level.orders()
            size = sum(int(order.size) for order in orders)
            out.append((_price_nanos(level.price), size, len(orders)))
        return out

    return side(book.bids()), side(book.asks())


@dataclass
class ProbeReading:
    """What the probe saw in the cache book at one checkpoint."""

    snapshot: Snapshot
    ts_last: int
    update_count: int
    clock_ns: int
    book_present: bool


class BookProbe(Actor):
    """Subscribes L3 deltas per instrument and reads the cached books at checkpoints."""

    def __init__(
        self,
        plan: Mapping[int, Sequence[InstrumentId]],
        depth: int = 5,
        managed: bool = True,
    ) -> None:
        super().__init__(ActorConfig(component_id="BookProbe"))
        self._plan = {int(t): list(ids) for t, ids in plan.items()}
        self._depth = depth
        self._managed = managed
        self.readings: dict[tuple[InstrumentId, int], ProbeReading] = {}
        self.books_before_subscribe: dict[InstrumentId, bool] = {}
        self.deltas_seen = 0

    def on_start(self) -> None:
        instrument_ids = sorted({i for ids in self._plan.values() for i in ids}, key=str)
        for instrument_id in instrument_ids:
            self.books_before_subscribe[instrument_id] = (
                self.cache.order_book(instrument_id) is not None
            )
            self.subscribe_order_book_deltas(
                instrument_id,
                book_type=BookType.L3_MBO,
                managed=self._managed,
            )
        for index, t in enumerate(sorted(self._plan)):
            self.clock.set_time_alert_ns(
                name=f"book-check-{index}",
                alert_time_ns=t,
                callback=self._on_checkpoint,
                allow_past=False,
            )

    def on_order_book_deltas(self, deltas: OrderBookDeltas) -> None:
        self.deltas_seen += len(deltas.deltas)

    def _on_checkpoint(self, event: TimeEvent) -> None:
        t = event.ts_event
        now = self.clock.timestamp_ns()
        for instrument_id in self._plan[t]:
            book = self.cache.order_book(instrument_id)
            if book is None:
                reading = ProbeReading(([], []), 0, 0, now, False)
            else:
                reading = ProbeReading(
                    book_top(book, self._depth), book.ts_last, book.update_count, now, True
                )
            self.readings[(instrument_id, t)] = reading


@dataclass
class NautilusRun:
    """Result of one replay through the BacktestEngine."""

    snapshots: dict[SnapshotKey, Snapshot]
    readings: dict[SnapshotKey, ProbeReading]
    instrument_map: dict[int, InstrumentId]
    instruments: list[Instrument]
    deltas_loaded: int
    deltas_seen_by_actor: int
    books_before_subscribe: dict[InstrumentId, bool]
    seconds: float


def instrument_symbols(mbo_path: Path | str, definition_path: Path | str) -> dict[int, str]:
    """Databento instrument_id -> raw symbol, from the definitions, then the MBO symbology.

    A Nautilus instrument is named after its definition's raw symbol; the loader names
    the deltas from the MBO file's symbology, so the two must agree for the replay.
    """
    symbols: dict[int, str] = {}
    for record in read_dbn(definition_path):
        raw_symbol = getattr(record, "raw_symbol", None)
        if raw_symbol:
            symbols[int(record.instrument_id)] = raw_symbol
    mbo_meta = read_dbn(mbo_path).metadata
    for raw_symbol, intervals in (mbo_meta.mappings or {}).items():
        for interval in intervals:
            symbol = interval["symbol"]
            if symbol.isdigit():
                symbols.setdefault(int(symbol), raw_symbol)
    return symbols


def nautilus_snapshots(
    definition_path: Path | str,
    mbo_path: Path | str,
    checkpoints_ns: Mapping[int, Sequence[int]] | Sequence[int],
    depth: int = 5,
    instrument_ids: Iterable[int] | None = None,
    buffer_deltas: bool = False,
    managed: bool = True,
) -> NautilusRun:
    """Replay the files through a BacktestEngine and read the cached books at checkpoints.

    Keys are (Databento instrument_id, checkpoint_ns) like the reference. Checkpoints
    as a list apply to `instrument_ids` (default: every instrument in the MBO file).
    """
    started = time.perf_counter()
    loader = DatabentoDataLoader()
    instruments = loader.from_dbn_file(Path(definition_path))
    by_symbol: dict[str, Instrument] = {}
    for instrument in instruments:  # later definitions (updates) win
        by_symbol[instrument.raw_symbol.value] = instrument
    deltas = loader.from_dbn_file(Path(mbo_path))
    if not deltas or not isinstance(deltas[0], OrderBookDelta):
        raise ValueError(f"no order book deltas decoded from {mbo_path}")

    symbols = instrument_symbols(mbo_path, definition_path)
    if instrument_ids is None:
        records = load_mbo_records(mbo_path)
        instrument_ids = np.unique(records["instrument_id"]).tolist()
    instrument_ids = [int(i) for i in instrument_ids]
    instrument_map: dict[int, InstrumentId] = {}
    for databento_id in instrument_ids:
        symbol = symbols.get(databento_id)
        if symbol is None or symbol not in by_symbol:
            raise ValueError(
                f"instrument_id {databento_id} ({symbol!r}) has no definition in {definition_path}"
            )
        instrument_map[databento_id] = by_symbol[symbol].id

    plan: dict[int, list[InstrumentId]] = {}
    if isinstance(checkpoints_ns, Mapping):
        for databento_id, times in checkpoints_ns.items():
            for t in times:
                plan.setdefault(int(t), []).append(instrument_map[int(databento_id)])
    else:
        for t in checkpoints_ns:
            plan.setdefault(int(t), []).extend(instrument_map[i] for i in instrument_ids)

    engine = BacktestEngine(
        config=BacktestEngineConfig(
            trader_id=TraderId("BOOKCHECK-001"),
            logging=LoggingConfig(log_level="ERROR"),
            data_engine=DataEngineConfig(buffer_deltas=buffer_deltas),
        ),
    )
    try:
        engine.add_venue(
            venue=VENUE,
            oms_type=OmsType.NETTING,
            account_type=AccountType.MARGIN,
            base_currency=USD,
            starting_balances=[Money(1_000_000, USD)],
            book_type=BookType.L3_MBO,
        )
        for instrument in by_symbol.values():
            engine.add_instrument(instrument)
        engine.add_data(deltas)
        probe = BookProbe(plan, depth=depth, managed=managed)
        engine.add_actor(probe)
        # Stretch the run so alerts before the first / after the last record fire too.
        start_ns = min(deltas[0].ts_init, min(plan, default=deltas[0].ts_init) - 1)
        end_ns = max(deltas[-1].ts_init, max(plan, default=0) + 1)
        engine.run(start=unix_nanos_to_dt(start_ns), end=unix_nanos_to_dt(end_ns))

        reverse = {v: k for k, v in instrument_map.items()}
        readings = {(reverse[iid], t): r for (iid, t), r in probe.readings.items()}
        return NautilusRun(
            snapshots={key: r.snapshot for key, r in readings.items()},
            readings=readings,
            instrument_map=instrument_map,
            instruments=list(by_symbol.values()),
            deltas_loaded=len(deltas),
            deltas_seen_by_actor=probe.deltas_seen,
            books_before_subscribe=dict(probe.books_before_subscribe),
            seconds=time.perf_counter() - started,
        )
    finally:
        engine.dispose()


# -- comparison -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BookMismatch:
    """One side of one book that differs between the reference and NautilusTrader."""

    instrument_id: int
    checkpoint_ns: int
    side: str
    reference: Side
    nautilus: Side | None

    def describe(self) -> str:
        """Level-by-level diff."""
        lines = [f"instrument {self.instrument_id} @ {self.checkpoint_ns} {self.side}:"]
        if self.nautilus is None:
            lines.append("  missing on the NautilusTrader side (no reading at this checkpoint)")
            return "\n".join(lines)
        for k in range(max(len(self.reference), len(self.nautilus))):
            ref = self.reference[k] if k < len(self.reference) else None
            nt = self.nautilus[k] if k < len(self.nautilus) else None
            mark = "  " if ref == nt else "!="
            lines.append(f"  {mark} L{k}: reference={_fmt(ref)} nautilus={_fmt(nt)}")
        return "\n".join(lines)


def _fmt(level: tuple[int, int, int] | None) -> str:
    if level is None:
        return "-"
    price, size, count = level
    return f"{Decimal(price) / NANOS:f} x {size} ({count} orders)"


@dataclass
class SnapshotDiff:
    """Counts and mismatches of comparing two snapshot dicts."""

    compared: int = 0
    levels_compared: int = 0
    nonempty: int = 0
    full_depth: int = 0
    mismatches: list[BookMismatch] = field(default_factory=list)


def compare_snapshots(
    reference: Mapping[SnapshotKey, Snapshot],
    nautilus: Mapping[SnapshotKey, Snapshot],
    depth: int = 5,
) -> SnapshotDiff:
    """Compare per key and side; every reference key must have a Nautilus reading."""
    diff = SnapshotDiff()
    for key in sorted(reference):
        ref_bids, ref_asks = reference[key]
        nt = nautilus.get(key)
        diff.compared += 1
        if ref_bids or ref_asks:
            diff.nonempty += 1
        if len(ref_bids) == depth and len(ref_asks) == depth:
            diff.full_depth += 1
        for index, (name, ref_side) in enumerate((("bids", ref_bids), ("asks", ref_asks))):
            nt_side = None if nt is None else list(nt[index])
            diff.levels_compared += max(len(ref_side), len(nt_side or []))
            if nt_side != list(ref_side):
                diff.mismatches.append(BookMismatch(key[0], key[1], name, list(ref_side), nt_side))
    return diff


@dataclass
class BookComparison:
    """Outcome of `compare_books`: counts, mismatches and the raw snapshots."""

    definition_path: Path
    mbo_path: Path
    depth: int
    checkpoints: list[int]
    instrument_map: dict[int, InstrumentId]
    records: int
    deltas_loaded: int
    compared: int
    levels_compared: int
    nonempty: int
    full_depth: int
    mismatches: list[BookMismatch]
    stale: list[str]
    reference: dict[SnapshotKey, Snapshot]
    nautilus: dict[SnapshotKey, Snapshot]
    nautilus_run: NautilusRun
    reference_seconds: float
    nautilus_seconds: float

    @property
    def ok(self) -> bool:
        """True when every compared side matched and no Nautilus book lagged behind."""
        return not self.mismatches and not self.stale

    def summary(self) -> str:
        """One line with the counts."""
        return (
            f"{self.mbo_path.name}: {len(self.checkpoints)} checkpoints x "
            f"{len(self.instrument_map)} instruments = {self.compared} books compared, "
            f"{self.levels_compared} levels, {self.nonempty} non-empty, "
            f"{self.full_depth} with {self.depth} levels per side, "
            f"{len(self.mismatches)} mismatching sides, {len(self.stale)} stale books; "
            f"reference {self.reference_seconds:.2f}s, nautilus {self.nautilus_seconds:.2f}s"
        )

    def report(self, limit: int = 5) -> str:
        """Summary plus the first `limit` mismatches / stale books, for assert messages."""
        parts = [self.summary()]
        parts += [m.describe() for m in self.mismatches[:limit]]
        parts += self.stale[:limit]
        if len(self.mismatches) > limit:
            parts.append(f"... and {len(self.mismatches) - limit} more mismatching sides")
        return "\n".join(parts)


def last_book_changes(
    records: np.ndarray,
    instrument_ids: Iterable[int],
    checkpoints: Sequence[int],
) -> dict[SnapshotKey, int]:
    """ts_recv of the last book-changing (A/C/M/R) record before each checkpoint (0: none)."""
    changing = np.isin(records["action"], BOOK_CHANGING_ACTIONS)
    times = np.asarray(checkpoints, dtype=np.int64)
    result: dict[SnapshotKey, int] = {}
    for instrument_id in instrument_ids:
        ts = records["ts_recv"][changing & (records["instrument_id"] == instrument_id)]
        ts = ts.astype(np.int64)
        counts = np.searchsorted(ts, times, side="left")
        for t, count in zip(times.tolist(), counts.tolist(), strict=True):
            result[(instrument_id, t)] = int(ts[count - 1]) if count else 0
    return result


def compare_books(
    definition_path: Path | str,
    mbo_path: Path | str,
    n_checkpoints: int = 120,
    depth: int = 5,
    seed: int = 0,
    checkpoints: Sequence[int] | None = None,
    instrument_ids: Iterable[int] | None = None,
    buffer_deltas: bool = False,
) -> BookComparison:
    """Compare NautilusTrader's cached L3 books against the independent reference.

    Both sides see the same checkpoints (default: `choose_checkpoints`), every
    instrument of the MBO file (or `instrument_ids`), top `depth` levels per side.
    Besides the levels it checks that each Nautilus book's `ts_last` equals the
    ts_recv of the last book-changing record before the checkpoint (no lag).
    """
    definition_path, mbo_path = Path(definition_path), Path(mbo_path)
    started = time.perf_counter()
    records = load_mbo_records(mbo_path)
    if checkpoints is None:
        checkpoints = choose_checkpoints(records, n=n_checkpoints, seed=seed)
    checkpoints = sorted(int(t) for t in checkpoints)
    if instrument_ids is None:
        instrument_ids = np.unique(records["instrument_id"]).tolist()
    instrument_ids = [int(i) for i in instrument_ids]
    reference = reference_snapshots_from_records(records, checkpoints, depth, instrument_ids)
    reference_seconds = time.perf_counter() - started

    run = nautilus_snapshots(
        definition_path,
        mbo_path,
        checkpoints,
        depth=depth,
        instrument_ids=instrument_ids,
        buffer_deltas=buffer_deltas,
    )
    diff = compare_snapshots(reference, run.snapshots, depth)

    stale: list[str] = []
    for (instrument_id, t), expected_ts in last_book_changes(
        records, instrument_ids, checkpoints
    ).items():
        reading = run.readings.get((instrument_id, t))
        if reading is not None and reading.ts_last != expected_ts:
            stale.append(
                f"instrument {instrument_id} @ {t}: Nautilus book ts_last="
                f"{reading.ts_last}, last book-changing record ts_recv={expected_ts}"
            )

    return BookComparison(
        definition_path=definition_path,
        mbo_path=mbo_path,
        depth=depth,
        checkpoints=list(checkpoints),
        instrument_map=run.instrument_map,
        records=len(records),
        deltas_loaded=run.deltas_loaded,
        compared=diff.compared,
        levels_compared=diff.levels_compared,
        nonempty=diff.nonempty,
        full_depth=diff.full_depth,
        mismatches=diff.mismatches,
        stale=stale,
        reference=reference,
        nautilus=run.snapshots,
        nautilus_run=run,
        reference_seconds=reference_seconds,
        nautilus_seconds=run.seconds,
    )
