"""IFD v1: dead simple. Volume spikes in tiers, and big premium in one order or a short burst.

For every option trade (never the future):

* volume: the instrument's rolling volume over ``volume_window_ns`` against its baseline
  (historical ``volume_mean`` when a baseline provider has one, else intraday, floored);
  at 10x / 30x / 50x a signal on the side with more volume in the window, confidence per tier;
* premium: the premium of this trade's match event (one aggressive order, all its levels) or
  of the same-side burst over ``burst_window_ns`` reaching ``premium_threshold_usd``; a signal
  on the trade's side.

One signal per instrument and side per ``cooldown_ns``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ifd.detection.confidence import v1_premium_confidence
from ifd.detection.confidence import v1_tier_confidence
from ifd.detection.initiation import InitiationStats
from ifd.detection.params import params_from_dict
from ifd.detection.premium import BurstPremium
from ifd.detection.premium import MatchEvents
from ifd.detection.premium import format_usd
from ifd.detection.premium import premium_flag
from ifd.detection.types import BUY
from ifd.detection.types import UNKNOWN
from ifd.detection.types import BaselineStats
from ifd.detection.types import Detection
from ifd.detection.types import InstrumentInfo
from ifd.detection.types import TradeEvent
from ifd.detection.volume import VolumeSpikes

SEC = 1_000_000_000
ALGORITHM = "ifd_v1"


@dataclass(frozen=True, slots=True)
class V1Params:
    """Every threshold of IFD v1 (see ``configs/profiles/ifd_v1.toml``)."""

    volume_window_ns: int = 60 * SEC
    volume_bucket_ns: int = 5 * SEC
    tier_multiples: tuple[float, ...] = (10.0, 30.0, 50.0)
    tier_confidences: tuple[float, ...] = (0.5, 0.7, 0.85)
    baseline_floor_contracts: float = 20.0  # minimum baseline volume per window
    intraday_warmup_ns: int = 300 * SEC  # no intraday volume baseline (no tiers) before this much session
    premium_threshold_usd: float = 3_000_000.0
    burst_window_ns: int = 300 * SEC
    premium_confidence: float = 0.6  # at the threshold
    premium_confidence_at_double: float = 0.9  # at twice the threshold
    cooldown_ns: int = 300 * SEC
    baseline_refresh_ns: int = 300 * SEC  # re-ask the baseline provider this often per instrument

    def __post_init__(self) -> None:
        if len(self.tier_multiples) != len(self.tier_confidences) or not self.tier_multiples:
            raise ValueError("tier_multiples and tier_confidences need the same, non-zero length")
        if list(self.tier_multiples) != sorted(self.tier_multiples):
            raise ValueError("tier_multiples must increase")
        for name in ("volume_window_ns", "volume_bucket_ns", "burst_window_ns"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.volume_bucket_ns > self.volume_window_ns:
            raise ValueError("volume_bucket_ns must be <= volume_window_ns")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> V1Params:
        """From a profile's ``[detector]`` table; unknown keys raise ValueError naming the key."""
        return params_from_dict(cls, d)


class V1Detector:
    """IFD v1 over a stream of ``TradeEvent``s (``on_trade`` per trade)."""

    def __init__(
        self,
        params: V1Params,
        instruments: Mapping[str, InstrumentInfo],
        baselines: Any = None,
    ) -> None:
        self.params = params
        self.instruments = instruments
        self.baselines = baselines
        self.initiation = InitiationStats()
        self.volume = VolumeSpikes(
            params.volume_window_ns,
            params.volume_bucket_ns,
            params.baseline_floor_contracts,
            params.intraday_warmup_ns,
            params.tier_multiples,
        )
        self.matches = MatchEvents()
        self.bursts = BurstPremium(params.burst_window_ns)
        self.underlying_price: float | None = None
        self._cooldown_until: dict[tuple[str, int], int] = {}
        self._baseline_cache: dict[str, tuple[int, BaselineStats | None]] = {}
        self.detections = 0

    def _baseline(self, info: InstrumentInfo, now_ns: int) -> BaselineStats | None:
        if self.baselines is None:
            return None
        cached = self._baseline_cache.get(info.instrument_id)
        if cached is not None and now_ns - cached[0] < self.params.baseline_refresh_ns:
            return cached[1]
        stats = self.baselines.get(info, self.underlying_price)
        self._baseline_cache[info.instrument_id] = (now_ns, stats)
        return stats

    def on_trade(self, trade: TradeEvent) -> list[Detection]:
        """Update with one trade; returns the detections it triggers (usually none)."""
        info = self.instruments.get(trade.instrument_id)
        if info is None:
            return []
        side = self.initiation.classify(trade.price, trade.feed_side, trade.best_bid, trade.best_ask)
        if info.kind == "FUT":
            self.underlying_price = trade.price
            return []
        p = self.params
        ts = trade.ts_event
        iid = trade.instrument_id
        notional = trade.price * info.multiplier * trade.size
        baseline = self._baseline(info, ts) if self.baselines is not None else None
        vol = self.volume.add(iid, ts, side, trade.size, notional, baseline)
        candidates: dict[int, tuple[float, float, int, list[str]]] = {}
        if vol.tier >= 0:
            vside = vol.dominant_side
            if vside != UNKNOWN:
                conf = v1_tier_confidence(vol.tier, p.tier_confidences)
                prem = vol.buy_premium if vside == BUY else vol.sell_premium
                reasons = [
                    f"volume {vol.ratio:.0f}x baseline",
                    f"tier {p.tier_multiples[vol.tier]:g}x",
                    f"baseline={vol.source}",
                ]
                candidates[vside] = (conf, prem, vol.window_start_ns, reasons)
        if side != UNKNOWN:
            event = self.matches.add(iid, ts, side, trade.price, trade.size, notional)
            burst = self.bursts.add(iid, ts, side, notional)
            flagged, kind, amount = premium_flag(event.notional_usd, burst, p.premium_threshold_usd)
            if flagged:
                conf = v1_premium_confidence(amount, p.premium_threshold_usd, p.premium_confidence, p.premium_confidence_at_double)
                start = ts if kind == "order" else (self.bursts.window_start(iid) or ts)
                text = f"premium {format_usd(amount)}" + (" in one order" if kind == "order" else " burst")
                if side in candidates:
                    c = candidates[side]
                    candidates[side] = (max(c[0], conf), max(c[1], amount), min(c[2], start), [text, *c[3]])
                else:
                    candidates[side] = (conf, amount, start, [text])
        out: list[Detection] = []
        for dside, (conf, prem, start, reasons) in candidates.items():
            key = (iid, dside)
            if ts < self._cooldown_until.get(key, -1):
                continue
            self._cooldown_until[key] = ts + p.cooldown_ns
            self.detections += 1
            out.append(
                Detection(
                    algorithm=ALGORITHM,
                    instrument_id=iid,
                    ts_event=ts,
                    side=dside,
                    confidence=round(conf, 4),
                    notional_usd=round(prem, 2),
                    window_start_ns=int(start),
                    reasons=tuple(reasons),
                    factors={"volume_ratio": round(vol.ratio, 3), "baseline_contracts": round(vol.baseline, 3)},
                )
            )
        return out

    def quality(self) -> dict:
        """Initiation data quality and counts."""
        q = self.initiation.as_dict()
        q["detections"] = self.detections
        return q
