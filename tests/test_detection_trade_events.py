"""The TradeEvent builder: the book before the T's own packet, feed sides, prices."""

from __future__ import annotations

import math

import numpy as np

from ifd.detection.types import BUY
from ifd.detection.types import SELL
from ifd.detection.types import UNKNOWN
from tests.support.trade_events import trade_events_from_records

FIELDS = [
    ("instrument_id", "<u4"), ("ts_event", "<u8"), ("ts_recv", "<u8"), ("sequence", "<u4"), ("order_id", "<u8"),
    ("price", "<i8"), ("size", "<u4"), ("action", "S1"), ("side", "S1"),
]
P = 1_000_000_000  # 1.0 in DBN fixed point


def records(rows: list[tuple]) -> np.ndarray:
    return np.array(rows, dtype=FIELDS)


def test_book_before_the_packet_and_sides() -> None:
    rows = [
        # packet 1: a bid 100.00 x 5 and an ask 100.25 x 7
        (1, 10, 20, 1, 11, 100 * P, 5, b"A", b"B"),
        (1, 10, 20, 1, 12, int(100.25 * P), 7, b"A", b"A"),
        # packet 2: a buy lifts the ask (T + F), its C comes in packet 3
        (1, 30, 40, 2, 99, int(100.25 * P), 7, b"T", b"B"),
        (1, 30, 40, 2, 12, int(100.25 * P), 7, b"F", b"A"),
        (1, 30, 45, 3, 12, int(100.25 * P), 7, b"C", b"A"),
        # packet 4: the bid is cancelled and a sell trades in the same packet: book before the packet
        (1, 50, 60, 4, 11, 100 * P, 5, b"C", b"B"),
        (1, 50, 60, 4, 98, 100 * P, 1, b"T", b"A"),
        # packet 5: a trade with no side on an empty book; an unknown instrument is skipped
        (1, 70, 80, 5, 97, 101 * P, 1, b"T", b"N"),
        (2, 70, 80, 5, 96, 101 * P, 1, b"T", b"B"),
    ]
    events = trade_events_from_records(records(rows), {1: "NQZ6 C21000.GLBX"})
    assert len(events) == 3
    buy, sell, none = events
    assert (buy.feed_side, buy.price, buy.best_bid, buy.best_ask, buy.bid_size, buy.ask_size) == (BUY, 100.25, 100.0, 100.25, 5, 7)
    assert buy.price == buy.best_ask  # exact decimal prices: ties compare equal
    assert (buy.ts_event, buy.ts_init) == (30, 40)
    assert (sell.feed_side, sell.best_bid, sell.bid_size) == (SELL, 100.0, 5)
    assert math.isnan(sell.best_ask)
    assert none.feed_side == UNKNOWN and math.isnan(none.best_bid) and math.isnan(none.best_ask)
