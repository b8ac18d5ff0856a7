"""Data-quality figures of a market-by-order feed, engine-free (``quality_actor`` drives it).

``FeedQuality`` is fed one call per book record (``on_book``), one per event boundary with the
book's spread (``on_event_end``), one per trade (``on_trade``) and one per clock tick
(``on_clock``). It keeps running figures, O(1) per record, and turns threshold breaches into
``Alarm`` and ``HealthChange`` events (``take_events``). Timestamps are the records' ``ts_init``
(arrival at the node; the replay time in a backtest) and the clock's time, never wall time.

Figures (``report()``):

- ``records``: book records (NautilusTrader ``OrderBookDelta``: Databento MBO A/C/M/R); ``trades``:
  trade records (``TradeTick``: Databento T). F records do not reach NautilusTrader.
- ``sequence_gaps``: book records, outside a snapshot, whose ``sequence`` is *lower* than the
  previous such record's of the same instrument. On GLBX.MDP3 ``sequence`` is the channel's packet
  sequence number: an instrument sees only the packets carrying its records, so forward holes are
  normal and repeats are records of one packet; only a step back means reordered, replayed or
  mixed streams. A snapshot record (F_SNAPSHOT: its sequence is the order's last change, not in
  order) restarts the instrument's stream; sequence 0 (unset) is skipped.
- ``flags``: ``maybe_bad_book`` = book records with F_MAYBE_BAD_BOOK; ``bad_ts_recv`` = book records
  with F_BAD_TS_RECV outside a snapshot. Databento sets F_BAD_TS_RECV on every snapshot record (its
  ts_recv is the snapshot's time), so those are counted apart (``bad_ts_recv_in_snapshot``).
- ``crossed_books`` / ``locked_books``: episodes of a crossed (best bid > best ask) or locked
  (bid == ask) book that became a breach. The book is judged only at event boundaries (records
  with F_LAST; mid-event and mid-snapshot it may be crossed for a moment) and only while the
  market is open (a pre-open book is often crossed until the opening auction). An episode starts
  at the first boundary where the book is crossed and ends at the first where it is not; it is a
  breach once it has lasted ``crossed_persist_ms`` or spanned ``crossed_persist_events``
  boundaries (``locked_*`` likewise). ``crossed_boundaries`` counts every boundary judged crossed,
  ``crossed_transient`` the episodes that ended before becoming a breach.
- ``stale_periods``: open-market silences (no record and no trade of any instrument) longer than
  ``stale_after_s``: ``start`` = the last record before, ``end`` = the first record after (None while
  it lasts), ``seconds`` = the open-market seconds in between.
- ``completeness``: instruments with at least one record or trade / instruments expected (None
  when none are expected). ``minute_completeness``: open minutes holding at least
  ``min_records_per_minute`` records and trades / open minutes judged (whole minutes inside market
  hours after the first one; None when the minimum is 0).
- ``agreement_rate``: ``ifd.detection.initiation.InitiationStats`` over the trades: the feed's
  aggressor side against the side the book implies at trade time, among trades where both are
  known (``agreement_checked``).
- ``per_minute``: per UTC minute with anything to count: records, trades, gaps, flagged (records
  counted in ``flags``), crossed / locked (boundaries judged so). A record counts in the minute of
  its ``ts_init``, or in the current minute when it comes late (after the clock moved on).
- Also: ``snapshot_records``; ``boundaries_judged`` (boundaries while open); ``longest_crossed_ms``;
  ``longest_silence_open_s`` (longest open-market time between two records); ``alarms`` (the last
  ``max_alarms_kept``; ``alarm_count`` all of them); ``health_changes``; ``active_breaches``;
  ``per_instrument``; ``thresholds``; ``healthy_at_end``.

Breaches: each check's breach is an episode per (check, instrument); its start publishes one
``Alarm`` ("critical" for the checks in ``pause_on``, else "warning"). Crossed / locked books end
at the first boundary that is not, a stale feed at the next record, low agreement / record rate /
missing instruments when the figure is back within its threshold, and sequence gaps and flagged
records ``event_hold_s`` after the last one. The feed is unhealthy while any pausing breach lasts
and healthy again once none has lasted for ``clear_after_s`` (an "info" ``feed_recovered`` alarm).
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from dataclasses import dataclass
from zoneinfo import ZoneInfo
from zoneinfo import ZoneInfoNotFoundError

from ifd.detection.initiation import InitiationStats

F_LAST = 128
F_TOB = 64
F_SNAPSHOT = 32
F_MBP = 16
F_BAD_TS_RECV = 8
F_MAYBE_BAD_BOOK = 4

NS = 1_000_000_000
MINUTE_NS = 60 * NS
FOREVER = 2**63 - 1
FEED = "*"  # the "instrument" of feed-wide breaches

KINDS = (
    "sequence_gap",
    "maybe_bad_book",
    "bad_ts_recv",
    "crossed_book",
    "locked_book",
    "stale_feed",
    "low_record_rate",
    "missing_instruments",
    "low_agreement",
)
_EVENT_KINDS = ("sequence_gap", "maybe_bad_book", "bad_ts_recv")  # active for event_hold_s after the last one
_NONE, _CROSSED, _LOCKED = 0, 1, 2
_BOOK_KIND = {_CROSSED: "crossed_book", _LOCKED: "locked_book"}
_AGREEMENT_EVERY = 100  # trades between agreement judgements


def iso(ns: int | None) -> str | None:
    """UTC ISO-8601 time of a UNIX-nanosecond timestamp (microseconds)."""
    if ns is None:
        return None
    secs, rest = divmod(int(ns), NS)
    return dt.datetime.fromtimestamp(secs, tz=dt.UTC).replace(microsecond=rest // 1000).isoformat()


def _clock_time(value: str, name: str) -> dt.time:
    try:
        return dt.time.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a local time HH:MM, got {value!r}") from None


@dataclass(frozen=True)
class MarketHours:
    """When the market is open: one session per trading date, in a local time zone.

    With ``session_open`` after ``session_close`` (CME Globex: 17:00-16:00 Chicago) the session of
    trading date D opens on the previous calendar day; ``trading_weekdays`` are the weekdays of the
    trading dates (Monday = 0: Mon-Fri dates give Sunday-Friday evenings), ``holidays`` trading
    dates without a session, ``early_closes`` "YYYY-MM-DD HH:MM" (trading date, local close time).
    """

    timezone: str = "America/Chicago"
    session_open: str = "17:00"
    session_close: str = "16:00"
    trading_weekdays: tuple[int, ...] = (0, 1, 2, 3, 4)
    holidays: tuple[str, ...] = ()
    early_closes: tuple[str, ...] = ()
    always_open: bool = False

    def __post_init__(self) -> None:
        try:
            tz = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ValueError(f"market_timezone {self.timezone!r} is not a known time zone") from None
        opens = _clock_time(self.session_open, "session_open")
        closes = _clock_time(self.session_close, "session_close")
        if opens == closes:
            raise ValueError("session_open and session_close must differ (set always_open for a 24h market)")
        if not set(self.trading_weekdays) <= set(range(7)):
            raise ValueError(f"trading_weekdays must be 0 (Monday) to 6, got {list(self.trading_weekdays)}")
        holidays = set()
        for value in self.holidays:
            try:
                holidays.add(dt.date.fromisoformat(value))
            except (TypeError, ValueError):
                raise ValueError(f"holidays: {value!r} is not a date YYYY-MM-DD") from None
        early = {}
        for value in self.early_closes:
            day, _, clock = str(value).partition(" ")
            try:
                early[dt.date.fromisoformat(day)] = dt.time.fromisoformat(clock)
            except ValueError:
                raise ValueError(f"early_closes: {value!r} is not 'YYYY-MM-DD HH:MM'") from None
        object.__setattr__(self, "_tz", tz)
        object.__setattr__(self, "_open", opens)
        object.__setattr__(self, "_close", closes)
        object.__setattr__(self, "_overnight", opens > closes)
        object.__setattr__(self, "_holidays", frozenset(holidays))
        object.__setattr__(self, "_early", early)

    def trading_date(self, ts_ns: int) -> dt.date:
        """The trading date of a timestamp (for overnight sessions, from the open on it is the next date)."""
        local = dt.datetime.fromtimestamp(ts_ns / NS, tz=self._tz)
        if self._overnight and local.time() >= self._open:
            return local.date() + dt.timedelta(days=1)
        return local.date()

    def session(self, day: dt.date) -> tuple[int, int] | None:
        """[open, close) of the trading date's session in UNIX ns, None without one."""
        if day.weekday() not in self.trading_weekdays or day in self._holidays:
            return None
        open_day = day - dt.timedelta(days=1) if self._overnight else day
        opens = dt.datetime.combine(open_day, self._open, tzinfo=self._tz)
        closes = dt.datetime.combine(day, self._early.get(day, self._close), tzinfo=self._tz)
        if closes <= opens:
            return None
        return int(opens.timestamp()) * NS, int(closes.timestamp()) * NS

    def interval(self, ts_ns: int) -> tuple[bool, int, int]:
        """(open, start, end): the stretch of constant state [start, end) holding ``ts_ns``."""
        if self.always_open:
            return True, 0, FOREVER
        day = self.trading_date(ts_ns)
        sessions = [s for k in range(-8, 9) if (s := self.session(day + dt.timedelta(days=k)))]
        start, end = ts_ns - 8 * 86_400 * NS, ts_ns + 8 * 86_400 * NS
        for opens, closes in sessions:
            if opens <= ts_ns < closes:
                return True, opens, closes
            if closes <= ts_ns:
                start = max(start, closes)
            elif opens > ts_ns:
                end = min(end, opens)
        return False, start, end

    def is_open(self, ts_ns: int) -> bool:
        return self.interval(ts_ns)[0]

    def open_ns(self, start_ns: int, end_ns: int) -> int:
        """Nanoseconds of market-open time within [start_ns, end_ns)."""
        total, t = 0, start_ns
        while t < end_ns:
            is_open, _, until = self.interval(t)
            stop = min(until, end_ns)
            if is_open:
                total += stop - t
            t = stop
        return total


@dataclass(frozen=True)
class QualityThresholds:
    """The thresholds of the checks (see ``DataQualityConfig`` for each one's meaning)."""

    stale_after_s: float = 60.0
    crossed_persist_ms: float = 2_000.0
    crossed_persist_events: int = 50
    locked_persist_ms: float = 2_000.0
    locked_persist_events: int = 50
    event_hold_s: float = 60.0
    clear_after_s: float = 5.0
    min_agreement_rate: float = 0.90
    min_agreement_trades: int = 200
    min_records_per_minute: int = 0
    min_instrument_share: float = 0.0
    completeness_after_s: float = 900.0
    pause_on: tuple[str, ...] = ("stale_feed", "crossed_book", "sequence_gap")
    max_minutes_kept: int = 10_080
    max_alarms_kept: int = 1_000

    def __post_init__(self) -> None:
        positive = ("stale_after_s", "crossed_persist_ms", "locked_persist_ms", "event_hold_s", "completeness_after_s")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("crossed_persist_events", "locked_persist_events", "max_minutes_kept", "max_alarms_kept"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)}")
        for name in ("clear_after_s", "min_records_per_minute", "min_agreement_trades"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("min_agreement_rate", "min_instrument_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {getattr(self, name)}")
        unknown = sorted(set(self.pause_on) - set(KINDS))
        if unknown:
            raise ValueError(f"pause_on: unknown check(s) {', '.join(unknown)} (known: {', '.join(KINDS)})")


@dataclass(frozen=True, slots=True)
class Alarm:
    """A breach episode's start (or the feed's recovery: kind ``feed_recovered``)."""

    ts: int
    kind: str
    level: str  # "info" | "warning" | "critical"
    instrument: str  # "*" for the whole feed
    title: str
    text: str
    fields: str  # "name=value; name=value"


@dataclass(frozen=True, slots=True)
class HealthChange:
    """The feed verdict changed: unhealthy on a pausing breach, healthy once all have cleared."""

    ts: int
    healthy: bool
    reason: str


class InstrumentQuality:
    """Running figures and check state of one instrument (``FeedQuality.instrument``)."""

    __slots__ = (
        "bad_ts_recv",
        "book_breached",
        "book_events",
        "book_since",
        "book_spread",
        "book_state",
        "expected",
        "gaps",
        "key",
        "last_sequence",
        "maybe_bad_book",
        "records",
        "trades",
    )

    def __init__(self, key: str, expected: bool) -> None:
        self.key = key
        self.expected = expected
        self.records = 0
        self.trades = 0
        self.gaps = 0
        self.maybe_bad_book = 0
        self.bad_ts_recv = 0
        self.last_sequence = 0
        self.book_state = _NONE  # at the last boundary judged: none, crossed or locked
        self.book_since = 0  # first boundary of the current crossed / locked episode
        self.book_events = 0  # boundaries in it
        self.book_spread = 0.0  # most negative spread in it
        self.book_breached = False


class FeedQuality:
    """The data-quality state of one feed: figures, breaches and the healthy / unhealthy verdict."""

    def __init__(
        self,
        thresholds: QualityThresholds,
        hours: MarketHours,
        expected: list[str] | tuple[str, ...] = (),
        start_ns: int = 0,
    ) -> None:
        self.thresholds = thresholds
        self.hours = hours
        t = thresholds
        self._stale_ns = int(t.stale_after_s * NS)
        self._persist_ns = {_CROSSED: int(t.crossed_persist_ms * 1e6), _LOCKED: int(t.locked_persist_ms * 1e6)}
        self._persist_events = {_CROSSED: t.crossed_persist_events, _LOCKED: t.locked_persist_events}
        self._hold_ns = int(t.event_hold_s * NS)
        self._clear_ns = int(t.clear_after_s * NS)
        self._pause_on = frozenset(t.pause_on)
        self._states: dict[str, InstrumentQuality] = {}
        for key in expected:
            self._states[key] = InstrumentQuality(key, True)
        self.instruments_expected = len(self._states)
        self.instruments_seen = 0
        self.expected_seen = 0
        self.start_ns = start_ns
        self.records = 0
        self.trades = 0
        self.sequence_gaps = 0
        self.maybe_bad_book = 0
        self.bad_ts_recv = 0
        self.bad_ts_recv_in_snapshot = 0
        self.snapshot_records = 0
        self.crossed_books = 0
        self.locked_books = 0
        self.crossed_boundaries = 0
        self.locked_boundaries = 0
        self.crossed_transient = 0
        self.locked_transient = 0
        self.longest_crossed_ms = 0.0
        self.longest_locked_ms = 0.0
        self.boundaries_judged = 0
        self.initiation = InitiationStats()
        self.first_ns: int | None = None
        self.last_ns = start_ns  # last record or trade (the start, before any)
        self._due = 0  # next record time at which _arrived has work (see on_book)
        self._stale_since: int | None = None  # last record before the running stale period
        self._silence_ref, self._silence_ns, self._silence_upto = -1, 0, 0  # see _silence_open
        self.stale_periods: list[dict] = []
        self._longest_silence_ns = 0  # longest market-open time between two records
        # market-hours cache: state of [lo, hi)
        self._hours_open, self._hours_lo, self._hours_hi = False, 1, 0
        # minutes
        self._minute = start_ns // MINUTE_NS
        self._minute_end = (self._minute + 1) * MINUTE_NS
        self._first_minute = self._minute
        self._m = [0, 0, 0, 0, 0, 0]  # records, trades, gaps, flagged, crossed, locked of the current minute
        self.per_minute: deque[list[int]] = deque(maxlen=t.max_minutes_kept)
        self.minutes_judged = 0
        self.minutes_ok = 0
        self._open_since_start_ns = 0
        self._last_clock = start_ns
        # breaches
        self._active: dict[tuple[str, str], int] = {}  # (kind, instrument) -> since
        self._holds: dict[tuple[str, str], int] = {}  # event-kind breaches: active until
        self._watch: dict[str, InstrumentQuality] = {}  # instruments crossed / locked, not yet a breach
        self.pausing: set[tuple[str, str]] = set()
        self.healthy = True
        self._clear_at = 0  # healthy again at this time if nothing pausing is active
        self.alarms: deque[dict] = deque(maxlen=t.max_alarms_kept)
        self.alarm_count = 0
        self.health_changes: list[dict] = []
        self.events: list[Alarm | HealthChange] = []

    # -- registration ---------------------------------------------------------------------

    def instrument(self, key: str) -> InstrumentQuality:
        """The state of an instrument (created, as not expected, when new)."""
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = InstrumentQuality(key, False)
        return state

    # -- per record -------------------------------------------------------------------------

    def _arrived(self, state: InstrumentQuality, ts: int) -> None:
        """The rarely needed bookkeeping of a record or trade (``_due`` tells when)."""
        if ts >= self._minute_end:
            self._roll(ts)
        if ts - self.last_ns > self._longest_silence_ns or self._stale_since is not None:
            self._silence_ended(ts)
        if self.first_ns is None:
            self.first_ns = ts
        if state.records == 0 and state.trades == 0:
            self.instruments_seen += 1
            if state.expected:
                self.expected_seen += 1
        if self._clear_at and ts >= self._clear_at:
            self._update_health(ts)
        self._due = min(self._minute_end, self.last_ns + self._longest_silence_ns + 1)
        if self._clear_at:
            self._due = min(self._due, self._clear_at)
        if self._stale_since is not None:
            self._due = 0

    def on_book(self, state: InstrumentQuality, ts: int, sequence: int, flags: int) -> None:
        """One book record (delta): counts, sequence and flag checks."""
        # Minute roll, silence and health recovery only matter from ``_due`` on; a new instrument
        # is seen when its first record comes: one comparison each on the common path.
        if ts >= self._due or not state.records:
            self._arrived(state, ts)
        if ts > self.last_ns:  # noqa: PLR1730 (per record: cheaper than max())
            self.last_ns = ts
        self.records += 1
        state.records += 1
        m = self._m
        m[0] += 1
        if flags & F_SNAPSHOT:
            self.snapshot_records += 1
            state.last_sequence = 0
            if flags & F_BAD_TS_RECV:
                self.bad_ts_recv_in_snapshot += 1
            if flags & F_MAYBE_BAD_BOOK:
                self._flagged(state, ts, F_MAYBE_BAD_BOOK)
            return
        if sequence:
            if sequence < state.last_sequence:
                self._sequence_gap(state, ts, sequence)
            state.last_sequence = sequence
        if flags & 12:  # F_BAD_TS_RECV | F_MAYBE_BAD_BOOK
            self._flagged(state, ts, flags)

    def on_event_end(self, state: InstrumentQuality, ts: int, spread: float | None) -> None:
        """An event boundary (F_LAST) with the book's best ask - best bid (None: a side is empty)."""
        if not (self._hours_lo <= ts < self._hours_hi):
            self._refresh_hours(ts)
        if not self._hours_open:
            if state.book_state:
                self._book_episode_end(state, ts)
            return
        self.boundaries_judged += 1
        if spread is None or spread > 0.0:
            if state.book_state:
                self._book_episode_end(state, ts)
            return
        kind = _CROSSED if spread < 0.0 else _LOCKED
        if kind == _CROSSED:
            self.crossed_boundaries += 1
            self._m[4] += 1
        else:
            self.locked_boundaries += 1
            self._m[5] += 1
        if state.book_state != kind:
            if state.book_state:
                self._book_episode_end(state, ts)
            state.book_state, state.book_since, state.book_events = kind, ts, 0
            state.book_spread, state.book_breached = spread, False
            self._watch[state.key] = state
        state.book_events += 1
        if spread < state.book_spread:  # noqa: PLR1730 (per boundary: cheaper than min())
            state.book_spread = spread
        if not state.book_breached and (
            ts - state.book_since >= self._persist_ns[kind] or state.book_events >= self._persist_events[kind]
        ):
            self._book_breach(state, ts)

    def on_trade(self, state: InstrumentQuality, ts: int, price: float, feed_side: int, bid: float, ask: float) -> None:
        """One trade with the book before it (NaN when unknown): counts and aggressor agreement."""
        if ts >= self._due or not state.trades:
            self._arrived(state, ts)
        if ts > self.last_ns:  # noqa: PLR1730 (per record: cheaper than max())
            self.last_ns = ts
        self.trades += 1
        state.trades += 1
        self._m[1] += 1
        stats = self.initiation
        stats.classify(price, feed_side, bid, ask)
        if stats.trades % _AGREEMENT_EVERY == 0:
            self._judge_agreement(ts)

    # -- per clock tick -------------------------------------------------------------------

    def on_clock(self, now: int) -> None:
        """Time-based checks: stale feed, persisting crossed books, hold expiry, completeness."""
        if now >= self._minute_end:
            self._roll(now)
        if now > self._last_clock:
            self._open_since_start_ns += self._open_between(self._last_clock, now)
            self._last_clock = now
        if now - self.last_ns > self._stale_ns:
            silent = self._silence_open(now)
            if self._stale_since is None and silent > self._stale_ns:
                self._stale_since = self.last_ns
                self._due = 0  # the next record ends it
                self._breach(
                    "stale_feed", FEED, now, "Feed stale",
                    f"no record for {silent / NS:.0f} s of market hours (last at {iso(self.last_ns)})",
                    f"last_record={iso(self.last_ns)}; silent_s={silent / NS:.1f}",
                )
        if self._watch:
            if not (self._hours_lo <= now < self._hours_hi):
                self._refresh_hours(now)
            for state in list(self._watch.values()):
                if self._hours_open and now - state.book_since >= self._persist_ns[state.book_state]:
                    self._book_breach(state, now)
        if self._holds:
            for key, until in list(self._holds.items()):
                if now >= until:
                    del self._holds[key]
                    self._clear(key, now)
        t = self.thresholds
        if t.min_instrument_share > 0 and self.instruments_expected and (
            self._open_since_start_ns >= t.completeness_after_s * NS
        ):
            share = self.expected_seen / self.instruments_expected
            if share < t.min_instrument_share:
                self._breach(
                    "missing_instruments", FEED, now, "Instruments missing",
                    f"{self.expected_seen} of {self.instruments_expected} expected instruments have data "
                    f"({share:.0%} < {t.min_instrument_share:.0%})",
                    f"seen={self.expected_seen}; expected={self.instruments_expected}; share={share:.4f}",
                )
            else:
                self._clear(("missing_instruments", FEED), now)
        if self._clear_at and now >= self._clear_at:
            self._update_health(now)

    def next_check(self, now: int, interval_ns: int, closed_interval_ns: int) -> int:
        """When the clock should call ``on_clock`` next: every ``interval_ns`` while the market is
        open, every ``closed_interval_ns`` (or at the open, if sooner) while it is closed."""
        if not (self._hours_lo <= now < self._hours_hi):
            self._refresh_hours(now)
        if self._hours_open:
            return now + interval_ns
        return min(now + closed_interval_ns, max(self._hours_hi, now + 1))

    # -- checks ---------------------------------------------------------------------------

    def _sequence_gap(self, state: InstrumentQuality, ts: int, sequence: int) -> None:
        self.sequence_gaps += 1
        state.gaps += 1
        self._m[2] += 1
        self._event_breach(
            "sequence_gap", state.key, ts, "Sequence went backwards",
            f"{state.key}: sequence {sequence} after {state.last_sequence} (records reordered or replayed)",
            f"instrument={state.key}; sequence={sequence}; previous={state.last_sequence}",
        )

    def _flagged(self, state: InstrumentQuality, ts: int, flags: int) -> None:
        self._m[3] += 1
        if flags & F_MAYBE_BAD_BOOK:
            self.maybe_bad_book += 1
            state.maybe_bad_book += 1
            self._event_breach(
                "maybe_bad_book", state.key, ts, "Book may be bad",
                f"{state.key}: record flagged F_MAYBE_BAD_BOOK (the venue's feed had an unrecoverable gap)",
                f"instrument={state.key}; flags={flags}",
            )
        if flags & F_BAD_TS_RECV and not flags & F_SNAPSHOT:
            self.bad_ts_recv += 1
            state.bad_ts_recv += 1
            self._event_breach(
                "bad_ts_recv", state.key, ts, "Bad receive timestamp",
                f"{state.key}: record flagged F_BAD_TS_RECV (ts_recv unreliable)",
                f"instrument={state.key}; flags={flags}",
            )

    def _book_breach(self, state: InstrumentQuality, ts: int) -> None:
        state.book_breached = True
        self._watch.pop(state.key, None)
        kind = _BOOK_KIND[state.book_state]
        word = "crossed" if state.book_state == _CROSSED else "locked"
        if state.book_state == _CROSSED:
            self.crossed_books += 1
        else:
            self.locked_books += 1
        lasted = (ts - state.book_since) / 1e6
        self._breach(
            kind, state.key, ts, f"Book {word}",
            f"{state.key}: book {word} (ask - bid {state.book_spread:g}) for {lasted:.0f} ms "
            f"over {state.book_events} event(s)",
            f"instrument={state.key}; spread={state.book_spread:g}; ms={lasted:.0f}; events={state.book_events}",
        )

    def _book_episode_end(self, state: InstrumentQuality, ts: int) -> None:
        lasted = (ts - state.book_since) / 1e6
        if state.book_state == _CROSSED:
            self.longest_crossed_ms = max(self.longest_crossed_ms, lasted)
            if not state.book_breached:
                self.crossed_transient += 1
        else:
            self.longest_locked_ms = max(self.longest_locked_ms, lasted)
            if not state.book_breached:
                self.locked_transient += 1
        if state.book_breached:
            self._clear((_BOOK_KIND[state.book_state], state.key), ts)
        self._watch.pop(state.key, None)
        state.book_state, state.book_breached = _NONE, False

    def _silence_ended(self, ts: int) -> None:
        """A record after the longest silence so far or a stale period: the longest silence, the
        end of a running stale period, or a stale period the clock missed."""
        silent = self._silence_open(ts)
        self._longest_silence_ns = max(self._longest_silence_ns, silent)
        if self._stale_since is not None:
            period = {"start": iso(self._stale_since), "end": iso(ts), "seconds": round(silent / NS, 3)}
            self.stale_periods.append(period)
            self._stale_since = None
            self._clear(("stale_feed", FEED), ts)
        elif silent > self._stale_ns:  # no clock tick saw it (ticks too sparse): report, no pause
            self.stale_periods.append({"start": iso(self.last_ns), "end": iso(ts), "seconds": round(silent / NS, 3)})
            self._alarm(
                "stale_feed", FEED, ts, "warning", "Feed was stale",
                f"no record for {silent / NS:.0f} s of market hours until {iso(ts)}",
                f"last_record={iso(self.last_ns)}; silent_s={silent / NS:.1f}",
            )

    def _judge_agreement(self, ts: int) -> None:
        stats, t = self.initiation, self.thresholds
        rate = stats.agreement_rate
        if rate is None or stats.both_known < t.min_agreement_trades:
            return
        if rate < t.min_agreement_rate:
            self._breach(
                "low_agreement", FEED, ts, "Aggressor side disagrees with the book",
                f"feed aggressor side agrees with the book at {rate:.1%} of {stats.both_known} trades "
                f"(< {t.min_agreement_rate:.0%})",
                f"agreement_rate={rate:.4f}; checked={stats.both_known}",
            )
        else:
            self._clear(("low_agreement", FEED), ts)

    def _roll(self, ts: int) -> None:
        """Close the current minute (row, record-rate check) and move to the minute of ``ts``."""
        minute, m = self._minute, self._m
        if any(m):
            self.per_minute.append([minute, *m])
        t = self.thresholds
        new_minute = ts // MINUTE_NS
        if t.min_records_per_minute > 0:
            count = m[0] + m[1]
            for judged in range(minute, new_minute):  # empty minutes in between count too
                if judged <= self._first_minute or not self._minute_open(judged):
                    continue
                self.minutes_judged += 1
                if count >= t.min_records_per_minute:
                    self.minutes_ok += 1
                    self._clear(("low_record_rate", FEED), ts)
                else:
                    self._breach(
                        "low_record_rate", FEED, ts, "Few records",
                        f"{count} records in the minute from {iso(judged * MINUTE_NS)} "
                        f"(< {t.min_records_per_minute})",
                        f"minute={iso(judged * MINUTE_NS)}; records={count}",
                    )
                count = 0
        self._minute = new_minute
        self._minute_end = (new_minute + 1) * MINUTE_NS
        self._m = [0, 0, 0, 0, 0, 0]

    def _minute_open(self, minute: int) -> bool:
        start = minute * MINUTE_NS
        if not (self._hours_lo <= start < self._hours_hi):
            self._refresh_hours(start)
        return self._hours_open and self._hours_hi >= start + MINUTE_NS

    def _refresh_hours(self, ts: int) -> None:
        self._hours_open, self._hours_lo, self._hours_hi = self.hours.interval(ts)

    def _open_between(self, start: int, end: int) -> int:
        """Market-open ns in [start, end), through the cached stretch of constant state."""
        total = 0
        while start < end:
            if not (self._hours_lo <= start < self._hours_hi):
                self._refresh_hours(start)
            stop = min(self._hours_hi, end)
            if self._hours_open:
                total += stop - start
            start = stop
        return total

    def _silence_open(self, now: int) -> int:
        """Market-open ns since the last record, summed tick by tick (O(1) per tick)."""
        if self._silence_ref != self.last_ns:  # a new silence
            self._silence_ref, self._silence_ns, self._silence_upto = self.last_ns, 0, self.last_ns
        if now > self._silence_upto:
            self._silence_ns += self._open_between(self._silence_upto, now)
            self._silence_upto = now
        return self._silence_ns

    # -- breaches and health --------------------------------------------------------------

    def _event_breach(self, kind: str, instrument: str, ts: int, title: str, text: str, fields: str) -> None:
        """A breach made of events: active until ``event_hold_s`` passes without another."""
        key = (kind, instrument)
        self._holds[key] = ts + self._hold_ns
        self._breach(kind, instrument, ts, title, text, fields)

    def _breach(self, kind: str, instrument: str, ts: int, title: str, text: str, fields: str) -> None:
        key = (kind, instrument)
        if key in self._active:
            return  # same episode: one alarm
        self._active[key] = ts
        pausing = kind in self._pause_on
        self._alarm(kind, instrument, ts, "critical" if pausing else "warning", title, text, fields)
        if pausing:
            self.pausing.add(key)
            self._clear_at = 0
            self._update_health(ts)

    def _clear(self, key: tuple[str, str], ts: int) -> None:
        if self._active.pop(key, None) is None:
            return
        if key in self.pausing:
            self.pausing.discard(key)
            if not self.pausing and not self.healthy:
                self._clear_at = ts + self._clear_ns
                self._due = min(self._due, self._clear_at)
                self._update_health(ts)

    def _update_health(self, ts: int) -> None:
        if self.pausing:
            if self.healthy:
                self._set_health(ts, False)
            return
        if not self.healthy and self._clear_at and ts >= self._clear_at:
            self._clear_at = 0
            self._set_health(ts, True)

    def _set_health(self, ts: int, healthy: bool) -> None:
        self.healthy = healthy
        reason = "ok" if healthy else self.reason()
        self.health_changes.append({"ts": iso(ts), "healthy": healthy, "reason": reason})
        self.events.append(HealthChange(ts, healthy, reason))
        if healthy:
            self._alarm("feed_recovered", FEED, ts, "info", "Feed healthy again", "every pausing check has cleared", "")

    def reason(self) -> str:
        """The pausing breaches in progress, "; "-joined ("kind" or "kind instrument")."""
        return "; ".join(sorted(k if i == FEED else f"{k} {i}" for k, i in self.pausing))

    def _alarm(self, kind: str, instrument: str, ts: int, level: str, title: str, text: str, fields: str) -> None:
        self.alarm_count += 1
        self.alarms.append({"ts": iso(ts), "kind": kind, "level": level, "instrument": instrument, "text": text})
        self.events.append(Alarm(ts, kind, level, instrument, title, text, fields))

    def take_events(self) -> list[Alarm | HealthChange]:
        """The alarms and health changes since the last call (oldest first)."""
        events, self.events = self.events, []
        return events

    # -- figures --------------------------------------------------------------------------

    def active_breaches(self) -> list[dict]:
        return [{"kind": k, "instrument": i, "since": iso(ts)} for (k, i), ts in sorted(self._active.items())]

    def live_figures(self) -> dict:
        """A small snapshot for a dashboard."""
        rate = self.initiation.agreement_rate
        return {
            "healthy": self.healthy,
            "reason": "ok" if self.healthy else self.reason(),
            "records": self.records,
            "trades": self.trades,
            "last_record": iso(self.last_ns) if self.first_ns is not None else None,
            "sequence_gaps": self.sequence_gaps,
            "flagged": self.maybe_bad_book + self.bad_ts_recv,
            "crossed_books": self.crossed_books,
            "locked_books": self.locked_books,
            "stale_periods": len(self.stale_periods) + (self._stale_since is not None),
            "completeness": self.completeness(),
            "agreement_rate": round(rate, 6) if rate is not None else None,
            "alarms": self.alarm_count,
            "active": self.active_breaches(),
        }

    def completeness(self) -> float | None:
        if not self.instruments_expected:
            return None
        return round(self.expected_seen / self.instruments_expected, 6)

    def report(self, now: int | None = None) -> dict:
        """Every figure (definitions in the module docstring), JSON-able."""
        stats = self.initiation.as_dict()
        stale = list(self.stale_periods)
        if self._stale_since is not None:
            end = now if now is not None else self.last_ns
            stale.append({"start": iso(self._stale_since), "end": None,
                          "seconds": round(self.hours.open_ns(self._stale_since, end) / NS, 3)})
        minutes = [*self.per_minute]
        if any(self._m):
            minutes.append([self._minute, *self._m])
        t = self.thresholds
        return {
            "monitor": "data_quality",
            "records": self.records,
            "trades": self.trades,
            "first_record": iso(self.first_ns),
            "last_record": iso(self.last_ns) if self.first_ns is not None else None,
            "instruments_seen": self.instruments_seen,
            "instruments_expected": self.instruments_expected,
            "completeness": self.completeness(),
            "minute_completeness": round(self.minutes_ok / self.minutes_judged, 6) if self.minutes_judged else None,
            "minutes_judged": self.minutes_judged,
            "sequence_gaps": self.sequence_gaps,
            "sequence_gaps_by_instrument": {k: s.gaps for k, s in sorted(self._states.items()) if s.gaps},
            "flags": {
                "maybe_bad_book": self.maybe_bad_book,
                "bad_ts_recv": self.bad_ts_recv,
                "bad_ts_recv_in_snapshot": self.bad_ts_recv_in_snapshot,
            },
            "snapshot_records": self.snapshot_records,
            "crossed_books": self.crossed_books,
            "locked_books": self.locked_books,
            "crossed_boundaries": self.crossed_boundaries,
            "locked_boundaries": self.locked_boundaries,
            "crossed_transient": self.crossed_transient,
            "locked_transient": self.locked_transient,
            "longest_crossed_ms": round(self.longest_crossed_ms, 3),
            "longest_locked_ms": round(self.longest_locked_ms, 3),
            "boundaries_judged": self.boundaries_judged,
            "stale_periods": stale,
            "longest_silence_open_s": round(self._longest_silence_ns / NS, 3),
            "agreement_rate": stats["agreement_rate"],
            "agreement_checked": stats["agreement_checked"],
            "initiation": stats,
            "alarms": list(self.alarms),
            "alarm_count": self.alarm_count,
            "health_changes": list(self.health_changes),
            "active_breaches": self.active_breaches(),
            "per_minute": [
                {"minute": iso(m * MINUTE_NS), "records": r, "trades": tr, "gaps": g, "flagged": f,
                 "crossed": c, "locked": lk}
                for m, r, tr, g, f, c, lk in minutes
            ],
            "per_instrument": {
                k: {"records": s.records, "trades": s.trades, "gaps": s.gaps,
                    "maybe_bad_book": s.maybe_bad_book, "bad_ts_recv": s.bad_ts_recv, "expected": s.expected}
                for k, s in sorted(self._states.items())
            },
            "thresholds": {
                "stale_after_s": t.stale_after_s, "crossed_persist_ms": t.crossed_persist_ms,
                "crossed_persist_events": t.crossed_persist_events, "locked_persist_ms": t.locked_persist_ms,
                "locked_persist_events": t.locked_persist_events, "event_hold_s": t.event_hold_s,
                "clear_after_s": t.clear_after_s, "min_agreement_rate": t.min_agreement_rate,
                "min_agreement_trades": t.min_agreement_trades, "min_records_per_minute": t.min_records_per_minute,
                "min_instrument_share": t.min_instrument_share, "completeness_after_s": t.completeness_after_s,
                "pause_on": list(t.pause_on),
            },
            "healthy_at_end": self.healthy,
        }
