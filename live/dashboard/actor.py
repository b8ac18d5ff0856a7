"""``DashboardActor``: a live web page of a paper or limited node (signals, positions, limits, feed).

Enable it in a node file::

    [[actors]]
    actor_path = "live.dashboard.actor:DashboardActor"
    config_path = "live.dashboard.actor:DashboardConfig"
    profile = "configs/monitors/dashboard.toml"

    [actors.config]
    port = 8765

The node factories (``live.paper.attach_dashboards``) hand it the node's mode, its RiskEngine and
its figure sources (the other actors with ``live_figures()``: the risk guard, the data-quality
and latency monitors) and bind its port before anything connects. On start it listens on the
bus (``FlowSignal``, ``DetectorStatus``, ``FeedHealth``, ``MonitorAlarm``), builds a snapshot
every ``refresh_s`` on the node's thread (``live.dashboard.state``) and hands it to the web
server (``live.dashboard.server``: aiohttp on its own thread and loop). The data budget is read
from the ledger every ``budget_refresh_s``. Stopping the actor stops the server and frees the port.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from nautilus_trader.common.actor import Actor
from nautilus_trader.config import ActorConfig
from nautilus_trader.model.enums import PositionSide, PriceType

from ifd.errors import IfdError
from ifd.sessions import cme_trading_day
from live.dashboard.server import DashboardServer, access_token
from live.dashboard.state import (
    BusLog,
    FeedMeter,
    PositionRow,
    build_snapshot,
    figure_section,
    iso_ns,
    positions_section,
    read_budget,
)
from strategies.node_loop import on_node_loop
from strategies.signals import DetectorStatus, FeedHealth, FlowSignal, MonitorAlarm, data_topic


class DashboardConfig(ActorConfig, frozen=True):
    """Where the page is served and what it keeps.

    ``host``: 127.0.0.1 (default), ::1 or localhost need no token; any other address needs the
    ``token_env`` variable set (16+ characters), or the node refuses to start. ``require_token``
    asks for it on loopback too. ``port`` 0 picks a free port (``DashboardActor.url``).
    ``budget_config``: the budget TOML (None: ``IFD_BUDGET_CONFIG`` or ``configs/budget.toml``).
    """

    host: str = "127.0.0.1"
    port: int = 8765
    token_env: str = "IFD_DASHBOARD_TOKEN"
    require_token: bool = False
    refresh_s: float = 1.0
    max_signals: int = 50
    max_alarms: int = 20
    budget_refresh_s: float = 30.0
    budget_config: str | None = None
    title: str = "ifd-flow"

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0-65535 (0: any free port), got {self.port}")
        if not self.host.strip() or not self.token_env.strip():
            raise ValueError("host and token_env must not be empty")
        if not 0.1 <= self.refresh_s <= 60:
            raise ValueError(f"refresh_s must be 0.1-60, got {self.refresh_s}")
        if self.budget_refresh_s < 1:
            raise ValueError(f"budget_refresh_s must be >= 1, got {self.budget_refresh_s}")
        if self.max_signals < 1 or self.max_alarms < 1:
            raise ValueError("max_signals and max_alarms must be >= 1")


class DashboardActor(Actor):
    """Serves the node's live state on a local web page; reads only, never trades."""

    def __init__(self, config: DashboardConfig | None = None) -> None:
        config = config or DashboardConfig()
        super().__init__(config)
        token = access_token(config.host, config.token_env, os.environ, require_token=config.require_token)
        self._server = DashboardServer(config.host, config.port, token)
        self._token_env = config.token_env if token else None
        self._bus = BusLog(config.max_signals, config.max_alarms)
        self._feed = FeedMeter()
        self._sources: list[Any] = []
        self._mode = "node"
        self._replay = False
        self._trading_state: Callable[[], str] | None = None
        self._budget: dict = {"state": "error", "text": "not read yet", "today": None, "month": None}
        self._started_ns = 0
        self._subscriptions: list[tuple[str, Callable]] = []
        self._errors = 0

    # -- wiring (the node factory, before the node runs) ------------------------------------------

    def attach(self, *, mode: str, sources: Iterable[Any] = (), risk_engine: Any = None, replay: bool = False) -> None:
        """The node's ``mode`` (e.g. "paper · Sandbox"), whether its data is a ``replay``, its figure
        ``sources`` (objects with ``live_figures() -> dict``) and its RiskEngine (trading state)."""
        self._mode = f"{mode} · {'replay' if replay else 'live feed'}"
        self._replay = replay
        self._sources = [s for s in sources if s is not self and callable(getattr(s, "live_figures", None))]
        if risk_engine is not None:
            self._trading_state = lambda: risk_engine.trading_state.name

    def bind(self) -> str:
        """Take the port now (``IfdError`` naming host:port when it is in use); returns the URL."""
        self._server.bind()
        return self._server.url

    @property
    def url(self) -> str:
        """The page's address (the real port once bound; never the token)."""
        return self._server.url

    # -- lifecycle --------------------------------------------------------------------------------

    def on_start(self) -> None:
        self._started_ns = self.clock.timestamp_ns()
        feeds = [
            (data_topic(FlowSignal), self._on_signal),
            (data_topic(DetectorStatus), self._on_detector_status),
            (data_topic(FeedHealth), self._on_feed_health),
            (data_topic(MonitorAlarm), self._on_monitor_alarm),
        ]
        for topic, handler in feeds:
            self.msgbus.subscribe(topic=topic, handler=handler)
            self._subscriptions.append((topic, handler))
        self._read_budget()
        self._publish()
        try:
            self._server.start()
        except IfdError as exc:
            # Our node factories bind at build time and refuse to start when the port is taken;
            # reaching this means a node built without them: trading goes on without the page.
            self.log.error(f"{exc}; the node runs without its dashboard")
            return
        auth = f" (token required: {self._token_env})" if self._token_env else ""
        self.log.info(f"dashboard at {self.url}{auth}")
        self.clock.set_timer("dashboard-refresh", interval=timedelta(seconds=self.config.refresh_s),
                             callback=on_node_loop(lambda _event: self._publish()))
        self.clock.set_timer("dashboard-budget", interval=timedelta(seconds=self.config.budget_refresh_s),
                             callback=on_node_loop(lambda _event: self._read_budget()))

    def on_stop(self) -> None:
        for name in ("dashboard-refresh", "dashboard-budget"):
            if name in self.clock.timer_names:
                self.clock.cancel_timer(name)
        for topic, handler in self._subscriptions:
            self.msgbus.unsubscribe(topic=topic, handler=handler)
        self._subscriptions.clear()
        self._server.stop()
        self.log.info("dashboard stopped")

    def on_dispose(self) -> None:
        self._server.stop()  # also a port bound at build by a node that never started

    # -- bus handlers (append only; never raise into the engine) ---------------------------------

    def _on_signal(self, signal: Any) -> None:
        if isinstance(signal, FlowSignal):
            self._guarded("signal", lambda: self._bus.add_signal(signal))

    def _on_detector_status(self, status: Any) -> None:
        if isinstance(status, DetectorStatus):
            self._guarded("detector status", lambda: self._bus.set_detector(status))

    def _on_feed_health(self, health: Any) -> None:
        if isinstance(health, FeedHealth):
            self._guarded("feed health", lambda: self._bus.set_feed_health(health))

    def _on_monitor_alarm(self, alarm: Any) -> None:
        if isinstance(alarm, MonitorAlarm):
            self._guarded("monitor alarm", lambda: self._bus.add_alarm(alarm))

    def _guarded(self, what: str, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as exc:
            self._errors += 1
            if self._errors <= 10:  # a broken figure would otherwise log every second
                self.log.error(f"dashboard: {what}: {type(exc).__name__}: {exc}")

    # -- the snapshot (node thread) ----------------------------------------------------------------

    def snapshot(self) -> dict:
        """The page's state now (what the timer publishes)."""
        now = self.clock.timestamp_ns()
        return build_snapshot(
            title=self.config.title,
            trader_id=self.trader_id.value,
            mode=self._mode,
            trading_state=self._trading_state() if self._trading_state is not None else None,
            started_ns=self._started_ns or now,
            now_ns=now,
            refresh_s=self.config.refresh_s,
            bus=self._bus,
            positions=self._positions(now),
            orders={"open": self.cache.orders_open_count(), "inflight": self.cache.orders_inflight_count()},
            feed=self._feed_sample(now),
            sources=[self._source_section(source) for source in self._sources],
            budget=self._budget,
        )

    def _publish(self) -> None:
        self._guarded("snapshot", lambda: self._server.publish(self.snapshot()))

    def _read_budget(self) -> None:
        self._budget = read_budget(self.config.budget_config, os.environ)

    def _source_section(self, source: Any) -> dict:
        name = getattr(getattr(source, "id", None), "value", None) or type(source).__name__
        try:
            return figure_section(name, source.live_figures())
        except Exception as exc:
            return figure_section(name, None, error=f"{type(exc).__name__}: {exc}")

    def _mark(self, position) -> Any:
        """What closing would get: the bid for a long, the ask for a short (L3 book), else the last trade."""
        book = self.cache.order_book(position.instrument_id)
        price = None
        if book is not None:
            price = book.best_bid_price() if position.side == PositionSide.LONG else book.best_ask_price()
        return price if price is not None else self.cache.price(position.instrument_id, PriceType.LAST)

    def _positions(self, now_ns: int) -> dict:
        rows = []
        for position in self.cache.positions_open():
            mark = self._mark(position)
            rows.append(PositionRow(
                position_id=position.id.value,
                instrument_id=position.instrument_id.value,
                strategy_id=position.strategy_id.value,
                side=position.side.name,
                quantity=position.quantity.as_double(),
                avg_px_open=position.avg_px_open,
                mark=mark.as_double() if mark is not None else None,
                unrealized_usd=position.unrealized_pnl(mark).as_double() if mark is not None else None,
                realized_usd=position.realized_pnl.as_double() if position.realized_pnl is not None else 0.0,
                opened=iso_ns(position.ts_opened),
            ))
        today = cme_trading_day(now_ns)
        closed = sum(p.realized_pnl.as_double() for p in self.cache.positions_closed()
                     if p.realized_pnl is not None and cme_trading_day(p.ts_closed) == today)
        return positions_section(rows, closed)

    def _feed_sample(self, now_ns: int) -> dict:
        books = updates = 0
        last_event = last_trade = 0
        for instrument_id in self.cache.instrument_ids():
            trade = self.cache.trade_tick(instrument_id)
            if trade is not None:
                last_trade = max(last_trade, trade.ts_event)
            if not self.cache.has_order_book(instrument_id):
                continue
            book = self.cache.order_book(instrument_id)
            books += 1
            updates += book.update_count
            last_event = max(last_event, book.ts_last)
        return self._feed.sample(now_ns, books, updates, last_event or None, last_trade or None,
                                 live_data=not self._replay)
