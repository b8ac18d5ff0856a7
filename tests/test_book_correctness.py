"""NautilusTrader's L3 book, replayed from real Databento MBO, equals an independent rebuild.

The reference (`tests/support/book_reference.py`) is written from the Databento MBO
semantics; the NautilusTrader side (`tests/support/nautilus_book.py`) runs a real
BacktestEngine and reads the data engine's cached book at clock alerts.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import databento_dbn as dbn
import numpy as np
import pytest
from nautilus_trader.adapters.databento.loaders import DatabentoDataLoader
from nautilus_trader.model.book import OrderBook
from nautilus_trader.model.data import BookOrder, OrderBookDelta
from nautilus_trader.model.enums import BookAction, BookType, OrderSide
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.model.instruments import FuturesContract
from nautilus_trader.model.objects import Price, Quantity

from tests.support.book_reference import (
    ReferenceBook,
    load_mbo_records,
    reference_snapshots,
    reference_snapshots_from_records,
)
from tests.support.nautilus_book import (
    BookComparison,
    choose_checkpoints,
    compare_books,
    compare_snapshots,
    nautilus_snapshots,
)
from tests.support.real_samples import (
    ESH4_INSTRUMENT_ID,
    ESH4_MBO_20231225,
    ESM4_DEFINITION,
    ESM4_MBO,
    write_dbn,
    write_esh4_definition,
    write_two_future_files,
)

pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")

ESM4_INSTRUMENT_ID = 5602
ESM4_SNAPSHOT_TS = 1_715_126_400_000_000_000  # ts_recv of the R + snapshot adds
PX = 1_000_000_000  # one price unit in DBN fixed point (1e-9)


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def esh4_definition(tmp_path_factory: pytest.TempPathFactory, real_file) -> Path:
    """The constructed ESH4 definition, written once per module."""
    folder = tmp_path_factory.mktemp("esh4_definition")
    return write_esh4_definition(folder / "esh4_definition.dbn.zst", real_file(ESM4_DEFINITION))


@pytest.fixture(scope="module")
def esh4_comparison(esh4_definition: Path, real_file) -> BookComparison:
    """ESH4 2023-12-25 session: NautilusTrader vs reference at 120 checkpoints."""
    return compare_books(esh4_definition, real_file(ESH4_MBO_20231225), n_checkpoints=120)


@pytest.fixture(scope="module")
def esm4_comparison(real_file) -> BookComparison:
    """ESM4 2024-05-08 (snapshot then live): NautilusTrader vs reference."""
    return compare_books(real_file(ESM4_DEFINITION), real_file(ESM4_MBO), n_checkpoints=120)


# -- the reference itself -------------------------------------------------------------------------


def _mbo(
    ts: int,
    action: dbn.Action,
    side: dbn.Side,
    price: float | None,
    size: int,
    order_id: int,
    instrument_id: int = 1,
    flags: int = dbn.F_LAST,
) -> bytes:
    record = dbn.MBOMsg(
        publisher_id=1,
        instrument_id=instrument_id,
        ts_event=ts,
        order_id=order_id,
        price=dbn.UNDEF_PRICE if price is None else round(price * PX),
        size=size,
        action=action,
        side=side,
        ts_recv=ts,
        flags=flags,
    )
    return bytes(record)


def test_reference_on_hand_made_records(tmp_path: Path) -> None:
    """Add / modify / trade+fill / cancel (full and partial) / clear, with known books."""
    A, C, M, R, T, F = (
        dbn.Action.ADD,
        dbn.Action.CANCEL,
        dbn.Action.MODIFY,
        dbn.Action.CLEAR,
        dbn.Action.TRADE,
        dbn.Action.FILL,
    )
    B, S, N = dbn.Side.BID, dbn.Side.ASK, dbn.Side.NONE
    snap = dbn.F_SNAPSHOT
    payload = b"".join(
        [
            _mbo(10, R, N, None, 0, 0, flags=snap),
            _mbo(10, A, B, 100.00, 5, 1, flags=snap),
            _mbo(10, A, B, 100.00, 3, 2, flags=snap),
            _mbo(10, A, B, 99.75, 4, 3, flags=snap),
            _mbo(10, A, S, 100.25, 2, 4, flags=snap),
            _mbo(10, A, S, 100.50, 7, 5, flags=snap | dbn.F_LAST),
            _mbo(20, M, B, 99.75, 3, 2, flags=0),  # price change: id 2 moves down
            _mbo(20, M, B, 100.00, 8, 1),  # size increase
            _mbo(30, T, S, 100.00, 2, 0, flags=0),  # trade: no book change
            _mbo(30, F, B, 100.00, 2, 1, flags=0),  # fill: no book change
            _mbo(30, M, B, 100.00, 6, 1, flags=0),  # the fill's book change
            _mbo(30, C, S, 100.25, 2, 4, flags=0),  # full cancel: level gone
            _mbo(30, C, S, 100.50, 3, 5),  # partial cancel: 7 -> 4
            _mbo(40, A, B, 50.00, 1, 10, instrument_id=2),
            _mbo(50, R, N, None, 0, 0, flags=0),  # clears instrument 1 only
            _mbo(50, A, B, 101.00, 1, 20),
            _mbo(60, C, B, 101.00, 1, 999),  # unknown order: ignored
        ]
    )
    path = write_dbn(
        tmp_path / "hand_made.mbo.dbn.zst",
        dbn.Schema.MBO,
        0,
        100,
        {"X1": (dt.date(1970, 1, 1), dt.date(1970, 1, 2), 1)},
        payload,
    )

    snaps = reference_snapshots(path, [10, 15, 25, 35, 45, 55, 65])
    empty: tuple[list, list] = ([], [])
    p = PX
    assert snaps[(1, 10)] == empty  # nothing with ts_recv < 10
    assert snaps[(1, 15)] == (
        [(100 * p, 8, 2), (99_750_000_000, 4, 1)],
        [(100_250_000_000, 2, 1), (100_500_000_000, 7, 1)],
    )
    assert snaps[(1, 25)] == (
        [(100 * p, 8, 1), (99_750_000_000, 7, 2)],
        [(100_250_000_000, 2, 1), (100_500_000_000, 7, 1)],
    )
    after_fill = ([(100 * p, 6, 1), (99_750_000_000, 7, 2)], [(100_500_000_000, 4, 1)])
    assert snaps[(1, 35)] == after_fill
    assert snaps[(2, 35)] == empty
    assert snaps[(1, 45)] == after_fill
    assert snaps[(2, 45)] == ([(50 * p, 1, 1)], [])
    assert snaps[(1, 55)] == ([(101 * p, 1, 1)], [])
    assert snaps[(2, 55)] == ([(50 * p, 1, 1)], [])
    assert snaps[(1, 65)] == ([(101 * p, 1, 1)], [])

    # Per-instrument checkpoints and depth truncation.
    records = load_mbo_records(path)
    books: dict[int, ReferenceBook] = {}
    per_instrument = reference_snapshots_from_records(
        records, {1: [35], 2: [65]}, depth=1, books=books
    )
    assert per_instrument == {
        (1, 35): ([(100 * p, 6, 1)], [(100_500_000_000, 4, 1)]),
        (2, 65): ([(50 * p, 1, 1)], []),
    }
    assert books[1].anomalies == {"partial_cancel": 1, "cancel_unknown_order": 1}


# -- the constructed definition -------------------------------------------------------------------


@pytest.mark.real_data
def test_constructed_esh4_definition_loads_in_nautilus(esh4_definition: Path, real_file) -> None:
    """Nautilus reads ESH4.GLBX from it and then decodes the ESH4 MBO with its precision."""
    loader = DatabentoDataLoader()
    instruments = loader.from_dbn_file(esh4_definition)
    assert len(instruments) == 1
    future = instruments[0]
    assert isinstance(future, FuturesContract)
    assert future.id == InstrumentId.from_str("ESH4.GLBX")
    assert future.raw_symbol.value == "ESH4"
    assert future.price_increment == Price.from_str("0.25")
    assert future.price_precision == 2
    assert int(future.multiplier) == 50
    assert future.expiration_ns == 1_710_509_400_000_000_000  # 2024-03-15 13:30 UTC

    deltas = loader.from_dbn_file(real_file(ESH4_MBO_20231225))
    records = load_mbo_records(real_file(ESH4_MBO_20231225))
    book_records = np.isin(records["action"], [b"A", b"C", b"M", b"R"]).sum()
    assert len(deltas) == book_records == 59_448  # T and F records produce no delta
    assert {d.instrument_id for d in deltas} == {future.id}
    assert {d.order.price.precision for d in deltas[:1000]} == {2}


# -- real sessions --------------------------------------------------------------------------------


@pytest.mark.real_data
def test_checkpoints_are_unambiguous_and_spread(real_file) -> None:
    """Strictly between distinct ts_recv values, early ones included, up to the end."""
    records = load_mbo_records(real_file(ESH4_MBO_20231225))
    checkpoints = choose_checkpoints(records, n=120, seed=0)
    assert len(checkpoints) == 120 == len(set(checkpoints))
    assert checkpoints == sorted(checkpoints)
    ts = np.unique(records["ts_recv"].astype(np.int64))
    assert not np.isin(checkpoints, ts).any()
    # The first checkpoint sits right after the opening snapshot (first distinct ts_recv).
    assert ts[0] < checkpoints[0] < ts[1]
    assert checkpoints[-1] > ts[int(len(ts) * 0.99)]


@pytest.mark.real_data
def test_esh4_session_book_matches_reference(esh4_comparison: BookComparison) -> None:
    """ESH4 2023-12-25: the cached L3 book equals the reference at >= 100 checkpoints."""
    result = esh4_comparison
    assert result.ok, result.report()
    assert result.instrument_map == {ESH4_INSTRUMENT_ID: InstrumentId.from_str("ESH4.GLBX")}
    assert len(result.checkpoints) >= 100
    assert result.compared == len(result.checkpoints)
    assert result.full_depth >= 0.9 * result.compared, result.summary()
    assert result.levels_compared >= 10 * 100
    assert result.nautilus_run.deltas_seen_by_actor == result.deltas_loaded == 59_448
    # Every alert fired at its own checkpoint time (not late, not batched).
    assert all(r.clock_ns == t for (_, t), r in result.nautilus_run.readings.items())
    # Order counts are real L3 information, not 1-per-level placeholders.
    top_counts = [bids[0][2] for bids, _ in result.reference.values() if bids]
    assert max(top_counts) > 5


@pytest.mark.real_data
def test_esm4_snapshot_book_matches_reference(esm4_comparison: BookComparison) -> None:
    """ESM4 with its R + snapshot adds: equal books from right after the snapshot on."""
    result = esm4_comparison
    assert result.ok, result.report()
    assert len(result.checkpoints) >= 100
    first_live_ts = 1_715_126_400_059_830_547
    assert ESM4_SNAPSHOT_TS < result.checkpoints[0] < first_live_ts
    first = result.nautilus_run.readings[(ESM4_INSTRUMENT_ID, result.checkpoints[0])]
    assert first.update_count == 13_601  # R + 13,600 snapshot adds, nothing live yet
    assert first.ts_last == ESM4_SNAPSHOT_TS
    bids, asks = result.reference[(ESM4_INSTRUMENT_ID, result.checkpoints[0])]
    assert len(bids) == len(asks) == 5 and bids[0][0] < asks[0][0]
    assert result.full_depth == result.compared


@pytest.mark.real_data
def test_one_instrument_file_pair_with_two_futures(tmp_path: Path, real_file) -> None:
    """One definition file + one MBO file holding ESH4 and ESM4: both books match."""
    esh4_mbo, esm4_mbo = real_file(ESH4_MBO_20231225), real_file(ESM4_MBO)
    definition, mbo = write_two_future_files(
        tmp_path, esh4_mbo, esm4_mbo, real_file(ESM4_DEFINITION)
    )
    checkpoints = choose_checkpoints(esh4_mbo, n=40) + choose_checkpoints(esm4_mbo, n=40)
    result = compare_books(definition, mbo, checkpoints=checkpoints)
    assert result.ok, result.report()
    assert set(result.instrument_map) == {ESH4_INSTRUMENT_ID, ESM4_INSTRUMENT_ID}
    assert result.compared == 2 * len(checkpoints) == 160
    assert result.nonempty >= 80  # each future is live for its half of the checkpoints


# -- the check can fail ---------------------------------------------------------------------------


@pytest.mark.real_data
def test_dropped_cancel_is_detected(esh4_comparison: BookComparison) -> None:
    """Remove one cancel from the reference input: the comparison must flag that book."""
    result = esh4_comparison
    records = load_mbo_records(result.mbo_path)
    target = result.checkpoints[len(result.checkpoints) // 2]
    bids, asks = result.reference[(ESH4_INSTRUMENT_ID, target)]
    top = {b"B": {p for p, _, _ in bids}, b"A": {p for p, _, _ in asks}}
    before = np.nonzero((records["ts_recv"] < target) & (records["action"] == b"C"))[0]
    candidates = [
        i for i in before[::-1] if int(records["price"][i]) in top[bytes(records["side"][i])]
    ]
    dropped = candidates[0]  # the latest cancel at a price that is in the top 5 at `target`

    corrupted = np.delete(records, dropped)
    bad_reference = reference_snapshots_from_records(corrupted, result.checkpoints, result.depth)
    diff = compare_snapshots(bad_reference, result.nautilus, result.depth)
    assert diff.compared == len(result.checkpoints)
    assert diff.mismatches, "dropping a cancel went unnoticed"
    flagged = {(m.instrument_id, m.checkpoint_ns) for m in diff.mismatches}
    assert (ESH4_INSTRUMENT_ID, target) in flagged
    assert "!=" in diff.mismatches[0].describe()
    # The uncorrupted reference still agrees with the very same Nautilus snapshots.
    assert not compare_snapshots(result.reference, result.nautilus, result.depth).mismatches


# -- how NautilusTrader 1.231 handles MBO ---------------------------------------------------------


@pytest.mark.real_data
def test_cached_book_is_the_data_engines(real_file) -> None:
    """Without a managed subscription no book is cached: the venue's book is not the one read."""
    definition, mbo = real_file(ESM4_DEFINITION), real_file(ESM4_MBO)
    checkpoints = choose_checkpoints(mbo, n=3)
    unmanaged = nautilus_snapshots(definition, mbo, checkpoints, managed=False)
    assert not any(r.book_present for r in unmanaged.readings.values())
    managed = nautilus_snapshots(definition, mbo, checkpoints, managed=True)
    assert all(r.book_present for r in managed.readings.values())
    assert managed.books_before_subscribe == {InstrumentId.from_str("ESM4.GLBX"): False}


@pytest.mark.real_data
def test_buffer_deltas_holds_back_packets_without_f_last(esh4_definition: Path, real_file) -> None:
    """With DataEngineConfig(buffer_deltas=True) deltas wait for an F_LAST record.

    The ESH4 file's 8,725 snapshot adds carry no F_LAST, so a buffering data engine
    shows an empty book for the 22 hours until the first live packet; a sweep whose
    cancels span two ts_recv values (the first part without F_LAST) is half missing.
    The default (buffer_deltas=False) applies every delta at once, like the reference.
    """
    mbo = real_file(ESH4_MBO_20231225)
    after_snapshot = 1_703_462_400_000_000_000 + 3_600 * 10**9
    mid_sweep = 1_703_546_985_844_511_272 + 1_000  # before the sweep's second packet
    ordinary = 1_703_548_710_000_741_830
    checkpoints = [after_snapshot, mid_sweep, ordinary]

    default = compare_books(esh4_definition, mbo, checkpoints=checkpoints)
    assert default.ok, default.report()

    buffered = compare_books(esh4_definition, mbo, checkpoints=checkpoints, buffer_deltas=True)
    flagged = {m.checkpoint_ns for m in buffered.mismatches}
    assert flagged == {after_snapshot, mid_sweep}, buffered.report()
    empty = buffered.nautilus[(ESH4_INSTRUMENT_ID, after_snapshot)]
    assert empty == ([], [])


def test_nautilus_delete_removes_the_whole_order() -> None:
    """A Databento partial cancel ('C' with size < resting) decodes to DELETE, which in
    NautilusTrader 1.231 removes the whole order; the reference keeps the remainder.
    The real samples contain no partial cancels (checked by the reference's counters)."""
    instrument_id = InstrumentId.from_str("X.GLBX")
    book = OrderBook(instrument_id, BookType.L3_MBO)

    def delta(action: BookAction, size: int, seq: int) -> OrderBookDelta:
        order = BookOrder(OrderSide.BUY, Price.from_str("100.00"), Quantity.from_int(size), 1)
        return OrderBookDelta(instrument_id, action, order, 0, seq, seq, seq)

    book.apply_delta(delta(BookAction.ADD, 5, 1))
    book.apply_delta(delta(BookAction.DELETE, 2, 2))
    assert book.bids() == []

    reference = ReferenceBook()
    reference.apply("A", "B", 100 * PX, 5, 1)
    reference.apply("C", "B", 100 * PX, 2, 1)
    assert reference.top() == ([(100 * PX, 3, 1)], [])


@pytest.mark.real_data
def test_real_samples_have_no_partial_cancels(real_file) -> None:
    """So the DELETE semantics above cannot affect the real-data comparisons."""
    for name in (ESH4_MBO_20231225, ESM4_MBO):
        records = load_mbo_records(real_file(name))
        books: dict[int, ReferenceBook] = {}
        reference_snapshots_from_records(records, [int(records["ts_recv"][-1]) + 1], books=books)
        anomalies: Counter[str] = Counter()
        for book in books.values():
            anomalies.update(book.anomalies)
        assert anomalies.get("partial_cancel", 0) == 0
        assert anomalies.get("cancel_unknown_order", 0) == 0
        assert anomalies.get("modify_unknown_order", 0) == 0
