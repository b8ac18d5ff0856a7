"""Option fair values (Black-76 on the future, with a volatility smile) and CME NQ price grids.

Prices inside the generator are integers in *price units* (pu) of 0.05 index points:
1 pu = 0.05 = 50_000_000 in DBN 1e-9 fixed point.  That unit is handy for NQ because
``price_pu * size`` is exactly the premium notional in USD (0.05 x $20 multiplier = $1).

Grids:
* NQ future: tick 0.25 = 5 pu.
* NQ options: variable tick, 0.05 (1 pu) at or below a 5.00 premium, 0.25 (5 pu) above it.
"""

from __future__ import annotations

import math

import numpy as np

PU_PER_POINT = 20  # price units per index point
PU_FIXED = 50_000_000  # one price unit in DBN 1e-9 fixed point
FUT_TICK_PU = 5
OPT_SWITCH_PU = 100  # 5.00 premium: at or below it the tick is 0.05, above it 0.25
OPT_WIDE_TICK_PU = 5
YEAR_NS = 365.0 * 86_400 * 1_000_000_000

_SQRT2 = math.sqrt(2.0)


def norm_cdf(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF (Abramowitz-Stegun 7.1.26 erf, |error| < 1.5e-7), vectorised."""
    z = np.abs(x) / _SQRT2
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = (
        (((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t
        + 0.254829592
    ) * t
    erf = 1.0 - poly * np.exp(-z * z)
    return 0.5 * (1.0 + np.copysign(erf, x))


def black76(
    fwd: float | np.ndarray,
    strike: np.ndarray,
    years: np.ndarray,
    vol: np.ndarray,
    is_call: np.ndarray,
    rate: float = 0.0,
) -> np.ndarray:
    """Black-76 premium (index points) of European options on a future, vectorised."""
    years = np.maximum(years, 1e-9)
    sd = np.maximum(vol, 1e-4) * np.sqrt(years)
    d1 = (np.log(fwd / strike) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    disc = np.exp(-rate * years)
    call = disc * (fwd * norm_cdf(d1) - strike * norm_cdf(d2))
    put = disc * (strike * norm_cdf(-d2) - fwd * norm_cdf(-d1))
    return np.where(is_call, call, put)


def smile_vol(
    fwd: float,
    strike: np.ndarray,
    years: np.ndarray,
    atm_vol: float,
    skew: float,
    curvature: float,
) -> np.ndarray:
    """Implied vol with a skew and smile in log-moneyness, and a mild term structure."""
    k = np.log(strike / fwd)
    term = 1.0 + 0.04 * np.clip(
        np.log(0.08 / np.maximum(years, 1e-4)), -2.0, 2.0
    )  # short dates a bit richer
    return np.maximum(0.05, atm_vol * term + skew * k + curvature * k * k)


# --- option grid (variable tick) -------------------------------------------------------------


def opt_floor(points: float) -> int:
    """Highest valid option price (pu) at or below ``points``; may be <= 0 (no valid bid)."""
    p = points * PU_PER_POINT
    if p <= OPT_SWITCH_PU:
        return math.floor(p)
    return math.floor(p / OPT_WIDE_TICK_PU) * OPT_WIDE_TICK_PU


def opt_ceil(points: float) -> int:
    """Lowest valid option price (pu) at or above ``points``, at least one tick (0.05)."""
    p = points * PU_PER_POINT
    if p <= OPT_SWITCH_PU:
        return max(1, math.ceil(p))
    return math.ceil(p / OPT_WIDE_TICK_PU) * OPT_WIDE_TICK_PU


def opt_up(pu: int) -> int:
    """Next valid option price above ``pu``."""
    return pu + 1 if pu < OPT_SWITCH_PU else pu + OPT_WIDE_TICK_PU


def opt_down(pu: int) -> int:
    """Next valid option price below ``pu`` (0 or less means none)."""
    return pu - 1 if pu <= OPT_SWITCH_PU else pu - OPT_WIDE_TICK_PU


def opt_on_grid(pu: int) -> bool:
    """True when ``pu`` is a valid NQ option price (positive, variable tick)."""
    return pu > 0 and (pu <= OPT_SWITCH_PU or pu % OPT_WIDE_TICK_PU == 0)


# --- future grid (0.25) ----------------------------------------------------------------------


def fut_floor(points: float) -> int:
    """Highest future price (pu, 0.25 grid) at or below ``points``."""
    return math.floor(points * 4.0) * FUT_TICK_PU


def fut_ceil(points: float) -> int:
    """Lowest future price (pu, 0.25 grid) at or above ``points``."""
    return math.ceil(points * 4.0) * FUT_TICK_PU


def fut_up(pu: int) -> int:
    """Next future price above ``pu``."""
    return pu + FUT_TICK_PU


def fut_down(pu: int) -> int:
    """Next future price below ``pu``."""
    return pu - FUT_TICK_PU
