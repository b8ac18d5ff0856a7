"""A test strategy that leaves the node with a known day: one losing round trip, then one open position.

When the book of its instrument has both sides it buys one contract at market with a protective
stop (a bracket: market entry, stop ``stop_points`` below the ask, a far target), closes it at
market once filled (a realized loss: the spread plus commissions), then buys a second bracket and
holds it. Restarted with orders of its own in the cache, it trades no more. After every position event it writes ``status_path`` (JSON, written to a temp file and
moved): the phase, the realized P&L of its closed positions and its open positions, so a test can
tell when to kill the node and what must come back after a restart.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from nautilus_trader.config import StrategyConfig
from nautilus_trader.model.enums import BookType
from nautilus_trader.model.enums import OrderSide
from nautilus_trader.model.enums import OrderType
from nautilus_trader.model.events import PositionClosed
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.trading.strategy import Strategy


class HoldConfig(StrategyConfig, frozen=True):
    instrument_id: str
    status_path: str
    stop_points: float = 1.0
    round_trips: int = 1  # losing round trips before the position it holds


class HoldStrategy(Strategy):
    def __init__(self, config: HoldConfig) -> None:
        super().__init__(config)
        self.instrument_id = InstrumentId.from_str(config.instrument_id)
        self.entries = 0
        self.closed_realized = 0.0
        self.closed = 0

    def on_start(self) -> None:
        if self.cache.orders(strategy_id=self.id):  # restarted: the restored position only
            self.entries = self.config.round_trips + 1
        self.subscribe_order_book_deltas(self.instrument_id, book_type=BookType.L3_MBO)

    def on_order_book_deltas(self, deltas) -> None:
        if self.entries > self.config.round_trips or self.cache.positions_open(strategy_id=self.id):
            return
        if any(not order.is_closed for order in self.cache.orders(strategy_id=self.id)):
            return  # an entry, its bracket or a close still working
        book = self.cache.order_book(self.instrument_id)
        if book is None or book.best_bid_price() is None or book.best_ask_price() is None:
            return
        instrument = self.cache.instrument(self.instrument_id)
        ask = book.best_ask_price().as_double()
        orders = self.order_factory.bracket(
            self.instrument_id, OrderSide.BUY, instrument.make_qty(1),
            sl_trigger_price=instrument.make_price(max(ask - self.config.stop_points, 0.25)),
            tp_price=instrument.make_price(round((ask * 3 + 50) * 4) / 4),
            entry_order_type=OrderType.MARKET,
        )
        self.entries += 1
        self.submit_order_list(orders)

    def on_position_opened(self, event) -> None:
        if self.entries <= self.config.round_trips:  # a round trip: close at once
            self.cancel_all_orders(self.instrument_id)
            self.close_all_positions(self.instrument_id)
        self._write_status()

    def on_position_closed(self, event: PositionClosed) -> None:
        self.closed += 1
        self.closed_realized += event.realized_pnl.as_double()
        self._write_status()

    def _write_status(self) -> None:
        positions = self.cache.positions_open(strategy_id=self.id)
        holding = self.closed >= self.config.round_trips and bool(positions)
        status = {
            "phase": "holding" if holding else "trading",
            "closed": self.closed,
            "closed_realized_usd": self.closed_realized,
            "open_positions": [
                {"position_id": p.id.value, "side": p.side.name, "quantity": p.quantity.as_double(),
                 "avg_px_open": p.avg_px_open, "instrument_id": p.instrument_id.value}
                for p in positions
            ],
            "open_orders": [o.client_order_id.value for o in self.cache.orders_open(strategy_id=self.id)],
        }
        path = Path(self.config.status_path)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(status))
        tmp.replace(path)
