"""The trades report of a run or session: each bracket entry, as planned against as it went.

One row per entry the IFD strategies planned (``FlowStrategy.entry_plans()``): the reference
price the decision was made at (the triggering trade's price), the stop and target, the P&L the
plan predicted at each (USD), the fill, the slippage (points and USD; positive = worse than the
reference), the exit and the realized P&L of the position cycle the entry opened (commissions included; blank
when the entry did not open a cycle of its own).
"""

from __future__ import annotations

import pandas as pd
from nautilus_trader.model.identifiers import ClientOrderId

COLUMNS = [
    "strategy_id", "client_order_id", "ts_decision", "instrument_id", "side", "quantity", "confidence",
    "reference_price", "stop_loss", "take_profit", "predicted_pnl_at_target_usd", "predicted_pnl_at_stop_usd",
    "status", "fill_price", "slippage_points", "slippage_usd", "position_id", "exit_price", "realized_pnl_usd",
]


def trades_report(trader, cache) -> pd.DataFrame:
    """The trades report of a stopped trader and its cache (of a ``BacktestEngine`` or ``TradingNode``)."""
    rows = []
    for strategy in trader.strategies():
        plans = strategy.entry_plans() if hasattr(strategy, "entry_plans") else []
        for plan in plans:
            sign = 1.0 if plan["side"] == "BUY" else -1.0
            size = plan["quantity"] * plan["multiplier"]
            ref = plan["reference_price"]
            row = {key: plan[key] for key in ("strategy_id", "client_order_id", "ts_decision", "instrument_id",
                                               "side", "quantity", "confidence", "reference_price", "stop_loss",
                                               "take_profit")}
            row["predicted_pnl_at_target_usd"] = sign * (plan["take_profit"] - ref) * size
            row["predicted_pnl_at_stop_usd"] = sign * (plan["stop_loss"] - ref) * size
            order = cache.order(ClientOrderId(plan["client_order_id"]))
            row["status"] = order.status.name if order is not None else "UNKNOWN"
            if order is not None and order.avg_px is not None and order.filled_qty.as_double() > 0:
                fill = float(order.avg_px)
                row["fill_price"] = fill
                row["slippage_points"] = sign * (fill - ref)
                row["slippage_usd"] = sign * (fill - ref) * size
            position = _cycle_opened_by(cache, ClientOrderId(plan["client_order_id"]))
            if position is not None:
                row["position_id"] = position.id.value
                row["exit_price"] = position.avg_px_close if position.is_closed else None
                row["realized_pnl_usd"] = position.realized_pnl.as_double() if position.realized_pnl else None
            rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def _cycle_opened_by(cache, client_order_id: ClientOrderId):
    """The position cycle this entry opened: with NETTING one position id is reused, and earlier
    cycles live on as snapshots, so match the cycle's opening order, not just the id."""
    position = cache.position_for_order(client_order_id)
    if position is None:
        return None
    for cycle in [position, *cache.position_snapshots(position_id=position.id)]:
        if cycle.opening_order_id == client_order_id:
            return cycle
    return None
