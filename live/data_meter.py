"""``DataMeter``: meters what a node streams from Databento into the budget ledger, and shuts the node
off when the day's or the month's data budget is used up.

The node factories add it to every paper and limited node on the live Databento feed (never to a
replay, which costs nothing); before the node connects, ``price_data_meters`` gives it the live unit
prices Databento lists for the dataset (a free metadata call). Without prices it shuts the node off
at start: a node that cannot meter its spend does not stream. It only
listens on the message bus (book deltas and trades the node's subscriptions bring), so it never
adds a subscription, and so never adds to the bill. Every ``flush_every_s`` of node time the
records received since the last flush are priced (``adapters.databento.live_usage``) and written to
the ledger as ``live`` rows, which ``ifd data budget``, the downloads and the next node start all
count. When the ledger's spend reaches the daily or monthly limit of ``configs/budget.toml``, the
meter raises a critical ``MonitorAlarm`` and calls the node's shut-off (``on_exhausted``: the node
runner's emergency stop: cancel, flatten, halt, stop streaming), once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from datetime import timedelta

from nautilus_trader.common.actor import Actor
from nautilus_trader.config import ActorConfig
from nautilus_trader.config import ImportableActorConfig
from nautilus_trader.model.data import DataType
from nautilus_trader.model.data import OrderBookDeltas

from adapters.databento.budget import BudgetConfig
from adapters.databento.budget import budget_status
from adapters.databento.budget import load_budget
from adapters.databento.ledger import Ledger
from adapters.databento.ledger import RequestKey
from adapters.databento.live_usage import RECORD_BYTES
from adapters.databento.live_usage import LiveUsage
from ifd.errors import IfdError
from strategies.node_loop import on_node_loop
from strategies.signals import MonitorAlarm

LIVE_WINDOW = "live"


class DataMeterConfig(ActorConfig, frozen=True):
    """The dataset and symbols streamed, Databento's live unit prices (USD per GB by schema), the
    budget TOML (None: ``IFD_BUDGET_CONFIG`` or ``configs/budget.toml``) and how often to write."""

    dataset: str = "GLBX.MDP3"
    symbols: tuple[str, ...] = ()
    stype_in: str = "parent"
    unit_prices: dict[str, float] = {}
    budget_config: str | None = None
    flush_every_s: float = 60.0
    mbo_bytes_per_trade: int = 2 * RECORD_BYTES["mbo"]  # trade + one fill record of the MBO stream (0: no MBO)


class DataMeter(Actor):
    """Counts streamed records, writes their cost to the ledger, shuts off at the budget."""

    def __init__(self, config: DataMeterConfig) -> None:
        super().__init__(config)
        if config.flush_every_s <= 0:
            raise ValueError(f"flush_every_s must be > 0, got {config.flush_every_s!r}")
        self._usage: LiveUsage | None = None
        if config.unit_prices:
            self.set_unit_prices(config.unit_prices)
        self._budget: BudgetConfig = load_budget(config.budget_config)
        self._subscriptions: list[tuple[str, Callable]] = []
        self._exhausted_reason: str | None = None
        self._spent_usd = 0.0
        self._written_rows = 0
        self.on_exhausted: Callable[[str], None] | None = None  # set by the node runner

    def set_unit_prices(self, unit_prices: dict[str, float]) -> None:
        """Databento's live USD per GB by schema (``IfdError`` without an mbo or trades price)."""
        self._usage = LiveUsage(dict(unit_prices), self.config.mbo_bytes_per_trade)

    @property
    def priced(self) -> bool:
        return self._usage is not None

    # -- lifecycle ----------------------------------------------------------------------------

    def on_start(self) -> None:
        if self._usage is None:
            self._shut_off("no live unit prices: the node cannot meter its Databento spend")
            return
        definitions = len(self.cache.instruments())  # the definitions streamed at connect
        self._usage.add_definitions(definitions)
        for topic, handler in (("data.book.deltas.*", self._on_deltas), ("data.trades.*", self._on_trade)):
            self.msgbus.subscribe(topic=topic, handler=handler)
            self._subscriptions.append((topic, handler))
        self.clock.set_timer(f"{self.id}-flush", timedelta(seconds=self.config.flush_every_s), callback=on_node_loop(self._on_timer))
        self._flush()  # a node starting over the budget is shut off at once

    def on_stop(self) -> None:
        for topic, handler in self._subscriptions:
            self.msgbus.unsubscribe(topic=topic, handler=handler)
        self._subscriptions.clear()
        if self._usage is not None:
            self._flush()

    # -- counting -------------------------------------------------------------------------------

    def _on_deltas(self, deltas) -> None:
        self._usage.add_book_records(len(deltas.deltas) if isinstance(deltas, OrderBookDeltas) else 1)

    def _on_trade(self, trade) -> None:
        self._usage.add_trades(1)

    # -- the ledger -----------------------------------------------------------------------------

    def _on_timer(self, event) -> None:
        self._flush()

    def _flush(self) -> None:
        now = dt.datetime.fromtimestamp(self.clock.timestamp_ns() / 1e9, dt.UTC)
        try:
            with Ledger(self._budget.ledger) as ledger:
                for schema, records, size, price, cost in self._usage.take():
                    key = RequestKey(self.config.dataset, schema, tuple(self.config.symbols), self.config.stype_in,
                                     now.date(), LIVE_WINDOW)
                    ledger.record_live(key, records=records, received_bytes=size, unit_price_usd_gb=price,
                                       cost_usd=cost, reason=f"streamed by {self.trader_id} (estimated from records)",
                                       now=now)
                    self._spent_usd += cost
                    self._written_rows += 1
                status = budget_status(self._budget, now, ledger)
        except Exception as exc:  # a ledger that cannot be written cannot keep the budget: shut off
            self._shut_off(f"budget ledger {self._budget.ledger} not writable ({type(exc).__name__}: {exc})")
            return
        if status.exhausted:
            self._shut_off(f"the {status.used_up} Databento data budget is used up ({status.describe()})")

    def _shut_off(self, reason: str) -> None:
        if self._exhausted_reason is not None:
            return
        self._exhausted_reason = reason
        self.log.error(f"data budget: {reason}; shutting off the live feed")
        ts = self.clock.timestamp_ns()
        self.publish_data(
            DataType(MonitorAlarm),
            MonitorAlarm(ts_event=ts, ts_init=ts, monitor="data_budget", kind="live_budget_exhausted",
                         level="critical", title="Live streaming shut off: data budget used up", text=reason,
                         key="monitor:data_budget:exhausted", fields=f"ledger={self._budget.ledger}"),
        )
        if self.on_exhausted is not None:
            self.on_exhausted(reason)

    # -- figures ----------------------------------------------------------------------------------

    @property
    def exhausted_reason(self) -> str | None:
        """Why the meter shut the node off, or None."""
        return self._exhausted_reason

    def live_figures(self) -> dict:
        """Streaming spend written by this node, rows written and whether it shut the node off."""
        return {"live_spend_usd": round(self._spent_usd, 6), "ledger_rows": self._written_rows,
                "ledger": str(self._budget.ledger), "shut_off": self._exhausted_reason}


def data_meter_config(dataset: str, symbols: tuple[str, ...], budget_config: str) -> ImportableActorConfig:
    """The DataMeter of a node streaming ``symbols`` of ``dataset`` (priced later: ``price_data_meters``)."""
    return ImportableActorConfig(
        actor_path=f"{__name__}:DataMeter", config_path=f"{__name__}:DataMeterConfig",
        config={"dataset": dataset, "symbols": list(symbols), "budget_config": budget_config},
    )


def data_meters(node) -> list[DataMeter]:
    """The node's DataMeter actors."""
    return [actor for actor in node.trader.actors() if isinstance(actor, DataMeter)]


def price_data_meters(node, env: Mapping[str, str]) -> None:
    """Give every unpriced DataMeter of ``node`` Databento's live unit prices (before it connects)."""
    from adapters.databento.downloads import historical_client
    from adapters.databento.live_usage import live_unit_prices

    for meter in data_meters(node):
        if meter.priced:
            continue
        what = f"live unit prices of {meter.config.dataset}"
        try:
            prices = live_unit_prices(historical_client(env), meter.config.dataset)
        except IfdError as exc:
            raise IfdError(f"{what}: {exc} (the node meters its Databento spend with them)") from None
        except Exception as exc:
            raise IfdError(f"{what}: cannot ask Databento ({type(exc).__name__}); the node meters its spend "
                           "with them and does not stream without") from None
        meter.set_unit_prices(prices)
