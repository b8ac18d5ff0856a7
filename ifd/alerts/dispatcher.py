"""The alert dispatcher: levels per sink, de-duplication, rate limits, and sinks that cannot hurt the caller.

``dispatch(alert)`` runs on the caller's thread (detection, trading) and never raises:

1. sinks whose ``min_level`` the alert is under are skipped (the history has its own level);
2. an alert whose ``key`` was let through less than ``dedup_window_s`` before, at the same or a
   higher level, is suppressed (counted): one alert per flow per window, but an escalation
   (warning -> critical) always goes out;
3. per sink, at most ``max_per_minute`` alerts in any 60 s (0: no limit); critical alerts are
   never held back, but count;
4. each sink's ``emit`` is called inside ``try``: one that raises is logged, counted and recorded
   as ``error``; the others still get the alert. The webhook only queues (see ``webhook.py``);
5. the alert and each sink's status go to the SQLite history; the webhook worker later updates
   its status to ``sent`` or ``failed``.

Windows are measured on ``alert.ts_ns`` (the caller's clock, simulated in a backtest), so a
backtest alerts as the same session would live.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections import OrderedDict
from collections import deque
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field

from ifd.alerts.alert import Alert
from ifd.alerts.alert import Level
from ifd.alerts.config import AlertsConfig
from ifd.alerts.history import AlertHistory
from ifd.alerts.sinks import ConsoleSink
from ifd.alerts.sinks import LogFileSink
from ifd.alerts.sinks import Sink
from ifd.alerts.webhook import DeliveryReport
from ifd.alerts.webhook import WebhookSink
from ifd.errors import IfdError

MINUTE_NS = 60_000_000_000
_RECENT = 10_000  # alerts whose delivery statuses are kept in memory (``deliveries``)


def _stderr_warning(message: str) -> None:
    print(f"[ifd.alerts] warning: {message}", file=sys.stderr, flush=True)


@dataclass
class DispatchResult:
    """What happened to one alert: ``suppressed`` is ``""``, ``duplicate``, ``below_level``, ``closed`` or ``error``.

    ``deliveries`` maps each sink to its first status (the webhook's is ``queued``).
    """

    alert_id: str
    suppressed: str = ""
    deliveries: dict[str, str] = field(default_factory=dict)


class AlertDispatcher:
    """Sends alerts to sinks (see the module docstring); safe to call from several threads."""

    def __init__(
        self,
        sinks: Sequence[Sink] = (),
        history: AlertHistory | None = None,
        *,
        history_level: Level = Level.INFO,
        dedup_window_s: float = 300.0,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        names = [sink.name for sink in sinks]
        if len(set(names)) != len(names):
            raise ValueError(f"sink names must be unique, got {names}")
        self._sinks = list(sinks)
        self._history = history
        self._history_level = history_level
        self._dedup_ns = int(dedup_window_s * 1e9)
        self._warn = warn or _stderr_warning
        self._lock = threading.Lock()
        self._status_lock = threading.Lock()
        self._last: dict[str, tuple[int, Level]] = {}
        self._sent_ts: dict[str, deque[int]] = {sink.name: deque() for sink in sinks}
        self._recent: OrderedDict[str, dict] = OrderedDict()
        self._closed = False
        self._counts = {"alerts": 0, "duplicate": 0, "below_level": 0, "history_errors": 0}
        self._sink_counts = {
            sink.name: dict.fromkeys(("queued", "sent", "failed", "dropped", "rate_limited", "error"), 0)
            for sink in sinks
        }
        for sink in sinks:
            if hasattr(sink, "set_report"):
                sink.set_report(self._on_report)  # a worker's outcomes come back here

    @property
    def sinks(self) -> list[Sink]:
        return list(self._sinks)

    @property
    def history(self) -> AlertHistory | None:
        return self._history

    # -- dispatch -------------------------------------------------------------------------

    def dispatch(self, alert: Alert, *, force: bool = False) -> DispatchResult:
        """Send one alert; ``force`` skips the level filters, de-duplication and rate limits (a test alert)."""
        try:
            with self._lock:
                if self._closed:
                    return DispatchResult(alert.alert_id, suppressed="closed")
                return self._dispatch(alert, force)
        except Exception as exc:  # never into detection or trading
            self._safe_warn(f"dispatch of {getattr(alert, 'title', alert)!r} failed: {type(exc).__name__}: {exc}")
            return DispatchResult(getattr(alert, "alert_id", ""), suppressed="error")

    def _dispatch(self, alert: Alert, force: bool) -> DispatchResult:
        with self._status_lock:
            self._counts["alerts"] += 1
        result = DispatchResult(alert.alert_id)
        targets = [s for s in self._sinks if force or alert.level >= s.min_level]
        to_history = self._history is not None and (force or alert.level >= self._history_level)
        if not targets and not to_history:
            with self._status_lock:
                self._counts["below_level"] += 1
            result.suppressed = "below_level"
            return result
        if not force and self._duplicate(alert):
            with self._status_lock:
                self._counts["duplicate"] += 1
            result.suppressed = "duplicate"
            return result

        with self._status_lock:
            self._recent[alert.alert_id] = {"history": to_history, "deliveries": {}}
            while len(self._recent) > _RECENT:
                self._recent.popitem(last=False)
        errors: dict[str, str] = {}
        for sink in targets:
            if not force and self._rate_limited(sink, alert):
                status = "rate_limited"
            else:
                try:
                    status = sink.emit(alert)
                except Exception as exc:
                    status, errors[sink.name] = "error", f"{type(exc).__name__}: {exc}"
                    self._safe_warn(f"{sink.name}: alert {alert.title!r} not delivered: {errors[sink.name]}")
            result.deliveries[sink.name] = status
            with self._status_lock:
                self._sink_counts[sink.name][status] += 1
                entry = self._recent.get(alert.alert_id)
                if entry is not None:
                    entry["deliveries"].setdefault(sink.name, {"status": status, "attempts": 0,
                                                               "error": errors.get(sink.name, "")})
        if to_history:
            try:
                self._history.record(alert, result.deliveries, errors)
            except Exception as exc:
                with self._status_lock:
                    self._counts["history_errors"] += 1
                self._safe_warn(f"history: alert {alert.title!r} not recorded: {type(exc).__name__}: {exc}")
        return result

    def _duplicate(self, alert: Alert) -> bool:
        if self._dedup_ns <= 0:
            return False
        last = self._last.get(alert.key)
        if last is not None and alert.ts_ns - last[0] < self._dedup_ns and alert.level <= last[1]:
            return True
        self._last[alert.key] = (alert.ts_ns, alert.level)
        if len(self._last) > _RECENT:  # forget keys whose window has passed
            horizon = alert.ts_ns - self._dedup_ns
            self._last = {k: v for k, v in self._last.items() if v[0] > horizon}
        return False

    def _rate_limited(self, sink: Sink, alert: Alert) -> bool:
        limit = sink.max_per_minute
        if limit <= 0:
            return False
        sent = self._sent_ts[sink.name]
        while sent and sent[0] <= alert.ts_ns - MINUTE_NS:
            sent.popleft()
        if len(sent) >= limit and alert.level < Level.CRITICAL:
            return True
        sent.append(alert.ts_ns)
        return False

    # -- outcomes -------------------------------------------------------------------------

    def _on_report(self, report: DeliveryReport) -> None:
        """A worker's final outcome (its thread): counts, the in-memory status and the history."""
        with self._status_lock:
            self._sink_counts[report.sink][report.status] += 1
            entry = self._recent.get(report.alert_id)
            if entry is not None:
                entry["deliveries"][report.sink] = {
                    "status": report.status, "attempts": report.attempts, "error": report.error,
                }
            in_history = entry is not None and entry["history"]
        if in_history and self._history is not None:
            try:
                self._history.set_delivery(report.alert_id, report.sink, report.status, report.attempts, report.error)
            except Exception as exc:
                with self._status_lock:
                    self._counts["history_errors"] += 1
                self._safe_warn(f"history: delivery status not recorded: {type(exc).__name__}: {exc}")

    def deliveries(self, alert_id: str) -> dict[str, dict]:
        """The latest status per sink of a recent alert (``status``, ``attempts``, ``error``)."""
        with self._status_lock:
            entry = self._recent.get(alert_id)
            return {sink: dict(d) for sink, d in entry["deliveries"].items()} if entry else {}

    def stats(self) -> dict:
        """Counts: alerts seen, suppressed as duplicates or below every level, and per sink by status."""
        with self._status_lock:
            return {**self._counts, "sinks": {name: dict(c) for name, c in self._sink_counts.items()}}

    def _safe_warn(self, message: str) -> None:
        with contextlib.suppress(Exception):  # a broken logger must not break the caller either
            self._warn(message)

    def close(self, timeout_s: float = 5.0) -> None:
        """Let the webhook deliver what is queued (up to ``timeout_s``), then close the sinks and the history."""
        with self._lock:  # a dispatch in progress finishes first; later ones are refused
            if self._closed:
                return
            self._closed = True
        for sink in self._sinks:
            try:
                sink.close(timeout_s)
            except Exception as exc:
                self._safe_warn(f"{sink.name}: close failed: {type(exc).__name__}: {exc}")
        if self._history is not None:
            try:
                self._history.close()
            except Exception as exc:
                self._safe_warn(f"history: close failed: {type(exc).__name__}: {exc}")


def build_dispatcher(
    config: AlertsConfig, warn: Callable[[str], None] | None = None, *, strict: bool = True,
) -> AlertDispatcher:
    """The dispatcher and sinks an ``AlertsConfig`` describes (the webhook worker starts here).

    ``strict=False`` (the actor) leaves out, with a warning, a sink that cannot be opened (an
    unwritable log folder, a history file of another program) instead of raising.
    """
    warn = warn or _stderr_warning
    makers: list[tuple[str, Callable[[], object]]] = []
    if config.console.enabled:
        c = config.console
        makers.append(("console", lambda c=c: ConsoleSink(c.min_level, c.stream, c.max_per_minute)))
    if config.log_file.enabled:
        c = config.log_file
        makers.append(("log_file", lambda c=c: LogFileSink(c.path, c.max_bytes, c.backup_count, c.min_level,
                                                           c.max_per_minute)))
    if config.webhook.enabled:
        c = config.webhook
        makers.append(("webhook", lambda c=c: WebhookSink(
            c.url, c.format, min_level=c.min_level, timeout_s=c.timeout_s, retries=c.retries,
            backoff_s=c.backoff_s, backoff_max_s=c.backoff_max_s, queue_size=c.queue_size,
            max_per_minute=c.max_per_minute, warn=warn,
        )))
    if config.history.enabled:
        makers.append(("history", lambda: AlertHistory(config.history.path)))
    built: dict[str, object] = {}
    for name, make in makers:
        try:
            built[name] = make()
        except Exception as exc:
            if strict:
                for sink in built.values():
                    sink.close()
                raise IfdError(f"{config.path or 'alerts'}: [{name}] cannot be opened: {exc}") from None
            warn(f"{name}: left out, it cannot be opened: {type(exc).__name__}: {exc}")
    history = built.pop("history", None)
    return AlertDispatcher(
        list(built.values()), history, history_level=config.history.min_level,
        dedup_window_s=config.dedup_window_s, warn=warn,
    )
