"""Market-making filters: straddle coordination, volatility crush, cross-strike timing.

Flow that looks big but carries no direction:

* straddle coordination (``StraddleMonitor``): the call and the put of one strike (same
  expiry) both traded within a window (5 minutes) in balanced size, the legs traded together:
  ``balance`` = smaller leg volume / larger leg volume; ``paired share`` = the share of the
  smaller leg's volume traded together with the other leg (within ``pair_ns``, same side:
  one straddle order). Flagged when both legs have at least ``min_leg_volume``, the balance reaches
  ``min_balance`` and the paired share ``min_paired_share`` (busy at-the-money strikes have
  balanced but independent call and put volume; that alone is no straddle); the score is the
  balance (0..1).
* volatility crush (``VolCrush``): the call and the put of one strike both *falling* together
  (book mid at trade time vs the oldest mid within the window, at least ``min_span_ns`` back):
  a falling implied vol, not a directional view (delta moves the legs in opposite directions).
* cross-strike timing (``CrossStrikeTiming``): trades on several strikes of one expiry within
  milliseconds are one decision: a sweep when side-consistent (all the same side and right),
  a market-maker refresh / hedge when sides or rights are mixed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass

from ifd.detection.rolling import RollingSums
from ifd.detection.types import BUY
from ifd.detection.types import SELL

SWEEP = "sweep"
MM_REFRESH = "mm_refresh"


@dataclass(slots=True)
class StraddleState:
    """Both legs of one strike over the straddle window."""

    call_volume: float
    put_volume: float
    paired_volume: float  # contracts per leg traded together with the other leg
    balance: float  # min leg volume / max leg volume
    paired_share: float  # share of the smaller leg's volume traded together with the other leg
    flagged: bool

    @property
    def score(self) -> float:
        """0..1: how straddle-like (0 when not flagged)."""
        return self.balance if self.flagged else 0.0


class StraddleMonitor:
    """Per strike (key: underlying, expiry, strike): call / put volume over a trailing window."""

    __slots__ = ("_last", "_legs", "bucket_ns", "min_balance", "min_leg_volume", "min_paired_share", "pair_ns", "window_ns")

    def __init__(
        self,
        window_ns: int,
        bucket_ns: int,
        pair_ns: int,
        min_leg_volume: float,
        min_balance: float,
        min_paired_share: float,
    ) -> None:
        self.window_ns = int(window_ns)
        self.bucket_ns = int(bucket_ns)
        self.pair_ns = int(pair_ns)
        self.min_leg_volume = float(min_leg_volume)
        self.min_balance = float(min_balance)
        self.min_paired_share = float(min_paired_share)
        # strike key -> RollingSums(call vol, put vol, paired vol)
        self._legs: dict[Hashable, RollingSums] = {}
        # strike key -> (ts, is_call, side, size) of the last trade
        self._last: dict[Hashable, tuple[int, bool, int, float]] = {}

    def add(self, strike_key: Hashable, is_call: bool, ts_event: int, side: int, size: float) -> None:
        """Count one trade of a leg."""
        w = self._legs.get(strike_key)
        if w is None:
            w = self._legs[strike_key] = RollingSums(self.window_ns, self.bucket_ns, 3)
        w.add(ts_event, 0 if is_call else 1, size)
        last = self._last.get(strike_key)
        if (
            last is not None
            and last[1] != is_call
            and side in (BUY, SELL)
            and last[2] == side
            and ts_event - last[0] <= self.pair_ns
        ):
            w.add(ts_event, 2, min(size, last[3]))
        self._last[strike_key] = (ts_event, is_call, side, size)

    def state(self, strike_key: Hashable, now_ns: int) -> StraddleState:
        """Both legs' volumes and the flag at ``now_ns``."""
        w = self._legs.get(strike_key)
        if w is None:
            return StraddleState(0.0, 0.0, 0.0, 0.0, 0.0, False)
        w.expire(now_ns)
        call, put, paired = w.totals
        hi = max(call, put)
        lo = min(call, put)
        balance = lo / hi if hi > 0 else 0.0
        paired_share = min(paired / lo, 1.0) if lo > 0 else 0.0
        flagged = lo >= self.min_leg_volume and balance >= self.min_balance and paired_share >= self.min_paired_share
        return StraddleState(call, put, paired, balance, paired_share, flagged)


class VolCrush:
    """Per strike: both legs' book mids falling together over a window."""

    __slots__ = ("_latest", "_samples", "min_drop", "min_span_ns", "sample_ns", "window_ns")

    def __init__(self, window_ns: int, sample_ns: int, min_span_ns: int, min_drop: float) -> None:
        self.window_ns = int(window_ns)
        self.sample_ns = int(sample_ns)
        self.min_span_ns = int(min_span_ns)
        self.min_drop = float(min_drop)
        # (strike key, is_call) -> mids sampled at least sample_ns apart, and the latest mid
        self._samples: dict[tuple[Hashable, bool], deque[tuple[int, float]]] = {}
        self._latest: dict[tuple[Hashable, bool], tuple[int, float]] = {}

    def add(self, strike_key: Hashable, is_call: bool, ts_event: int, best_bid: float, best_ask: float) -> None:
        """Sample one leg's mid (ignored when the book is missing, locked or crossed)."""
        if not (best_bid > 0.0 and best_ask > best_bid):
            return
        mid = 0.5 * (best_bid + best_ask)
        key = (strike_key, is_call)
        q = self._samples.get(key)
        if q is None:
            q = self._samples[key] = deque()
        cutoff = ts_event - self.window_ns
        while q and q[0][0] < cutoff:
            q.popleft()
        if not q or ts_event - q[-1][0] >= self.sample_ns:
            q.append((ts_event, mid))
        self._latest[key] = (ts_event, mid)

    def drop(self, strike_key: Hashable, is_call: bool, now_ns: int) -> float | None:
        """Relative fall of one leg's mid: oldest sample in the window vs the latest mid
        (None without a sample at least ``min_span_ns`` older than the latest)."""
        key = (strike_key, is_call)
        q = self._samples.get(key)
        latest = self._latest.get(key)
        if not q or latest is None:
            return None
        cutoff = now_ns - self.window_ns
        while q and q[0][0] < cutoff:
            q.popleft()
        if not q:
            return None
        t0, m0 = q[0]
        t1, m1 = latest
        if t1 - t0 < self.min_span_ns or m0 <= 0.0:
            return None
        return 1.0 - m1 / m0

    def crushed(self, strike_key: Hashable, now_ns: int) -> bool:
        """Both legs fell by at least ``min_drop``."""
        c = self.drop(strike_key, True, now_ns)
        if c is None or c < self.min_drop:
            return False
        p = self.drop(strike_key, False, now_ns)
        return p is not None and p >= self.min_drop


class CrossStrikeTiming:
    """Trades on several strikes of one (underlying, expiry) within ``window_ns``: sweep or MM refresh."""

    __slots__ = ("_recent", "min_strikes", "window_ns")

    def __init__(self, window_ns: int, min_strikes: int) -> None:
        self.window_ns = int(window_ns)
        self.min_strikes = int(min_strikes)
        self._recent: dict[Hashable, deque[tuple[int, float, bool, int, str]]] = {}

    def add(
        self, expiry_key: Hashable, ts_event: int, strike: float, is_call: bool, side: int, instrument_id: str = ""
    ) -> tuple[str | None, int]:
        """Record a trade; returns (SWEEP | MM_REFRESH | None, distinct strikes in the window)."""
        q = self._recent.get(expiry_key)
        if q is None:
            q = self._recent[expiry_key] = deque()
        cutoff = ts_event - self.window_ns
        while q and q[0][0] < cutoff:
            q.popleft()
        q.append((ts_event, strike, is_call, side, instrument_id))
        if len(q) < self.min_strikes:
            return None, 1
        return classify_cross_strike(q, self.min_strikes)

    def members(self, expiry_key: Hashable) -> list[str]:
        """Instrument ids of the trades in the current window of ``expiry_key``."""
        return [t[4] for t in self._recent.get(expiry_key, ())]


def classify_cross_strike(trades, min_strikes: int) -> tuple[str | None, int]:
    """(SWEEP | MM_REFRESH | None, distinct strikes) for trades ``(ts, strike, is_call, side, ...)``
    that happened within milliseconds: side-consistent (one side, one right) is a sweep; mixed
    sides or rights is a market-maker refresh; fewer than ``min_strikes`` strikes is neither."""
    strikes = {t[1] for t in trades}
    n = len(strikes)
    if n < min_strikes:
        return None, n
    sides = {t[3] for t in trades}
    rights = {t[2] for t in trades}
    if len(sides) == 1 and len(rights) == 1 and next(iter(sides)) in (BUY, SELL):
        return SWEEP, n
    return MM_REFRESH, n
