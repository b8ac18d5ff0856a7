"""``LatencyMonitor``: feed and processing latency percentiles per minute, and an alarm on p99.

A NautilusTrader actor (``[[actors]]`` of a backtest or node file with ``actor_path =
"ifd.monitoring.latency_actor:LatencyMonitor"``, ``config_path =
"ifd.monitoring.latency_actor:LatencyConfig"``, ``profile = "configs/monitors/latency.toml"``). It
measures, on minutes of the node clock (simulated time in a backtest):

- **feed latency** ``ts_init - ts_event`` of every book update the node publishes (an
  ``OrderBookDeltas`` batch: one MBO event on a live node, one delta in a backtest; taken from its
  last delta) and every trade. Subscribed with ``managed=False``: the strategies' books are theirs.
- **processing latency** ``FlowSignal.latency_ns`` of every signal: the triggering trade's wait from
  its ``ts_init`` to the strategy's handler plus the handler's time until the signal is published.

At each minute's close (a timer on the minute, or the first sample of a later minute) the minute's
figures are kept for the run report (``run_report()``, written as ``latency.json``), and a p99
processing latency over ``max_p99_processing_ms`` (with at least ``min_samples_per_minute``
signals) publishes a ``MonitorAlarm`` (monitor "latency", kind "p99_processing_latency"), once
per episode, for the AlertsActor to alert on.

What the timestamps mean (NautilusTrader 1.231, checked against its Databento decoder and live
feed handler, and this project's loaders):

- **Live Databento client**: ``ts_event`` is Databento's ``ts_recv`` (the capture server's receive
  time; the exchange's own ``ts_event`` is not carried by the MBO and trade decoding), ``ts_init``
  the node's real-time clock when the feed handler read the record. Feed latency is then
  Databento's gateway, the network and the client's read, measured across two clocks (Databento's
  and this host's: skew shows in it and can make it negative). ``FlowSignal.latency_ns`` includes
  the queueing inside the node.
- **Backtest catalogs** (``catalogs/ingest.py``, NautilusTrader's loader): ``ts_event`` =
  ``ts_init`` = Databento ``ts_recv``, and the simulated clock is set to each record's ``ts_init``:
  feed latency is 0 by construction, not a measurement; processing latency is the handler's
  wall-clock time alone (the simulated clock stands still while it runs).
- **Replay client** (``live/replay_client.py``): the recorded timestamps, unchanged, on a live
  clock. Feed latency is again 0 by construction, and ``now - ts_init`` is the distance to the
  recording's date, not a wait (the monitor notes it: the first record's ``ts_init`` is more than
  ``recorded_after_s`` away from the clock, ``"timestamps": "recorded"``). The strategies count
  such a "wait" as 0, so a signal's ``latency_ns`` is then the handler's time from the trade's
  dispatch to the signal; the queueing before dispatch is not measurable without arrival stamps.
"""

from __future__ import annotations

from datetime import UTC
from datetime import datetime

from nautilus_trader.common.actor import Actor
from nautilus_trader.common.component import LiveClock
from nautilus_trader.config import ActorConfig
from nautilus_trader.model.data import DataType
from nautilus_trader.model.data import OrderBookDeltas
from nautilus_trader.model.data import TradeTick
from nautilus_trader.model.enums import BookType
from nautilus_trader.model.identifiers import InstrumentId

from ifd.monitoring.latency import NS_PER_MINUTE
from ifd.monitoring.latency import BreachTracker
from ifd.monitoring.latency import Figures
from ifd.monitoring.latency import MinuteLatency
from ifd.monitoring.latency import MinuteRow
from ifd.monitoring.latency import Threshold
from strategies.node_loop import on_node_loop
from strategies.signals import FlowSignal
from strategies.signals import MonitorAlarm
from strategies.signals import data_topic

FEED, PROCESSING = "feed", "processing"
ALARM_LEVELS = ("info", "warning", "critical")


class LatencyConfig(ActorConfig, frozen=True):
    """Thresholds (ms; a p99 *over* the threshold alarms), what to measure, and memory bounds."""

    max_p99_processing_ms: float = 100.0
    critical_p99_processing_ms: float = 1_000.0  # 0: no critical level
    max_p99_feed_ms: float = 0.0  # 0: feed latency is reported, never alarmed
    critical_p99_feed_ms: float = 0.0
    alarm_level: str = "warning"  # level of an alarm under the critical threshold
    min_samples_per_minute: int = 1
    realert_after_minutes: int = 0  # 0: one alarm per episode (and one on escalation to critical)
    book_deltas: bool = True
    trades: bool = True
    signals: bool = True
    instrument_ids: list[str] | None = None  # None: every instrument in the cache at start
    recorded_after_s: float = 60.0
    max_exact_samples: int = 1_000_000
    max_minutes_kept: int = 10_080

    def __post_init__(self) -> None:
        def fail(field: str, rule: str) -> None:
            raise ValueError(f"LatencyConfig.{field} must be {rule}, got {getattr(self, field)!r}")

        for field in ("max_p99_processing_ms", "recorded_after_s"):
            if not getattr(self, field) > 0:
                fail(field, "> 0")
        for field in ("max_p99_feed_ms", "critical_p99_processing_ms", "critical_p99_feed_ms"):
            if not getattr(self, field) >= 0:
                fail(field, ">= 0 (0: off)")
        for field, warning in (("critical_p99_processing_ms", self.max_p99_processing_ms),
                               ("critical_p99_feed_ms", self.max_p99_feed_ms)):
            value = getattr(self, field)
            if value and not (warning and value > warning):
                fail(field, f"0 or above its warning threshold ({warning})")
        if self.alarm_level not in ALARM_LEVELS:
            fail("alarm_level", " | ".join(ALARM_LEVELS))
        for field in ("min_samples_per_minute", "max_minutes_kept"):
            if getattr(self, field) < 1:
                fail(field, ">= 1")
        for field in ("realert_after_minutes", "max_exact_samples"):
            if getattr(self, field) < 0:
                fail(field, ">= 0")
        for value in self.instrument_ids or []:
            try:
                InstrumentId.from_str(value)
            except ValueError:
                raise ValueError(f"LatencyConfig.instrument_ids: {value!r} is not SYMBOL.VENUE") from None


def _ns(ms: float) -> float | None:
    return ms * 1_000_000.0 if ms else None


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat()


def _ms(ns: float | None) -> str:
    return "n/a" if ns is None else f"{ns / 1e6:.3f}"


class LatencyMonitor(Actor):
    """Per-minute feed and processing latency percentiles; a ``MonitorAlarm`` when p99 passes the limit."""

    report_name = "latency"

    def __init__(self, config: LatencyConfig | None = None) -> None:
        config = config or LatencyConfig()
        super().__init__(config)
        self._minutes = MinuteLatency((FEED, PROCESSING), config.max_exact_samples, config.max_minutes_kept)
        self._feed = self._minutes.series[FEED].append
        self._processing = self._minutes.series[PROCESSING].append
        self._judges = {
            PROCESSING: BreachTracker(Threshold(
                _ns(config.max_p99_processing_ms), _ns(config.critical_p99_processing_ms),
                config.min_samples_per_minute, config.realert_after_minutes,
            )),
        }
        if config.max_p99_feed_ms:
            self._judges[FEED] = BreachTracker(Threshold(
                _ns(config.max_p99_feed_ms), _ns(config.critical_p99_feed_ms),
                config.min_samples_per_minute, config.realert_after_minutes,
            ))
        self._alarms: list[dict] = []
        self._live = False
        self._timestamps: str | None = None  # "arrival" | "recorded", from the first record
        self._instruments = 0
        self._timer = ""
        self._measure_trades = config.trades

    # -- lifecycle ------------------------------------------------------------------------------

    def on_start(self) -> None:
        self._live = isinstance(self.clock, LiveClock)
        config = self.config
        ids = ([InstrumentId.from_str(i) for i in config.instrument_ids] if config.instrument_ids
               else sorted(self.cache.instrument_ids(), key=str))
        for instrument_id in ids:
            if config.book_deltas:
                self.subscribe_order_book_deltas(instrument_id, book_type=BookType.L3_MBO, managed=False)
            if config.trades:
                self.subscribe_trade_ticks(instrument_id)
        self._instruments = len(ids)
        if config.signals:
            self.msgbus.subscribe(topic=data_topic(FlowSignal), handler=self._on_signal)
        now = self.clock.timestamp_ns()
        self._timer = f"{self.id}-minute"
        self.clock.set_timer_ns(self._timer, NS_PER_MINUTE, now - now % NS_PER_MINUTE, 0, on_node_loop(self._on_minute))

    def on_stop(self) -> None:
        if self.config.signals:
            self.msgbus.unsubscribe(topic=data_topic(FlowSignal), handler=self._on_signal)
        if self._timer in self.clock.timer_names:
            self.clock.cancel_timer(self._timer)
        self._closed(self._minutes.flush(), self.clock.timestamp_ns())

    # -- samples --------------------------------------------------------------------------------

    def on_order_book_deltas(self, deltas: OrderBookDeltas) -> None:
        now = self.clock.timestamp_ns()
        if now >= self._minutes.minute_end:
            self._closed(self._minutes.roll(now), now)
        if self._timestamps is None:
            self._first_record(now, deltas.ts_init)
        self._feed(deltas.ts_init - deltas.ts_event)

    def on_trade_tick(self, tick: TradeTick) -> None:
        now = self.clock.timestamp_ns()
        if now >= self._minutes.minute_end:
            self._closed(self._minutes.roll(now), now)
        ts_init = tick.ts_init
        if self._timestamps is None:
            self._first_record(now, ts_init)
        if self._measure_trades:
            self._feed(ts_init - tick.ts_event)

    def _on_signal(self, signal) -> None:
        if not isinstance(signal, FlowSignal):
            return
        now = self.clock.timestamp_ns()
        if now >= self._minutes.minute_end:
            self._closed(self._minutes.roll(now), now)
        self._processing(signal.latency_ns)

    def _first_record(self, now: int, ts_init: int) -> None:
        far = abs(now - ts_init) > self.config.recorded_after_s * 1e9
        self._timestamps = "recorded" if far or not self._live else "arrival"

    def _on_minute(self, event) -> None:
        now = self.clock.timestamp_ns()
        self._closed(self._minutes.roll(now), now)

    # -- alarms ---------------------------------------------------------------------------------

    def _closed(self, row: MinuteRow | None, now: int) -> None:
        if row is None:
            return
        for series, judge in self._judges.items():
            level = judge.judge(row.minute_ns, row.series[series])
            if level is not None:
                self._alarm(series, level, row, now)

    def _alarm(self, series: str, level: str, row: MinuteRow, now: int) -> None:
        figures = row.series[series]
        threshold = self._judges[series].threshold
        threshold = threshold.critical_ns if level == "critical" else threshold.warning_ns
        level = self.config.alarm_level if level == "warning" else level
        what = "processing" if series == PROCESSING else "feed"
        kind = f"p99_{what}_latency"
        minute = _iso(row.minute_ns)
        title = f"p99 {what} latency {_ms(figures.p99)} ms > {_ms(threshold)} ms"
        text = (f"minute {minute}: p99 {_ms(figures.p99)} ms, max {_ms(figures.max)} ms over "
                f"{figures.n} {'signals' if series == PROCESSING else 'records'} "
                f"(threshold {_ms(threshold)} ms, clock {self._clock_name()})")
        fields = "; ".join(
            f"{k}={v}" for k, v in (("minute", minute), ("p99_ms", _ms(figures.p99)), ("max_ms", _ms(figures.max)),
                                    ("n", figures.n), ("threshold_ms", _ms(threshold))))
        self._alarms.append({"ts": _iso(now), "kind": kind, "level": level, "text": text, "minute": minute,
                             "p99_ms": round(figures.p99 / 1e6, 3), "n": figures.n})
        self.log.warning(f"latency alarm ({level}): {text}")
        alarm = MonitorAlarm(ts_event=now, ts_init=now, monitor="latency", kind=kind, level=level,
                             title=title, text=text, key="", fields=fields)
        self.publish_data(DataType(MonitorAlarm), alarm)

    # -- reports --------------------------------------------------------------------------------

    def _clock_name(self) -> str:
        return "live" if self._live else "simulated"

    def run_report(self) -> dict:
        """The run's figures (``latency.json``); call it once the actor has stopped."""
        feed, processing = self._minutes.overall(FEED), self._minutes.overall(PROCESSING)
        return {
            "monitor": "latency",
            "clock": self._clock_name(),
            "timestamps": self._timestamps,
            "feed_latency_us": feed.us(),
            "processing_latency_us": processing.us(),
            "per_minute": [self._row(row) for row in self._minutes.rows],
            "minutes_dropped": self._minutes.rows_dropped,
            "alarms": list(self._alarms),
            "thresholds": {
                "max_p99_processing_ms": self.config.max_p99_processing_ms,
                "critical_p99_processing_ms": self.config.critical_p99_processing_ms,
                "max_p99_feed_ms": self.config.max_p99_feed_ms,
                "critical_p99_feed_ms": self.config.critical_p99_feed_ms,
                "min_samples_per_minute": self.config.min_samples_per_minute,
            },
            "instruments": self._instruments,
            "notes": self._notes(feed, processing),
        }

    def live_figures(self) -> dict:
        """A small snapshot for a dashboard: the last closed minute, the open one, the alarms.

        O(samples of the open minute) (numpy; about 1 ms per 100,000), on the node's event-loop thread.
        """
        rows = self._minutes.rows
        brief = ("minute", "feed_n", "feed_p50_us", "feed_p99_us", "proc_n", "proc_p50_us", "proc_p99_us", "proc_max_us")

        def view(row: MinuteRow | None) -> dict | None:
            return None if row is None else {key: value for key, value in self._row(row).items() if key in brief}

        return {
            "title": "Latency",
            "clock": self._clock_name(),
            "timestamps": self._timestamps,
            "last_minute": view(rows[-1] if rows else None),
            "current_minute": view(self._minutes.current() if self._minutes.minute_end else None),
            "alarms": len(self._alarms),
            "alarm": any(judge.in_episode for judge in self._judges.values()),
        }

    @staticmethod
    def _row(row: MinuteRow) -> dict:
        out: dict = {"minute": _iso(row.minute_ns)}
        for prefix, figures in (("feed", row.series[FEED]), ("proc", row.series[PROCESSING])):
            us = figures.us()
            out[f"{prefix}_n"] = figures.n
            for key in ("p50", "p90", "p99", "max"):
                out[f"{prefix}_{key}_us"] = us[key]
        return out

    def _notes(self, feed: Figures, processing: Figures) -> list[str]:
        notes = [(
            "feed latency = ts_init - ts_event per book update (OrderBookDeltas batch) and per trade; "
            "processing latency = FlowSignal.latency_ns (trigger's wait from ts_init to the strategy's "
            "handler + the handler's time to publish the signal)"
        )]
        if not self._live:
            notes.append(
                "clock simulated (backtest): ts_event and ts_init both come from the catalog (Databento "
                "ts_recv for data loaded by NautilusTrader's Databento loader), so feed latency is the "
                "catalog's own difference (0 there) and not a measurement; processing latency is the "
                "handlers' wall-clock time only (the simulated clock does not move while they run)",
            )
        elif self._timestamps == "recorded":
            notes.append(
                "clock live, timestamps recorded (a replay): ts_event and ts_init are the recording's "
                "(both Databento ts_recv), so feed latency is 0 by construction, not a measurement; "
                "processing latency is each signal's latency_ns, which the strategies then take from the "
                "trade's dispatch to the signal, without any queueing before the dispatch (not measurable "
                "without arrival stamps)",
            )
        else:
            notes.append(
                "clock live, timestamps on arrival: ts_init is the node's clock when the feed handler "
                "read the record, ts_event Databento's ts_recv (capture-server receive time; NautilusTrader "
                "1.231 does not carry the exchange's ts_event for MBO/trades); feed latency spans two "
                "clocks, so clock skew is part of it",
            )
        if feed.min is not None and feed.min < 0:
            notes.append(f"negative feed latencies (min {feed.min / 1e3:.1f} us): ts_init before ts_event, "
                         f"a clock offset between the source and this host")
        for name, figures in (("feed", feed), ("processing", processing)):
            if not figures.exact:
                notes.append(f"overall {name} percentiles from a log histogram (within about 0.6%): "
                             f"more than {self.config.max_exact_samples:,} samples")
        return notes
