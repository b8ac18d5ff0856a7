"""Contract facts of CME NQ futures and options that orders must respect."""

from __future__ import annotations

import math

NQ_MULTIPLIER = 20.0  # USD per index point
NQ_FUTURE_TICK = 0.25
NQ_OPTION_TICK_SWITCH = 5.00  # premium above it trades in 0.25 ticks, at or below it in 0.05
NQ_OPTION_WIDE_TICK = 0.25
NQ_OPTION_NARROW_TICK = 0.05


def tick_size(kind: str, price: float) -> float:
    """The tick that applies at ``price`` ("FUT", "CALL" or "PUT")."""
    if kind == "FUT":
        return NQ_FUTURE_TICK
    return NQ_OPTION_WIDE_TICK if price > NQ_OPTION_TICK_SWITCH + 1e-9 else NQ_OPTION_NARROW_TICK


def round_to_tick(kind: str, price: float, up: bool) -> float:
    """``price`` moved to the tick grid, up or down; never below one tick."""
    tick = tick_size(kind, price)
    steps = price / tick
    steps = math.ceil(steps - 1e-9) if up else math.floor(steps + 1e-9)
    # 5.00 lies on both option grids, so rounding never jumps to the wrong side of the switch.
    rounded = round(steps * tick, 2)
    return max(rounded, NQ_FUTURE_TICK if kind == "FUT" else NQ_OPTION_NARROW_TICK)
