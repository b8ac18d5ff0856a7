"""A minimal strategy: subscribe to MBO deltas and trades for every instrument, count them.

It places no orders. It proves the replay path (every catalog row reaches a strategy) and is
the no-op baseline the IFD strategies' overhead is measured against.
"""

from __future__ import annotations

from collections import defaultdict

from nautilus_trader.config import StrategyConfig
from nautilus_trader.model.data import OrderBookDeltas
from nautilus_trader.model.data import TradeTick
from nautilus_trader.model.enums import AggressorSide
from nautilus_trader.model.enums import BookType
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.trading.strategy import Strategy


class FlowCounterConfig(StrategyConfig, frozen=True):
    """Which instruments to follow (none listed: every instrument in the cache at start)."""

    instrument_ids: list[str] | None = None
    subscribe_book: bool = True
    subscribe_trades: bool = True


class FlowCounter(Strategy):
    """Counts book deltas and trades per instrument, with aggressor-side volume and premium."""

    def __init__(self, config: FlowCounterConfig) -> None:
        super().__init__(config)
        self._deltas: dict[str, int] = defaultdict(int)
        self._trades: dict[str, int] = defaultdict(int)
        self._buy_volume: dict[str, int] = defaultdict(int)
        self._sell_volume: dict[str, int] = defaultdict(int)
        self._notional: dict[str, float] = defaultdict(float)
        self._multipliers: dict[InstrumentId, float] = {}

    def _instrument_ids(self) -> list[InstrumentId]:
        if self.config.instrument_ids:
            return [InstrumentId.from_str(i) for i in self.config.instrument_ids]
        return sorted(self.cache.instrument_ids(), key=str)

    def on_start(self) -> None:
        for instrument_id in self._instrument_ids():
            instrument = self.cache.instrument(instrument_id)
            if instrument is None:
                self.log.error(f"instrument {instrument_id} not in cache; not subscribed")
                continue
            self._multipliers[instrument_id] = float(instrument.multiplier)
            if self.config.subscribe_book:
                self.subscribe_order_book_deltas(instrument_id, book_type=BookType.L3_MBO)
            if self.config.subscribe_trades:
                self.subscribe_trade_ticks(instrument_id)

    def on_order_book_deltas(self, deltas: OrderBookDeltas) -> None:
        self._deltas[deltas.instrument_id.value] += len(deltas.deltas)

    def on_trade_tick(self, tick: TradeTick) -> None:
        key = tick.instrument_id.value
        size = int(tick.size)
        self._trades[key] += 1
        if tick.aggressor_side == AggressorSide.BUYER:
            self._buy_volume[key] += size
        elif tick.aggressor_side == AggressorSide.SELLER:
            self._sell_volume[key] += size
        self._notional[key] += float(tick.price) * size * self._multipliers.get(tick.instrument_id, 1.0)

    def summary(self) -> dict:
        """Per-instrument counts for the run summary."""
        keys = sorted(set(self._deltas) | set(self._trades))
        return {
            "order_book_deltas": sum(self._deltas.values()),
            "trade_ticks": sum(self._trades.values()),
            "instruments_seen": len(keys),
            "per_instrument": {
                key: {
                    "order_book_deltas": self._deltas.get(key, 0),
                    "trade_ticks": self._trades.get(key, 0),
                    "buy_volume": self._buy_volume.get(key, 0),
                    "sell_volume": self._sell_volume.get(key, 0),
                    "premium_notional_usd": round(self._notional.get(key, 0.0), 2),
                }
                for key in keys
            },
        }
