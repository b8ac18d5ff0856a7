"""Market-making filters (straddle, vol crush, cross-strike timing) and sweeps."""

from __future__ import annotations

import pytest

from ifd.detection.straddles import MM_REFRESH
from ifd.detection.straddles import SWEEP
from ifd.detection.straddles import CrossStrikeTiming
from ifd.detection.straddles import StraddleMonitor
from ifd.detection.straddles import VolCrush
from ifd.detection.straddles import classify_cross_strike
from ifd.detection.sweeps import StrikeSweeps
from ifd.detection.sweeps import urgency
from ifd.detection.types import BUY
from ifd.detection.types import SELL

SEC = 1_000_000_000
US = 1_000
K = ("NQZ6", 1, 21000.0)


def monitor() -> StraddleMonitor:
    return StraddleMonitor(300 * SEC, 10 * SEC, min_leg_volume=20, min_balance=0.6)


@pytest.mark.parametrize("side", [SELL, BUY])
def test_same_direction_balanced_straddle_within_five_minutes_is_flagged(side: int) -> None:
    m = monitor()
    t = 0
    for k in range(12):  # both legs the same way, 10 lots a leg; the put 200 us or 3 s later
        m.add(K, True, t, side, 10)
        m.add(K, False, t + (200 * US if k % 3 else 3 * SEC), side, 10)
        t += 20 * SEC
    st = m.state(K, t, side)
    assert st.flagged
    assert st.call_volume == st.put_volume == 120
    assert st.balance == 1.0 and st.score == 1.0
    # seen from the other side it is nothing: no leg was traded that way
    other = m.state(K, t, -side)
    assert not other.flagged and other.score == 0.0


def test_straddle_legs_seconds_apart_and_slightly_unbalanced_are_flagged() -> None:
    m = monitor()
    for k in range(10):  # calls sold now, puts sold 2-40 s later, 8 vs 6 lots
        m.add(K, True, k * 25 * SEC, SELL, 8)
        m.add(K, False, k * 25 * SEC + (2 + 4 * k) * SEC, SELL, 6)
    st = m.state(K, 280 * SEC, SELL)
    assert st.flagged and st.balance == pytest.approx(0.75)


def test_straddle_window_is_five_minutes() -> None:
    m = monitor()
    m.add(K, True, 0, SELL, 30)
    m.add(K, False, 250 * SEC, SELL, 30)  # the put sold 4 min 10 s after the call: one straddle
    assert m.state(K, 260 * SEC, SELL).flagged
    m2 = monitor()
    m2.add(K, True, 0, SELL, 30)
    m2.add(K, False, 320 * SEC, SELL, 30)  # more than 5 min apart: two unrelated trades
    assert not m2.state(K, 320 * SEC, SELL).flagged
    # and nothing remains of a straddle five minutes after it
    assert m.state(K, 255 * SEC + 300 * SEC, SELL).score == 0.0


def test_one_sided_call_buying_is_not_a_straddle() -> None:
    m = monitor()
    t = 0
    for k in range(12):  # calls bought in size, a few retail puts both ways
        m.add(K, True, t, BUY, 20)
        if k % 2 == 0:
            m.add(K, False, t + 2 * SEC, SELL if k % 4 else BUY, 3)
        t += 10 * SEC
    st = m.state(K, t, BUY)
    assert not st.flagged
    assert st.call_volume == 240 and st.put_volume == 9
    assert st.balance < 0.1
    assert st.score == 0.0


def test_unbalanced_pair_is_not_a_straddle() -> None:
    m = monitor()
    for k in range(12):  # both legs bought together, but 25 calls for every 5 puts
        m.add(K, True, k * 10 * SEC, BUY, 25)
        m.add(K, False, k * 10 * SEC + 300 * US, BUY, 5)
    st = m.state(K, 120 * SEC, BUY)
    assert st.put_volume == 60 >= m.min_leg_volume
    assert st.balance == pytest.approx(0.2)
    assert not st.flagged and st.score == 0.0


def test_risk_reversal_is_not_a_straddle() -> None:
    m = monitor()
    for k in range(12):  # calls bought and puts sold together: a synthetic long, directional
        m.add(K, True, k * 10 * SEC, BUY, 15)
        m.add(K, False, k * 10 * SEC + 300 * US, SELL, 15)
    assert not m.state(K, 120 * SEC, BUY).flagged
    assert not m.state(K, 120 * SEC, SELL).flagged


def test_small_balanced_legs_are_below_the_minimum() -> None:
    m = monitor()
    for k in range(3):  # 3 x 5 lots a leg: balanced, but only 15 contracts
        m.add(K, True, k * SEC, SELL, 5)
        m.add(K, False, k * SEC + US, SELL, 5)
    st = m.state(K, 3 * SEC, SELL)
    assert st.balance == 1.0 and not st.flagged


def test_trades_without_aggressor_side_are_not_counted() -> None:
    m = monitor()
    m.add(K, True, 0, 0, 50)
    m.add(K, False, US, 0, 50)
    assert m.state(K, SEC, BUY).call_volume == 0.0
    assert not m.state(K, SEC, SELL).flagged


def test_vol_crush_both_legs_falling() -> None:
    crush = VolCrush(300 * SEC, 5 * SEC, min_span_ns=60 * SEC, min_drop=0.03)
    for s in range(0, 181, 10):  # call 300 -> 282, put 280 -> 263: both ~ -6%
        crush.add(K, True, s * SEC, 299.5 - 0.1 * s, 300.5 - 0.1 * s)
        crush.add(K, False, s * SEC + US, 279.5 - 0.095 * s, 280.5 - 0.095 * s)
    assert crush.drop(K, True, 180 * SEC) > 0.05
    assert crush.crushed(K, 180 * SEC)


def test_opposite_leg_moves_are_not_a_crush() -> None:
    crush = VolCrush(300 * SEC, 5 * SEC, min_span_ns=60 * SEC, min_drop=0.03)
    for s in range(0, 181, 10):  # underlying falls: call down, put up
        crush.add(K, True, s * SEC, 299.5 - 0.1 * s, 300.5 - 0.1 * s)
        crush.add(K, False, s * SEC + US, 279.5 + 0.1 * s, 280.5 + 0.1 * s)
    assert not crush.crushed(K, 180 * SEC)
    # too short a history says nothing either
    short = VolCrush(300 * SEC, 5 * SEC, min_span_ns=60 * SEC, min_drop=0.03)
    short.add(K, True, 0, 299.5, 300.5)
    short.add(K, True, 30 * SEC, 199.5, 200.5)
    assert short.drop(K, True, 30 * SEC) is None


def test_cross_strike_sweep_vs_mm_refresh() -> None:
    timing = CrossStrikeTiming(window_ns=2_000_000, min_strikes=2)
    e = ("NQZ6", 1)
    # one aggressor buying calls across three strikes within 600 us: a sweep
    assert timing.add(e, 0, 21000.0, True, BUY) == (None, 1)
    assert timing.add(e, 300 * US, 21025.0, True, BUY) == (SWEEP, 2)
    assert timing.add(e, 600 * US, 21050.0, True, BUY) == (SWEEP, 3)
    # later: trades on several strikes within a millisecond, both sides: a market-maker refresh
    t = 10 * SEC
    timing.add(e, t, 21000.0, True, BUY)
    timing.add(e, t + 100 * US, 21025.0, True, SELL)
    assert timing.add(e, t + 200 * US, 21050.0, False, BUY) == (MM_REFRESH, 3)
    # same side but calls and puts mixed is not a directional sweep either
    assert classify_cross_strike([(0, 1.0, True, BUY), (1, 2.0, False, BUY)], 2)[0] == MM_REFRESH
    assert classify_cross_strike([(0, 1.0, True, BUY), (1, 1.0, True, BUY)], 2) == (None, 1)


def test_strike_sweeps_and_urgency() -> None:
    sweeps = StrikeSweeps(window_ns=2_000_000)
    g = ("NQZ6", 1, "CALL")
    assert sweeps.add(g, 0, 21000.0, SELL) == 1
    assert sweeps.add(g, 400 * US, 21025.0, SELL) == 2
    assert sweeps.add(g, 500 * US, 21050.0, BUY) == 1  # other side: its own count
    assert sweeps.add(g, 5 * SEC, 21050.0, SELL) == 1  # long after: alone again
    assert urgency(1, 1) == 0.0
    assert urgency(2, 1) == 0.5
    assert urgency(3, 1) == 1.0
    assert urgency(1, 3) == 1.0
    assert urgency(5, 5) == 1.0
