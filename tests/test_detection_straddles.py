"""Market-making filters (straddle, vol crush, cross-strike timing) and sweeps."""

from __future__ import annotations

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
    return StraddleMonitor(300 * SEC, 10 * SEC, pair_ns=5_000_000, min_leg_volume=20, min_balance=0.5, min_paired_share=0.3)


def test_balanced_two_sided_straddle_is_flagged() -> None:
    m = monitor()
    t = 0
    for k in range(12):  # both legs within 200 us, sides alternating, 10 lots a leg
        side = BUY if k % 2 == 0 else SELL
        m.add(K, True, t, side, 10)
        m.add(K, False, t + 200 * US, side, 10)
        t += 15 * SEC
    st = m.state(K, t)
    assert st.flagged
    assert st.call_volume == st.put_volume == 120
    assert st.paired_volume == 120
    assert st.paired_share == 1.0
    assert st.score == 1.0


def test_busy_strike_with_independent_legs_is_not_a_straddle() -> None:
    m = monitor()
    t = 0
    for k in range(40):  # balanced call and put volume, but never traded together
        m.add(K, k % 2 == 0, t, BUY if k % 3 else SELL, 5)
        t += 3 * SEC
    st = m.state(K, t)
    assert st.balance == 1.0 and st.paired_share == 0.0
    assert not st.flagged


def test_one_sided_call_buying_is_not_a_straddle() -> None:
    m = monitor()
    t = 0
    for k in range(12):  # calls bought in size, a few retail puts
        m.add(K, True, t, BUY, 20)
        if k % 4 == 0:
            m.add(K, False, t + 2 * SEC, SELL if k % 8 else BUY, 2)
        t += 10 * SEC
    st = m.state(K, t)
    assert not st.flagged
    assert st.balance < 0.1
    assert st.score == 0.0
    # and nothing remains of a straddle five minutes after it
    m2 = monitor()
    m2.add(K, True, 0, BUY, 30)
    m2.add(K, False, 100 * US, BUY, 30)
    assert m2.state(K, 10 * SEC).flagged
    assert not m2.state(K, 400 * SEC).flagged


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
