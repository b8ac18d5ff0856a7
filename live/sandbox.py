"""The paper venue: NautilusTrader's Sandbox execution client, plus restored working orders.

NautilusTrader's ``SandboxExecutionClient`` simulates the venue in memory: after a restart the
node's cache (from Redis, ``live.state``) holds the open positions and the working orders
(bracket stops and targets), but the fresh simulated venue knows none of them, so a restored
stop would never trigger. ``RestoringSandboxExecutionClient`` puts every restored open order of
its venue back into the venue's matching engine when the first market data of its instrument
arrives (the simulated venue's clock and book start with the data). ``OrderMatchingEngine
.accept_order`` takes an already accepted order back without new events, so the order keeps its
ids and a stop fills as it would have before the restart.
"""

from __future__ import annotations

from collections import defaultdict

from nautilus_trader.adapters.sandbox.execution import SandboxExecutionClient
from nautilus_trader.adapters.sandbox import factory as nautilus_sandbox


class RestoringSandboxExecutionClient(SandboxExecutionClient):
    """``SandboxExecutionClient`` that re-arms the working orders restored from the cache."""

    def connect(self) -> None:
        super().connect()
        self._restored = defaultdict(list)
        for order in self._cache.orders_open(venue=self.venue):
            self._restored[order.instrument_id].append(order)
        if self._restored:
            count = sum(len(orders) for orders in self._restored.values())
            self._log.warning(f"Re-arming {count} working order(s) restored from the cache at first data")

    def on_data(self, data) -> None:
        super().on_data(data)
        restored = getattr(self, "_restored", None)
        if restored:
            instrument_id = getattr(data, "instrument_id", None)
            orders = restored.pop(instrument_id, None)
            if orders:
                engine = self.exchange.get_matching_engine(instrument_id)
                for order in orders:
                    if order.is_open:
                        engine.process_order(order, order.account_id or self.account_id)
                        self._log.info(f"Re-armed {order.client_order_id} ({order.order_type.name})")


class SandboxLiveExecClientFactory(nautilus_sandbox.SandboxLiveExecClientFactory):
    """Builds ``RestoringSandboxExecutionClient`` (same config as NautilusTrader's Sandbox).

    Same class name as NautilusTrader's on purpose: its node builder hands the portfolio only
    to a factory whose ``__name__`` is ``SandboxLiveExecClientFactory``.
    """

    @staticmethod
    def create(loop, name, config, msgbus, cache, clock, portfolio) -> RestoringSandboxExecutionClient:  # type: ignore[override]
        return RestoringSandboxExecutionClient(
            loop=loop, clock=clock, portfolio=portfolio, msgbus=msgbus, cache=cache, config=config,
        )
