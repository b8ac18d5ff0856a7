"""Confidence of a detection (0..1).

v1: a fixed confidence per volume tier, and for the premium flag one that grows with the premium
over the threshold.

v3, in three steps:

1. a weighted mean of four factors, each mapped to 0..1 by a linear ramp: pressure z-score vs
   the baseline, velocity, size (window net premium), urgency (sweep / strike coordination);
2. reduced by market-making flags: ``x (1 - straddle_penalty * straddle score)``,
   ``x (1 - crush_penalty)`` on a volatility crush, ``x (1 - refresh_penalty)`` after a
   two-sided cross-strike (market-maker) refresh;
3. risk-adjusted: wide spreads (relative to the mid) and thin liquidity cut it further.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def ramp(x: float, lo: float, hi: float) -> float:
    """0 at or below ``lo``, 1 at or above ``hi``, linear between."""
    if x <= lo:
        return 0.0
    if x >= hi:
        return 1.0
    return (x - lo) / (hi - lo)


def v1_tier_confidence(tier: int, tier_confidences: Sequence[float]) -> float:
    """Confidence of a volume tier (0-based; -1 -> 0)."""
    return float(tier_confidences[tier]) if 0 <= tier < len(tier_confidences) else 0.0


def v1_premium_confidence(premium_usd: float, threshold_usd: float, base: float, at_double: float) -> float:
    """``base`` at the threshold, rising linearly to ``at_double`` at twice the threshold (capped)."""
    if threshold_usd <= 0 or premium_usd < threshold_usd:
        return 0.0
    return base + (at_double - base) * ramp(premium_usd, threshold_usd, 2 * threshold_usd)


@dataclass(frozen=True, slots=True)
class V3Weights:
    """Factor ramps, weights, penalties and risk settings of the v3 confidence."""

    z_lo: float
    z_hi: float
    velocity_lo: float
    velocity_hi: float
    size_lo_usd: float
    size_hi_usd: float
    w_z: float
    w_velocity: float
    w_size: float
    w_urgency: float
    straddle_penalty: float
    crush_penalty: float
    refresh_penalty: float
    spread_ok: float  # relative spread (ask - bid) / mid with no penalty
    spread_wide: float  # relative spread with the full spread penalty
    spread_penalty: float
    liquidity_full_volume: float  # window volume (contracts) with no liquidity penalty
    liquidity_penalty: float


def v3_base_score(z: float, vel: float, size_usd: float, urgency: float, w: V3Weights) -> float:
    """Step 1: weighted mean of the ramped factors."""
    total = w.w_z + w.w_velocity + w.w_size + w.w_urgency
    if total <= 0:
        return 0.0
    s = (
        w.w_z * ramp(z, w.z_lo, w.z_hi)
        + w.w_velocity * ramp(vel, w.velocity_lo, w.velocity_hi)
        + w.w_size * ramp(size_usd, w.size_lo_usd, w.size_hi_usd)
        + w.w_urgency * (0.0 if urgency < 0 else 1.0 if urgency > 1 else urgency)
    )
    return s / total


def mm_factor(straddle_score: float, crushed: bool, refreshed: bool, w: V3Weights) -> float:
    """Step 2: the multiplier for market-making flags (1 = no flag)."""
    f = 1.0 - w.straddle_penalty * straddle_score
    if crushed:
        f *= 1.0 - w.crush_penalty
    if refreshed:
        f *= 1.0 - w.refresh_penalty
    return f if f > 0 else 0.0


def risk_factor(best_bid: float, best_ask: float, window_volume: float, w: V3Weights) -> float:
    """Step 3: the multiplier for spread width and liquidity (1 = tight and liquid).

    A missing or crossed book counts as the widest spread."""
    if best_bid > 0.0 and best_ask >= best_bid:
        mid = 0.5 * (best_bid + best_ask)
        rel = (best_ask - best_bid) / mid
    else:
        rel = w.spread_wide
    f = 1.0 - w.spread_penalty * ramp(rel, w.spread_ok, w.spread_wide)
    f *= 1.0 - w.liquidity_penalty * (1.0 - ramp(window_volume, 0.0, w.liquidity_full_volume))
    return f


def v3_confidence(
    z: float,
    vel: float,
    size_usd: float,
    urgency: float,
    straddle_score: float,
    crushed: bool,
    refreshed: bool,
    best_bid: float,
    best_ask: float,
    window_volume: float,
    w: V3Weights,
) -> tuple[float, dict[str, float]]:
    """Confidence and its parts (``base``, ``mm``, ``risk``)."""
    base = v3_base_score(z, vel, size_usd, urgency, w)
    mm = mm_factor(straddle_score, crushed, refreshed, w)
    risk = risk_factor(best_bid, best_ask, window_volume, w)
    return base * mm * risk, {"base": base, "mm": mm, "risk": risk}
