"""Sweeps: urgency shown by one aggressor taking several price levels or several strikes at once.

* level sweep: one aggressive order filling several price levels in one match event (several T
  records with the same ``ts_event``, see ``premium.MatchEvents``);
* strike sweep: trades on several strikes of the same expiry and right, on the same side,
  within ``window_ns`` (milliseconds) of each other (``StrikeSweeps``).

``urgency`` turns both counts into a 0..1 factor for the confidence.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable


def urgency(levels: int, strikes: int, levels_full: int = 3, strikes_full: int = 3) -> float:
    """0 for a plain one-level, one-strike order; 1 at ``levels_full`` levels or ``strikes_full`` strikes."""
    a = (levels - 1) / max(levels_full - 1, 1)
    b = (strikes - 1) / max(strikes_full - 1, 1)
    return min(max(a, b, 0.0), 1.0)


class StrikeSweeps:
    """Distinct strikes traded on one side of one (underlying, expiry, right) within a short window."""

    __slots__ = ("_recent", "window_ns")

    def __init__(self, window_ns: int) -> None:
        self.window_ns = int(window_ns)
        self._recent: dict[Hashable, deque[tuple[int, float, int]]] = {}

    def add(self, group: Hashable, ts_event: int, strike: float, side: int) -> int:
        """Record a trade; returns the distinct strikes on ``side`` in the window ending now (>= 1)."""
        q = self._recent.get(group)
        if q is None:
            q = self._recent[group] = deque()
        cutoff = ts_event - self.window_ns
        while q and q[0][0] < cutoff:
            q.popleft()
        q.append((ts_event, strike, side))
        if len(q) == 1:
            return 1
        strikes = {s for _, s, sd in q if sd == side}
        return len(strikes)
