"""One polling cycle, and the loop around it (``ifd monitor poll``).

A cycle:

1. asks Databento how far the dataset goes (``metadata.get_dataset_range``, free); the UTC days
   that ended by then and come after the last processed one (or ``start``, or only the newest
   completed day when the state is empty) are the new window. Nothing new: no other request.
2. downloads them through ``adapters.databento.downloads.Downloader``: the same per-day cost
   check, ledger and ingest as ``ifd data download`` (a day already in the ledger costs nothing;
   a budget refusal raises a warning alert and ``BudgetRefused``, exit code 3).
3. for each new day with data, runs the configured backtest (shadow IFD v1 + v3: the strategies
   themselves, no second detector) over the whole day from 00:00Z, so the L3 book is built from
   the day's start, and keeps the ``signals.parquet`` rows whose ``ts_event`` lies in the day.
4. alerts each signal not yet in the state (``ifd.alerts.alert_from_signal`` through the
   configured dispatcher), records it *after* the dispatch, then marks the day processed.

Windows are whole UTC days because the downloader's requests and ledger rows are whole days.
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

from adapters.databento.budget import BudgetConfig, load_budget
from adapters.databento.downloads import (
    Downloader,
    DownloadRequest,
    historical_client,
    symbols_key,
)
from ifd.alerts import build_dispatcher, load_alerts_config
from ifd.alerts.signal_alerts import alert_from_signal
from ifd.errors import IfdError
from ifd.monitor.config import MonitorConfig
from ifd.monitor.state import MonitorState, SignalKey

SOURCE = "ifd monitor"
NS_PER_DAY = 86_400 * 1_000_000_000


@dataclass
class CycleReport:
    """What one cycle did."""

    available_end: str = ""
    days: list[str] = field(default_factory=list)
    signals: int = 0
    alerts: int = 0
    download: dict | None = None

    def format(self) -> str:
        if not self.days:
            return f"monitor: nothing new (data available up to {self.available_end})"
        return (f"monitor: processed {', '.join(self.days)} (data available up to {self.available_end}): "
                f"{self.signals} new signal(s), {self.alerts} alert(s) sent")


def _day_ns(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()) * 1_000_000_000


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
        newest = end.date() - dt.timedelta(days=1)  # the last UTC day that ended by ``end``
        last = state.last_day(cfg.dataset, self._symbols)
        first = last + dt.timedelta(days=1) if last else (cfg.start or newest)
        if first > newest:
            return report
        request = DownloadRequest(cfg.dataset, cfg.schema, cfg.symbols, cfg.stype, first,
                                  newest + dt.timedelta(days=1))
        downloader = Downloader(self.budget, raw_root=cfg.raw, catalog=cfg.catalog,
                                client_factory=self.client_factory, alerts=dispatcher, progress=self.say)
        download = downloader.run(request)  # BudgetRefused (after its alert) propagates
        report.download = download.to_dict()
        with_data = {r["day"] for r in download.requests if r["schema"] == cfg.schema and r.get("path")}
        for day in request.days():
            signals, alerts, run_dir = 0, 0, None
            if day.isoformat() in with_data:
                rows, run_dir = self._detect(day)
                signals, alerts = self._alert(rows, state, dispatcher)
            state.mark_processed(cfg.dataset, self._symbols, day, signals, alerts, run_dir)
            report.days.append(day.isoformat())
            report.signals += signals
            report.alerts += alerts
        return report

    def available_end(self) -> dt.datetime:
        """The end of the dataset's available range (UTC), from ``metadata.get_dataset_range``."""
        from databento.common.error import BentoError, BentoHttpError

        what = f"dataset range of {self.config.dataset}"
        try:
            answer = self.client_factory().metadata.get_dataset_range(dataset=self.config.dataset)
        except BentoHttpError as exc:
            raise IfdError(f"{what}: Databento answered {exc.http_status}: {exc.message or '<no message>'}") from None
        except (BentoError, requests.RequestException) as exc:
            raise IfdError(f"{what}: cannot reach Databento ({type(exc).__name__})") from None
        schemas = answer.get("schema") or {}
        text = (schemas.get(self.config.schema) or {}).get("end") or answer.get("end")
        try:
            end = dt.datetime.fromisoformat(str(text))
        except ValueError:
            raise IfdError(f"{what}: unexpected end {text!r}") from None
        return end if end.tzinfo else end.replace(tzinfo=dt.UTC)

    def _detect(self, day: dt.date) -> tuple[list[dict], str]:
        """The configured backtest over ``day`` (00:00Z to 00:00Z); its signals whose ts_event lies in the day."""
        from backtests.runner import run_backtest

        run_dir = self.config.runs / day.isoformat()
        shutil.rmtree(run_dir, ignore_errors=True)  # a run left by an interrupted cycle
        lo, hi = _day_ns(day), _day_ns(day) + NS_PER_DAY
        self.say(f"detecting {day}: {self.config.backtest} over {self.config.catalog}")
        result = run_backtest(self.config.backtest, catalog=self.config.catalog, out=run_dir, start=lo, end=hi - 1)
        rows = pq.read_table(result.run_dir / "signals.parquet").to_pylist()
        return [r for r in rows if lo <= int(r["ts_event"]) < hi], str(run_dir)

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
        """Cycles every ``every_s`` seconds until SIGINT / SIGTERM (or ``stop``); errors propagate."""
        stop = stop or threading.Event()
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda *_: stop.set())
        try:
            while not stop.is_set():
                self.say(self.cycle().format())
                stop.wait(every_s)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0
