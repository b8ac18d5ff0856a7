"""Volume spikes: tiers 10x / 30x / 50x against a historical or an intraday baseline."""

from __future__ import annotations

import pytest

from ifd.detection.types import BUY
from ifd.detection.types import SELL
from ifd.detection.types import BaselineStats
from ifd.detection.volume import VolumeSpikes
from ifd.detection.volume import volume_tier

SEC = 1_000_000_000
C = "NQZ6 C21000.GLBX"


def stats(volume_mean: float, window_ns: int = 60 * SEC, source: str = "instrument") -> BaselineStats:
    return BaselineStats(C, source, 20, window_ns, volume_mean, 1.0, 1.0, 2.0, 5.0, 0.5, 0.1, 0.0, 1.0, 3.0)


@pytest.mark.parametrize(("ratio", "tier"), [(9.99, -1), (10.0, 0), (29.9, 0), (30.0, 1), (49.0, 1), (50.0, 2), (400.0, 2)])
def test_volume_tier(ratio: float, tier: int) -> None:
    assert volume_tier(ratio) == tier


@pytest.mark.parametrize(("contracts", "tier"), [(19, -1), (20, 0), (60, 1), (100, 2)])
def test_tiers_against_historical_baseline(contracts: int, tier: int) -> None:
    spikes = VolumeSpikes(60 * SEC, 5 * SEC, floor_contracts=1.0, warmup_ns=0)
    # historical mean: 4 contracts per 2-minute window -> 2 per our 1-minute window
    state = spikes.add(C, 10 * SEC, BUY, contracts, contracts * 9000.0, stats(4.0, 120 * SEC))
    assert state.baseline == pytest.approx(2.0)
    assert state.source == "instrument"
    assert state.tier == tier
    assert state.dominant_side == BUY


def test_intraday_baseline_excludes_current_window_and_has_floor() -> None:
    spikes = VolumeSpikes(60 * SEC, 5 * SEC, floor_contracts=5.0, warmup_ns=120 * SEC)
    t = 0
    # 10 minutes of 1 lot every 6 s: 10 lots per minute
    while t < 600 * SEC:
        state = spikes.add(C, t, BUY if (t // SEC) % 12 else SELL, 1, 9000.0)
        t += 6 * SEC
    assert state.source == "intraday"
    assert state.baseline == pytest.approx(10.0, rel=0.1)
    # a 300-lot sell burst: 300+ lots in the window vs 10 per window -> tier 30x
    state = spikes.add(C, t, SELL, 300, 300 * 9000.0)
    assert state.ratio == pytest.approx(310 / 10.0, rel=0.1)
    assert state.tier == 1
    assert state.dominant_side == SELL
    # a quiet strike: baseline floored at 5 contracts
    quiet = spikes.add("NQZ6 C21500.GLBX", t, BUY, 60, 60 * 500.0)
    assert quiet.baseline == 5.0
    assert quiet.tier == 0  # 60 / 5 = 12x


def test_no_intraday_tier_during_warmup() -> None:
    spikes = VolumeSpikes(60 * SEC, 5 * SEC, floor_contracts=5.0, warmup_ns=300 * SEC)
    state = spikes.add(C, 0, BUY, 500, 500 * 9000.0)
    assert state.source == "warmup"
    assert state.ratio >= 50
    assert state.tier == -1
    # after the warm-up the first spike is history: the same size again is only ~4x
    state = spikes.add(C, 301 * SEC, BUY, 500, 500 * 9000.0)
    assert state.source == "intraday" and state.ratio == pytest.approx(4.0, rel=0.05) and state.tier == -1
    # a strike with no history after the warm-up: floor baseline, 100x
    state = spikes.add("NQZ6 C21500.GLBX", 302 * SEC, BUY, 500, 500 * 500.0)
    assert state.source == "intraday" and state.tier == 2
