"""Forward-move accuracy: did the underlying future move the way a signal's bias said?

For a signal at ``t`` and a horizon of N minutes, the move is the future's price at ``t + N``
minus its price at ``t``, each the last trade at or before that time. A BULLISH signal is right
when the move is up, a BEARISH one when it is down. Accuracy counts only signals with a
non-zero move and both prices available: a trade at or before ``t``, and ``t + N`` no later
than the future's last trade (beyond it the data says nothing about the move).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MINUTE_NS = 60 * 1_000_000_000
_EXPECTED = {"BULLISH": 1, "BEARISH": -1}


def horizon_key(minutes: int) -> str:
    return f"{minutes}m"


def forward_moves(
    ts_event: np.ndarray,
    expected: np.ndarray,
    trade_ts: np.ndarray,
    trade_px: np.ndarray,
    horizon_ns: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(available, move) per signal; ``trade_ts`` sorted ascending, ``trade_px`` aligned with it.

    ``expected`` is +1/-1 per signal (0: no bias, never available).
    """
    ts_event = np.asarray(ts_event, dtype=np.int64)
    n = len(ts_event)
    if len(trade_ts) == 0 or n == 0:
        return np.zeros(n, dtype=bool), np.zeros(n, dtype=np.float64)
    target = ts_event + np.int64(horizon_ns)
    i0 = np.searchsorted(trade_ts, ts_event, side="right") - 1
    i1 = np.searchsorted(trade_ts, target, side="right") - 1
    available = (i0 >= 0) & (target <= trade_ts[-1]) & (np.asarray(expected) != 0)
    move = np.zeros(n, dtype=np.float64)
    move[available] = trade_px[i1[available]] - trade_px[i0[available]]
    return available, move


def forward_accuracy(
    signals: pd.DataFrame,
    prices: dict[str, tuple[np.ndarray, np.ndarray]],
    minutes: tuple[int, ...],
) -> dict[str, dict]:
    """Per horizon: ``accuracy`` (None when nothing to score), ``count`` (signals scored:
    non-zero move, prices available), ``correct``, ``zero_move`` and ``unavailable``.

    ``signals`` needs ``ts_event``, ``underlying`` (a key of ``prices``) and ``bias``;
    ``prices`` maps an underlying to its future's (sorted trade times, trade prices).
    """
    out: dict[str, dict] = {}
    n = len(signals)
    expected_all = signals["bias"].map(_EXPECTED).fillna(0).to_numpy(dtype=np.int64) if n else np.zeros(0, np.int64)
    for minutes_n in minutes:
        available = np.zeros(n, dtype=bool)
        move = np.zeros(n, dtype=np.float64)
        if n:
            underlying = signals["underlying"].to_numpy()
            for key in pd.unique(underlying):
                rows = np.flatnonzero(underlying == key)
                if key not in prices:
                    continue
                ts, px = prices[key]
                a, m = forward_moves(
                    signals["ts_event"].to_numpy()[rows],
                    expected_all[rows],
                    ts,
                    px,
                    int(minutes_n) * MINUTE_NS,
                )
                available[rows], move[rows] = a, m
        scored = available & (move != 0)
        correct = int((np.sign(move[scored]) == expected_all[scored]).sum())
        count = int(scored.sum())
        out[horizon_key(minutes_n)] = {
            "minutes": int(minutes_n),
            "accuracy": round(correct / count, 4) if count else None,
            "count": count,
            "correct": correct,
            "zero_move": int((available & (move == 0)).sum()),
            "unavailable": int(n - available.sum()),
        }
    return out


def future_prices(trades: pd.DataFrame, instruments: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Underlying key -> (trade times, prices) of each future in the catalog.

    A future is found both by its raw symbol (what options name as their underlying, e.g.
    "NQZ6") and by its instrument id ("NQZ6.GLBX").
    """
    futures = instruments[instruments["kind"] == "FUT"]
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for row in futures.itertuples(index=False):
        own = trades[trades["instrument_id"] == row.instrument_id]
        own = own.sort_values("ts_event", kind="stable")
        series = (own["ts_event"].to_numpy(dtype=np.int64), own["price"].to_numpy(dtype=np.float64))
        out[row.raw_symbol] = series
        out[row.instrument_id] = series
    return out
