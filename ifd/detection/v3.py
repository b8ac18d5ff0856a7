"""IFD v3: multi-factor detection of directional options flow, with market-making filters.

Per option trade (the future only sets the underlying price):

1. initiation: the feed's aggressor side, the book's when the feed has none (``initiation``);
2. state updates: match event (levels swept), strike sweep / cross-strike timing, straddle legs,
   leg mids (crush), the strike's pressure window;
3. gates, all in the direction of the trade's side (only a trade *with* the flow can trigger):
   the strike's window net premium >= ``min_net_premium_usd`` - or, for a cluster of adjacent
   strikes (same expiry and right, +-``cluster_strikes``), the strike's own >=
   ``min_cluster_own_usd`` and the cluster's >= ``min_cluster_net_usd``; the strike's pressure
   (share of its window volume on that side) >= ``min_pressure``; the net premium of the
   last ``recent_ns`` (the cluster's on the cluster path) >= ``min_recent_net_usd`` and the
   velocity >= ``min_velocity`` (the flow is still running, not an old window's memory);
   pressure z-score vs the baseline >=
   ``min_z``, and the recent net premium's z-score against the same baseline scaled to
   ``recent_ns`` >= ``min_recent_z`` (fresh flow beyond the strike's usual noise);
4. confidence (``confidence.v3_confidence``): z, velocity, size (the strike's window net
   premium plus its neighbours' in the same direction: a cluster's flow counts as one),
   urgency (levels / strikes swept, neighbours with the same flow), reduced by straddle
   (call and put of the strike traded the same way in balanced size), vol-crush and MM-refresh
   flags, then by spread width and liquidity; a detection when >= ``min_confidence``;
5. one detection per instrument and side per ``cooldown_ns``.

Baseline of the z-score (reported in each detection as ``baseline=<source>``): a provider's
``BaselineStats`` for the instrument (``source`` "instrument" or "moneyness"), scaled from its
``window_ns`` to ours; otherwise (no provider, or it has nothing) the strike's intraday
quiet-period baseline (``pressure.StrikePressure.intraday_std``, floored): "intraday".
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ifd.detection.confidence import V3Weights
from ifd.detection.confidence import v3_confidence
from ifd.detection.initiation import InitiationStats
from ifd.detection.params import params_from_dict
from ifd.detection.premium import MatchEvents
from ifd.detection.premium import format_usd
from ifd.detection.pressure import ChainPressure
from ifd.detection.straddles import MM_REFRESH
from ifd.detection.straddles import CrossStrikeTiming
from ifd.detection.straddles import StraddleMonitor
from ifd.detection.straddles import VolCrush
from ifd.detection.sweeps import StrikeSweeps
from ifd.detection.sweeps import urgency as sweep_urgency
from ifd.detection.types import BUY
from ifd.detection.types import UNKNOWN
from ifd.detection.types import BaselineStats
from ifd.detection.types import Detection
from ifd.detection.types import InstrumentInfo
from ifd.detection.types import TradeEvent

SEC = 1_000_000_000
MS = 1_000_000
ALGORITHM = "ifd_v3"


@dataclass(frozen=True, slots=True)
class V3Params:
    """Every threshold of IFD v3 (see ``configs/profiles/ifd_v3.toml``)."""

    # pressure windows
    window_ns: int = 300 * SEC
    bucket_ns: int = 5 * SEC
    recent_ns: int = 60 * SEC
    # gates
    min_net_premium_usd: float = 1_000_000.0
    cluster_strikes: int = 1
    min_cluster_own_usd: float = 300_000.0
    min_cluster_net_usd: float = 1_250_000.0
    min_pressure: float = 0.6
    min_recent_net_usd: float = 200_000.0
    min_velocity: float = 1.3
    min_z: float = 4.0
    min_recent_z: float = 3.0
    # intraday baseline
    hot_usd: float = 250_000.0
    intraday_floor_std_usd: float = 50_000.0
    clip_sigmas: float = 4.0
    baseline_refresh_ns: int = 300 * SEC
    # market-making filters
    straddle_window_ns: int = 300 * SEC
    straddle_bucket_ns: int = 10 * SEC
    straddle_min_leg_volume: float = 50.0
    straddle_min_balance: float = 0.6
    crush_window_ns: int = 300 * SEC
    crush_sample_ns: int = 5 * SEC
    crush_min_span_ns: int = 60 * SEC
    crush_min_drop: float = 0.03
    cross_strike_window_ns: int = 2 * MS
    cross_strike_min_strikes: int = 3
    mm_refresh_memory_ns: int = 10 * SEC
    # urgency
    sweep_levels_full: int = 3
    sweep_strikes_full: int = 3
    cluster_full_usd: float = 1_000_000.0
    # confidence
    z_lo: float = 2.0
    z_hi: float = 8.0
    velocity_lo: float = 0.5
    velocity_hi: float = 3.0
    size_lo_usd: float = 500_000.0
    size_hi_usd: float = 3_000_000.0
    w_z: float = 0.4
    w_velocity: float = 0.2
    w_size: float = 0.25
    w_urgency: float = 0.15
    straddle_penalty: float = 1.0
    crush_penalty: float = 0.3
    refresh_penalty: float = 0.3
    spread_ok: float = 0.05
    spread_wide: float = 0.25
    spread_penalty: float = 0.5
    liquidity_full_volume: float = 50.0
    liquidity_penalty: float = 0.3
    min_confidence: float = 0.45
    cooldown_ns: int = 120 * SEC

    def __post_init__(self) -> None:
        if not 0 < self.bucket_ns <= self.recent_ns <= self.window_ns:
            raise ValueError("need 0 < bucket_ns <= recent_ns <= window_ns")
        if self.cluster_strikes < 0:
            raise ValueError("cluster_strikes must be >= 0")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> V3Params:
        """From a profile's ``[detector]`` table; unknown keys raise ValueError naming the key."""
        return params_from_dict(cls, d)

    def weights(self) -> V3Weights:
        """The confidence settings."""
        return V3Weights(
            z_lo=self.z_lo,
            z_hi=self.z_hi,
            velocity_lo=self.velocity_lo,
            velocity_hi=self.velocity_hi,
            size_lo_usd=self.size_lo_usd,
            size_hi_usd=self.size_hi_usd,
            w_z=self.w_z,
            w_velocity=self.w_velocity,
            w_size=self.w_size,
            w_urgency=self.w_urgency,
            straddle_penalty=self.straddle_penalty,
            crush_penalty=self.crush_penalty,
            refresh_penalty=self.refresh_penalty,
            spread_ok=self.spread_ok,
            spread_wide=self.spread_wide,
            spread_penalty=self.spread_penalty,
            liquidity_full_volume=self.liquidity_full_volume,
            liquidity_penalty=self.liquidity_penalty,
        )


class _Option:
    """What v3 precomputes per option instrument."""

    __slots__ = ("expiry_key", "group_key", "info", "is_call", "multiplier", "neighbors", "strike", "strike_key")

    def __init__(self, info: InstrumentInfo) -> None:
        self.info = info
        self.multiplier = info.multiplier
        self.is_call = info.kind == "CALL"
        self.strike = info.strike
        self.expiry_key = (info.underlying, info.expiration_ns)
        self.group_key = (info.underlying, info.expiration_ns, info.kind)
        self.strike_key = (info.underlying, info.expiration_ns, info.strike)
        self.neighbors: tuple[str, ...] = ()


def _chain(instruments: Mapping[str, InstrumentInfo], cluster_strikes: int) -> dict[str, _Option]:
    """Options with their neighbours (same underlying, expiry and right, +-cluster_strikes strikes)."""
    options = {iid: _Option(info) for iid, info in instruments.items() if info.kind in ("CALL", "PUT")}
    groups: dict[tuple, list[_Option]] = {}
    for opt in options.values():
        groups.setdefault(opt.group_key, []).append(opt)
    for members in groups.values():
        members.sort(key=lambda o: o.strike)
        for k, opt in enumerate(members):
            lo, hi = max(0, k - cluster_strikes), min(len(members), k + cluster_strikes + 1)
            opt.neighbors = tuple(m.info.instrument_id for m in members[lo:hi] if m is not opt)
    return options


class V3Detector:
    """IFD v3 over a stream of ``TradeEvent``s (``on_trade`` per trade, ``quality()`` any time)."""

    def __init__(
        self,
        params: V3Params,
        instruments: Mapping[str, InstrumentInfo],
        baselines: Any = None,
    ) -> None:
        p = params
        self.params = p
        self.instruments = instruments
        self.baselines = baselines
        self._weights = p.weights()
        self._options = _chain(instruments, p.cluster_strikes)
        self.initiation = InitiationStats()
        self.matches = MatchEvents()
        self.pressure = ChainPressure(p.window_ns, p.bucket_ns, p.recent_ns, p.hot_usd, p.clip_sigmas)
        self.straddles = StraddleMonitor(
            p.straddle_window_ns,
            p.straddle_bucket_ns,
            p.straddle_min_leg_volume,
            p.straddle_min_balance,
        )
        self.crush = VolCrush(p.crush_window_ns, p.crush_sample_ns, p.crush_min_span_ns, p.crush_min_drop)
        self.cross = CrossStrikeTiming(p.cross_strike_window_ns, p.cross_strike_min_strikes)
        self.strike_sweeps = StrikeSweeps(p.cross_strike_window_ns)
        self.underlying_price: float | None = None
        self._cooldown_until: dict[tuple[str, int], int] = {}
        self._last_refresh: dict[str, int] = {}
        self._baseline_cache: dict[str, tuple[int, BaselineStats | None]] = {}
        self._baseline_source: dict[str, str] = {}
        self.detections = 0
        self.detections_by_baseline: Counter[str] = Counter()
        self.candidates = 0  # trades that passed the premium gates (for tuning / diagnostics)
        self.baseline_errors = 0

    # --- baselines -----------------------------------------------------------------------------

    def _baseline(self, info: InstrumentInfo, now_ns: int) -> BaselineStats | None:
        """The provider's stats for ``info`` (cached ``baseline_refresh_ns``), None for intraday."""
        if self.baselines is None:
            self._baseline_source[info.instrument_id] = "intraday"
            return None
        cached = self._baseline_cache.get(info.instrument_id)
        if cached is not None and now_ns - cached[0] < self.params.baseline_refresh_ns:
            return cached[1]
        try:
            stats = self.baselines.get(info, self.underlying_price)
        except Exception:  # a broken provider must not stop detection: intraday, counted
            self.baseline_errors += 1
            stats = None
        if stats is not None and not (stats.window_ns > 0 and stats.net_premium_std >= 0):
            stats = None
        self._baseline_cache[info.instrument_id] = (now_ns, stats)
        self._baseline_source[info.instrument_id] = stats.source if stats is not None else "intraday"
        return stats

    def _window_baseline(self, opt: _Option, side: int, now_ns: int, intraday_std: float) -> tuple[float, float, str]:
        """(mean, std, source) of the window's net premium in the direction of ``side``."""
        p = self.params
        stats = self._baseline(opt.info, now_ns)
        if stats is None:
            return 0.0, intraday_std, "intraday"
        scale = p.window_ns / stats.window_ns
        mean = stats.net_premium_mean * scale * (1.0 if side == BUY else -1.0)
        std = max(stats.net_premium_std * math.sqrt(scale), p.intraday_floor_std_usd)
        return mean, std, stats.source

    # --- per trade -----------------------------------------------------------------------------

    def on_trade(self, trade: TradeEvent) -> list[Detection]:
        """Update with one trade; returns the detections it triggers (usually none)."""
        side = self.initiation.classify(trade.price, trade.feed_side, trade.best_bid, trade.best_ask)
        opt = self._options.get(trade.instrument_id)
        if opt is None:
            info = self.instruments.get(trade.instrument_id)
            if info is not None and info.kind == "FUT":
                self.underlying_price = trade.price
            return []
        p = self.params
        ts = trade.ts_event
        iid = trade.instrument_id
        size = trade.size
        notional = trade.price * opt.multiplier * size
        # state updates
        self.straddles.add(opt.strike_key, opt.is_call, ts, side, size)
        self.crush.add(opt.strike_key, opt.is_call, ts, trade.best_bid, trade.best_ask)
        label, _n = self.cross.add(opt.expiry_key, ts, opt.strike, opt.is_call, side, iid)
        if label == MM_REFRESH:  # every instrument of that millisecond cluster
            for member in self.cross.members(opt.expiry_key):
                self._last_refresh[member] = ts
        sp = self.pressure.get(iid)
        sp.add(ts, side, size, notional, p.intraday_floor_std_usd)
        if side == UNKNOWN:
            return []
        event = self.matches.add(iid, ts, side, trade.price, size, notional)
        strikes = self.strike_sweeps.add(opt.group_key, ts, opt.strike, side)
        # gates (cheapest first)
        own = sp.directional_net(side)
        if own < p.min_cluster_own_usd and own < p.min_net_premium_usd:
            return []
        if ts < self._cooldown_until.get((iid, side), -1):
            return []
        cluster = own
        helpers: list[str] = []  # neighbours with net premium in the same direction
        for nid in opt.neighbors:
            other = self.pressure.directional_net_at(nid, ts, side)
            if other > 0:
                cluster += other
                helpers.append(nid)
        on_cluster = own < p.min_net_premium_usd
        if on_cluster and not (own >= p.min_cluster_own_usd and cluster >= p.min_cluster_net_usd):
            return []
        st = sp.state(ts, side)
        recent = st.recent_net
        if on_cluster:  # a cluster's flow is still running when the cluster's recent net is
            for nid in helpers:
                other = self.pressure.recent_directional_at(nid, ts, side)
                if other > 0:
                    recent += other
        if (
            st.directional_share < p.min_pressure
            or recent < p.min_recent_net_usd
            or st.velocity < p.min_velocity
        ):
            return []
        self.candidates += 1
        mean, std, source = self._window_baseline(opt, side, ts, sp.intraday_std(p.intraday_floor_std_usd))
        z = (st.directional_net - mean) / std
        if z < p.min_z:
            return []
        share = p.recent_ns / p.window_ns  # the same baseline scaled to the recent sub-window
        recent_z = (st.recent_net - mean * share) / (std * math.sqrt(share))
        if recent_z < p.min_recent_z:
            return []
        # confidence
        urg = sweep_urgency(event.levels, strikes, p.sweep_levels_full, p.sweep_strikes_full)
        coord = (cluster - own) / p.cluster_full_usd if p.cluster_full_usd > 0 else 0.0
        urgency = max(urg, min(coord, 1.0))
        straddle = self.straddles.state(opt.strike_key, ts, side)
        crushed = self.crush.crushed(opt.strike_key, ts)
        refreshed = ts - self._last_refresh.get(iid, -(1 << 62)) <= p.mm_refresh_memory_ns
        window_volume = st.buy_volume + st.sell_volume
        conf, parts = v3_confidence(
            z,
            st.velocity,
            cluster,  # size: the strike's net premium plus its same-direction neighbours'
            urgency,
            straddle.score,
            crushed,
            refreshed,
            trade.best_bid,
            trade.best_ask,
            window_volume,
            self._weights,
        )
        if conf < p.min_confidence:
            return []
        self._cooldown_until[(iid, side)] = ts + p.cooldown_ns
        self.detections += 1
        self.detections_by_baseline[source] += 1
        pct = st.directional_share * 100
        reasons = [
            f"pressure z={z:.1f}",
            f"net premium {format_usd(st.directional_net)}",
            f"pressure {pct:.0f}% {'buy' if side == BUY else 'sell'}",
            f"velocity {st.velocity:.1f}",
        ]
        if event.levels > 1:
            reasons.append(f"sweep {event.levels} levels")
        if strikes > 1:
            reasons.append(f"strike sweep {strikes} strikes")
        if cluster > own:
            reasons.append(f"cluster {format_usd(cluster)}")
        if straddle.flagged:
            reasons.append(f"straddle balance {straddle.balance:.2f}")
        if crushed:
            reasons.append("vol crush")
        if refreshed:
            reasons.append("mm refresh")
        reasons.append(f"baseline={source}")
        return [
            Detection(
                algorithm=ALGORITHM,
                instrument_id=iid,
                ts_event=ts,
                side=side,
                confidence=round(conf, 4),
                notional_usd=round(st.directional_net, 2),
                window_start_ns=int(st.window_start_ns),
                reasons=tuple(reasons),
                factors={
                    "z": round(z, 3),
                    "velocity": round(st.velocity, 3),
                    "recent_z": round(recent_z, 3),
                    "pressure": round(st.directional_share, 4),
                    "imbalance_z": round(st.imbalance_z, 3),
                    "net_premium": round(st.directional_net, 2),
                    "recent_net": round(recent, 2),
                    "cluster_net": round(cluster, 2),
                    "urgency": round(urgency, 3),
                    "straddle": round(straddle.score, 3),
                    "crush": 1.0 if crushed else 0.0,
                    "mm_refresh": 1.0 if refreshed else 0.0,
                    "base": round(parts["base"], 4),
                    "mm": round(parts["mm"], 4),
                    "risk": round(parts["risk"], 4),
                },
            )
        ]

    def quality(self) -> dict:
        """Data quality and baseline use: initiation agreement, trades, unknown initiation,
        baseline sources (instruments per source at their last lookup), detections."""
        q = self.initiation.as_dict()
        q["baseline_sources"] = dict(Counter(self._baseline_source.values()))
        q["detections"] = self.detections
        q["detections_by_baseline"] = dict(self.detections_by_baseline)
        q["candidates"] = self.candidates
        q["baseline_errors"] = self.baseline_errors
        q["underlying_price"] = self.underlying_price
        return q
