"""Premium notional, one aggressive order's fills as one match event, bursts, the $3M flag."""

from __future__ import annotations

import pytest

from ifd.detection.premium import BurstPremium
from ifd.detection.premium import MatchEvents
from ifd.detection.premium import format_usd
from ifd.detection.premium import premium_flag
from ifd.detection.premium import premium_usd
from ifd.detection.types import BUY
from ifd.detection.types import SELL

SEC = 1_000_000_000
C = "NQZ6 C21000.GLBX"


def test_premium_is_price_times_multiplier_times_size() -> None:
    assert premium_usd(450.0, 10, 20.0) == 90_000.0


def test_sweep_fills_are_one_match_event() -> None:
    ev = MatchEvents()
    ts = 5 * SEC
    # one buy order sweeping three ask levels: three T records with the same ts_event
    fills = [(450.0, 10), (450.25, 7), (450.5, 5)]
    for price, size in fills:
        event = ev.add(C, ts, BUY, price, size, premium_usd(price, size, 20.0))
    assert event.levels == 3
    assert event.size == 22
    assert event.notional_usd == pytest.approx(sum(premium_usd(p, s, 20.0) for p, s in fills))
    # the next order (new ts_event) starts a new event; so does the other side at the same ts
    assert ev.add(C, ts + 1, BUY, 450.5, 1, 9010.0).size == 1
    assert ev.add(C, ts + 1, SELL, 450.0, 2, 18000.0).levels == 1
    # a different instrument at the same ts is its own event
    assert ev.add("NQZ6 P21000.GLBX", ts + 1, SELL, 300.0, 2, 12000.0).size == 2


def test_burst_premium_rolls_per_side() -> None:
    burst = BurstPremium(window_ns=60 * SEC, buckets=60)
    assert burst.add(C, 0, BUY, 1_000_000.0) == 1_000_000.0
    assert burst.add(C, 10 * SEC, SELL, 500_000.0) == 500_000.0  # other side kept apart
    assert burst.add(C, 20 * SEC, BUY, 1_500_000.0) == 2_500_000.0
    assert burst.add(C, 50 * SEC, BUY, 600_000.0) == 3_100_000.0
    flagged, kind, amount = premium_flag(600_000.0, 3_100_000.0, 3_000_000.0)
    assert flagged and kind == "burst" and amount == 3_100_000.0
    # 70 s later the first buy has left the window
    assert burst.add(C, 70 * SEC, BUY, 100_000.0) == pytest.approx(2_200_000.0)


def test_premium_flag_threshold_and_order_kind() -> None:
    assert premium_flag(3_000_000.0, 1_000_000.0) == (True, "order", 3_000_000.0)
    assert premium_flag(2_999_999.0, 0.0)[0] is False
    assert premium_flag(1_000.0, 2_000_000.0, threshold_usd=1_500_000.0) == (True, "burst", 2_000_000.0)


def test_format_usd() -> None:
    assert format_usd(3_400_000) == "$3.4M"
    assert format_usd(850_000) == "$850k"
    assert format_usd(-1_200_000) == "-$1.2M"
