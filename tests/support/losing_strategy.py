"""A deliberately losing test strategy: buys one option at the ask, sells it at the bid, again and again.

Every ``period_ms`` it either closes its position at market (cancelling its bracket first; with
``hold`` it keeps it) or, when flat, submits ``burst`` bracket entries at once (market entry, far stop and target): the
burst tries to exceed the one-contract limit. It records its fills so a test can replay its
position over time.
"""

from __future__ import annotations

from datetime import timedelta

from nautilus_trader.config import StrategyConfig
from nautilus_trader.model.enums import BookType
from nautilus_trader.model.enums import OrderSide
from nautilus_trader.model.enums import OrderType
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.trading.strategy import Strategy


class LosingConfig(StrategyConfig, frozen=True):
    instrument_id: str
    period_ms: int = 2_000
    burst: int = 3
    stop_points: float = 2.0  # stop distance below the entry (option points; x20 USD)
    hold: bool = False  # keep each position (until its stop or the risk guard), re-enter when flat


class LosingStrategy(Strategy):
    def __init__(self, config: LosingConfig) -> None:
        super().__init__(config)
        self.instrument_id = InstrumentId.from_str(config.instrument_id)
        self.fills: list[tuple[int, str, float, str]] = []  # ts, side, qty, client order id
        self.submitted: list[tuple[int, str]] = []  # ts, client order id (entries and exits)

    def on_start(self) -> None:
        self.subscribe_order_book_deltas(self.instrument_id, book_type=BookType.L3_MBO)
        self.clock.set_timer("lose", timedelta(milliseconds=self.config.period_ms), callback=self._tick)

    def _tick(self, _event) -> None:
        book = self.cache.order_book(self.instrument_id)
        if book is None or book.best_bid_price() is None or book.best_ask_price() is None:
            return
        positions = self.cache.positions_open(instrument_id=self.instrument_id, strategy_id=self.id)
        if positions and self.config.hold:
            return
        if positions:
            self.cancel_all_orders(self.instrument_id)
            for position in positions:
                order = self.order_factory.market(self.instrument_id, OrderSide.SELL, position.quantity,
                                                  reduce_only=True)
                self.submitted.append((self.clock.timestamp_ns(), order.client_order_id.value))
                self.submit_order(order, position_id=position.id)
            return
        if self.cache.orders_open(instrument_id=self.instrument_id, strategy_id=self.id):
            return
        instrument = self.cache.instrument(self.instrument_id)
        ask = book.best_ask_price().as_double()
        stop = instrument.make_price(max(ask - self.config.stop_points, 0.25))
        target = instrument.make_price(round((ask * 3 + 50) * 4) / 4)
        for _ in range(self.config.burst):
            orders = self.order_factory.bracket(
                self.instrument_id, OrderSide.BUY, instrument.make_qty(1),
                sl_trigger_price=stop, tp_price=target, entry_order_type=OrderType.MARKET,
            )
            self.submitted.append((self.clock.timestamp_ns(), orders.first.client_order_id.value))
            self.submit_order_list(orders)

    def on_order_filled(self, event) -> None:
        self.fills.append((event.ts_event, event.order_side.name, event.last_qty.as_double(),
                           event.client_order_id.value))
