"""Trade-mode results per strategy, from a run folder's ``positions.csv``.

``positions.csv`` is NautilusTrader's positions report: with a NETTING account every closed
cycle of a position is one row (earlier cycles are snapshots, ``is_snapshot`` True, the latest
is the position itself); ``realized_pnl`` is text such as ``"130.00 USD"``. Closed positions
(``side`` FLAT) count; still-open ones are only counted. The statistics are NautilusTrader's own
portfolio statistics (``WinRate``, ``AvgWinner``, ``AvgLoser``, ``Expectancy``, ``MaxWinner``,
``MaxLoser``) computed from the realized P&Ls; the profit factor is gross profit over gross
loss (NautilusTrader's ``ProfitFactor`` works on returns only).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from nautilus_trader.analysis import AvgLoser
from nautilus_trader.analysis import AvgWinner
from nautilus_trader.analysis import Expectancy
from nautilus_trader.analysis import MaxLoser
from nautilus_trader.analysis import MaxWinner
from nautilus_trader.analysis import WinRate

from ifd.errors import IfdError

CURRENCY = "USD"


def _clean(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def read_positions(path: Path) -> pd.DataFrame:
    """The positions report; an empty frame when the run had no positions (file holds no table)."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame()
    try:
        frame = pd.read_csv(path, dtype={"strategy_id": str, "side": str, "realized_pnl": str})
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise IfdError(f"{path}: not a positions report ({exc})") from exc
    if frame.empty:
        return frame
    missing = [c for c in ("strategy_id", "side", "realized_pnl") if c not in frame.columns]
    if missing:
        raise IfdError(f"{path}: not a positions report (missing columns: {', '.join(missing)})")
    return frame


def _parse_money(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """("130.00 USD" ...) -> (amounts, currencies); unparseable entries give NaN and ""."""
    parts = values.fillna("").astype(str).str.strip().str.split(" ", n=1, expand=True)
    if parts.shape[1] == 1:
        parts[1] = ""
    amounts = pd.to_numeric(parts[0].str.replace(",", "", regex=False), errors="coerce").to_numpy(np.float64)
    currencies = parts[1].fillna("").str.strip().to_numpy(dtype=object)
    return amounts, currencies


def pnl_stats(pnls: list[float]) -> dict:
    """Win rate, win/loss ratio and the rest from closed positions' realized P&Ls (USD)."""
    n = len(pnls)
    wins = [p for p in pnls if p > 0]
    losses = [p for p in pnls if p < 0]
    win_rate = _clean(WinRate().calculate_from_realized_pnls(pnls)) if n else None
    avg_winner = _clean(AvgWinner().calculate_from_realized_pnls(pnls)) if wins else None
    avg_loser = _clean(AvgLoser().calculate_from_realized_pnls(pnls)) if losses else None
    ratio = avg_winner / abs(avg_loser) if avg_winner is not None and avg_loser else None
    gross_profit, gross_loss = float(sum(wins)), float(-sum(losses))
    return {
        "positions": n,
        "winners": len(wins),
        "losers": len(losses),
        "win_rate": _round(win_rate, 4),
        "win_loss_ratio": _round(ratio, 4),
        "avg_winner_usd": _round(avg_winner, 2),
        "avg_loser_usd": _round(avg_loser, 2),
        "max_winner_usd": _round(_clean(MaxWinner().calculate_from_realized_pnls(pnls)), 2) if wins else None,
        "max_loser_usd": _round(_clean(MaxLoser().calculate_from_realized_pnls(pnls)), 2) if losses else None,
        "expectancy_usd": _round(_clean(Expectancy().calculate_from_realized_pnls(pnls)), 2) if n else None,
        "profit_factor": round(gross_profit / gross_loss, 4) if gross_loss > 0 else None,
        "gross_profit_usd": round(gross_profit, 2),
        "gross_loss_usd": round(gross_loss, 2),
        "total_realized_pnl_usd": round(float(sum(pnls)), 2),
    }


def strategy_trading(positions: pd.DataFrame) -> dict[str, dict]:
    """Strategy id -> ``pnl_stats`` of its closed positions, plus ``open_positions`` and
    ``other_currency_positions`` (closed positions whose P&L is not in USD, left out)."""
    if positions.empty:
        return {}
    amounts, currencies = _parse_money(positions["realized_pnl"])
    closed = positions["side"].astype(str).str.upper().eq("FLAT").to_numpy()
    usd = (currencies == CURRENCY) & ~np.isnan(amounts)
    out = {}
    for sid in sorted(positions["strategy_id"].dropna().astype(str).unique()):
        own = positions["strategy_id"].astype(str).eq(sid).to_numpy()
        stats = pnl_stats([float(x) for x in amounts[own & closed & usd]])
        stats["open_positions"] = int((own & ~closed).sum())
        stats["other_currency_positions"] = int((own & closed & ~usd).sum())
        out[sid] = stats
    return out


def pooled_stats(entries: list[dict]) -> dict:
    """Trading results of several runs pooled from their counts and sums (win rate over all
    closed positions; average winner / loser from gross profit / loss)."""
    positions = sum(e.get("positions", 0) for e in entries)
    winners = sum(e.get("winners", 0) for e in entries)
    losers = sum(e.get("losers", 0) for e in entries)
    gross_profit = sum(e.get("gross_profit_usd", 0.0) for e in entries)
    gross_loss = sum(e.get("gross_loss_usd", 0.0) for e in entries)
    avg_winner = gross_profit / winners if winners else None
    avg_loser = -gross_loss / losers if losers else None
    return {
        "positions": positions,
        "winners": winners,
        "losers": losers,
        "win_rate": round(winners / positions, 4) if positions else None,
        "win_loss_ratio": round(avg_winner / abs(avg_loser), 4) if avg_winner is not None and avg_loser else None,
        "avg_winner_usd": _round(avg_winner, 2),
        "avg_loser_usd": _round(avg_loser, 2),
        "profit_factor": round(gross_profit / gross_loss, 4) if gross_loss > 0 else None,
        "gross_profit_usd": round(gross_profit, 2),
        "gross_loss_usd": round(gross_loss, 2),
        "total_realized_pnl_usd": round(sum(e.get("total_realized_pnl_usd", 0.0) for e in entries), 2),
    }
