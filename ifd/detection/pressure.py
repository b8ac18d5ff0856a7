"""Per-strike order-flow pressure (IFD v3): rolling buy / sell volume and premium per instrument.

For each option instrument (one strike, right and expiry) a trailing window of time buckets
(``RollingSums``: O(1) amortized per trade) holds buy volume, sell volume, buy premium and sell
premium. From it:

* pressure ratio = buy volume / (buy + sell volume) (1.0 = all buying, 0.0 = all selling);
* net premium = buy premium - sell premium (USD; the signed pressure in money);
* velocity = how fast the pressure builds: the net premium per second in the last
  ``recent_ns`` against the net premium per second over the whole window, in the direction
  asked for (1 = steady, > 1 building, ~0 faded, < 0 reversed);
* imbalance z = net premium / sqrt(sum of squared trade premiums): how far the net premium is
  from what the same trades would give with random sides (a premium-weighted sign test; it
  does not depend on how busy the strike is, unlike the volume share);
* an intraday baseline of the window's net premium: the spread of closed-bucket net premium in
  *quiet* periods (while the window is not hot), winsorized, scaled to the window:
  ``std = sqrt(sum(bucket_net^2) * window / quiet_time)``. Hot periods (|net| >= ``hot_usd``)
  are left out so a running episode does not inflate its own baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ifd.detection.rolling import RollingSums
from ifd.detection.types import BUY
from ifd.detection.types import SELL

BUY_VOL, SELL_VOL, BUY_PREM, SELL_PREM, SQ_PREM = 0, 1, 2, 3, 4


def pressure_ratio(buy_volume: float, sell_volume: float) -> float:
    """Buy share of the volume (0.5 when there is none)."""
    total = buy_volume + sell_volume
    return buy_volume / total if total > 0 else 0.5


def velocity(recent_net: float, recent_ns: int, window_net: float, window_ns: int) -> float:
    """Net premium rate in the recent sub-window over the rate in the whole window (same sign as
    ``window_net`` means building in its direction); 0 when the window has no net premium."""
    if window_net == 0 or recent_ns <= 0:
        return 0.0
    return (recent_net / recent_ns) / (window_net / window_ns)


@dataclass(slots=True)
class PressureState:
    """One instrument's window, seen from one side (``side``: the direction asked about)."""

    side: int
    buy_volume: float
    sell_volume: float
    buy_premium: float
    sell_premium: float
    ratio: float  # buy share of volume
    directional_share: float  # share of volume on ``side``
    net_premium: float  # buy - sell premium (USD)
    directional_net: float  # net premium in the direction of ``side``
    imbalance_z: float  # directional net / sqrt(sum of squared premiums)
    recent_net: float  # directional net over the recent sub-window
    velocity: float
    window_start_ns: int


class StrikePressure:
    """The rolling window of one option instrument plus its quiet-period net premium baseline."""

    __slots__ = ("clip_sigmas", "hot", "hot_usd", "quiet_ns", "quiet_sumsq", "recent_ns", "sums", "window_ns")

    def __init__(self, window_ns: int, bucket_ns: int, recent_ns: int, hot_usd: float, clip_sigmas: float = 4.0) -> None:
        self.window_ns = int(window_ns)
        self.recent_ns = int(recent_ns)
        self.sums = RollingSums(window_ns, bucket_ns, 5)
        self.hot_usd = float(hot_usd)
        self.clip_sigmas = float(clip_sigmas)
        self.hot = False
        self.quiet_sumsq = 0.0
        self.quiet_ns = 0

    def add(self, ts_event: int, side: int, size: float, notional: float, floor_std: float) -> None:
        """Count one trade (unknown sides count in neither direction)."""
        sums = self.sums
        buckets = sums.buckets
        start = ts_event - ts_event % sums.bucket_ns
        if buckets and buckets[-1][0] != start:
            self._close_bucket(buckets[-1], start, floor_std)
        if side == BUY:
            vol, prem = BUY_VOL, BUY_PREM
        elif side == SELL:
            vol, prem = SELL_VOL, SELL_PREM
        else:
            sums.expire(ts_event)
            return
        b = sums.bucket(ts_event)
        t = sums.totals
        sq = notional * notional
        b[vol + 1] += size
        b[prem + 1] += notional
        b[SQ_PREM + 1] += sq
        t[vol] += size
        t[prem] += notional
        t[SQ_PREM] += sq
        self.hot = abs(t[BUY_PREM] - t[SELL_PREM]) >= self.hot_usd

    def _close_bucket(self, bucket: list, next_start: int, floor_std: float) -> None:
        """Feed a finished bucket (and the empty time after it) to the quiet-period baseline."""
        if self.hot:
            return
        net = bucket[BUY_PREM + 1] - bucket[SELL_PREM + 1]
        span = next_start - bucket[0]
        # winsorize at clip_sigmas x the current per-bucket std (never below the floor's share)
        bucket_ns = self.sums.bucket_ns
        std_bucket = self.intraday_std(floor_std) * math.sqrt(bucket_ns / self.window_ns)
        cap = self.clip_sigmas * std_bucket
        if net > cap:
            net = cap
        elif net < -cap:
            net = -cap
        self.quiet_sumsq += net * net
        self.quiet_ns += span

    def intraday_std(self, floor_std: float) -> float:
        """Std of the window's net premium from quiet periods so far, at least ``floor_std``."""
        if self.quiet_ns <= 0:
            return floor_std
        std = math.sqrt(self.quiet_sumsq * self.window_ns / self.quiet_ns)
        return max(std, floor_std)

    def directional_net(self, side: int) -> float:
        """Net premium in the direction of ``side`` (totals as of the last update)."""
        t = self.sums.totals
        net = t[BUY_PREM] - t[SELL_PREM]
        return net if side == BUY else -net

    def state(self, now_ns: int, side: int) -> PressureState:
        """The full picture for ``side`` at ``now_ns``."""
        sums = self.sums
        sums.expire(now_ns)
        t = sums.totals
        net = t[BUY_PREM] - t[SELL_PREM]
        recent = sums.recent(now_ns, self.recent_ns, BUY_PREM) - sums.recent(now_ns, self.recent_ns, SELL_PREM)
        sign = 1.0 if side == BUY else -1.0
        total = t[BUY_VOL] + t[SELL_VOL]
        sq = t[SQ_PREM]
        ratio = t[BUY_VOL] / total if total > 0 else 0.5
        return PressureState(
            side=side,
            buy_volume=t[BUY_VOL],
            sell_volume=t[SELL_VOL],
            buy_premium=t[BUY_PREM],
            sell_premium=t[SELL_PREM],
            ratio=ratio,
            directional_share=ratio if side == BUY else 1.0 - ratio,
            net_premium=net,
            directional_net=sign * net,
            imbalance_z=sign * net / math.sqrt(sq) if sq > 0 else 0.0,
            recent_net=sign * recent,
            velocity=velocity(sign * recent, self.recent_ns, sign * net, self.window_ns),
            window_start_ns=sums.first_start() or now_ns,
        )


class ChainPressure:
    """``StrikePressure`` for every option instrument, created on first use."""

    __slots__ = ("_by_instrument", "bucket_ns", "clip_sigmas", "hot_usd", "recent_ns", "window_ns")

    def __init__(self, window_ns: int, bucket_ns: int, recent_ns: int, hot_usd: float, clip_sigmas: float = 4.0) -> None:
        self.window_ns = int(window_ns)
        self.bucket_ns = int(bucket_ns)
        self.recent_ns = int(recent_ns)
        self.hot_usd = float(hot_usd)
        self.clip_sigmas = float(clip_sigmas)
        self._by_instrument: dict[str, StrikePressure] = {}

    def get(self, instrument_id: str) -> StrikePressure:
        sp = self._by_instrument.get(instrument_id)
        if sp is None:
            sp = self._by_instrument[instrument_id] = StrikePressure(
                self.window_ns, self.bucket_ns, self.recent_ns, self.hot_usd, self.clip_sigmas
            )
        return sp

    def peek(self, instrument_id: str) -> StrikePressure | None:
        return self._by_instrument.get(instrument_id)

    def recent_directional_at(self, instrument_id: str, now_ns: int, side: int) -> float:
        """Net premium of another instrument over the last ``recent_ns``, in the direction of
        ``side`` (0 if unseen)."""
        sp = self._by_instrument.get(instrument_id)
        if sp is None:
            return 0.0
        sums = sp.sums
        net = sums.recent(now_ns, self.recent_ns, BUY_PREM) - sums.recent(now_ns, self.recent_ns, SELL_PREM)
        return net if side == BUY else -net

    def directional_net_at(self, instrument_id: str, now_ns: int, side: int) -> float:
        """Window net premium of another instrument in the direction of ``side`` (0 if unseen)."""
        sp = self._by_instrument.get(instrument_id)
        if sp is None:
            return 0.0
        sp.sums.expire(now_ns)
        return sp.directional_net(side)
