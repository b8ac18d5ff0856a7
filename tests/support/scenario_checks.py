"""Replay checks for MBO record streams (synthetic scenario files and the real ESH4 sample).

``replay_mbo`` walks the records once, rebuilding every order book from A/C/M and the F fills,
and raises ``AssertionError`` on the first violation of the GLBX record patterns:

* events end with F_LAST; flags are 0 elsewhere; one ts_event per event;
  sequence and ts_recv never decrease; records of one packet (sequence) share ts_recv;
* a 'T' (aggressor side B/A) is followed by 'F' records at its price whose sizes sum to
  the T size; each F hits a live resting order on the opposite side, at that order's price,
  for at most its size; the T price is the best opposite price left at that moment;
* every order hit by an F is then updated in the same event: 'C' when fully filled,
  'M' with the remaining size otherwise;
* 'A' uses a new order id with positive size; 'C'/'M' reference live orders; sizes never go
  negative; the book is never crossed after an event; optionally prices are on a tick grid.

It returns per-T information (best prices before the event) for label checks.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

F_LAST = 128
PU = 50_000_000  # 0.05 in 1e-9 fixed point


def nq_price_ok(price: int, is_future: bool) -> bool:
    """NQ grids: future 0.25; options 0.05 at or below 5.00, 0.25 above."""
    if price <= 0 or price % PU:
        return False
    pu = price // PU
    if is_future:
        return pu % 5 == 0
    return pu <= 100 or pu % 5 == 0


@dataclass
class TradeInfo:
    """One 'T' record as seen by the replay."""

    index: int
    instrument_id: int
    order_id: int
    ts_event: int
    price: int
    size: int
    side: str
    best_opposite: int  # best price on the side hit, just before this T


@dataclass
class ReplayResult:
    trades: list[TradeInfo] = field(default_factory=list)
    events: int = 0
    max_orders: int = 0
    quotes: dict[int, list[tuple[int, int | None, int | None]]] = field(
        default_factory=dict
    )

    def quote_at(self, iid: int, ts: int) -> tuple[int | None, int | None]:
        """(best bid, best ask) of a watched instrument after the last event at or before ``ts``."""
        rows = self.quotes[iid]
        k = bisect.bisect_right([r[0] for r in rows], ts) - 1
        return (None, None) if k < 0 else rows[k][1:]


class _Book:
    __slots__ = ("asks", "bids")

    def __init__(self) -> None:
        self.bids: dict[int, int] = {}  # price -> total size
        self.asks: dict[int, int] = {}

    def side(self, s: str) -> dict[int, int]:
        return self.bids if s == "B" else self.asks

    def adjust(self, s: str, price: int, delta: int) -> None:
        lv = self.side(s)
        v = lv.get(price, 0) + delta
        assert v >= 0, f"negative level size at {price}"
        if v:
            lv[price] = v
        else:
            lv.pop(price, None)

    def crossed(self) -> bool:
        return bool(self.bids) and bool(self.asks) and max(self.bids) >= min(self.asks)


def replay_mbo(
    arr: np.ndarray,
    price_ok: Callable[[int, int], bool] | None = None,
    skip_snapshot: bool = False,
    watch: Iterable[int] = (),
) -> ReplayResult:
    """Replay a DBN MBO ndarray (``DBNStore.to_ndarray()``) and assert the GLBX patterns.

    ``skip_snapshot`` loads F_SNAPSHOT records into the books without checks; for every
    instrument in ``watch`` the best bid / ask after each of its events is kept in ``quotes``.
    """
    iid_a = arr["instrument_id"].tolist()
    ts_a = arr["ts_event"].tolist()
    oid_a = arr["order_id"].tolist()
    px_a = arr["price"].tolist()
    sz_a = arr["size"].tolist()
    fl_a = arr["flags"].tolist()
    act_a = [a.decode() for a in arr["action"].tolist()]
    side_a = [s.decode() for s in arr["side"].tolist()]
    recv_a = arr["ts_recv"].tolist()
    seq_a = arr["sequence"].tolist()

    orders: dict[int, list] = {}  # oid -> [iid, side, price, size]
    books: dict[int, _Book] = {}
    res = ReplayResult()
    watched = set(watch)
    for w in watched:
        res.quotes[w] = []
    ev_ts: int | None = None
    ev_touched: set[int] = set()
    pending: dict[int, int] = {}  # oid -> remaining size after fills in this event
    last_seq = -1
    last_recv = -1
    seq_recv: dict[int, int] = {}
    cur_t: tuple[int, int, str, int] | None = (
        None  # (price, remaining size to fill, aggressor side, T index)
    )
    n = len(iid_a)
    for i in range(n):
        act, side, iid, oid, px, sz, fl = (
            act_a[i],
            side_a[i],
            iid_a[i],
            oid_a[i],
            px_a[i],
            sz_a[i],
            fl_a[i],
        )
        if skip_snapshot and fl & 32:
            if act == "A":
                orders[oid] = [iid, side, px, sz]
                books.setdefault(iid, _Book()).adjust(side, px, sz)
            continue
        where = f"record {i} ({act} oid={oid} iid={iid})"
        assert seq_a[i] >= last_seq, f"{where}: sequence decreased"
        assert recv_a[i] >= last_recv, f"{where}: ts_recv decreased"
        if seq_a[i] == last_seq:
            assert recv_a[i] == seq_recv[last_seq], (
                f"{where}: packet records differ in ts_recv"
            )
        last_seq, last_recv = seq_a[i], recv_a[i]
        seq_recv = {last_seq: last_recv}
        if ev_ts is None:
            ev_ts = ts_a[i]
        assert ts_a[i] == ev_ts, f"{where}: ts_event changes inside an event"
        assert fl & ~(F_LAST | 2) == 0, f"{where}: unexpected flags {fl}"
        book = books.setdefault(iid, _Book())
        ev_touched.add(iid)
        if cur_t is not None and act != "F":
            assert cur_t[1] == 0, f"{where}: F sizes do not sum to the T size"
            cur_t = None
        if price_ok is not None and act in "ACMTF":
            assert price_ok(iid, px), f"{where}: price {px / 1e9} off the tick grid"
        if act == "A":
            assert oid not in orders, f"{where}: order id reused"
            assert sz > 0, f"{where}: non-positive size"
            orders[oid] = [iid, side, px, sz]
            book.adjust(side, px, sz)
        elif act == "C":
            o = orders.pop(oid, None)
            assert o is not None and o[0] == iid, f"{where}: cancel of unknown order"
            assert o[2] == px, f"{where}: cancel price differs from the order's"
            remaining = pending.pop(oid, None)
            if remaining is not None:
                assert remaining == 0, f"{where}: cancel of a partially filled order"
            else:
                book.adjust(o[1], o[2], -o[3])
        elif act == "M":
            o = orders.get(oid)
            assert o is not None and o[0] == iid, f"{where}: modify of unknown order"
            assert sz > 0, f"{where}: modify to non-positive size"
            remaining = pending.pop(oid, None)
            if remaining is not None:
                assert remaining == sz and px == o[2], (
                    f"{where}: fill update size {sz} != remaining {remaining}"
                )
                o[3] = sz  # the level already lost the filled part at the F
            else:
                book.adjust(o[1], o[2], -o[3])
                o[2], o[3] = px, sz
                book.adjust(side, px, sz)
        elif act == "T":
            assert sz > 0, f"{where}: empty trade"
            assert side in ("B", "A"), f"{where}: trade without aggressor side"
            opp = book.asks if side == "B" else book.bids
            assert opp, f"{where}: trade against an empty side"
            best = min(opp) if side == "B" else max(opp)
            assert px == best, (
                f"{where}: trade at {px / 1e9} but best opposite is {best / 1e9}"
            )
            res.trades.append(TradeInfo(i, iid, oid, ts_a[i], px, sz, side, best))
            cur_t = (px, sz, side, i)
        elif act == "F":
            assert cur_t is not None, f"{where}: fill without a preceding trade"
            o = orders.get(oid)
            assert o is not None and o[0] == iid, f"{where}: fill of unknown order"
            assert px == cur_t[0] == o[2], f"{where}: fill price differs"
            rest_side = "A" if cur_t[2] == "B" else "B"
            assert side == rest_side == o[1], f"{where}: fill on the wrong side"
            have = pending.get(oid, o[3])
            assert 0 < sz <= have, f"{where}: fill size {sz} exceeds resting {have}"
            pending[oid] = have - sz
            # the resting size leaves the book now; M puts back what remains
            book.adjust(o[1], o[2], -sz)
            cur_t = (cur_t[0], cur_t[1] - sz, cur_t[2], cur_t[3])
            assert cur_t[1] >= 0, f"{where}: fills exceed the trade size"
        else:
            raise AssertionError(f"{where}: unexpected action")
        if fl & F_LAST:
            if cur_t is not None:
                assert cur_t[1] == 0, f"{where}: F sizes do not sum to the T size"
                cur_t = None
            assert not pending, (
                f"{where}: filled orders without C/M update: {sorted(pending)[:5]}"
            )
            for j in ev_touched:
                assert not books[j].crossed(), f"{where}: crossed book on {j}"
                if j in watched:
                    b = books[j]
                    res.quotes[j].append(
                        (
                            ts_a[i],
                            max(b.bids) if b.bids else None,
                            min(b.asks) if b.asks else None,
                        )
                    )
            ev_touched.clear()
            ev_ts = None
            res.events += 1
            res.max_orders = max(res.max_orders, len(orders))
    assert ev_ts is None, "stream ends inside an event (no F_LAST)"
    return res


def event_patterns(arr: np.ndarray) -> dict[str, int]:
    """Structural GLBX patterns that hold on the real feed after the open and on scenarios.

    Asserts: sequence and ts_recv never decrease; F_LAST marks the last record of each
    ts_event group and only it (flags 0 otherwise); every aggressor 'T' (side B/A) is
    directly followed by 'F' records at its price whose opposite-side sizes sum to its size
    (an aggressor-side F may only be the aggressor's own fill); the T/F records form one packet and the book updates come in a later packet of the
    same event.  Returns counts of what was checked.
    """
    act = arr["action"].view(np.uint8)
    side = arr["side"].view(np.uint8)
    flags = arr["flags"]
    seq = arr["sequence"].astype(np.int64)
    recv = arr["ts_recv"].astype(np.int64)
    ts = arr["ts_event"].astype(np.int64)
    assert (np.diff(seq) >= 0).all(), "sequence decreased"
    assert (np.diff(recv) >= 0).all(), "ts_recv decreased"
    last = np.r_[ts[1:] != ts[:-1], True]
    assert (flags[last] & F_LAST).all(), "an event does not end with F_LAST"
    assert (flags[~last] == 0).all(), "F_LAST or other flags inside an event"
    t_idx = np.flatnonzero((act == ord("T")) & (side != ord("N")))
    n = len(arr)
    size = arr["size"].astype(np.int64)
    price = arr["price"]
    oids = arr["order_id"]
    checked = later = own_fills = 0
    for i in t_idx.tolist():
        j = i + 1
        total = 0
        opposite = ord("A") if side[i] == ord("B") else ord("B")
        while j < n and act[j] == ord("F") and ts[j] == ts[i]:
            assert price[j] == price[i], f"record {j}: F price differs from its T"
            assert seq[j] == seq[i] and recv[j] == recv[i], (
                f"record {j}: F outside the T packet"
            )
            if side[j] == opposite:
                total += size[j]
            else:  # real GLBX: a resting order modified into a cross also gets its own F
                assert oids[j] == oids[i], (
                    f"record {j}: F on the aggressor side for another order"
                )
                own_fills += 1
            j += 1
        assert j > i + 1, f"record {i}: T without F records"
        assert total == size[i], f"record {i}: F sizes {total} != T size {size[i]}"
        k = j
        while k < n and act[k] in (ord("T"), ord("F")) and ts[k] == ts[i]:
            k += 1
        assert k < n and ts[k] == ts[i] and act[k] in (ord("C"), ord("M"), ord("A")), (
            f"record {i}: no book update after the match"
        )
        assert seq[k] >= seq[i], f"record {k}: book update before the match packet"
        later += int(seq[k] > seq[i])
        checked += 1
    return {
        "trades": checked,
        "update_in_later_packet": later,
        "aggressor_fills": own_fills,
        "events": int(last.sum()),
    }
