"""Independent L3 (market-by-order) book reconstruction from Databento MBO records.

Written from the Databento MBO semantics, with no NautilusTrader code involved, so it
can serve as an oracle for the book NautilusTrader builds:

* ``A`` add: a new resting order (an add for a known order id replaces it).
* ``C`` cancel: ``size`` is the cancelled quantity; the order shrinks by it and is
  removed when nothing is left (a cancel for an unknown order is ignored).
* ``M`` modify: the order now has this side/price/size (size 0 removes it; a modify
  for an unknown order is treated as an add). Priority changes do not matter for
  level aggregates.
* ``R`` clear: removes every order of that instrument (snapshots start with one).
* ``T`` trade, ``F`` fill, ``N`` none: no book change; for CME the book change of a
  fill arrives in the ``C``/``M`` records that follow.

``F_SNAPSHOT`` records need no special treatment: a snapshot is an ``R`` followed
by ``A`` records that are applied like any other add.

Book state at a checkpoint ``t`` = every record with ``ts_recv < t`` applied in
file order. Prices are kept as the raw DBN fixed-point integers (1e-9 units).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import databento as db
import numpy as np

Level = tuple[int, int, int]  # (price as int 1e-9, total size, order count)
Side = list[Level]
Snapshot = tuple[Side, Side]  # (bids best-first, asks best-first)
SnapshotKey = tuple[int, int]  # (instrument_id, checkpoint_ns)

MBO_FIELDS = ("instrument_id", "ts_recv", "order_id", "price", "size", "action", "side")


@dataclass
class ReferenceBook:
    """One instrument's L3 book: orders by id plus per-price aggregates per side."""

    orders: dict[int, tuple[bool, int, int]] = field(default_factory=dict)
    bids: dict[int, list[int]] = field(default_factory=dict)  # price -> [size, count]
    asks: dict[int, list[int]] = field(default_factory=dict)
    anomalies: Counter[str] = field(default_factory=Counter)

    def _insert(self, order_id: int, is_bid: bool, price: int, size: int) -> None:
        self.orders[order_id] = (is_bid, price, size)
        levels = self.bids if is_bid else self.asks
        level = levels.get(price)
        if level is None:
            levels[price] = [size, 1]
        else:
            level[0] += size
            level[1] += 1

    def _remove(self, order_id: int) -> tuple[bool, int, int]:
        is_bid, price, size = self.orders.pop(order_id)
        levels = self.bids if is_bid else self.asks
        level = levels[price]
        level[0] -= size
        level[1] -= 1
        if level[1] == 0:
            del levels[price]
        return is_bid, price, size

    def apply(self, action: str, side: str, price: int, size: int, order_id: int) -> None:
        """Apply one MBO record given as action/side characters and raw fields."""
        if action == "A":
            if side not in ("B", "A"):
                self.anomalies["add_without_side"] += 1
                return
            if order_id in self.orders:
                self.anomalies["add_existing_order"] += 1
                self._remove(order_id)
            self._insert(order_id, side == "B", price, size)
        elif action == "C":
            if order_id not in self.orders:
                self.anomalies["cancel_unknown_order"] += 1
                return
            is_bid, old_price, old_size = self._remove(order_id)
            if size < old_size:
                self.anomalies["partial_cancel"] += 1
                self._insert(order_id, is_bid, old_price, old_size - size)
        elif action == "M":
            if order_id in self.orders:
                self._remove(order_id)
            else:
                self.anomalies["modify_unknown_order"] += 1
            if size > 0 and side in ("B", "A"):
                self._insert(order_id, side == "B", price, size)
        elif action == "R":
            self.orders.clear()
            self.bids.clear()
            self.asks.clear()
        elif action not in ("T", "F", "N"):
            self.anomalies[f"unknown_action_{action!r}"] += 1

    def top(self, depth: int = 5) -> Snapshot:
        """Top `depth` levels per side as (price, size, count), best first."""
        bid_prices = heapq.nlargest(depth, self.bids)
        ask_prices = heapq.nsmallest(depth, self.asks)
        bids = [(p, self.bids[p][0], self.bids[p][1]) for p in bid_prices]
        asks = [(p, self.asks[p][0], self.asks[p][1]) for p in ask_prices]
        return bids, asks


def read_dbn(path: Path | str) -> db.DBNStore:
    """A DBNStore over the file's bytes (`from_file` leaves the file handle open)."""
    return db.DBNStore.from_bytes(Path(path).read_bytes())


def load_mbo_records(mbo_path: Path | str) -> np.ndarray:
    """All MBO records of a DBN file as a numpy structured array (file order)."""
    return read_dbn(mbo_path).to_ndarray()


def _normalize_checkpoints(
    checkpoints_ns: Mapping[int, Sequence[int]] | Sequence[int],
    all_instruments: Iterable[int],
) -> dict[int, list[int]]:
    """checkpoint -> instruments to snapshot there."""
    wanted: dict[int, list[int]] = {}
    if isinstance(checkpoints_ns, Mapping):
        for instrument_id, times in checkpoints_ns.items():
            for t in times:
                wanted.setdefault(int(t), []).append(int(instrument_id))
    else:
        instruments = sorted({int(i) for i in all_instruments})
        for t in checkpoints_ns:
            wanted.setdefault(int(t), []).extend(instruments)
    return wanted


def reference_snapshots_from_records(
    records: np.ndarray,
    checkpoints_ns: Mapping[int, Sequence[int]] | Sequence[int],
    depth: int = 5,
    instrument_ids: Iterable[int] | None = None,
    books: dict[int, ReferenceBook] | None = None,
) -> dict[SnapshotKey, Snapshot]:
    """Replay `records` (MBO structured array, ts_recv non-decreasing) and snapshot books.

    `checkpoints_ns` is either a list of times (every instrument in `instrument_ids`,
    or every instrument in the records) or a mapping instrument_id -> times (then
    `instrument_ids` is ignored). Pass
    `books` to get the final ReferenceBook objects (and their anomaly counters) back.
    """
    missing = [name for name in MBO_FIELDS if name not in (records.dtype.names or ())]
    if missing:
        raise ValueError(f"records lack MBO fields {missing}")
    ts = records["ts_recv"].astype(np.uint64)
    if len(ts) > 1 and np.any(ts[1:] < ts[:-1]):
        raise ValueError("MBO records must be sorted by ts_recv")

    if instrument_ids is None:
        instrument_ids = np.unique(records["instrument_id"]).tolist()
    instrument_ids = [int(i) for i in instrument_ids]
    wanted = _normalize_checkpoints(checkpoints_ns, instrument_ids)
    if isinstance(checkpoints_ns, Mapping):
        keep = {int(i) for i in checkpoints_ns}
    else:
        keep = set(instrument_ids)

    instruments = records["instrument_id"].tolist()
    actions = [a.decode() for a in records["action"].tolist()]
    sides = [s.decode() for s in records["side"].tolist()]
    prices = records["price"].tolist()
    sizes = records["size"].tolist()
    order_ids = records["order_id"].tolist()

    if books is None:
        books = {}
    times = sorted(wanted)
    # Index of the first record with ts_recv >= checkpoint, per checkpoint.
    bounds = np.searchsorted(ts, np.array(times, dtype=np.uint64), side="left").tolist()

    result: dict[SnapshotKey, Snapshot] = {}
    start = 0
    for t, stop in zip(times, bounds, strict=True):
        for i in range(start, stop):
            instrument_id = instruments[i]
            if instrument_id not in keep:
                continue
            book = books.get(instrument_id)
            if book is None:
                book = books[instrument_id] = ReferenceBook()
            book.apply(actions[i], sides[i], prices[i], sizes[i], order_ids[i])
        start = max(start, stop)
        for instrument_id in wanted[t]:
            book = books.get(instrument_id)
            result[(instrument_id, t)] = book.top(depth) if book is not None else ([], [])
    return result


def reference_snapshots(
    mbo_path: Path | str,
    checkpoints_ns: Mapping[int, Sequence[int]] | Sequence[int],
    depth: int = 5,
    instrument_ids: Iterable[int] | None = None,
) -> dict[SnapshotKey, Snapshot]:
    """Top-`depth` books keyed (instrument_id, checkpoint_ns) from a DBN MBO file.

    State at a checkpoint is every record with ``ts_recv < checkpoint`` applied.
    Levels are (price as int 1e-9, total size, order count), best first.
    """
    records = load_mbo_records(mbo_path)
    return reference_snapshots_from_records(records, checkpoints_ns, depth, instrument_ids)
