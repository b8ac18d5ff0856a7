"""``DataQualityMonitor``: the feed's data quality, in backtests and live nodes alike.

An ``Actor`` around ``ifd.monitoring.feed_quality.FeedQuality`` (where every figure is defined).
Add it as an ``[[actors]]`` entry with ``profile = "configs/monitors/data_quality.toml"``. It

- subscribes to the book deltas (``managed=False``: a managed subscription would replace the
  book a strategy keeps in the cache) and the trades of every instrument in the cache at start
  (or ``instrument_ids``);
- reads the top of book at each event boundary from the L3 book a strategy already keeps in the
  cache (the data engine applies each delta before any other handler runs), or, for an instrument
  no strategy keeps a book of, from a book of its own (NautilusTrader's ``OrderBook``);
- checks stale feed, persisting crossed books and expiring breaches on a clock timer, so a
  backtest judges on the replay clock, never wall time;
- publishes ``MonitorAlarm`` (one per breach episode, instrument and check; the ``AlertsActor``
  alerts them) and ``FeedHealth`` when the verdict changes (strategies with ``[quality]
  pause_on_feed_alarm`` pause while it is unhealthy);
- writes ``quality.json`` into the run folder (``run_report``) and answers ``live_figures()``.
"""

from __future__ import annotations

from nautilus_trader.common.actor import Actor
from nautilus_trader.config import ActorConfig
from nautilus_trader.model.book import OrderBook
from nautilus_trader.model.data import DataType
from nautilus_trader.model.data import OrderBookDeltas
from nautilus_trader.model.data import TradeTick
from nautilus_trader.model.enums import AggressorSide
from nautilus_trader.model.enums import BookType
from nautilus_trader.model.identifiers import InstrumentId

from ifd.detection.types import BUY
from ifd.detection.types import SELL
from ifd.detection.types import UNKNOWN
from ifd.monitoring.feed_quality import F_LAST
from ifd.monitoring.feed_quality import Alarm
from ifd.monitoring.feed_quality import FeedQuality
from ifd.monitoring.feed_quality import InstrumentQuality
from ifd.monitoring.feed_quality import MarketHours
from ifd.monitoring.feed_quality import QualityThresholds
from strategies.node_loop import on_node_loop
from strategies.signals import FeedHealth
from strategies.signals import MonitorAlarm

_FEED_SIDE = {AggressorSide.BUYER: BUY, AggressorSide.SELLER: SELL, AggressorSide.NO_AGGRESSOR: UNKNOWN}
_NAN = float("nan")
_CLOSED_CHECK_NS = 60_000_000_000  # check interval while the market is closed


class DataQualityConfig(ActorConfig, frozen=True):
    """Thresholds of the data-quality checks and the market hours (``configs/monitors/data_quality.toml``)."""

    instrument_ids: list[str] | None = None  # none: every instrument in the cache at start (the expected set)
    check_interval_s: float = 1.0  # clock timer of the time-based checks (replay clock in a backtest)
    stale_after_s: float = 60.0  # no record or trade of any instrument for this long while the market is open
    crossed_persist_ms: float = 2_000.0  # a crossed book (bid > ask at event boundaries) lasting this long ...
    crossed_persist_events: int = 50  # ... or over this many event boundaries is a breach
    locked_persist_ms: float = 2_000.0  # same for a locked book (bid == ask)
    locked_persist_events: int = 50
    event_hold_s: float = 60.0  # a sequence gap or flagged record keeps its breach active this long after the last one
    clear_after_s: float = 5.0  # healthy again once no pausing breach has been active for this long
    min_agreement_rate: float = 0.90  # feed aggressor side vs the book at trade time
    min_agreement_trades: int = 200  # trades with both sides known before the rate is judged
    min_records_per_minute: int = 0  # records + trades per open minute (0: not checked)
    min_instrument_share: float = 0.0  # expected instruments with data (0: not checked) ...
    completeness_after_s: float = 900.0  # ... judged after this much market-open time
    pause_on: tuple[str, ...] = ("stale_feed", "crossed_book", "sequence_gap")  # breaches that make the feed unhealthy
    market_timezone: str = "America/Chicago"
    session_open: str = "17:00"  # local; after session_close: the session opens the evening before its trading date
    session_close: str = "16:00"
    trading_weekdays: tuple[int, ...] = (0, 1, 2, 3, 4)  # weekdays of the trading dates (Monday = 0)
    holidays: tuple[str, ...] = ()  # trading dates without a session (YYYY-MM-DD)
    early_closes: tuple[str, ...] = ()  # "YYYY-MM-DD HH:MM": trading date and local close time
    always_open: bool = False  # ignore the hours: every moment is market time
    max_minutes_kept: int = 10_080  # per-minute rows kept for the report (a week)
    max_alarms_kept: int = 1_000  # alarms kept for the report (all are published)

    def __post_init__(self) -> None:
        if not self.check_interval_s > 0:
            raise ValueError(f"DataQualityConfig: check_interval_s must be > 0, got {self.check_interval_s}")
        try:
            self.thresholds()
            self.market_hours()
        except ValueError as exc:
            raise ValueError(f"DataQualityConfig: {exc}") from None
        for value in self.instrument_ids or ():
            try:
                InstrumentId.from_str(value)
            except ValueError:
                raise ValueError(f"DataQualityConfig: instrument_ids: {value!r} is not an instrument id") from None

    def thresholds(self) -> QualityThresholds:
        """The checks' thresholds (``ValueError`` naming the field when one is out of range)."""
        return QualityThresholds(
            stale_after_s=self.stale_after_s,
            crossed_persist_ms=self.crossed_persist_ms,
            crossed_persist_events=self.crossed_persist_events,
            locked_persist_ms=self.locked_persist_ms,
            locked_persist_events=self.locked_persist_events,
            event_hold_s=self.event_hold_s,
            clear_after_s=self.clear_after_s,
            min_agreement_rate=self.min_agreement_rate,
            min_agreement_trades=self.min_agreement_trades,
            min_records_per_minute=self.min_records_per_minute,
            min_instrument_share=self.min_instrument_share,
            completeness_after_s=self.completeness_after_s,
            pause_on=tuple(self.pause_on),
            max_minutes_kept=self.max_minutes_kept,
            max_alarms_kept=self.max_alarms_kept,
        )

    def market_hours(self) -> MarketHours:
        return MarketHours(
            timezone=self.market_timezone,
            session_open=self.session_open,
            session_close=self.session_close,
            trading_weekdays=tuple(self.trading_weekdays),
            holidays=tuple(self.holidays),
            early_closes=tuple(self.early_closes),
            always_open=self.always_open,
        )


class _Feed:
    """One monitored instrument: its figures and the book its top is read from."""

    __slots__ = ("book", "own_book", "state")

    def __init__(self, state: InstrumentQuality) -> None:
        self.state = state
        self.book: OrderBook | None = None
        self.own_book = False


class DataQualityMonitor(Actor):
    """Checks the feed's data quality; alarms on breaches and reports the verdict as ``FeedHealth``."""

    report_name = "quality"

    def __init__(self, config: DataQualityConfig | None = None) -> None:
        config = config or DataQualityConfig()
        super().__init__(config)
        self._thresholds = config.thresholds()
        self._hours = config.market_hours()
        self._quality: FeedQuality | None = None
        self._feeds: dict[InstrumentId, _Feed] = {}
        self._timer = ""
        self._on_check_hop = self._on_check
        self._interval_ns = int(config.check_interval_s * 1e9)
        self._stopped = False
        self._handler_errors = 0

    # -- lifecycle --------------------------------------------------------------------------

    def on_start(self) -> None:
        if self.config.instrument_ids:
            ids = [InstrumentId.from_str(value) for value in self.config.instrument_ids]
        else:
            ids = sorted(self.cache.instrument_ids(), key=str)
        now = self.clock.timestamp_ns()
        self._quality = FeedQuality(self._thresholds, self._hours, [i.value for i in ids], start_ns=now)
        for instrument_id in ids:
            self._feeds[instrument_id] = _Feed(self._quality.instrument(instrument_id.value))
            self.subscribe_order_book_deltas(instrument_id, book_type=BookType.L3_MBO, managed=False)
            self.subscribe_trade_ticks(instrument_id)
        self._timer = f"{self.id}-checks"
        self._on_check_hop = on_node_loop(self._on_check)
        self._schedule(now)
        self.log.info(f"data quality: {len(ids)} instruments, stale after {self._thresholds.stale_after_s:g} s")

    def on_stop(self) -> None:
        self._stopped = True
        if self._timer and self._timer in self.clock.timer_names:
            self.clock.cancel_timer(self._timer)

    # -- data ------------------------------------------------------------------------------

    def _feed(self, instrument_id: InstrumentId) -> _Feed:
        feed = self._feeds.get(instrument_id)
        if feed is None:  # data of an instrument not subscribed here (another component's)
            feed = self._feeds[instrument_id] = _Feed(self._quality.instrument(instrument_id.value))
        return feed

    # A monitor must never take the node down: the handlers catch everything, count and log it.

    def on_order_book_deltas(self, deltas: OrderBookDeltas) -> None:
        quality = self._quality
        if quality is None:
            return
        try:
            instrument_id = deltas.instrument_id
            feed = self._feeds.get(instrument_id) or self._feed(instrument_id)
            book = feed.book
            if book is None:
                book = self._attach_book(feed, instrument_id)
            if feed.own_book:
                book.apply_deltas(deltas)
            state = feed.state
            on_book = quality.on_book
            flags = 0
            for delta in deltas.deltas:  # one delta in a backtest, an F_LAST-closed batch live
                flags = delta.flags
                on_book(state, delta.ts_init, delta.sequence, flags)
            if flags & F_LAST:
                quality.on_event_end(state, deltas.ts_init, book.spread())
            if quality.events:
                self._publish(quality.take_events())
        except Exception as exc:  # noqa: BLE001 (a monitor must not take the node down)
            self._handler_error("book deltas", exc)

    def on_trade_tick(self, tick: TradeTick) -> None:
        quality = self._quality
        if quality is None:
            return
        try:
            instrument_id = tick.instrument_id
            feed = self._feeds.get(instrument_id) or self._feed(instrument_id)
            bid = ask = _NAN
            book = feed.book
            if book is not None:
                best = book.best_bid_price()
                if best is not None:
                    bid = best.as_double()
                best = book.best_ask_price()
                if best is not None:
                    ask = best.as_double()
            side = _FEED_SIDE[tick.aggressor_side]
            quality.on_trade(feed.state, tick.ts_init, tick.price.as_double(), side, bid, ask)
            if quality.events:
                self._publish(quality.take_events())
        except Exception as exc:  # noqa: BLE001 (a monitor must not take the node down)
            self._handler_error("trade", exc)

    def _handler_error(self, what: str, exc: Exception) -> None:
        self._handler_errors += 1
        if self._handler_errors <= 10 or self._handler_errors % 10_000 == 0:
            count = self._handler_errors
            self.log.error(f"data quality: {what} not checked ({count} so far): {type(exc).__name__}: {exc}")

    def _attach_book(self, feed: _Feed, instrument_id: InstrumentId) -> OrderBook:
        """The strategies' L3 book in the cache when one is kept, else a book of the monitor's own."""
        book = self.cache.order_book(instrument_id)
        if book is None or book.book_type != BookType.L3_MBO:
            book, feed.own_book = OrderBook(instrument_id, BookType.L3_MBO), True
        feed.book = book
        return book

    def _schedule(self, now: int) -> None:
        # A time alert re-armed at each check rather than a fixed timer: while the market is closed
        # the checks run once a minute, so replaying a closed day does not tick every second.
        when = self._quality.next_check(now, self._interval_ns, max(self._interval_ns, _CLOSED_CHECK_NS))
        self.clock.set_time_alert_ns(self._timer, when, self._on_check_hop)

    def _on_check(self, event) -> None:
        quality = self._quality
        if quality is None or self._stopped:
            return
        try:
            quality.on_clock(event.ts_event)
            if quality.events:
                self._publish(quality.take_events())
        except Exception as exc:  # noqa: BLE001 (a monitor must not take the node down)
            self._handler_error("clock check", exc)
        self._schedule(event.ts_event)

    # -- publishing --------------------------------------------------------------------------

    def _publish(self, events) -> None:
        now = self.clock.timestamp_ns()
        for event in events:
            if isinstance(event, Alarm):
                alarm = MonitorAlarm(
                    ts_event=event.ts, ts_init=now, monitor="data_quality", kind=event.kind, level=event.level,
                    title=event.title, text=event.text,
                    key=f"monitor:data_quality:{event.kind}:{event.instrument}", fields=event.fields,
                )
                self.publish_data(DataType(MonitorAlarm), alarm)
                log = self.log.info if event.level == "info" else self.log.warning
                log(f"data quality {event.level}: {event.text}")
            else:
                health = FeedHealth(ts_event=event.ts, ts_init=now, healthy=event.healthy, reason=event.reason)
                self.publish_data(DataType(FeedHealth), health)
                self.log.warning(f"feed {'healthy' if event.healthy else 'UNHEALTHY'}: {event.reason}")

    # -- figures -----------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        return self._quality.healthy if self._quality is not None else True

    def run_report(self) -> dict:
        """The run's figures (``quality.json``; definitions in ``ifd.monitoring.feed_quality``)."""
        if self._quality is None:
            return {"monitor": "data_quality", "started": False}
        report = self._quality.report(now=self.clock.timestamp_ns())
        own = sum(1 for feed in self._feeds.values() if feed.own_book)
        report["book_source"] = {
            "strategy_books": sum(1 for feed in self._feeds.values() if feed.book is not None and not feed.own_book),
            "own_books": own,
        }
        report["handler_errors"] = self._handler_errors
        report["market_hours"] = {
            "timezone": self._hours.timezone, "session_open": self._hours.session_open,
            "session_close": self._hours.session_close, "always_open": self._hours.always_open,
        }
        return report

    def live_figures(self) -> dict:
        """A small JSON-able snapshot of the current figures (cheap; for a live dashboard)."""
        if self._quality is None:
            return {"monitor": "data_quality", "started": False}
        return {"monitor": "data_quality", **self._quality.live_figures()}
