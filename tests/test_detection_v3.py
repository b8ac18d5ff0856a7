"""IFD v3 on hand-made trade streams: finds one-sided flow, filters straddles, cooldown,
never the future, baselines vs the intraday fallback, quality figures, params."""

from __future__ import annotations

import dataclasses
import itertools
import tomllib
from pathlib import Path

import pytest

from ifd.detection.types import BUY
from ifd.detection.types import SELL
from ifd.detection.types import BaselineStats
from ifd.detection.types import InstrumentInfo
from ifd.detection.v3 import V3Detector
from ifd.detection.v3 import V3Params
from tests.support.trade_events import SEC
from tests.support.trade_events import background
from tests.support.trade_events import child_orders
from tests.support.trade_events import merged
from tests.support.trade_events import small_chain
from tests.support.trade_events import trade

PROFILE = Path(__file__).resolve().parents[1] / "configs" / "profiles" / "ifd_v3.toml"
CALL = "QN4X6 C21000.GLBX"
PUT = "QN4X6 P21000.GLBX"
START, END = 600 * SEC, 840 * SEC  # the planted flow: 4 minutes


def run(det: V3Detector, events) -> list:
    return [d for e in events for d in det.on_trade(e)]


def institutional(side: int = BUY, instrument: str = CALL, end: int = END, **kw) -> list:
    """10 minutes of background, then ~$4M of one-sided child orders on one option."""
    chain = small_chain()
    return merged(background(chain, 0, end + 300 * SEC), child_orders(instrument, START, end, side, **kw))


class Provider:
    """A baseline provider with stats for some instruments only."""

    def __init__(self, stats: dict[str, BaselineStats]) -> None:
        self.stats = stats
        self.calls: list[tuple[str, float | None]] = []

    def get(self, info: InstrumentInfo, underlying_price: float | None) -> BaselineStats | None:
        self.calls.append((info.instrument_id, underlying_price))
        return self.stats.get(info.instrument_id)


def stats(iid: str, source: str, net_std: float) -> BaselineStats:
    return BaselineStats(iid, source, 20, 60 * SEC, 50.0, 20.0, 40.0, 90.0, 200.0, 0.5, 0.15, 0.0, net_std, 4 * net_std)


def test_profile_holds_every_parameter() -> None:
    table = tomllib.loads(PROFILE.read_text())["detector"]
    assert set(table) == set(V3Params.__dataclass_fields__)
    assert V3Params.from_dict(table) == V3Params()
    with pytest.raises(ValueError, match="min_zz"):
        V3Params.from_dict({"min_zz": 3.0})
    with pytest.raises(ValueError):
        V3Params.from_dict({"recent_ns": 1, "bucket_ns": 5})


@pytest.mark.parametrize("side", [BUY, SELL])
def test_finds_one_sided_flow_with_the_right_side(side: int) -> None:
    det = V3Detector(V3Params(), small_chain())
    found = run(det, institutional(side))
    assert found, "one-sided $4M flow must be detected"
    assert {d.instrument_id for d in found} == {CALL}
    assert {d.side for d in found} == {side}
    first = found[0]
    assert START <= first.ts_event <= END
    assert first.algorithm == "ifd_v3"
    assert first.notional_usd >= V3Params().min_net_premium_usd
    assert START - V3Params().window_ns <= first.window_start_ns <= first.ts_event
    assert 0.45 <= first.confidence <= 1.0
    assert any(r.startswith("pressure z=") for r in first.reasons)
    assert any(r.startswith("net premium $") for r in first.reasons)
    assert "baseline=intraday" in first.reasons


def test_background_alone_gives_nothing() -> None:
    chain = small_chain()
    det = V3Detector(V3Params(), chain)
    assert run(det, background(chain, 0, 1800 * SEC, every_ns=SEC)) == []


def test_two_sided_heavy_flow_gives_nothing() -> None:
    chain = small_chain()
    buys = child_orders(CALL, START, END, BUY, size=15)
    sells = child_orders(CALL, START + 2 * SEC, END, SELL, size=15)
    det = V3Detector(V3Params(), chain)
    assert run(det, merged(background(chain, 0, END + 300 * SEC), buys, sells)) == []


def test_cooldown_limits_but_allows_resignal() -> None:
    p = V3Params()
    det = V3Detector(p, small_chain())
    # a long, accelerating episode: 12 minutes, child size growing in 3 steps
    events = merged(
        background(small_chain(), 0, 1800 * SEC),
        child_orders(CALL, START, START + 240 * SEC, BUY, size=12),
        child_orders(CALL, START + 240 * SEC, START + 480 * SEC, BUY, size=30),
        child_orders(CALL, START + 480 * SEC, START + 720 * SEC, BUY, size=60),
    )
    found = run(det, events)
    times = [d.ts_event for d in found]
    assert len(found) >= 2, "a long episode re-signals after the cooldown"
    assert len(found) <= 720 * SEC // p.cooldown_ns + 1
    assert all(b - a >= p.cooldown_ns for a, b in itertools.pairwise(times))


def test_straddle_legs_traded_together_are_marked_and_discounted() -> None:
    chain = small_chain()
    p = dataclasses.replace(V3Params(), min_confidence=0.0, cooldown_ns=10**15)
    plain = run(V3Detector(p, chain), institutional(BUY, sweep_every=0))
    legs = merged(
        background(chain, 0, END + 300 * SEC),
        child_orders(CALL, START, END, BUY, sweep_every=0),
        child_orders(PUT, START + 200_000, END, BUY, price=280.0, sweep_every=0),  # the put 200 us later
    )
    straddle = [d for d in run(V3Detector(p, chain), legs) if d.instrument_id == CALL]
    assert plain and straddle
    assert any(r.startswith("straddle balance") for r in straddle[0].reasons)
    assert straddle[0].factors["straddle"] > 0.8
    assert straddle[0].confidence < 0.5 * plain[0].confidence
    # with the tuned minimum confidence the straddle is not reported at all
    assert [d for d in run(V3Detector(V3Params(), chain), legs) if d.instrument_id == CALL] == []


@pytest.mark.parametrize("side", [SELL, BUY])
def test_same_direction_balanced_straddle_within_five_minutes_is_suppressed(side: int) -> None:
    """A vol trader sells (or buys) the call and the put of one strike together, $4M a leg,
    the put leg 1-3 s after the call: large one-sided premium on each option, no direction."""
    chain = small_chain()
    calls = child_orders(CALL, START, END, side, sweep_every=0)
    puts = [dataclasses.replace(e, ts_event=e.ts_event + (1 + k % 3) * SEC, ts_init=e.ts_init + (1 + k % 3) * SEC)
            for k, e in enumerate(child_orders(PUT, START, END, side, price=280.0, sweep_every=0))]
    events = merged(background(chain, 0, END + 300 * SEC), calls, puts)
    assert run(V3Detector(V3Params(), chain), events) == []
    # with the minimum confidence opened, both legs show up marked as a straddle
    p = dataclasses.replace(V3Params(), min_confidence=0.0)
    marked = run(V3Detector(p, chain), events)
    assert {d.instrument_id for d in marked} == {CALL, PUT}
    assert all(any(r.startswith("straddle balance") for r in d.reasons) for d in marked)
    assert all(d.confidence < V3Params().min_confidence for d in marked)
    # the call leg alone is directional flow and is found
    alone = run(V3Detector(V3Params(), chain), merged(background(chain, 0, END + 300 * SEC), calls))
    assert alone and {d.side for d in alone} == {side}


def test_one_sided_call_buying_with_two_sided_put_activity_is_not_suppressed() -> None:
    chain = small_chain()
    puts = [trade(PUT, t, 280.0, 5, BUY if k % 2 else SELL) for k, t in enumerate(range(START + 3 * SEC, END, 4 * SEC))]
    found = run(V3Detector(V3Params(), chain), merged(institutional(BUY, sweep_every=0), puts))
    calls = [d for d in found if d.instrument_id == CALL]
    assert calls and {d.side for d in calls} == {BUY}
    assert calls[0].factors["straddle"] == 0.0
    assert not any(d.instrument_id == PUT for d in found)


def test_unbalanced_call_put_pair_is_not_suppressed() -> None:
    """Calls bought 15 lots at a time, a 3-lot put alongside: a call buyer with a small hedge."""
    chain = small_chain()
    legs = merged(
        background(chain, 0, END + 300 * SEC),
        child_orders(CALL, START, END, BUY, size=15, sweep_every=0),
        child_orders(PUT, START + 300_000, END, BUY, size=3, price=280.0, sweep_every=0),
    )
    found = [d for d in run(V3Detector(V3Params(), chain), legs) if d.instrument_id == CALL]
    assert found and {d.side for d in found} == {BUY}
    assert found[0].factors["straddle"] == 0.0
    assert not any(r.startswith("straddle") for r in found[0].reasons)


def test_cluster_of_adjacent_strikes_below_the_strike_threshold_is_found() -> None:
    """$0.7M per 5 minutes on each of three adjacent calls: no strike reaches $1M, the cluster does."""
    chain = small_chain()
    strikes = ("QN4X6 C20975.GLBX", CALL, "QN4X6 C21025.GLBX")
    flow = [child_orders(iid, START + k * 1_500_000_000, START + 600 * SEC, BUY, size=2, sweep_every=0)
            for k, iid in enumerate(strikes)]
    events = merged(background(chain, 0, START + 900 * SEC), *flow)
    found = run(V3Detector(V3Params(), chain), events)
    assert found and {d.side for d in found} == {BUY}
    assert {d.instrument_id for d in found} <= set(strikes)
    assert all(d.notional_usd < V3Params().min_net_premium_usd for d in found)
    assert any(r.startswith("cluster $") for r in found[0].reasons)
    # one strike with the same flow is not enough
    single = run(V3Detector(V3Params(), chain), merged(background(chain, 0, START + 900 * SEC), flow[1]))
    assert single == []


def test_strike_sweep_raises_confidence_over_plain_flow() -> None:
    chain = small_chain()
    p = dataclasses.replace(V3Params(), min_confidence=0.0)
    plain = run(V3Detector(p, chain), institutional(BUY, sweep_every=0))
    swept = merged(
        background(chain, 0, END + 300 * SEC),
        child_orders(CALL, START, END, BUY, sweep_every=0),
        # the same aggressor takes the next strike 300 us before each call order
        child_orders("QN4X6 C21025.GLBX", START - 300_000, END, BUY, price=280.0, sweep_every=0),
    )
    sweep = [d for d in run(V3Detector(p, chain), swept) if d.instrument_id == CALL]
    assert any(r.startswith("strike sweep") for r in sweep[0].reasons)
    assert sweep[0].factors["urgency"] > plain[0].factors["urgency"]
    assert sweep[0].confidence > plain[0].confidence


def test_never_signals_on_the_future_and_tracks_it() -> None:
    chain = small_chain()
    det = V3Detector(V3Params(), chain)
    fut = [trade("NQZ6.GLBX", START + k * SEC + 3, 21010.0, 400, BUY, spread=0.25) for k in range(300)]
    assert run(det, merged(background(chain, 0, END), fut)) == []
    assert det.underlying_price == 21010.0


def test_unknown_instruments_are_ignored() -> None:
    det = V3Detector(V3Params(), small_chain())
    assert det.on_trade(trade("ESZ6 C6000.GLBX", SEC, 10.0, 5000, BUY)) == []


def test_baseline_provider_vs_intraday_fallback() -> None:
    chain = small_chain()
    events = institutional(BUY)
    # the provider knows this instrument (a typical window std of $40k): baseline=instrument
    prov = Provider({CALL: stats(CALL, "instrument", 40_000.0)})
    det = V3Detector(V3Params(), chain, baselines=prov)
    found = run(det, events)
    assert found and "baseline=instrument" in found[0].reasons
    assert all(iid in chain for iid, _ in prov.calls)
    assert prov.calls[-1][1] is not None  # the underlying price from the future's trades
    q = det.quality()
    assert q["baseline_sources"].get("instrument") == 1
    assert q["baseline_sources"].get("intraday", 0) >= 0
    # similar strikes' stats: baseline=moneyness
    det = V3Detector(V3Params(), chain, baselines=Provider({CALL: stats(CALL, "moneyness", 40_000.0)}))
    assert "baseline=moneyness" in run(det, events)[0].reasons
    # provider without stats for it, or no provider: intraday
    det = V3Detector(V3Params(), chain, baselines=Provider({}))
    assert "baseline=intraday" in run(det, events)[0].reasons
    assert det.quality()["baseline_sources"] == {"intraday": 1}
    # a provider saying this strike routinely sees $5M swings: the same flow is no longer unusual
    det = V3Detector(V3Params(), chain, baselines=Provider({CALL: stats(CALL, "instrument", 5_000_000.0)}))
    assert run(det, events) == []


def test_quality_figures() -> None:
    chain = small_chain()
    det = V3Detector(V3Params(), chain)
    events = institutional(BUY)
    # two trades the feed cannot classify: one at the ask (book says buy), one inside
    events.append(trade(CALL, END + 400 * SEC, 300.0, 1, 0, bid=299.0, ask=300.0))
    events.append(trade(CALL, END + 401 * SEC, 299.5, 1, 0, bid=299.0, ask=300.0))
    run(det, events)
    q = det.quality()
    assert q["trades_seen"] == len(events)
    assert q["agreement_rate"] == 1.0
    assert q["unknown_initiation"] == 1
    assert q["detections"] >= 1
    assert q["baseline_sources"] == {"intraday": 1}


def test_mm_refresh_across_strikes_is_marked_and_discounted() -> None:
    chain = small_chain()
    p = dataclasses.replace(V3Params(), min_confidence=0.0, cooldown_ns=10**15)
    plain = run(V3Detector(p, chain), institutional(BUY, sweep_every=0))
    # each call order lands within a millisecond of two-sided trades on two other strikes
    refresh = []
    for t in range(START, END, 5 * SEC):
        refresh.append(trade("QN4X6 C20975.GLBX", t + 7 - 400_000, 320.0, 2, SELL))
        refresh.append(trade("QN4X6 P21025.GLBX", t + 7 - 200_000, 290.0, 2, BUY))
    events = merged(background(chain, 0, END + 300 * SEC), child_orders(CALL, START, END, BUY, sweep_every=0), refresh)
    marked = [d for d in run(V3Detector(p, chain), events) if d.instrument_id == CALL]
    assert "mm refresh" in marked[0].reasons
    assert marked[0].confidence < plain[0].confidence


def test_failing_baseline_provider_falls_back_to_intraday() -> None:
    class Broken:
        def get(self, info, underlying_price):
            raise RuntimeError("no catalog")

    det = V3Detector(V3Params(), small_chain(), baselines=Broken())
    found = run(det, institutional(BUY))
    assert found and "baseline=intraday" in found[0].reasons
    assert det.quality()["baseline_errors"] >= 1
