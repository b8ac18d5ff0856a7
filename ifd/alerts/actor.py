"""``AlertsActor``: a NautilusTrader actor that turns what a node publishes into alerts.

Add it to a backtest (``[[actors]]`` with ``actor_path = "ifd.alerts.actor:AlertsActor"``,
``config_path = "ifd.alerts.actor:AlertsActorConfig"``, ``[actors.config] config_path =
"configs/alerts.toml"``) or to a ``TradingNode``'s actors. It listens on the message bus to

- ``FlowSignal`` data (every IFD strategy publishes its signals): one alert per signal that the
  ``[signals]`` thresholds let through, de-duplicated per algorithm, option and side;
- ``DetectorStatus`` data: a detector turning unhealthy (its fallback may take over) or back;
- ``events.risk``: the RiskEngine's ``TradingStateChanged`` (HALTED when the risk guard halts);
- ``events.order.*``: ``OrderDenied`` (the risk guard's position cap, the RiskEngine's checks);
- ``MonitorAlarm`` data: the data-quality and latency monitors' findings (``ifd.monitoring``).

The alerts TOML is read when the actor is built, so a bad file stops the node before any data
flows, with the usual one-line error. From then on nothing raises into the engine: a handler
catches everything, the dispatcher isolates each sink, and the webhook posts from its own thread.
"""

from __future__ import annotations

from collections.abc import Callable

from nautilus_trader.common.actor import Actor
from nautilus_trader.common.messages import TradingStateChanged
from nautilus_trader.config import ActorConfig
from nautilus_trader.model.events import OrderDenied

from ifd.alerts.alert import Alert
from ifd.alerts.config import load_alerts_config
from ifd.alerts.dispatcher import AlertDispatcher
from ifd.alerts.dispatcher import build_dispatcher
from ifd.alerts.signal_alerts import alert_from_detector_status
from ifd.alerts.signal_alerts import alert_from_monitor_alarm
from ifd.alerts.signal_alerts import alert_from_order_denied
from ifd.alerts.signal_alerts import alert_from_signal
from ifd.alerts.signal_alerts import alert_from_trading_state
from strategies.signals import DetectorStatus
from strategies.signals import FlowSignal
from strategies.signals import MonitorAlarm
from strategies.signals import data_topic


class AlertsActorConfig(ActorConfig, frozen=True):
    """The alerts TOML to use, the ``source`` label (default: its ``[alerts] source``, else the trader id),
    and which message-bus feeds to alert on."""

    config_path: str = "configs/alerts.toml"
    source: str | None = None
    signals: bool = True
    detector_status: bool = True
    trading_state: bool = True
    orders_denied: bool = True
    monitor_alarms: bool = True


class AlertsActor(Actor):
    """Dispatches alerts for signals, detector health, trading-state changes and denied orders."""

    def __init__(self, config: AlertsActorConfig | None = None) -> None:
        config = config or AlertsActorConfig()
        super().__init__(config)
        self._settings = load_alerts_config(config.config_path)  # IfdError: refused before the run
        self._dispatcher: AlertDispatcher | None = None
        self._source = ""
        self._subscriptions: list[tuple[str, Callable]] = []
        self._handler_errors = 0
        self._final_stats: dict = {}

    # -- lifecycle --------------------------------------------------------------------------

    def on_start(self) -> None:
        self._source = self.config.source or self._settings.source or str(self.trader_id)
        try:
            self._dispatcher = build_dispatcher(self._settings, warn=self._warn, strict=False)
        except Exception as exc:
            self.log.error(f"alerts off: {type(exc).__name__}: {exc}")
            return
        feeds = [
            (self.config.signals, data_topic(FlowSignal), self._on_signal),
            (self.config.detector_status, data_topic(DetectorStatus), self._on_detector_status),
            (self.config.trading_state, "events.risk", self._on_risk_event),
            (self.config.orders_denied, "events.order.*", self._on_order_event),
            (self.config.monitor_alarms, data_topic(MonitorAlarm), self._on_monitor_alarm),
        ]
        for wanted, topic, handler in feeds:
            if wanted:
                self.msgbus.subscribe(topic=topic, handler=handler)
                self._subscriptions.append((topic, handler))
        sinks = ", ".join(sink.name for sink in self._dispatcher.sinks)
        history = " + history" if self._dispatcher.history is not None else ""
        self.log.info(f"alerts to {sinks or 'no sink'}{history} ({self._settings.path})")

    def on_stop(self) -> None:
        for topic, handler in self._subscriptions:
            self.msgbus.unsubscribe(topic=topic, handler=handler)
        self._subscriptions.clear()
        self._close()

    def on_dispose(self) -> None:
        self._close()

    def _close(self) -> None:
        if self._dispatcher is None:
            return
        dispatcher, self._dispatcher = self._dispatcher, None
        try:
            dispatcher.close(self._settings.close_timeout_s)
            self._final_stats = dispatcher.stats()
            self.log.info(f"alerts: {self._final_stats}")
        except Exception as exc:
            self.log.error(f"alerts close failed: {type(exc).__name__}: {exc}")

    # -- public -------------------------------------------------------------------------------

    @property
    def dispatcher(self) -> AlertDispatcher | None:
        return self._dispatcher

    def stats(self) -> dict:
        """The dispatcher's counts (the last ones once stopped) and the handler errors caught."""
        stats = self._dispatcher.stats() if self._dispatcher is not None else dict(self._final_stats)
        return {**stats, "handler_errors": self._handler_errors}

    def alert(self, alert: Alert) -> None:
        """Dispatch an alert of the caller's own (never raises)."""
        if self._dispatcher is not None:
            self._dispatcher.dispatch(alert)

    # -- handlers (never raise into the engine) ----------------------------------------------

    def _guarded(self, what: str, build: Callable[[], Alert | None]) -> None:
        if self._dispatcher is None:
            return
        try:
            alert = build()
            if alert is not None:
                self._dispatcher.dispatch(alert)
        except Exception as exc:
            self._handler_errors += 1
            self.log.error(f"alerts: {what} not alerted: {type(exc).__name__}: {exc}")

    def _on_signal(self, signal) -> None:
        if isinstance(signal, FlowSignal):
            self._guarded("signal", lambda: alert_from_signal(signal, self._settings.signals, self._source))

    def _on_detector_status(self, status) -> None:
        if isinstance(status, DetectorStatus):
            self._guarded("detector status", lambda: alert_from_detector_status(status, self._source))

    def _on_risk_event(self, event) -> None:
        if isinstance(event, TradingStateChanged):
            self._guarded("trading state", lambda: alert_from_trading_state(event, self._source))

    def _on_order_event(self, event) -> None:
        if isinstance(event, OrderDenied):
            self._guarded("order denied", lambda: alert_from_order_denied(event, self._source))

    def _on_monitor_alarm(self, alarm) -> None:
        if isinstance(alarm, MonitorAlarm):
            self._guarded("monitor alarm", lambda: alert_from_monitor_alarm(alarm, self._source))

    def _warn(self, message: str) -> None:
        self.log.warning(f"alerts: {message}")
