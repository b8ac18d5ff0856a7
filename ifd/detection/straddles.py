"""Market-making filters: straddle coordination, volatility crush, cross-strike timing.

Flow that looks big but carries no direction:

* straddle coordination (``StraddleMonitor``): the call and the put of one strike (same
  expiry) both traded within a window (5 minutes) in balanced size *in the same direction* -
  both legs bought at the ask or both sold at the bid: a volatility trade (long or short
  straddle), not a view on the underlying. Per leg the contracts traded in the direction asked
  about (bought for a buy, sold for a sell) over the window; ``balance`` = the smaller leg's /
  the larger leg's. Flagged when both legs have at least ``min_leg_volume`` contracts that way
  and the balance reaches ``min_balance``; the score is the balance (0..1). Gross, not net, per
  leg: flow the other way earlier in the window (an institution that bought the put minutes
  before the straddle was sold) does not hide the straddle. One-sided call buying (the put's
  volume that way is background), a risk reversal (call bought, put sold: a directional
  position) and an unbalanced pair are not straddles.
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

# RollingSums columns of one strike: contracts per leg and side
_CALL_BUY, _CALL_SELL, _PUT_BUY, _PUT_SELL = 0, 1, 2, 3


@dataclass(slots=True)
class StraddleState:
    """Both legs of one strike over the straddle window, seen from one side."""

    side: int  # the direction asked about: BUY (both legs bought?) or SELL
    call_volume: float  # call contracts traded in that direction
    put_volume: float  # put contracts traded in that direction
    balance: float  # smaller / larger leg volume
    flagged: bool

    @property
    def score(self) -> float:
        """0..1: how straddle-like (0 when not flagged)."""
        return self.balance if self.flagged else 0.0


class StraddleMonitor:
    """Per strike (key: underlying, expiry, strike): call / put contracts bought and sold over a
    trailing window."""

    __slots__ = ("_legs", "bucket_ns", "min_balance", "min_leg_volume", "window_ns")

    def __init__(self, window_ns: int, bucket_ns: int, min_leg_volume: float, min_balance: float) -> None:
        self.window_ns = int(window_ns)
        self.bucket_ns = int(bucket_ns)
        self.min_leg_volume = float(min_leg_volume)
        self.min_balance = float(min_balance)
        # strike key -> RollingSums(call bought, call sold, put bought, put sold)
        self._legs: dict[Hashable, RollingSums] = {}

    def add(self, strike_key: Hashable, is_call: bool, ts_event: int, side: int, size: float) -> None:
        """Count one trade of a leg (trades without an aggressor side count in neither)."""
        if side != BUY and side != SELL:
            return
        w = self._legs.get(strike_key)
        if w is None:
            w = self._legs[strike_key] = RollingSums(self.window_ns, self.bucket_ns, 4)
        w.add(ts_event, (_CALL_BUY if is_call else _PUT_BUY) + (0 if side == BUY else 1), size)

    def state(self, strike_key: Hashable, now_ns: int, side: int) -> StraddleState:
        """Both legs' contracts in the direction of ``side`` and the flag at ``now_ns``."""
        w = self._legs.get(strike_key)
        if w is None:
            return StraddleState(side, 0.0, 0.0, 0.0, False)
        w.expire(now_ns)
        t = w.totals
        if side == BUY:
            call, put = t[_CALL_BUY], t[_PUT_BUY]
        elif side == SELL:
            call, put = t[_CALL_SELL], t[_PUT_SELL]
        else:
            return StraddleState(side, 0.0, 0.0, 0.0, False)
        lo = min(call, put)
        balance = lo / max(call, put) if lo > 0 else 0.0
        flagged = lo >= self.min_leg_volume and balance >= self.min_balance
        return StraddleState(side, call, put, balance, flagged)


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
