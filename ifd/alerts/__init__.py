"""Alerts for the monitor, the backtests and the live nodes: console, rotating log file, SQLite history, webhook.

``load_alerts_config`` reads ``configs/alerts.toml``; ``build_dispatcher`` makes the sinks;
``AlertDispatcher.dispatch`` sends an ``Alert`` (levels per sink, de-duplication, rate limits, a
failing sink isolated, the webhook on its own thread); ``alert_from_signal`` turns a FlowSignal
or a ``signals.parquet`` row into an alert. ``ifd.alerts.actor.AlertsActor`` does it all inside a
NautilusTrader node (imported from there: it needs NautilusTrader); ``ifd.alerts.cli`` holds
``ifd alerts ls`` and ``ifd alerts test``.
"""

from ifd.alerts.alert import Alert
from ifd.alerts.alert import Level
from ifd.alerts.config import AlertsConfig
from ifd.alerts.config import load_alerts_config
from ifd.alerts.dispatcher import AlertDispatcher
from ifd.alerts.dispatcher import DispatchResult
from ifd.alerts.dispatcher import build_dispatcher
from ifd.alerts.history import AlertHistory
from ifd.alerts.signal_alerts import alert_from_signal

__all__ = [
    "Alert",
    "AlertDispatcher",
    "AlertHistory",
    "AlertsConfig",
    "DispatchResult",
    "Level",
    "alert_from_signal",
    "build_dispatcher",
    "load_alerts_config",
]
