"""Strike-by-time buy/sell pressure of option trades, vectorized (the heatmap's data).

Each cell is one strike (all expiries together) and one time bucket of one right (calls or
puts): buy-initiated and sell-initiated contracts by the trades' aggressor side, and the signed
imbalance ``(buy - sell) / (buy + sell)`` in [-1, 1]. That is ``2 * pressure_ratio - 1`` of
``ifd.detection.pressure`` (buy share of the volume), which works on one window's scalars; here it
runs over whole arrays, and a cell with no buy or sell volume is NaN (blank), not neutral.
Trades without an aggressor side count in neither direction (``no_side`` says how many).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

AGGRESSOR_BUYER = 1
AGGRESSOR_SELLER = 2
KINDS = ("CALL", "PUT")


@dataclass
class PressureGrid:
    """``buy``/``sell``/``imbalance`` per kind, each shaped (strikes, buckets)."""

    bucket_ns: int
    bucket_starts_ns: np.ndarray
    strikes: np.ndarray
    buy: dict[str, np.ndarray]
    sell: dict[str, np.ndarray]
    imbalance: dict[str, np.ndarray]
    trades: int
    no_side: int

    @property
    def empty(self) -> bool:
        return self.strikes.size == 0 or self.bucket_starts_ns.size == 0


def signed_imbalance(buy: np.ndarray, sell: np.ndarray) -> np.ndarray:
    """``(buy - sell) / (buy + sell)`` elementwise; NaN where there is no volume."""
    buy = np.asarray(buy, dtype=np.float64)
    sell = np.asarray(sell, dtype=np.float64)
    total = buy + sell
    out = np.full(total.shape, np.nan)
    np.divide(buy - sell, total, out=out, where=total > 0)
    return out


def _empty_grid(bucket_ns: int) -> PressureGrid:
    none = {k: np.empty((0, 0)) for k in KINDS}
    return PressureGrid(bucket_ns, np.empty(0, np.int64), np.empty(0), none, dict(none), dict(none), 0, 0)


def pressure_grid(
    trades: pd.DataFrame, bucket_ns: int, start_ns: int | None = None, end_ns: int | None = None,
) -> PressureGrid:
    """Bucket option trades (``ts_event, size, aggressor_side, kind, strike``) by strike and time.

    Buckets are aligned to multiples of ``bucket_ns`` (whole minutes for 60 s) and cover
    ``start_ns``..``end_ns`` (default: the trades' own range); trades outside are left out.
    """
    if bucket_ns <= 0:
        raise ValueError(f"bucket_ns must be > 0, got {bucket_ns}")
    if trades.empty:
        return _empty_grid(bucket_ns)
    ts_all = trades["ts_event"].to_numpy(dtype=np.int64)
    lo = int(ts_all.min()) if start_ns is None else int(start_ns)
    hi = int(ts_all.max()) if end_ns is None else int(end_ns)
    options = trades[trades["kind"].isin(KINDS).to_numpy() & (ts_all >= lo) & (ts_all <= hi)]
    if options.empty or hi < lo:
        return _empty_grid(bucket_ns)

    first = lo - lo % bucket_ns
    n_buckets = int((hi - first) // bucket_ns) + 1
    starts = first + bucket_ns * np.arange(n_buckets, dtype=np.int64)
    strikes, strike_idx = np.unique(options["strike"].to_numpy(dtype=np.float64), return_inverse=True)
    ts = options["ts_event"].to_numpy(dtype=np.int64)
    cell = strike_idx * n_buckets + (ts - first) // bucket_ns
    size = options["size"].to_numpy(dtype=np.float64)
    side = options["aggressor_side"].to_numpy()
    kind = options["kind"].to_numpy(dtype=object)
    shape, cells = (strikes.size, n_buckets), strikes.size * n_buckets
    buy, sell, imbalance = {}, {}, {}
    for k in KINDS:  # calls, then puts: two array passes
        is_buy = (kind == k) & (side == AGGRESSOR_BUYER)
        is_sell = (kind == k) & (side == AGGRESSOR_SELLER)
        buy[k] = np.bincount(cell[is_buy], weights=size[is_buy], minlength=cells).reshape(shape)
        sell[k] = np.bincount(cell[is_sell], weights=size[is_sell], minlength=cells).reshape(shape)
        imbalance[k] = signed_imbalance(buy[k], sell[k])
    no_side = int((~np.isin(side, (AGGRESSOR_BUYER, AGGRESSOR_SELLER))).sum())
    return PressureGrid(bucket_ns, starts, strikes, buy, sell, imbalance, len(options), no_side)


def busiest_strikes(grid: PressureGrid, limit: int) -> tuple[PressureGrid, int]:
    """The grid cut to the ``limit`` strikes with the most contracts traded (calls and puts, in
    strike order), and how many strikes were left out: a whole chain would make an unreadable,
    heavy heatmap."""
    if grid.strikes.size <= limit:
        return grid, 0
    volume = sum(grid.buy[k].sum(axis=1) + grid.sell[k].sum(axis=1) for k in KINDS)
    keep = np.sort(np.argsort(-volume, kind="stable")[:limit])
    cut = PressureGrid(
        grid.bucket_ns, grid.bucket_starts_ns, grid.strikes[keep],
        {k: v[keep] for k, v in grid.buy.items()}, {k: v[keep] for k, v in grid.sell.items()},
        {k: v[keep] for k, v in grid.imbalance.items()}, grid.trades, grid.no_side,
    )
    return cut, int(grid.strikes.size - limit)
