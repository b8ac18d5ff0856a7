"""Latency figures by minute: percentiles of nanosecond samples, minute by minute and overall.

Engine-free (numpy and the standard library); ``ifd.monitoring.latency_actor.LatencyMonitor`` feeds
it from a NautilusTrader node.

- ``LatencySeries``: one measured latency (feed, processing). A sample is an ``array('q')`` append
  (O(1) amortized); the figures of a minute (n, p50, p90, p99 with numpy's linear interpolation,
  min, max) are computed once, when the minute closes. Overall figures are exact (every sample
  kept, 8 bytes each) up to ``max_exact_samples``; past that the series folds its samples into a
  ``LogHistogram`` (bounded memory, percentiles within about 0.6%), while n, min and max stay exact.
- ``MinuteLatency``: several series on one minute grid of a clock (ns since the epoch). A sample at
  or after ``minute_end`` (or ``roll``) closes the open minute into a ``MinuteRow``; a minute in
  which no series had a sample leaves no row (a gap), a series without samples in a row that
  exists has n = 0 and no percentiles.
- ``BreachTracker``: judges each closed minute's p99 against a warning and an optional critical
  threshold and says when to alarm: once per episode (consecutive minutes over the threshold),
  again when the level goes up or, optionally, every N minutes of the same episode.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

NS_PER_MINUTE = 60_000_000_000
QUANTILES = (50.0, 90.0, 99.0)
LEVELS = ("info", "warning", "critical")


@dataclass(frozen=True)
class Figures:
    """Count and percentiles (ns) of one set of samples; None where there are no samples."""

    n: int = 0
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    min: float | None = None
    max: float | None = None
    exact: bool = True

    def us(self, digits: int = 3) -> dict:
        """The figures in microseconds (n and exact as they are)."""
        def conv(value: float | None) -> float | None:
            return None if value is None else round(value / 1_000.0, digits)

        return {"n": self.n, "p50": conv(self.p50), "p90": conv(self.p90), "p99": conv(self.p99),
                "min": conv(self.min), "max": conv(self.max), "exact": self.exact}


def figures_of(values: np.ndarray) -> Figures:
    """Exact figures of int64 samples (numpy's default, linear, percentiles)."""
    if values.size == 0:
        return Figures()
    p50, p90, p99 = np.percentile(values, QUANTILES)
    return Figures(int(values.size), float(p50), float(p90), float(p99), float(values.min()), float(values.max()))


class LogHistogram:
    """Counts of int64 samples in log-spaced bins, ``per_doubling`` bins per power of two.

    Bin 0 holds the samples <= 0 (clock skew can make a feed latency negative), bin k >= 1 the
    samples in [2**((k-1)/s), 2**(k/s)) ns; a percentile is the geometric middle of the bin of
    the order statistic numpy interpolates around, so its relative error is under 2**(1/(2s)) - 1
    (0.55% for s = 64) plus the interpolation step between neighbouring samples.
    """

    def __init__(self, per_doubling: int = 64) -> None:
        self.per_doubling = per_doubling
        self.counts = np.zeros(64 * per_doubling + 1, dtype=np.int64)

    def add(self, values: np.ndarray) -> None:
        bins = np.zeros(values.size, dtype=np.int64)
        positive = values > 0
        bins[positive] = np.floor(np.log2(values[positive].astype(np.float64)) * self.per_doubling).astype(np.int64) + 1
        self.counts += np.bincount(bins, minlength=self.counts.size)

    def percentile(self, q: float) -> float | None:
        total = int(self.counts.sum())
        if total == 0:
            return None
        rank = round(q / 100.0 * (total - 1))
        index = int(np.searchsorted(np.cumsum(self.counts), rank, side="right"))
        if index == 0:
            return 0.0
        return float(2.0 ** ((index - 0.5) / self.per_doubling))


class LatencySeries:
    """Samples (ns) of one latency: the open minute's, and the overall figures of the closed ones."""

    def __init__(self, max_exact_samples: int = 1_000_000) -> None:
        if max_exact_samples < 0:
            raise ValueError(f"max_exact_samples must be >= 0, got {max_exact_samples}")
        self.samples = array("q")  # the open minute; cleared in place, so ``append`` stays bound
        self.append = self.samples.append
        self._max_exact = max_exact_samples
        self._exact: array | None = array("q")
        self._histogram: LogHistogram | None = None
        self.n = 0
        self._min: int | None = None
        self._max: int | None = None

    def current(self) -> Figures:
        """Figures of the open minute so far (O(k) in its samples)."""
        values = np.frombuffer(self.samples, dtype=np.int64)
        try:
            return figures_of(values)
        finally:
            del values  # the array cannot grow while a view of it exists

    def close(self) -> Figures:
        """The open minute's figures; its samples go into the overall figures and it starts empty."""
        values = np.frombuffer(self.samples, dtype=np.int64)
        try:
            minute = figures_of(values)
            if values.size:
                self.n += int(values.size)
                low, high = int(values.min()), int(values.max())
                self._min = low if self._min is None else min(self._min, low)
                self._max = high if self._max is None else max(self._max, high)
                if self._exact is not None and len(self._exact) + values.size > self._max_exact:
                    self._histogram = LogHistogram()
                    self._histogram.add(np.frombuffer(self._exact, dtype=np.int64))
                    self._exact = None
                if self._exact is not None:
                    self._exact.extend(self.samples)
                else:
                    self._histogram.add(values)
        finally:
            del values
        del self.samples[:]
        return minute

    def overall(self) -> Figures:
        """Figures of every closed minute's samples (exact until ``max_exact_samples``)."""
        if self._exact is not None:
            values = np.frombuffer(self._exact, dtype=np.int64)
            try:
                return figures_of(values)
            finally:
                del values
        low, high = float(self._min), float(self._max)

        def clamp(q: float) -> float:
            return min(max(self._histogram.percentile(q), low), high)

        return Figures(self.n, clamp(50.0), clamp(90.0), clamp(99.0), low, high, exact=False)


@dataclass(frozen=True)
class MinuteRow:
    """One closed minute: its start (ns) and the figures of each series."""

    minute_ns: int
    series: dict[str, Figures]


class MinuteLatency:
    """Named latency series on one minute grid; rows of closed minutes, the newest ``max_rows`` kept."""

    def __init__(self, names: Iterable[str], max_exact_samples: int = 1_000_000, max_rows: int = 10_080) -> None:
        if max_rows <= 0:
            raise ValueError(f"max_rows must be > 0, got {max_rows}")
        self.series = {name: LatencySeries(max_exact_samples) for name in names}
        self.rows: deque[MinuteRow] = deque(maxlen=max_rows)
        self.minute_start = 0
        self.minute_end = 0  # no minute open yet: the first sample opens one
        self.rows_dropped = 0

    def add(self, name: str, now_ns: int, value_ns: int) -> MinuteRow | None:
        """Add a sample taken at ``now_ns``; returns the row of the minute it closed, if any."""
        row = self.roll(now_ns) if now_ns >= self.minute_end else None
        self.series[name].append(value_ns)
        return row

    def roll(self, now_ns: int) -> MinuteRow | None:
        """Close the open minute when ``now_ns`` is past it and open ``now_ns``'s minute.

        Returns the closed minute's row, or None (nothing to close, or no samples in it).
        """
        if now_ns < self.minute_end:
            return None
        row = self._close()
        self.minute_start = now_ns - now_ns % NS_PER_MINUTE
        self.minute_end = self.minute_start + NS_PER_MINUTE
        return row

    def flush(self) -> MinuteRow | None:
        """Close the open minute whatever the time (the end of a run): its row, or None."""
        row = self._close()
        self.minute_end = 0
        return row

    def current(self) -> MinuteRow:
        """The open minute so far (not stored)."""
        return MinuteRow(self.minute_start, {name: s.current() for name, s in self.series.items()})

    def overall(self, name: str) -> Figures:
        return self.series[name].overall()

    def _close(self) -> MinuteRow | None:
        if self.minute_end == 0 or not any(len(s.samples) for s in self.series.values()):
            return None
        row = MinuteRow(self.minute_start, {name: s.close() for name, s in self.series.items()})
        if len(self.rows) == self.rows.maxlen:
            self.rows_dropped += 1
        self.rows.append(row)
        return row


@dataclass(frozen=True)
class Threshold:
    """Alarm when a minute's p99 passes ``warning_ns`` (``critical_ns``: at the critical level),
    judged only on minutes with at least ``min_samples`` samples. ``realert_minutes`` 0: once per
    episode (and on escalation); N: again every N minutes of the same episode."""

    warning_ns: float
    critical_ns: float | None = None
    min_samples: int = 1
    realert_minutes: int = 0


class BreachTracker:
    """Minute-by-minute episodes of a p99 over a ``Threshold``, and when each deserves an alarm.

    A judged minute (enough samples) over the threshold starts or continues an episode; one at
    or under it ends the episode; a minute with too few samples (or none) changes nothing.
    """

    def __init__(self, threshold: Threshold) -> None:
        self.threshold = threshold
        self.in_episode = False
        self.episodes = 0
        self._alarmed_level: str | None = None
        self._alarmed_minute = 0

    def level_of(self, p99: float) -> str | None:
        t = self.threshold
        if t.critical_ns is not None and p99 > t.critical_ns:
            return "critical"
        return "warning" if p99 > t.warning_ns else None

    def judge(self, minute_ns: int, figures: Figures) -> str | None:
        """The level to alarm at for this closed minute, or None (no alarm)."""
        if figures.n < self.threshold.min_samples or figures.p99 is None:
            return None
        level = self.level_of(figures.p99)
        if level is None:
            self.in_episode = False
            self._alarmed_level = None
            return None
        minute = minute_ns // NS_PER_MINUTE
        if not self.in_episode:
            self.in_episode = True
            self.episodes += 1
        elif LEVELS.index(level) > LEVELS.index(self._alarmed_level):
            pass  # escalation: alarm again
        elif not self.threshold.realert_minutes or minute - self._alarmed_minute < self.threshold.realert_minutes:
            return None
        self._alarmed_level, self._alarmed_minute = level, minute
        return level
