"""Premium notional of trades, aggregated over one aggressive order and over short bursts.

* premium notional = price x multiplier x size (USD; multiplier 20 for NQ options);
* one *match event* = the fills of one aggressive order: same instrument, same ``ts_event``,
  same side. A sweep across price levels arrives as several T records with the same
  ``ts_event`` (one per level); ``MatchEvents`` sums them while they arrive;
* a *burst* = the same-side premium of one instrument over a trailing ``burst_window_ns``
  (``BurstPremium``);
* ``premium_flag``: the larger of the two reaching ``threshold_usd`` ($3M by default).
"""

from __future__ import annotations

from dataclasses import dataclass

from ifd.detection.rolling import RollingSums
from ifd.detection.types import BUY
from ifd.detection.types import SELL

DEFAULT_PREMIUM_THRESHOLD_USD = 3_000_000.0


def premium_usd(price: float, size: float, multiplier: float) -> float:
    """Premium notional in USD of ``size`` contracts at ``price``."""
    return price * multiplier * size


@dataclass(slots=True)
class MatchEvent:
    """The running aggregate of one aggressive order's fills (so far)."""

    instrument_id: str
    ts_event: int
    side: int
    size: int = 0
    notional_usd: float = 0.0
    levels: int = 0  # price levels hit (T records of the event)
    first_price: float = 0.0
    last_price: float = 0.0


class MatchEvents:
    """Groups consecutive trades of one instrument into match events (same ts_event and side)."""

    __slots__ = ("_current",)

    def __init__(self) -> None:
        self._current: dict[str, MatchEvent] = {}

    def add(self, instrument_id: str, ts_event: int, side: int, price: float, size: int, notional: float) -> MatchEvent:
        """Add one fill; returns the match event it belongs to (new or continued)."""
        ev = self._current.get(instrument_id)
        if ev is None or ev.ts_event != ts_event or ev.side != side:
            ev = MatchEvent(instrument_id, ts_event, side, first_price=price)
            self._current[instrument_id] = ev
        if price != ev.last_price or ev.levels == 0:
            ev.levels += 1
        ev.size += size
        ev.notional_usd += notional
        ev.last_price = price
        return ev


class BurstPremium:
    """Same-side premium per instrument over a trailing burst window."""

    __slots__ = ("_bucket_ns", "_windows", "window_ns")

    def __init__(self, window_ns: int, buckets: int = 20) -> None:
        self.window_ns = int(window_ns)
        self._bucket_ns = max(1, self.window_ns // max(1, buckets))
        self._windows: dict[str, RollingSums] = {}

    def add(self, instrument_id: str, ts_event: int, side: int, notional: float) -> float:
        """Add a trade's premium; returns the burst premium of its side (USD)."""
        w = self._windows.get(instrument_id)
        if w is None:
            w = self._windows[instrument_id] = RollingSums(self.window_ns, self._bucket_ns, 2)
        if side == BUY:
            w.add(ts_event, 0, notional)
            return w.totals[0]
        if side == SELL:
            w.add(ts_event, 1, notional)
            return w.totals[1]
        w.expire(ts_event)
        return 0.0

    def window_start(self, instrument_id: str) -> int | None:
        """Start of the oldest bucket still in this instrument's burst window."""
        w = self._windows.get(instrument_id)
        return w.first_start() if w is not None else None


def premium_flag(event_usd: float, burst_usd: float, threshold_usd: float = DEFAULT_PREMIUM_THRESHOLD_USD) -> tuple[bool, str, float]:
    """(flagged, "order" | "burst", premium) for the larger of one order's and the burst's premium."""
    if event_usd >= burst_usd:
        return event_usd >= threshold_usd, "order", event_usd
    return burst_usd >= threshold_usd, "burst", burst_usd


def format_usd(value: float) -> str:
    """$3.4M / $850k / $900 style text for reasons."""
    v = abs(value)
    sign = "-" if value < 0 else ""
    if v >= 1e6:
        return f"{sign}${v / 1e6:.1f}M"
    if v >= 1e3:
        return f"{sign}${v / 1e3:.0f}k"
    return f"{sign}${v:.0f}"
