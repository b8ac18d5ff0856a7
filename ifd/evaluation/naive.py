"""The naive reference detector: net aggressor premium per option per fixed 5-minute bucket.

For each option instrument and each clock bucket ``floor(ts_event / 300 s)``, the running sum
of signed premium (``price x multiplier x size``, plus for buyer-initiated trades, minus for
seller-initiated ones, nothing for trades without an aggressor) is followed trade by trade.
The first trade at which its absolute value reaches the threshold ($1M) gives one signal for
that bucket, on that trade's ``ts_event``, with side BUY when the sum is positive and SELL when
negative. It is the baseline the IFD detectors must beat, scored with the same matching rule.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ifd.detection.types import BUY
from ifd.detection.types import SELL
from ifd.detection.types import bias_of
from ifd.evaluation.ticks import AGGRESSOR_BUYER
from ifd.evaluation.ticks import AGGRESSOR_SELLER

ALGORITHM = "naive_net_premium"
THRESHOLD_USD = 1_000_000.0
BUCKET_NS = 300 * 1_000_000_000
# Premiums are float sums of price x multiplier x size; a crossing within a millionth of a
# dollar of the threshold counts (float noise, not money).
_EPSILON_USD = 1e-6

SIGNAL_COLUMNS = [
    "ts_event",
    "ts_signal",
    "algorithm",
    "instrument_id",
    "underlying",
    "strike",
    "option_kind",
    "side",
    "bias",
    "confidence",
    "notional_usd",
    "window_start_ns",
    "reasons",
    "strategy_id",
    "mode",
]


def naive_signals(
    trades: pd.DataFrame,
    instruments: pd.DataFrame,
    threshold_usd: float = THRESHOLD_USD,
    bucket_ns: int = BUCKET_NS,
) -> pd.DataFrame:
    """Signals of the naive detector, in the columns of a run's ``signals.parquet``.

    ``trades``: ``instrument_id, ts_event, price, size, aggressor_side`` (1 buyer, 2 seller),
    each instrument's rows in time order; ``instruments``: ``instrument_id, kind, underlying,
    strike, multiplier`` (see ``ticks.catalog_instruments``). Only CALL/PUT instruments count.
    """
    options = instruments[instruments["kind"].isin(["CALL", "PUT"])]
    t = trades.merge(
        options[["instrument_id", "kind", "underlying", "strike", "multiplier"]],
        on="instrument_id",
        how="inner",
        sort=False,
    )
    if t.empty:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in SIGNAL_COLUMNS}).astype(
            {"ts_event": np.int64, "ts_signal": np.int64, "window_start_ns": np.int64},
        )
    # Stable order per instrument and time; the merge keeps the left (file) order within ties.
    t = t.sort_values(["instrument_id", "ts_event"], kind="stable", ignore_index=True)
    aggressor = t["aggressor_side"].to_numpy()
    sign = np.where(aggressor == AGGRESSOR_BUYER, 1.0, np.where(aggressor == AGGRESSOR_SELLER, -1.0, 0.0))
    t["signed_premium"] = t["price"].to_numpy() * t["multiplier"].to_numpy() * t["size"].to_numpy() * sign
    t["bucket"] = t["ts_event"].to_numpy(dtype=np.int64) // bucket_ns
    t["running"] = t.groupby(["instrument_id", "bucket"], sort=False)["signed_premium"].cumsum()
    crossed = t[np.abs(t["running"].to_numpy()) >= threshold_usd - _EPSILON_USD]
    first = crossed.groupby(["instrument_id", "bucket"], sort=False).head(1)
    first = first.sort_values(["ts_event", "instrument_id"], kind="stable", ignore_index=True)

    sides = np.where(first["running"].to_numpy() > 0, BUY, SELL)
    kinds = first["kind"].to_numpy()
    out = pd.DataFrame(
        {
            "ts_event": first["ts_event"].to_numpy(dtype=np.int64),
            "ts_signal": first["ts_event"].to_numpy(dtype=np.int64),
            "algorithm": ALGORITHM,
            "instrument_id": first["instrument_id"].to_numpy(),
            "underlying": first["underlying"].to_numpy(),
            "strike": first["strike"].to_numpy(dtype=np.float64),
            "option_kind": kinds,
            "side": np.where(sides == BUY, "BUY", "SELL"),
            "bias": [bias_of(k, s) for k, s in zip(kinds, sides, strict=True)],
            "confidence": 1.0,
            "notional_usd": np.abs(first["running"].to_numpy()),
            "window_start_ns": first["bucket"].to_numpy(dtype=np.int64) * bucket_ns,
            "reasons": f"net aggressor premium reached ${threshold_usd:,.0f} in a {bucket_ns // 10**9} s bucket",
            "strategy_id": "",
            "mode": "reference",
        },
    )
    return out[SIGNAL_COLUMNS]
