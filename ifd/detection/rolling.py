"""Trailing-window sums kept in fixed-width time buckets: O(1) amortized per update.

A window of ``window_ns`` holds the buckets whose start lies after ``now - window_ns``; the
window is therefore exact to one bucket width (the oldest bucket leaves as a whole). Times
should not decrease; a late record (older than the newest bucket) is counted in the newest.
"""

from __future__ import annotations

from collections import deque


class RollingSums:
    """``width`` running sums over a trailing time window (bucketed).

    ``totals[i]`` is the sum of value ``i`` over the buckets in the window. Buckets are lists
    ``[start_ns, v0, v1, ...]``; the newest is ``buckets[-1]``.
    """

    __slots__ = ("bucket_ns", "buckets", "totals", "width", "window_ns")

    def __init__(self, window_ns: int, bucket_ns: int, width: int) -> None:
        if bucket_ns <= 0 or window_ns < bucket_ns:
            raise ValueError("need 0 < bucket_ns <= window_ns")
        self.window_ns = int(window_ns)
        self.bucket_ns = int(bucket_ns)
        self.width = width
        self.buckets: deque[list] = deque()
        self.totals = [0.0] * width

    def expire(self, now_ns: int) -> None:
        """Drop buckets that left the window at ``now_ns``."""
        buckets = self.buckets
        cutoff = now_ns - self.window_ns
        if buckets and buckets[0][0] <= cutoff:
            totals = self.totals
            width = self.width
            while buckets and buckets[0][0] <= cutoff:
                old = buckets.popleft()
                for i in range(width):
                    totals[i] -= old[i + 1]
            if not buckets:  # no float residue in an empty window
                for i in range(width):
                    totals[i] = 0.0

    def bucket(self, now_ns: int) -> list:
        """The bucket for ``now_ns`` (created when new) after expiring old ones; add to it with ``add``."""
        self.expire(now_ns)
        start = now_ns - now_ns % self.bucket_ns
        buckets = self.buckets
        if buckets and buckets[-1][0] >= start:  # same bucket, or a late (out-of-order) record
            return buckets[-1]
        b = [start] + [0.0] * self.width
        buckets.append(b)
        return b

    def add(self, now_ns: int, index: int, value: float) -> None:
        """Add ``value`` to sum ``index`` at time ``now_ns``."""
        b = self.bucket(now_ns)
        b[index + 1] += value
        self.totals[index] += value

    def add2(self, now_ns: int, index_a: int, value_a: float, index_b: int, value_b: float) -> None:
        """Add two values at once (the common case: a volume and a premium)."""
        b = self.bucket(now_ns)
        b[index_a + 1] += value_a
        b[index_b + 1] += value_b
        totals = self.totals
        totals[index_a] += value_a
        totals[index_b] += value_b

    def recent(self, now_ns: int, span_ns: int, index: int) -> float:
        """Sum of value ``index`` over the buckets starting after ``now_ns - span_ns`` (newest first)."""
        cutoff = now_ns - span_ns
        total = 0.0
        for b in reversed(self.buckets):
            if b[0] <= cutoff:
                break
            total += b[index + 1]
        return total

    def first_start(self) -> int | None:
        """Start of the oldest bucket in the window (None when empty)."""
        return self.buckets[0][0] if self.buckets else None
