"""Volume spikes (IFD v1): an instrument's rolling traded volume against its baseline, in tiers.

Baseline per window, in contracts:

* historical: ``BaselineStats.volume_mean`` (scaled from its ``window_ns`` to ours) when given;
* intraday otherwise: the instrument's volume *before* the current window divided by the session
  time before it (the session starts at the first trade the detector sees), times the window;
  during the first ``warmup_ns`` of the session there is no intraday baseline yet, so no tier;
* never below ``floor_contracts`` (quiet strikes).

Tiers: ratio >= 10x / 30x / 50x by default, each with its own confidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ifd.detection.rolling import RollingSums
from ifd.detection.types import BUY
from ifd.detection.types import SELL
from ifd.detection.types import BaselineStats

DEFAULT_TIERS = (10.0, 30.0, 50.0)
DEFAULT_TIER_CONFIDENCE = (0.5, 0.7, 0.85)

# RollingSums columns
BUY_VOL, SELL_VOL, BUY_PREM, SELL_PREM = 0, 1, 2, 3


def volume_tier(ratio: float, tiers: Sequence[float] = DEFAULT_TIERS) -> int:
    """Index of the highest tier reached (0-based), -1 when below the first."""
    tier = -1
    for i, multiple in enumerate(tiers):
        if ratio >= multiple:
            tier = i
    return tier


@dataclass(slots=True)
class VolumeState:
    """An instrument's window after a trade."""

    volume: float
    buy_volume: float
    sell_volume: float
    buy_premium: float
    sell_premium: float
    baseline: float  # contracts per window
    source: str  # "instrument" | "moneyness" | "intraday" | "warmup" (no baseline yet: no tier)
    ratio: float
    tier: int  # -1 = none
    window_start_ns: int

    @property
    def dominant_side(self) -> int:
        """BUY or SELL by volume (0 when balanced)."""
        if self.buy_volume > self.sell_volume:
            return BUY
        if self.sell_volume > self.buy_volume:
            return SELL
        return 0


class VolumeSpikes:
    """Per-instrument rolling volume vs baseline, with tiers."""

    __slots__ = ("_cum", "_windows", "bucket_ns", "floor", "session_start", "tiers", "warmup_ns", "window_ns")

    def __init__(
        self,
        window_ns: int,
        bucket_ns: int,
        floor_contracts: float,
        warmup_ns: int,
        tiers: Sequence[float] = DEFAULT_TIERS,
    ) -> None:
        self.window_ns = int(window_ns)
        self.bucket_ns = int(bucket_ns)
        self.floor = float(floor_contracts)
        self.warmup_ns = int(warmup_ns)
        self.tiers = tuple(tiers)
        self.session_start: int | None = None
        self._windows: dict[str, RollingSums] = {}
        self._cum: dict[str, float] = {}

    def intraday_baseline(self, instrument_id: str, now_ns: int) -> float:
        """Contracts per window from the session so far, excluding the current window (no floor)."""
        w = self._windows.get(instrument_id)
        in_window = w.totals[BUY_VOL] + w.totals[SELL_VOL] if w is not None else 0.0
        before = self._cum.get(instrument_id, 0.0) - in_window
        start = self.session_start if self.session_start is not None else now_ns
        elapsed = max(now_ns - start - self.window_ns, self.bucket_ns)
        return max(before, 0.0) / elapsed * self.window_ns

    def add(
        self,
        instrument_id: str,
        ts_event: int,
        side: int,
        size: float,
        notional: float,
        baseline: BaselineStats | None = None,
    ) -> VolumeState:
        """Count one trade (any side: volume is volume) and return the window's state."""
        if self.session_start is None:
            self.session_start = ts_event
        w = self._windows.get(instrument_id)
        if w is None:
            w = self._windows[instrument_id] = RollingSums(self.window_ns, self.bucket_ns, 4)
        if side == BUY:
            w.add2(ts_event, BUY_VOL, size, BUY_PREM, notional)
        elif side == SELL:
            w.add2(ts_event, SELL_VOL, size, SELL_PREM, notional)
        else:  # unknown side still trades volume: split it evenly
            w.add2(ts_event, BUY_VOL, size / 2, SELL_VOL, size / 2)
        self._cum[instrument_id] = self._cum.get(instrument_id, 0.0) + size
        t = w.totals
        volume = t[BUY_VOL] + t[SELL_VOL]
        if baseline is not None and baseline.window_ns > 0:
            base = baseline.volume_mean * self.window_ns / baseline.window_ns
            source = baseline.source
        else:
            base = self.intraday_baseline(instrument_id, ts_event)
            source = "intraday" if ts_event - self.session_start >= self.warmup_ns else "warmup"
        base = max(base, self.floor)
        ratio = volume / base if base > 0 else 0.0
        tier = volume_tier(ratio, self.tiers) if source != "warmup" else -1
        return VolumeState(
            volume=volume,
            buy_volume=t[BUY_VOL],
            sell_volume=t[SELL_VOL],
            buy_premium=t[BUY_PREM],
            sell_premium=t[SELL_PREM],
            baseline=base,
            source=source,
            ratio=ratio,
            tier=tier,
            window_start_ns=w.first_start() or ts_event,
        )
