"""Per-strike pressure: buy/sell volume, ratio, net premium, velocity, quiet-period baseline."""

from __future__ import annotations

import math

import pytest

from ifd.detection.pressure import StrikePressure
from ifd.detection.pressure import pressure_ratio
from ifd.detection.pressure import velocity
from ifd.detection.rolling import RollingSums
from ifd.detection.types import BUY
from ifd.detection.types import SELL
from ifd.detection.types import UNKNOWN

SEC = 1_000_000_000


def test_pressure_ratio() -> None:
    assert pressure_ratio(30, 10) == 0.75
    assert pressure_ratio(0, 0) == 0.5
    assert pressure_ratio(0, 5) == 0.0


def test_velocity_building_steady_faded() -> None:
    # window 300 s, recent 60 s: all of a $1M net premium in the last minute -> 5x the average rate
    assert velocity(1e6, 60, 1e6, 300) == pytest.approx(5.0)
    assert velocity(2e5, 60, 1e6, 300) == pytest.approx(1.0)  # steady
    assert velocity(0.0, 60, 1e6, 300) == 0.0  # faded
    assert velocity(-1e5, 60, 1e6, 300) < 0  # reversed
    assert velocity(1e5, 60, 0.0, 300) == 0.0


def test_rolling_sums_expire_by_bucket() -> None:
    r = RollingSums(window_ns=10 * SEC, bucket_ns=SEC, width=2)
    r.add(0, 0, 1.0)
    r.add(5 * SEC, 1, 2.0)
    assert r.totals == [1.0, 2.0]
    r.expire(10 * SEC)  # the bucket starting at 0 leaves at now - 10 s
    assert r.totals == [0.0, 2.0]
    assert r.recent(10 * SEC, 6 * SEC, 1) == 2.0
    assert r.recent(10 * SEC, 5 * SEC, 1) == 0.0
    r.expire(100 * SEC)
    assert r.totals == [0.0, 0.0] and r.first_start() is None


def test_window_ratio_net_and_velocity() -> None:
    sp = StrikePressure(window_ns=300 * SEC, bucket_ns=5 * SEC, recent_ns=60 * SEC, hot_usd=1e9)
    floor = 10_000.0
    # 4 minutes of steady two-sided flow, then one minute of heavy buying
    for s in range(0, 240, 10):
        sp.add(s * SEC, BUY if s % 20 else SELL, 2, 2 * 6000.0, floor)
    for s in range(240, 300, 5):
        sp.add(s * SEC, BUY, 20, 20 * 6000.0, floor)
    sp.add(299 * SEC, UNKNOWN, 5, 5 * 6000.0, floor)  # unknown side: in neither direction
    st = sp.state(299 * SEC, BUY)
    assert st.buy_volume == 12 * 2 + 12 * 20
    assert st.sell_volume == 12 * 2
    assert st.ratio == pytest.approx(264 / 288)
    assert st.directional_share == st.ratio
    assert st.net_premium == pytest.approx(12 * 20 * 6000.0)
    assert st.recent_net == pytest.approx(12 * 20 * 6000.0)
    assert st.velocity == pytest.approx(5.0, rel=0.1)  # all of it in the last fifth of the window
    sell_view = sp.state(299 * SEC, SELL)
    assert sell_view.directional_net == -st.directional_net
    assert sell_view.directional_share == pytest.approx(1 - st.ratio)
    # a minute and a half later nothing new happened: the recent net is gone, velocity ~0
    later = sp.state(390 * SEC, BUY)
    assert later.recent_net == 0.0 and later.velocity == 0.0 and later.directional_net > 0


def test_intraday_baseline_learns_only_from_quiet_periods() -> None:
    floor = 1_000.0
    sp = StrikePressure(window_ns=60 * SEC, bucket_ns=5 * SEC, recent_ns=30 * SEC, hot_usd=100_000.0)
    # 10 minutes of +-$10k per 5 s bucket, alternating
    t = 0
    for k in range(120):
        sp.add(t, BUY if k % 2 else SELL, 1, 10_000.0, floor)
        t += 5 * SEC
    quiet = sp.intraday_std(floor)
    # 12 buckets of +-$10k in a 60 s window: std = sqrt(12) * 10k
    assert quiet == pytest.approx(math.sqrt(12) * 10_000.0, rel=0.05)
    # a hot minute of $100k buys per bucket does not move it (hot buckets are left out)
    for _ in range(12):
        sp.add(t, BUY, 10, 100_000.0, floor)
        t += 5 * SEC
    assert sp.hot
    assert sp.intraday_std(floor) == pytest.approx(quiet, rel=0.1)
    # the floor applies with no history
    fresh = StrikePressure(60 * SEC, 5 * SEC, 30 * SEC, 100_000.0)
    assert fresh.intraday_std(50_000.0) == 50_000.0
