"""One polling cycle, and the loop around it (``ifd monitor poll``).

A cycle:

1. asks Databento how far the dataset goes (``metadata.get_dataset_range``, free). The windows
   (``window`` long, 15 minutes by default, aligned on UTC midnight) that ended by then and come
   after the last processed one (or from ``start``, or only the newest one when the state is
   empty) are new. Nothing new: no other request.
2. downloads each new window through ``adapters.databento.downloads.Downloader``: the same cost
   check, ledger and ingest as ``ifd data download`` (a window already in the ledger costs
   nothing; a budget refusal raises a warning alert and ``BudgetRefused``, exit code 3). A day's
   first window also fetches the definitions from 00:00Z, when the day's instruments are defined.
3. per UTC day with new data, runs the configured backtest (shadow IFD v1 + v3: the strategies
   themselves, no second detector) from the day's 00:00Z to the newest window's end, so the L3
   book is built from the day's start, and keeps the signals whose ``ts_event`` lies in the new
   windows (replaying the day so far costs CPU, never data: everything comes from the catalog).
4. alerts each signal not yet in the state (``ifd.alerts.alert_from_signal`` through the
   configured dispatcher), records it *after* the dispatch, then marks the windows processed.

``window = "24h"`` fetches whole UTC days, with the same ledger rows as ``ifd data download``.

The loop (``run``) retries transient failures (network, a transfer cut off, Databento 408/429/5xx)
after ``retry``, doubling up to ``every``, with a warning alert after ``alert_after_failures`` in a
row; a budget refusal waits for the next poll (the day's or month's budget may free up); anything
else (a wrong key, a bad config) stops it with its one-line error.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import shutil
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow.parquet as pq
import requests

from adapters.databento.budget import BudgetConfig, BudgetRefused, load_budget
from adapters.databento.downloads import (
    TRANSIENT_STATUSES,
    Downloader,
    DownloadRequest,
    TransientError,
    historical_client,
    symbols_key,
)
from ifd.alerts import build_dispatcher, load_alerts_config
from ifd.alerts.signal_alerts import alert_from_signal
from ifd.errors import IfdError
from ifd.monitor.config import DAY_S, MonitorConfig
from ifd.monitor.state import MonitorState, SignalKey, stamp

SOURCE = "ifd monitor"


@dataclass
class CycleReport:
    """What one cycle did."""

    available_end: str = ""
    windows: list[str] = field(default_factory=list)  # "start..end" processed, UTC
    signals: int = 0
    alerts: int = 0
    downloads: list[dict] = field(default_factory=list)

    def format(self) -> str:
        if not self.windows:
            return f"monitor: nothing new (data available up to {self.available_end})"
        shown = self.windows if len(self.windows) <= 3 else [self.windows[0], "...", self.windows[-1]]
        return (f"monitor: processed {len(self.windows)} window(s) {', '.join(shown)} (data available up to "
                f"{self.available_end}): {self.signals} new signal(s), {self.alerts} alert(s) sent")


def _ns(moment: dt.datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000


class Monitor:
    """The polling monitor over ``config``; ``client_factory`` makes the ``databento.Historical`` client."""

    def __init__(
        self,
        config: MonitorConfig,
        *,
        budget: BudgetConfig | None = None,
        client_factory: Callable[[], object] = historical_client,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.budget = budget or load_budget(config.budget)
        self.alerts_config = load_alerts_config(config.alerts)
        self.client_factory = client_factory
        self.say = progress or (lambda _msg: None)
        self._symbols = symbols_key(config.symbols, config.stype)

    # -- one cycle ------------------------------------------------------------------------

    def cycle(self) -> CycleReport:
        """Download, detect and alert whatever completed UTC days are new (see the module doc)."""
        self.config.state.parent.mkdir(parents=True, exist_ok=True)
        with self._lock(), MonitorState(self.config.state) as state:
            dispatcher = build_dispatcher(self.alerts_config)
            try:
                return self._cycle(state, dispatcher)
            finally:
                dispatcher.close(self.alerts_config.close_timeout_s)

    def _lock(self):
        path = self.config.state.with_name(self.config.state.name + ".lock")
        fh = path.open("a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise IfdError(f"{self.config.state}: another ifd monitor is running on this state") from None
        return fh

    def _cycle(self, state: MonitorState, dispatcher) -> CycleReport:
        cfg = self.config
        end = self.available_end()
        report = CycleReport(available_end=end.isoformat())
        windows = self.new_windows(state, end)
        if not windows:
            return report
        downloader = Downloader(self.budget, raw_root=cfg.raw, catalog=cfg.catalog,
                                client_factory=self.client_factory, alerts=dispatcher, progress=self.say)
        for day in sorted({lo.date() for lo, _ in windows}):
            todays = [(lo, hi) for lo, hi in windows if lo.date() == day]
            with_data = False
            for lo, hi in todays:
                download = downloader.run(self._request(state, lo, hi))  # BudgetRefused (after its alert) propagates
                report.downloads.append(download.to_dict())
                with_data |= any(r["schema"] == cfg.schema and r.get("path") for r in download.requests)
            signals, alerts, run_dir = 0, 0, None
            if with_data:
                rows, run_dir = self._detect(day, todays[0][0], todays[-1][1])
                signals, alerts = self._alert(rows, state, dispatcher)
            for index, (lo, hi) in enumerate(todays):  # the day's counts on its last window
                last = index == len(todays) - 1
                state.mark_processed(cfg.dataset, self._symbols, lo, hi, signals if last else 0,
                                     alerts if last else 0, run_dir)
                report.windows.append(f"{stamp(lo)}..{stamp(hi)}")
            report.signals += signals
            report.alerts += alerts
        return report

    def new_windows(self, state: MonitorState, available_end: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
        """The windows [start, end) that ended by ``available_end`` and are not processed yet."""
        step = dt.timedelta(seconds=self.config.window_s)
        midnight = dt.datetime.combine(available_end.date(), dt.time(), dt.UTC)
        ready = midnight + step * ((available_end - midnight) // step)  # the newest complete window's end
        first = state.last_end(self.config.dataset, self._symbols)
        if first is None:
            start = self.config.start
            first = dt.datetime.combine(start, dt.time(), dt.UTC) if start else ready - step
        out = []
        while first + step <= ready:
            out.append((first, first + step))
            first += step
        return out

    def _request(self, state: MonitorState, lo: dt.datetime, hi: dt.datetime) -> DownloadRequest:
        cfg = self.config
        if cfg.window_s == DAY_S:
            return DownloadRequest(cfg.dataset, cfg.schema, cfg.symbols, cfg.stype, lo.date(), hi.date())
        midnight = dt.datetime.combine(lo.date(), dt.time(), dt.UTC)
        first_of_day = not state.has_window_on(cfg.dataset, self._symbols, lo.date())
        return DownloadRequest.intraday(cfg.dataset, cfg.schema, cfg.symbols, cfg.stype, lo, hi,
                                        definitions_from=midnight if first_of_day else lo)

    def available_end(self) -> dt.datetime:
        """The end of the dataset's available range (UTC), from ``metadata.get_dataset_range``."""
        from databento.common.error import BentoError, BentoHttpError

        what = f"dataset range of {self.config.dataset}"
        try:
            answer = self.client_factory().metadata.get_dataset_range(dataset=self.config.dataset)
        except BentoHttpError as exc:
            transient = exc.http_status in TRANSIENT_STATUSES or exc.http_status >= 500
            raise (TransientError if transient else IfdError)(
                f"{what}: Databento answered {exc.http_status}: {exc.message or '<no message>'}") from None
        except (BentoError, requests.RequestException) as exc:
            raise TransientError(f"{what}: cannot reach Databento ({type(exc).__name__})") from None
        schemas = answer.get("schema") or {}
        text = (schemas.get(self.config.schema) or {}).get("end") or answer.get("end")
        try:
            end = dt.datetime.fromisoformat(str(text))
        except ValueError:
            raise IfdError(f"{what}: unexpected end {text!r}") from None
        return end if end.tzinfo else end.replace(tzinfo=dt.UTC)

    def _detect(self, day: dt.date, lo: dt.datetime, hi: dt.datetime) -> tuple[list[dict], str]:
        """The configured backtest over ``day`` from 00:00Z to ``hi``; its signals whose ts_event lies in [lo, hi)."""
        from backtests.runner import run_backtest

        run_dir = self.config.runs / (day.isoformat() if hi - lo == dt.timedelta(days=1) else stamp(hi).replace(":", ""))
        shutil.rmtree(run_dir, ignore_errors=True)  # a run left by an interrupted cycle
        lo_ns, hi_ns = _ns(lo), _ns(hi)
        self.say(f"detecting {day} up to {stamp(hi)}: {self.config.backtest} over {self.config.catalog}")
        result = run_backtest(self.config.backtest, catalog=self.config.catalog, out=run_dir,
                              start=_ns(dt.datetime.combine(day, dt.time(), dt.UTC)), end=hi_ns - 1)
        rows = pq.read_table(result.run_dir / "signals.parquet").to_pylist()
        return [r for r in rows if lo_ns <= int(r["ts_event"]) < hi_ns], str(run_dir)

    def _alert(self, rows: list[dict], state: MonitorState, dispatcher) -> tuple[int, int]:
        """Alert the signals not alerted yet; each is recorded only after its dispatch."""
        new, sent = 0, 0
        for row in sorted(rows, key=lambda r: (int(r["ts_event"]), str(r["algorithm"]))):
            key = SignalKey.of(row)
            if state.was_alerted(key):
                continue
            new += 1
            alert = alert_from_signal(row, self.alerts_config.signals, source=self.alerts_config.source or SOURCE)
            if alert is None:
                state.record_alerted(key, None, "below_rules")
                continue
            result = dispatcher.dispatch(alert)
            status = f"suppressed:{result.suppressed}" if result.suppressed else "sent"
            sent += not result.suppressed
            state.record_alerted(key, alert.alert_id, status)
        return new, sent

    # -- the loop -------------------------------------------------------------------------

    def run(self, every_s: float, stop: threading.Event | None = None) -> int:
        """Cycles every ``every_s`` seconds until SIGINT / SIGTERM (or ``stop``); see the module doc for errors."""
        stop = stop or threading.Event()
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda *_: stop.set())
        failures = 0
        try:
            while not stop.is_set():
                wait = every_s
                try:
                    self.say(self.cycle().format())
                    if failures >= self.config.alert_after_failures:
                        self._loop_alert("info", "Monitor recovered", f"after {failures} failed cycle(s)")
                    failures = 0
                except TransientError as exc:
                    failures += 1
                    wait = min(every_s, self.config.retry_s * 2 ** (failures - 1))
                    self.say(f"monitor: {exc}; retrying in {wait:g}s (failure {failures} in a row)")
                    if failures == self.config.alert_after_failures:
                        self._loop_alert("warning", "Monitor cannot get data", f"{failures} cycles failed: {exc}")
                except BudgetRefused as exc:  # alerted by the downloader; the budget frees up with the next day or month
                    self.say(f"monitor: {exc}; next try in {every_s:g}s")
                stop.wait(wait)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def _loop_alert(self, level: str, title: str, text: str) -> None:
        from ifd.alerts import Alert

        dispatcher = build_dispatcher(self.alerts_config)
        try:
            dispatcher.dispatch(Alert.create(level, "monitor", title, text, key=f"monitor:{title}",
                                             source=self.alerts_config.source or SOURCE))
        finally:
            dispatcher.close(self.alerts_config.close_timeout_s)
