"""Confidence: ramps, the v1 tiers / premium, and the v3 ordering, MM penalties and risk."""

from __future__ import annotations

import pytest

from ifd.detection.confidence import mm_factor
from ifd.detection.confidence import ramp
from ifd.detection.confidence import risk_factor
from ifd.detection.confidence import v1_premium_confidence
from ifd.detection.confidence import v1_tier_confidence
from ifd.detection.confidence import v3_confidence
from ifd.detection.v3 import V3Params

W = V3Params().weights()


def conf(z: float = 4.0, vel: float = 1.0, size: float = 1e6, urg: float = 0.0, straddle: float = 0.0,
         crushed: bool = False, refreshed: bool = False, bid: float = 299.0, ask: float = 300.0, volume: float = 500.0) -> float:
    return v3_confidence(z, vel, size, urg, straddle, crushed, refreshed, bid, ask, volume, W)[0]


def test_ramp() -> None:
    assert ramp(1.0, 2.0, 4.0) == 0.0
    assert ramp(3.0, 2.0, 4.0) == 0.5
    assert ramp(9.0, 2.0, 4.0) == 1.0


def test_v1_confidences() -> None:
    tiers = (0.5, 0.7, 0.85)
    assert [v1_tier_confidence(t, tiers) for t in (-1, 0, 1, 2)] == [0.0, 0.5, 0.7, 0.85]
    assert v1_premium_confidence(2.9e6, 3e6, 0.6, 0.9) == 0.0
    assert v1_premium_confidence(3e6, 3e6, 0.6, 0.9) == pytest.approx(0.6)
    assert v1_premium_confidence(4.5e6, 3e6, 0.6, 0.9) == pytest.approx(0.75)
    assert v1_premium_confidence(9e6, 3e6, 0.6, 0.9) == pytest.approx(0.9)


def test_sweep_and_high_z_beat_plain_flow() -> None:
    plain = conf(z=3.5, urg=0.0)
    assert conf(z=3.5, urg=1.0) > plain  # sweep
    assert conf(z=9.0, urg=0.0) > plain  # high z
    assert conf(z=9.0, urg=1.0) > max(conf(z=3.5, urg=1.0), conf(z=9.0, urg=0.0))
    assert conf(vel=3.0) > conf(vel=0.6)  # building faster
    assert conf(size=3e6) > conf(size=6e5)  # bigger


def test_market_making_flags_reduce() -> None:
    base = conf()
    assert conf(straddle=1.0) == pytest.approx(base * (1 - W.straddle_penalty))
    assert conf(crushed=True) < base
    assert conf(refreshed=True) < base
    assert mm_factor(0.8, True, True, W) < mm_factor(0.8, False, False, W) < 1.0
    # the tuned penalty suppresses any flagged straddle: at the smallest balance that flags one
    # the confidence stays below the signal threshold whatever the other factors
    p = V3Params()
    assert conf(z=20.0, vel=5.0, size=1e7, urg=1.0) == pytest.approx(1.0)
    assert conf(z=20.0, vel=5.0, size=1e7, urg=1.0, straddle=p.straddle_min_balance) < p.min_confidence


def test_risk_adjustment_for_spread_and_liquidity() -> None:
    tight = risk_factor(299.0, 300.0, 500.0, W)
    assert tight == 1.0
    assert risk_factor(200.0, 300.0, 500.0, W) < tight  # 40% wide
    assert risk_factor(float("nan"), 300.0, 500.0, W) == risk_factor(200.0, 300.0, 500.0, W)  # no bid: widest
    assert risk_factor(299.0, 300.0, 5.0, W) < tight  # thin
    assert conf(bid=200.0) < conf()
