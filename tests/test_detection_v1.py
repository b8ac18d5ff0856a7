"""IFD v1: params from a profile, volume tiers, premium flag, cooldown, never the future."""

from __future__ import annotations

import itertools
import tomllib
from pathlib import Path

import pytest

from ifd.detection.types import BUY
from ifd.detection.types import SELL
from ifd.detection.v1 import V1Detector
from ifd.detection.v1 import V1Params
from tests.support.trade_events import SEC
from tests.support.trade_events import background
from tests.support.trade_events import child_orders
from tests.support.trade_events import merged
from tests.support.trade_events import small_chain
from tests.support.trade_events import trade

PROFILE = Path(__file__).resolve().parents[1] / "configs" / "profiles" / "ifd_v1.toml"
CALL = "QN4X6 C21000.GLBX"
FAR = "QN4X6 C21050.GLBX"


def run(det: V1Detector, events) -> list:
    return [d for e in events for d in det.on_trade(e)]


def test_profile_holds_every_parameter() -> None:
    table = tomllib.loads(PROFILE.read_text())["detector"]
    params = V1Params.from_dict(table)
    assert set(table) == set(V1Params.__dataclass_fields__)
    assert params == V1Params()  # the defaults are the tuned profile


def test_unknown_key_is_rejected_by_name() -> None:
    with pytest.raises(ValueError, match="premium_treshold_usd"):
        V1Params.from_dict({"premium_treshold_usd": 1.0})
    with pytest.raises(ValueError):
        V1Params.from_dict({"tier_multiples": [30, 10, 50]})


def test_volume_spike_tiers_on_quiet_strike() -> None:
    chain = small_chain()
    det = V1Detector(V1Params(premium_threshold_usd=1e12), chain)
    quiet = background(chain, 0, 600 * SEC, every_ns=5 * SEC)
    assert run(det, quiet) == []
    # 600 lots sold on one strike within a minute: far above any baseline (floor included)
    burst = [trade(FAR, 600 * SEC + k * SEC, 100.0, 30, SELL) for k in range(20)]
    found = run(det, burst)
    assert len(found) == 1  # cooldown: one signal for the episode so far
    d = found[0]
    assert d.side == SELL and d.instrument_id == FAR and d.algorithm == "ifd_v1"
    assert any(r.startswith("volume ") and r.endswith("x baseline") for r in d.reasons)
    assert "baseline=intraday" in d.reasons
    assert d.confidence in V1Params().tier_confidences


def test_premium_in_one_order_and_in_a_burst() -> None:
    chain = small_chain()
    det = V1Detector(V1Params(tier_multiples=(1e9, 2e9, 3e9)), chain)
    # one order sweeping three levels for $3.3M
    sweep = [trade(CALL, 10 * SEC, 1000.0 + 0.25 * k, 55, BUY) for k in range(3)]
    found = run(det, sweep)
    assert [d.side for d in found] == [BUY]
    assert "in one order" in found[0].reasons[0]
    # a burst of sells adding up to $3M+ within the burst window
    det = V1Detector(V1Params(tier_multiples=(1e9, 2e9, 3e9)), chain)
    sells = child_orders(CALL, 0, 200 * SEC, SELL, size=20, price=400.0, every_ns=5 * SEC, sweep_every=0)
    found = run(det, sells)
    assert found and all(d.side == SELL for d in found)
    assert "burst" in found[0].reasons[0] and found[0].notional_usd >= 3e6


def test_cooldown_allows_resignal_later() -> None:
    chain = small_chain()
    p = V1Params(tier_multiples=(1e9, 2e9, 3e9), cooldown_ns=60 * SEC)
    det = V1Detector(p, chain)
    buys = child_orders(CALL, 0, 600 * SEC, BUY, size=40, price=500.0, every_ns=2 * SEC, sweep_every=0)
    found = run(det, buys)
    times = [d.ts_event for d in found]
    assert len(found) >= 3
    assert all(b - a >= p.cooldown_ns for a, b in itertools.pairwise(times))


def test_never_signals_on_the_future() -> None:
    chain = small_chain()
    det = V1Detector(V1Params(), chain)
    fut = [trade("NQZ6.GLBX", 400 * SEC + k * SEC, 21000.0, 500, BUY, spread=0.25) for k in range(60)]
    assert run(det, merged(background(chain, 0, 400 * SEC), fut)) == []
    assert det.underlying_price == 21000.0
