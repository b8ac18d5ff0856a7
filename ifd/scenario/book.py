"""Orders, per-instrument FIFO books and the matching step that emits GLBX-style records."""

from __future__ import annotations

from ifd.scenario.tape import (
    ACT_CANCEL,
    ACT_FILL,
    ACT_MODIFY,
    ACT_TRADE,
    SIDE_ASK,
    SIDE_BID,
)

BID, ASK = 0, 1
SIDE_CODE = (SIDE_BID, SIDE_ASK)


class Order:
    """A resting limit order (long-lived; modified in place, cancelled or filled)."""

    __slots__ = ("alive", "flicker", "oid", "owner", "price", "side", "size")

    def __init__(
        self,
        oid: int,
        side: int,
        price: int,
        size: int,
        owner: object,
        flicker: bool = False,
    ) -> None:
        self.oid = oid
        self.side = side
        self.price = price
        self.size = size
        self.owner = owner
        self.alive = True
        self.flicker = flicker


class Book:
    """Price levels per side: ``levels[BID|ASK][price_pu] -> FIFO list of orders``."""

    __slots__ = ("iid", "levels")

    def __init__(self, iid: int) -> None:
        self.iid = iid
        self.levels: tuple[dict[int, list[Order]], dict[int, list[Order]]] = ({}, {})

    def add(self, o: Order) -> None:
        lv = self.levels[o.side]
        lst = lv.get(o.price)
        if lst is None:
            lv[o.price] = [o]
        else:
            lst.append(o)

    def remove(self, o: Order) -> None:
        lv = self.levels[o.side]
        lst = lv[o.price]
        lst.remove(o)
        if not lst:
            del lv[o.price]

    def best(self, side: int) -> int | None:
        """Best price on ``side`` (highest bid / lowest ask), None when empty."""
        lv = self.levels[side]
        if not lv:
            return None
        return max(lv) if side == BID else min(lv)

    def depth_at(self, side: int, price: int) -> int:
        """Total resting size at one price."""
        lst = self.levels[side].get(price)
        return sum(o.size for o in lst) if lst else 0

    def nth_level(self, side: int, n: int) -> int | None:
        """Price of the n-th best level (0 = best) on ``side``; the last one if fewer exist."""
        lv = self.levels[side]
        if not lv:
            return None
        prices = sorted(lv, reverse=(side == BID))
        return prices[min(n, len(prices) - 1)]


def match_orders(
    book: Book, aggressor_side: int, limit: int, qty: int, aggressor_oid: int
) -> tuple[
    list[tuple[int, int, int, int, int]],
    list[tuple[int, int, int, int, int]],
    list[tuple[int, int]],
    list[Order],
]:
    """Match an immediate-or-cancel order against ``book`` (price-time priority).

    Returns ``(match_records, book_records, fills, emptied)``: the T/F records (one T per price
    level followed by one F per resting order hit), the C/M records for the hit orders (C when
    fully filled, M with the remaining size otherwise), ``(price, size)`` per level, and the
    resting orders that were fully filled.  Any unfilled remainder is dropped (IOC).
    """
    opp = book.levels[1 - aggressor_side]
    aside = SIDE_CODE[aggressor_side]
    rside = SIDE_CODE[1 - aggressor_side]
    match_recs: list[tuple[int, int, int, int, int]] = []
    book_recs: list[tuple[int, int, int, int, int]] = []
    fills: list[tuple[int, int]] = []
    emptied: list[Order] = []
    remaining = qty
    buying = aggressor_side == BID
    while remaining > 0 and opp:
        p = min(opp) if buying else max(opp)
        if (p > limit) if buying else (p < limit):
            break
        lst = opp[p]
        level: list[tuple[int, int, int, int, int]] = []
        total = 0
        while remaining > 0 and lst:
            o = lst[0]
            f = min(o.size, remaining)
            level.append((o.oid, p, f, ACT_FILL, rside))
            remaining -= f
            total += f
            if f == o.size:
                book_recs.append((o.oid, p, o.size, ACT_CANCEL, rside))
                lst.pop(0)
                o.alive = False
                o.size = 0
                emptied.append(o)
            else:
                o.size -= f
                book_recs.append((o.oid, p, o.size, ACT_MODIFY, rside))
        if not lst:
            del opp[p]
        match_recs.append((aggressor_oid, p, total, ACT_TRADE, aside))
        match_recs.extend(level)
        fills.append((p, total))
    return match_recs, book_recs, fills, emptied
