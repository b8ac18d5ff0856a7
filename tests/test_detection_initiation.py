"""Trade initiation: the book rule (ties, locked, crossed, missing, inside) and feed agreement."""

from __future__ import annotations

import math

import pytest

from ifd.detection.initiation import InitiationStats
from ifd.detection.initiation import book_side
from ifd.detection.initiation import resolve_side
from ifd.detection.types import BUY
from ifd.detection.types import SELL
from ifd.detection.types import UNKNOWN

NAN = math.nan


@pytest.mark.parametrize(
    ("price", "bid", "ask", "expected"),
    [
        (10.25, 10.0, 10.25, BUY),  # tie with the ask: buyer-initiated
        (10.50, 10.0, 10.25, BUY),  # through the ask (a sweep's deeper level)
        (10.0, 10.0, 10.25, SELL),  # tie with the bid: seller-initiated
        (9.75, 10.0, 10.25, SELL),  # through the bid
        (10.10, 10.0, 10.25, UNKNOWN),  # strictly inside
        (10.0, 10.0, 10.0, UNKNOWN),  # locked, at the locked price: ambiguous
        (10.25, 10.0, 10.0, BUY),  # locked, above it
        (9.75, 10.0, 10.0, SELL),  # locked, below it
        (10.0, 10.25, 10.0, UNKNOWN),  # crossed: the book says nothing
        (11.0, 10.25, 10.0, UNKNOWN),
        (10.0, NAN, NAN, UNKNOWN),  # missing book
        (10.0, 0.0, 0.0, UNKNOWN),
        (10.25, NAN, 10.25, BUY),  # only an ask: its rule still applies
        (10.0, NAN, 10.25, UNKNOWN),
        (10.0, 10.0, NAN, SELL),  # only a bid
        (10.25, 10.0, NAN, UNKNOWN),
    ],
)
def test_book_side(price: float, bid: float, ask: float, expected: int) -> None:
    assert book_side(price, bid, ask) == expected


def test_feed_side_wins_book_fills_in() -> None:
    assert resolve_side(BUY, SELL) == BUY
    assert resolve_side(SELL, UNKNOWN) == SELL
    assert resolve_side(UNKNOWN, SELL) == SELL
    assert resolve_side(UNKNOWN, UNKNOWN) == UNKNOWN


def test_agreement_rate_and_counts() -> None:
    stats = InitiationStats()
    assert stats.agreement_rate is None
    assert stats.classify(10.25, BUY, 10.0, 10.25) == BUY  # agree
    assert stats.classify(10.0, SELL, 10.0, 10.25) == SELL  # agree
    assert stats.classify(10.0, BUY, 10.0, 10.25) == BUY  # disagree: the feed is used
    assert stats.classify(10.1, SELL, 10.0, 10.25) == SELL  # inside: not compared
    assert stats.classify(10.25, UNKNOWN, 10.0, 10.25) == BUY  # book fills in
    assert stats.classify(10.1, UNKNOWN, 10.0, 10.25) == UNKNOWN  # nobody knows
    assert stats.agreement_rate == pytest.approx(2 / 3)
    q = stats.as_dict()
    assert q["trades_seen"] == 6
    assert q["unknown_initiation"] == 1
    assert q["feed_side_known"] == 4
