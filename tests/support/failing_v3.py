"""An IFD v3 strategy whose detector breaks after N trades: proves the fallback hand-over."""

from __future__ import annotations

from strategies.ifd_v3 import IfdV3Config
from strategies.ifd_v3 import IfdV3Strategy


class FailingV3Config(IfdV3Config, frozen=True):
    fail_after_trades: int = 1_000


class _BreakingDetector:
    """Delegates to the real detector, then raises like a bug would."""

    def __init__(self, detector, fail_after: int) -> None:
        self._detector = detector
        self._left = fail_after

    def on_trade(self, trade):
        self._left -= 1
        if self._left < 0:
            raise ZeroDivisionError("injected detector failure")
        return self._detector.on_trade(trade)

    def quality(self) -> dict:
        return self._detector.quality()


class FailingV3Strategy(IfdV3Strategy):
    def make_detector(self, params, instruments, baselines):
        real = super().make_detector(params, instruments, baselines)
        return _BreakingDetector(real, self.config.fail_after_trades)
