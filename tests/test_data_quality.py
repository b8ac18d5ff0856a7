"""The data-quality monitor: ``feed_quality`` on crafted records (gaps, flags, crossed and locked
books, stale periods, completeness, agreement), its config, and ``DataQualityMonitor`` in real
BacktestNode runs: the real ESM4 snapshot file and ESH4 session (figures, no alarm) and a generated
session with a planted crossed book and silence (alarms, FeedHealth, v3 paused and v1 trading)."""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

import msgspec
import numpy as np
import pytest
from nautilus_trader.data.config import DataEngineConfig

from backtests.config import build_run_config
from backtests.config import load_backtest_spec
from backtests.runner import ProgressBacktestNode
from backtests.runner import ReplayProgress
from backtests.runner import catalog_rows
from backtests.runner import run_backtest
from catalogs.ingest import ingest
from ifd.alerts import Level
from ifd.alerts.signal_alerts import alert_from_monitor_alarm
from ifd.detection.initiation import InitiationStats
from ifd.detection.types import BUY
from ifd.detection.types import SELL
from ifd.detection.types import UNKNOWN
from ifd.errors import IfdError
from ifd.monitoring.feed_quality import F_BAD_TS_RECV
from ifd.monitoring.feed_quality import F_LAST
from ifd.monitoring.feed_quality import F_MAYBE_BAD_BOOK
from ifd.monitoring.feed_quality import F_SNAPSHOT
from ifd.monitoring.feed_quality import Alarm
from ifd.monitoring.feed_quality import FeedQuality
from ifd.monitoring.feed_quality import HealthChange
from ifd.monitoring.feed_quality import MarketHours
from ifd.monitoring.feed_quality import QualityThresholds
from ifd.monitoring.feed_quality import iso
from ifd.monitoring.quality_actor import DataQualityConfig
from ifd.monitoring.quality_actor import DataQualityMonitor
from ifd.sessions import cme_trading_day
from ifd.toml_files import read_toml
from strategies.signals import DetectorStatus
from strategies.signals import FeedHealth
from strategies.signals import MonitorAlarm
from strategies.signals import data_topic
from tests.support.configs import without_actors

PROJECT = Path(__file__).resolve().parents[1]
PROFILE = PROJECT / "configs" / "monitors" / "data_quality.toml"
S = 1_000_000_000
MS = 1_000_000
CT = dt.timezone(dt.timedelta(hours=-6))  # Chicago in November (CST)
T0 = int(dt.datetime(2026, 11, 16, 8, 30, tzinfo=CT).timestamp()) * S  # Monday 08:30 Chicago: open
CME = MarketHours()
ALWAYS = MarketHours(always_open=True)
REPORT_KEYS = {
    "monitor", "records", "trades", "instruments_seen", "instruments_expected", "completeness",
    "sequence_gaps", "sequence_gaps_by_instrument", "flags", "crossed_books", "locked_books",
    "stale_periods", "agreement_rate", "agreement_checked", "alarms", "per_minute", "healthy_at_end",
}
MONITOR_ACTOR = """
[[actors]]
actor_path = "ifd.monitoring.quality_actor:DataQualityMonitor"
config_path = "ifd.monitoring.quality_actor:DataQualityConfig"
profile = "configs/monitors/data_quality.toml"
"""


def chicago(day: int, hour: int, minute: int = 0, second: int = 0) -> int:
    """UNIX ns of a November 2026 Chicago wall time (CST, UTC-6)."""
    return int(dt.datetime(2026, 11, day, hour, minute, second, tzinfo=CT).timestamp()) * S


def feed(hours: MarketHours = CME, expected=("A.GLBX",), start: int = T0, **thresholds) -> FeedQuality:
    return FeedQuality(QualityThresholds(**thresholds), hours, list(expected), start_ns=start)


def alarms(quality: FeedQuality) -> list[Alarm]:
    return [e for e in quality.take_events() if isinstance(e, Alarm)]


def split(events) -> tuple[list[Alarm], list[HealthChange]]:
    return [e for e in events if isinstance(e, Alarm)], [e for e in events if isinstance(e, HealthChange)]


# -- market hours --------------------------------------------------------------------------


def test_market_hours_follow_cme_globex():
    assert CME.is_open(chicago(16, 8, 30))  # Monday morning
    assert not CME.is_open(chicago(16, 16, 30))  # the daily halt 16:00-17:00
    assert CME.is_open(chicago(16, 17, 0))  # reopens for Tuesday's trading date
    assert not CME.is_open(chicago(20, 16, 0))  # Friday close ...
    assert not CME.is_open(chicago(22, 16, 59, 59))  # ... to Sunday 17:00
    assert CME.is_open(chicago(22, 17, 0))
    assert CME.trading_date(chicago(22, 17, 0)) == dt.date(2026, 11, 23)  # Sunday evening is Monday's date
    # across the halt only open time counts
    assert CME.open_ns(chicago(16, 15, 59, 30), chicago(16, 17, 0, 45)) == 75 * S

    rng = random.Random(7)
    for _ in range(2_000):  # the trading date agrees with the project's CME helper
        ts = rng.randrange(chicago(1, 0), chicago(30, 0))
        assert CME.trading_date(ts) == cme_trading_day(ts)


def test_holidays_and_early_closes_from_the_shipped_profile():
    profile = read_toml(PROFILE, "missing")
    hours = DataQualityConfig(**profile).market_hours()
    christmas_2023 = dt.datetime(2023, 12, 25, 10, 0, tzinfo=CT)
    assert not hours.is_open(int(christmas_2023.timestamp()) * S)
    assert hours.is_open(int(dt.datetime(2023, 12, 25, 17, 0, 1, tzinfo=CT).timestamp()) * S)  # trading date Dec 26
    thanksgiving_friday = dt.datetime(2026, 11, 27, 12, 14, tzinfo=CT)
    assert hours.is_open(int(thanksgiving_friday.timestamp()) * S)
    assert not hours.is_open(int((thanksgiving_friday + dt.timedelta(minutes=2)).timestamp()) * S)  # 12:15 close


# -- sequence gaps -------------------------------------------------------------------------


def test_sequence_going_backwards_is_a_gap_holes_and_repeats_are_not():
    q = feed(event_hold_s=30.0, clear_after_s=5.0)
    a, b = q.instrument("A.GLBX"), q.instrument("B.GLBX")
    for i, seq in enumerate([100, 100, 104, 250, 250]):  # repeats (one packet) and holes (other instruments)
        q.on_book(a, T0 + i * MS, seq, F_LAST)
    q.on_book(b, T0 + 10 * MS, 120, F_LAST)  # another instrument's stream: lower than A's, not a gap
    assert q.sequence_gaps == 0 and not q.take_events()

    q.on_book(a, T0 + 20 * MS, 249, F_LAST)  # A goes back: reordered or replayed
    found, health = split(q.take_events())
    assert [(x.kind, x.level, x.instrument) for x in found] == [("sequence_gap", "critical", "A.GLBX")]
    assert "249 after 250" in found[0].text
    assert [(h.healthy, h.reason) for h in health] == [(False, "sequence_gap A.GLBX")]
    q.on_book(a, T0 + 25 * MS, 248, F_LAST)  # same episode: counted, no second alarm
    assert q.sequence_gaps == 2 and not q.take_events()
    assert q.report()["sequence_gaps_by_instrument"] == {"A.GLBX": 2}

    q.on_clock(T0 + 25 * MS + 29 * S)  # still within event_hold_s of the last gap
    assert not q.healthy
    q.on_clock(T0 + 25 * MS + 31 * S)  # held breach expires; healthy again only clear_after_s later
    assert not q.healthy and not q.take_events()
    q.on_clock(T0 + 25 * MS + 37 * S)
    found, health = split(q.take_events())
    assert [(h.healthy, h.reason) for h in health] == [(True, "ok")]
    assert [(x.kind, x.level) for x in found] == [("feed_recovered", "info")]
    assert q.report()["per_minute"][0]["gaps"] == 2


def test_a_snapshot_restarts_the_sequence_and_unset_sequences_are_skipped():
    q = feed()
    a = q.instrument("A.GLBX")
    q.on_book(a, T0, 5_000, F_LAST)
    for seq in [700, 650, 820, 600]:  # snapshot records: each order's own sequence, unordered
        q.on_book(a, T0 + MS, seq, F_SNAPSHOT | F_BAD_TS_RECV)
    q.on_book(a, T0 + MS, 900, F_SNAPSHOT | F_BAD_TS_RECV | F_LAST)
    q.on_book(a, T0 + 2 * MS, 0, F_LAST)  # sequence 0: unset
    q.on_book(a, T0 + 3 * MS, 950, F_LAST)  # live again, below the pre-snapshot 5000: a new stream
    report = q.report()
    assert report["sequence_gaps"] == 0 and report["snapshot_records"] == 5
    assert report["flags"] == {"maybe_bad_book": 0, "bad_ts_recv": 0, "bad_ts_recv_in_snapshot": 5}
    assert not q.take_events()


# -- flags ---------------------------------------------------------------------------------


def test_flagged_records_alert_once_per_episode_and_do_not_pause():
    q = feed(event_hold_s=10.0)
    a, b = q.instrument("A.GLBX"), q.instrument("B.GLBX")
    q.on_book(a, T0, 1, F_LAST | F_MAYBE_BAD_BOOK)
    q.on_book(a, T0 + S, 2, F_LAST | F_MAYBE_BAD_BOOK)  # same episode
    q.on_book(b, T0 + S, 3, F_BAD_TS_RECV)
    found, health = split(q.take_events())
    assert [(x.kind, x.level, x.instrument) for x in found] == [
        ("maybe_bad_book", "warning", "A.GLBX"), ("bad_ts_recv", "warning", "B.GLBX"),
    ]
    assert not health and q.healthy
    q.on_clock(T0 + 12 * S)  # episodes over: the next flagged record is a new one
    q.on_book(a, T0 + 13 * S, 4, F_LAST | F_MAYBE_BAD_BOOK)
    assert [x.kind for x in alarms(q)] == ["maybe_bad_book"]
    report = q.report()
    assert report["flags"] == {"maybe_bad_book": 3, "bad_ts_recv": 1, "bad_ts_recv_in_snapshot": 0}
    assert sum(row["flagged"] for row in report["per_minute"]) == 4


def test_maybe_bad_book_pauses_when_configured():
    q = feed(pause_on=("maybe_bad_book",))
    q.on_book(q.instrument("A.GLBX"), T0, 1, F_LAST | F_MAYBE_BAD_BOOK)
    found, health = split(q.take_events())
    assert found[0].level == "critical" and [h.healthy for h in health] == [False]


# -- crossed and locked books --------------------------------------------------------------


def test_a_transient_crossed_book_is_counted_not_alarmed():
    q = feed(crossed_persist_ms=2_000.0, crossed_persist_events=50)
    a = q.instrument("A.GLBX")
    q.on_event_end(a, T0, 0.25)
    for k in range(1, 11):  # crossed over 10 boundaries in 900 ms (e.g. an opening auction uncrossing)
        q.on_event_end(a, T0 + k * 100 * MS, -1.0)
    q.on_event_end(a, T0 + 1_100 * MS, 0.5)
    report = q.report()
    assert (report["crossed_books"], report["crossed_transient"], report["crossed_boundaries"]) == (0, 1, 10)
    assert report["longest_crossed_ms"] == 1_000.0
    assert not q.take_events() and q.healthy


def test_a_crossed_book_persisting_in_time_pauses_until_it_uncrosses():
    q = feed(crossed_persist_ms=2_000.0, crossed_persist_events=50, clear_after_s=5.0)
    a = q.instrument("A.GLBX")
    for k in range(6):  # one boundary every 500 ms, crossed by 1.5 points
        q.on_event_end(a, T0 + k * 500 * MS, -1.5)
    found, health = split(q.take_events())
    assert [(x.kind, x.level, x.instrument) for x in found] == [("crossed_book", "critical", "A.GLBX")]
    assert found[0].ts == T0 + 2_000 * MS and "for 2000 ms over 5 event(s)" in found[0].text
    assert [(h.healthy, h.reason) for h in health] == [(False, "crossed_book A.GLBX")]
    q.on_event_end(a, T0 + 4 * S, 0.25)  # uncrossed
    q.on_clock(T0 + 8 * S)
    assert not q.healthy
    q.on_clock(T0 + 9 * S)  # clear_after_s after the uncross
    assert q.healthy and q.report()["crossed_books"] == 1


def test_a_crossed_book_persisting_over_many_events_is_a_breach():
    q = feed(crossed_persist_ms=2_000.0, crossed_persist_events=50)
    a = q.instrument("A.GLBX")
    for k in range(50):  # 50 boundaries in 49 ms
        q.on_event_end(a, T0 + k * MS, -0.25)
    assert [x.kind for x in alarms(q)] == ["crossed_book"] and not q.healthy


def test_a_crossed_book_with_no_more_events_is_caught_by_the_clock():
    q = feed(crossed_persist_ms=2_000.0)
    a = q.instrument("A.GLBX")
    q.on_event_end(a, T0, -0.25)
    q.on_clock(T0 + 1_999 * MS)
    assert q.healthy
    q.on_clock(T0 + 2_000 * MS)
    assert [x.kind for x in alarms(q)] == ["crossed_book"] and not q.healthy


def test_a_locked_book_alerts_without_pausing():
    q = feed(locked_persist_events=3)
    a = q.instrument("A.GLBX")
    for k in range(3):
        q.on_event_end(a, T0 + k * MS, 0.0)
    found, health = split(q.take_events())
    assert [(x.kind, x.level) for x in found] == [("locked_book", "warning")] and not health
    assert q.report()["locked_books"] == 1 and q.report()["per_minute"][0]["locked"] == 3


def test_a_crossed_pre_open_book_is_not_judged():
    pre_open = chicago(16, 16, 40)  # halt: orders rest crossed until the opening auction
    q = feed(start=pre_open, crossed_persist_events=3)
    a = q.instrument("A.GLBX")
    for k in range(100):
        q.on_event_end(a, pre_open + k * S, -2.0)
    q.on_clock(pre_open + 101 * S)
    assert not q.take_events() and q.report()["crossed_boundaries"] == 0


# -- stale feed ----------------------------------------------------------------------------


def test_a_stale_feed_pauses_and_recovers_when_data_comes_back():
    q = feed(stale_after_s=60.0, clear_after_s=5.0)
    a = q.instrument("A.GLBX")
    q.on_book(a, T0, 1, F_LAST)
    for k in range(1, 61):
        q.on_clock(T0 + k * S)
    assert q.healthy  # 60 s exactly is not more than 60 s
    q.on_clock(T0 + 61 * S)
    found, health = split(q.take_events())
    assert [(x.kind, x.level) for x in found] == [("stale_feed", "critical")]
    assert [(h.healthy, h.reason) for h in health] == [(False, "stale_feed")]
    q.on_clock(T0 + 80 * S)
    assert not q.take_events()  # one alarm per episode
    assert q.report(now=T0 + 80 * S)["stale_periods"] == [
        {"start": "2026-11-16T14:30:00+00:00", "end": None, "seconds": 80.0},
    ]

    q.on_book(a, T0 + 90 * S, 2, F_LAST)
    q.on_book(a, T0 + 94 * S, 3, F_LAST)
    assert not q.healthy
    q.on_book(a, T0 + 95 * S, 4, F_LAST)  # clear_after_s after the first record
    assert q.healthy
    assert [h.healthy for h in q.take_events() if isinstance(h, HealthChange)] == [True]
    assert q.report()["stale_periods"] == [
        {"start": "2026-11-16T14:30:00+00:00", "end": "2026-11-16T14:31:30+00:00", "seconds": 90.0},
    ]


def test_silence_while_the_market_is_closed_is_not_stale():
    close = chicago(16, 16, 0)
    q = feed(start=close - 10 * S, stale_after_s=60.0)
    a = q.instrument("A.GLBX")
    q.on_book(a, close - 10 * S, 1, F_LAST)
    for k in range(0, 3_600, 30):  # the halt: no data for an hour
        q.on_clock(close + k * S)
    assert not q.take_events()
    q.on_clock(close + 3_600 * S + 45 * S)  # 10 s before the halt + 45 s after the open: 55 s
    assert not q.take_events()
    q.on_clock(close + 3_600 * S + 51 * S)  # 61 s of market time
    assert [x.kind for x in alarms(q)] == ["stale_feed"]
    q.on_book(a, close + 3_600 * S + 70 * S, 2, F_LAST)
    assert q.report()["stale_periods"][0]["seconds"] == 80.0


def test_a_stale_period_the_clock_did_not_see_is_reported_without_pausing():
    q = feed(stale_after_s=60.0)
    a = q.instrument("A.GLBX")
    q.on_book(a, T0, 1, F_LAST)
    q.on_trade(a, T0 + 100 * S, 21_000.0, BUY, 20_999.75, 21_000.0)  # no clock tick in between
    found, health = split(q.take_events())
    assert [(x.kind, x.level) for x in found] == [("stale_feed", "warning")] and not health
    assert q.report()["stale_periods"][0]["seconds"] == 100.0
    assert q.report()["longest_silence_open_s"] == 100.0


# -- completeness --------------------------------------------------------------------------


def test_completeness_counts_expected_instruments_with_data():
    q = feed(expected=("A.GLBX", "B.GLBX", "C.GLBX", "D.GLBX"), min_instrument_share=0.9, completeness_after_s=60.0)
    q.on_book(q.instrument("A.GLBX"), T0, 1, F_LAST)
    q.on_trade(q.instrument("B.GLBX"), T0 + S, 10.0, SELL, 10.0, 10.25)
    q.on_book(q.instrument("B.GLBX"), T0 + S, 2, F_LAST)
    q.on_book(q.instrument("X.GLBX"), T0 + S, 3, F_LAST)  # not expected: seen, not in the share
    for k in range(1, 60):
        q.on_book(q.instrument("A.GLBX"), T0 + k * S, 3 + k, F_LAST)
        q.on_clock(T0 + k * S)
    assert not q.take_events()  # judged only after completeness_after_s of market time
    q.on_clock(T0 + 60 * S)
    [found] = alarms(q)
    assert found.kind == "missing_instruments" and "2 of 4 expected" in found.text and found.level == "warning"
    report = q.report()
    assert (report["instruments_seen"], report["instruments_expected"], report["completeness"]) == (3, 4, 0.5)
    q.on_book(q.instrument("C.GLBX"), T0 + 61 * S, 100, F_LAST)
    q.on_book(q.instrument("D.GLBX"), T0 + 61 * S, 101, F_LAST)
    q.on_clock(T0 + 62 * S)
    assert q.report()["completeness"] == 1.0 and q.report()["active_breaches"] == []


def test_records_per_minute_below_the_minimum_alert_and_set_minute_completeness():
    start = chicago(16, 8, 30)
    q = feed(start=start, min_records_per_minute=10, stale_after_s=600.0)
    a = q.instrument("A.GLBX")
    for minute, count in enumerate([12, 12, 3, 0, 11]):  # the first (partial) minute is not judged
        for k in range(count):
            q.on_book(a, start + minute * 60 * S + k * S, 1 + minute * 100 + k, F_LAST)
    q.on_clock(start + 5 * 60 * S)
    found = alarms(q)
    assert [x.kind for x in found] == ["low_record_rate"] and "3 records in the minute" in found[0].text
    report = q.report()
    assert report["minutes_judged"] == 4 and report["minute_completeness"] == 0.5  # 12, 3, 0, 11: two of four
    assert [row["records"] for row in report["per_minute"]] == [12, 12, 3, 11]  # minutes without data have no row


# -- agreement -----------------------------------------------------------------------------


def test_agreement_rate_is_initiation_stats_and_alerts_below_the_floor():
    q = feed(min_agreement_rate=0.9, min_agreement_trades=200)
    a = q.instrument("A.GLBX")
    reference = InitiationStats()
    rng = random.Random(3)
    for k in range(400):
        bid, ask = 10.0, 10.25
        price = ask if rng.random() < 0.5 else bid
        side = BUY if k % 3 else SELL  # disagrees with the book about half the time
        side = UNKNOWN if k % 50 == 0 else side
        q.on_trade(a, T0 + k * MS, price, side, bid, ask)
        reference.classify(price, side, bid, ask)
    report = q.report()
    assert report["agreement_rate"] == round(reference.agreement_rate, 6) < 0.9
    assert report["agreement_checked"] == reference.both_known == 392
    found, health = split(q.take_events())
    assert [(x.kind, x.level) for x in found] == [("low_agreement", "warning")] and not health


# -- report and config ---------------------------------------------------------------------


def test_report_has_the_documented_keys_and_is_json():
    q = feed()
    q.on_book(q.instrument("A.GLBX"), T0, 1, F_LAST)
    report = q.report()
    assert REPORT_KEYS <= set(report)
    assert json.loads(json.dumps(report)) == report
    assert report["per_minute"] == [
        {"minute": "2026-11-16T14:30:00+00:00", "records": 1, "trades": 0, "gaps": 0, "flagged": 0,
         "crossed": 0, "locked": 0},
    ]
    assert set(q.live_figures()) >= {"healthy", "records", "trades", "sequence_gaps", "agreement_rate", "alarms"}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("stale_after_s", 0, "stale_after_s must be > 0, got 0"),
        ("crossed_persist_events", 0, "crossed_persist_events must be an integer >= 1, got 0"),
        ("min_agreement_rate", 1.5, "min_agreement_rate must be within 0..1, got 1.5"),
        ("pause_on", ["stale_feed", "typo"], "pause_on: unknown check(s) typo"),
        ("session_open", "25:00", "session_open must be a local time HH:MM, got '25:00'"),
        ("market_timezone", "Mars/Olympus", "market_timezone 'Mars/Olympus' is not a known time zone"),
        ("holidays", ["2024-13-01"], "holidays: '2024-13-01' is not a date YYYY-MM-DD"),
        ("check_interval_s", -1.0, "check_interval_s must be > 0, got -1.0"),
    ],
)
def test_bad_config_values_are_refused_in_one_line_naming_the_field(tmp_path, field, value, message):
    with pytest.raises(ValueError, match="DataQualityConfig: ") as caught:
        DataQualityConfig(**{field: value})
    assert message in str(caught.value) and "\n" not in str(caught.value)
    # the same through a backtest file's [[actors]] profile: refused before any node is built
    profile = read_toml(PROFILE, "missing")
    profile[field] = value
    bad = tmp_path / "bad.toml"
    bad.write_text("\n".join(f"{k} = {json.dumps(v)}" for k, v in profile.items()) + "\n")
    config = (PROJECT / "configs" / "backtests" / "noop.toml").read_text() + MONITOR_ACTOR.replace(
        "configs/monitors/data_quality.toml", str(bad),
    )
    (tmp_path / "run.toml").write_text(config)
    with pytest.raises(IfdError) as refused:
        load_backtest_spec(tmp_path / "run.toml")
    assert message in str(refused.value) and "[[actors]] #1" in str(refused.value)


def test_the_shipped_profile_sets_every_threshold_to_the_config_default():
    profile = read_toml(PROFILE, "missing")
    fields = set(DataQualityConfig.__struct_fields__) - {"component_id", "log_events", "log_commands", "instrument_ids"}
    assert set(profile) == fields
    shipped, default = DataQualityConfig.parse(msgspec.json.encode(profile)), DataQualityConfig()
    calendar = {"holidays", "early_closes"}  # the only values the code does not default
    assert {k: getattr(shipped, k) for k in fields - calendar} == {k: getattr(default, k) for k in fields - calendar}
    assert "2023-12-25" in shipped.holidays and shipped.pause_on == ("stale_feed", "crossed_book", "sequence_gap")


# -- the actor in real BacktestNode runs ---------------------------------------------------


def _with_monitor(base: str, tmp_path: Path, config: str = "") -> Path:
    """A shipped backtest file plus the monitor (its shipped profile, ``config`` overriding it)."""
    text = without_actors(base) + MONITOR_ACTOR
    if config:
        text += "[actors.config]\n" + config
    path = tmp_path / f"{Path(base).stem}_dq.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _node_run(config: Path, catalog: Path, buffer_deltas: bool = False) -> dict:
    """Run a backtest file in a ``ProgressBacktestNode``, listening on the bus; what came out of it."""
    spec = load_backtest_spec(config, catalog_override=catalog)
    run_config = build_run_config(spec, {name: sorted(per) for name, per in catalog_rows(spec).items()})
    if buffer_deltas:  # book deltas in F_LAST-closed batches, as a live Databento client delivers them
        engine_config = msgspec.structs.replace(run_config.engine, data_engine=DataEngineConfig(buffer_deltas=True))
        run_config = msgspec.structs.replace(run_config, engine=engine_config)
    node = ProgressBacktestNode([run_config], ReplayProgress(total=0))
    published: dict[type, list] = {MonitorAlarm: [], FeedHealth: [], DetectorStatus: []}
    try:
        node.build()
        engine = node.get_engine(run_config.id)
        for cls, seen in published.items():
            engine.kernel.msgbus.subscribe(topic=data_topic(cls), handler=seen.append)
        node.run()
        [monitor] = [a for a in engine.trader.actors() if isinstance(a, DataQualityMonitor)]
        flow = [s for s in engine.trader.strategies() if hasattr(s, "algorithm")]
        return {
            "quality": monitor.run_report(),
            "live": monitor.live_figures(),
            "strategies": {s.algorithm: s.summary() for s in flow},
            "entries": {s.algorithm: [p["ts_decision"] for p in s.entry_plans()] for s in flow},
            "published": published,
        }
    finally:
        node.dispose()


def _assert_clean(quality: dict) -> None:
    assert REPORT_KEYS <= set(quality)
    assert quality["alarms"] == [] and quality["alarm_count"] == 0 and quality["health_changes"] == []
    assert quality["healthy_at_end"] is True
    assert quality["sequence_gaps"] == 0 and quality["sequence_gaps_by_instrument"] == {}
    assert quality["flags"]["maybe_bad_book"] == 0 and quality["flags"]["bad_ts_recv"] == 0
    assert quality["crossed_books"] == 0 and quality["locked_books"] == 0 and quality["stale_periods"] == []
    assert (quality["instruments_seen"], quality["instruments_expected"], quality["completeness"]) == (1, 1, 1.0)
    assert quality["handler_errors"] == 0


@pytest.fixture(scope="module")
def esh4_catalog(tmp_path_factory, real_file) -> Path:
    from tests.support.real_samples import write_esh4_definition

    root = tmp_path_factory.mktemp("esh4")
    definition = write_esh4_definition(root / "esh4.definition.dbn.zst")
    ingest([definition, real_file("nautilus_trader/esh4-glbx-mdp3-20231225.mbo.dbn.zst")], root / "catalog")
    return root / "catalog"


@pytest.mark.real_data
def test_real_esm4_snapshot_file_reports_figures_without_alarms(tmp_path, real_file):
    catalog = tmp_path / "catalog"
    ingest([
        real_file("nautilus_trader/orderbooks_definition.dbn.zst"),
        real_file("nautilus_trader/orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst"),
    ], catalog)
    run = run_backtest(_with_monitor("shadow_v1_v3.toml", tmp_path), catalog=catalog, out=tmp_path / "run")
    quality = json.loads((run.run_dir / "quality.json").read_text())
    assert run.summary["reports"]["quality"] == 1
    _assert_clean(quality)
    assert quality["book_source"] == {"strategy_books": 1, "own_books": 0}  # v3's L3 book, read, not rebuilt
    # 13,796 MBO records: 13,786 book records and 5 T; the 5 F records never reach the engine
    assert (quality["records"], quality["trades"]) == (13_786, 5)
    # the snapshot (the R clear and 13,600 adds) is flagged F_BAD_TS_RECV throughout: not a finding
    assert quality["snapshot_records"] == 13_601 and quality["flags"]["bad_ts_recv_in_snapshot"] == 13_601
    assert quality["crossed_boundaries"] == 0 and quality["locked_boundaries"] == 0
    assert quality["boundaries_judged"] == 185  # the snapshot's last record and 184 live events
    assert quality["agreement_checked"] == 5 and quality["agreement_rate"] == 1.0


@pytest.mark.real_data
def test_real_esh4_session_reports_figures_without_alarms(esh4_catalog, tmp_path):
    run = run_backtest(_with_monitor("shadow_v1_v3.toml", tmp_path), catalog=esh4_catalog, out=tmp_path / "run")
    quality = json.loads((run.run_dir / "quality.json").read_text())
    assert run.summary["reports"]["quality"] == 1
    _assert_clean(quality)
    assert quality["book_source"] == {"strategy_books": 1, "own_books": 0}
    assert (quality["records"], quality["trades"]) == (59_448, 2_973)  # 68,792 records less 6,371 F
    assert quality["snapshot_records"] == 8_725 and quality["flags"]["bad_ts_recv_in_snapshot"] == 8_725
    # Christmas: no session until 17:00 Chicago; the pre-open book (crossed at 890 boundaries) is not
    # judged; after the open it stays crossed for one boundary until the opening auction's match.
    assert quality["crossed_boundaries"] == 1 and quality["crossed_transient"] == 1
    assert quality["longest_crossed_ms"] < 200
    assert quality["locked_boundaries"] == 0
    assert quality["longest_silence_open_s"] < 60
    assert quality["first_record"].startswith("2023-12-25T00:00:00")
    # the same book and the same classification as v3: the same agreement
    v3 = run.summary["strategies"]["IfdV3Strategy-V3"]["results"]["quality"]
    assert quality["agreement_rate"] == v3["agreement_rate"] and quality["agreement_checked"] == v3["agreement_checked"]
    assert quality["agreement_checked"] == 2_970 and quality["agreement_rate"] > 0.99
    minutes = quality["per_minute"]
    assert sum(row["records"] for row in minutes) == 59_448 and sum(row["trades"] for row in minutes) == 2_973

    # Deltas in F_LAST-closed batches (the live shape) give the same figures. Only the per-minute rows
    # differ: this snapshot has no F_LAST, so its batch is delivered with the first event at 22:00 and
    # counted in that minute.
    batched = _node_run(_with_monitor("shadow_v1_v3.toml", tmp_path / "batched"), esh4_catalog, buffer_deltas=True)
    same = ("records", "trades", "snapshot_records", "flags", "sequence_gaps", "crossed_boundaries",
            "crossed_books", "locked_boundaries", "boundaries_judged", "stale_periods", "alarms")
    assert {k: batched["quality"][k] for k in same} == {k: quality[k] for k in same}
    assert sum(row["records"] for row in batched["quality"]["per_minute"]) == 59_448


@pytest.mark.real_data
def test_real_esh4_without_the_holiday_calendar_the_christmas_silence_is_stale(esh4_catalog, tmp_path):
    """The calendar is what keeps the closed Christmas day quiet: without it, the 22 h without data
    after the 00:00 UTC snapshot are a stale feed, seen on the replay clock (no wall time)."""
    config = _with_monitor("noop.toml", tmp_path, "holidays = []\n")
    result = _node_run(config, esh4_catalog)
    quality = result["quality"]
    assert quality["book_source"] == {"strategy_books": 1, "own_books": 0}  # the no-op strategy keeps managed books
    [alarm, recovered] = result["published"][MonitorAlarm]
    assert (alarm.kind, alarm.level, recovered.kind) == ("stale_feed", "critical", "feed_recovered")
    assert iso(alarm.ts_event) == "2023-12-25T00:01:01+00:00"  # 60 s of (supposed) market time + the 1 s check
    [period] = quality["stale_periods"]
    assert period["start"] == "2023-12-25T00:00:00+00:00" and period["end"] == "2023-12-25T22:00:00.181198+00:00"
    # Monday's session (no holiday) closes at 16:00 Chicago = 22:00 UTC: 22 h of market time
    assert period["seconds"] == 22 * 3_600
    assert [h.healthy for h in result["published"][FeedHealth]] == [False, True]


# -- planted faults: alarms, FeedHealth, v3 paused, v1 trading ------------------------------


FUTURE = "NQZ6.GLBX"
FUTURE_ID = 294_973  # its instrument id in the generated session (seed 5)


@pytest.fixture(scope="module")
def faulty_catalog(small_session_catalog, tmp_path_factory):
    """The small generated session with a phantom bid crossing the future's book 14:31:00-14:34:30
    and the whole feed silent for 90 s from 14:35:40."""
    from tests.support.feed_faults import plant_faults

    root = tmp_path_factory.mktemp("faulty")
    scenario = small_session_catalog.parent / "scenario"
    start = int(np.datetime64("2026-11-16T14:30:00", "ns").astype(np.int64))
    faults = plant_faults(
        scenario / "mbo.dbn.zst", root / "faulty.mbo.dbn.zst", FUTURE_ID,
        crossed_from_ns=start + 60 * S, crossed_until_ns=start + 270 * S,
        silence_at_ns=start + 340 * S, silence_s=90.0,
    )
    ingest([scenario / "definition.dbn.zst", root / "faulty.mbo.dbn.zst"], root / "catalog")
    return root / "catalog", faults


def test_planted_crossed_book_and_silence_pause_v3_and_hand_trading_to_v1(faulty_catalog, tmp_path):
    catalog, faults = faulty_catalog
    eager_v1 = tmp_path / "v1_eager.toml"  # v1 acts on every signal once it has taken over
    v1_profile = (PROJECT / "configs/profiles/ifd_v1.toml").read_text()
    eager_v1.write_text(v1_profile.replace("threshold = 0.85 ", "threshold = 0.0 "))
    config = _with_monitor("ab_v1_v3.toml", tmp_path)
    config.write_text(config.read_text().replace('profile = "configs/profiles/ifd_v1.toml"', f'profile = "{eager_v1}"'))
    result = _node_run(config, catalog)
    published, quality = result["published"], result["quality"]

    alarm_kinds = [(a.kind, a.level) for a in published[MonitorAlarm]]
    assert alarm_kinds == [
        ("crossed_book", "critical"), ("feed_recovered", "info"),
        ("stale_feed", "critical"), ("feed_recovered", "info"),
    ]
    crossed, _, stale, _ = published[MonitorAlarm]
    assert crossed.key == f"monitor:data_quality:crossed_book:{FUTURE}" and crossed.monitor == "data_quality"
    assert f"instrument={FUTURE}" in crossed.fields
    # a breach after crossed_persist_events boundaries or crossed_persist_ms, whichever comes first
    assert faults.crossed_from_ns < crossed.ts_event <= faults.crossed_from_ns + 2 * S
    assert "events=50" in crossed.fields or crossed.ts_event == faults.crossed_from_ns + 2 * S
    assert faults.silence_from_ns + 60 * S < stale.ts_event <= faults.silence_from_ns + 61 * S  # 1 s checks
    alert = alert_from_monitor_alarm(crossed, "IFD-BACKTEST")  # what the AlertsActor makes of it
    assert (alert.level, alert.kind, alert.key) == (Level.CRITICAL, "monitor.data_quality", crossed.key)
    assert dict(alert.fields)["instrument"] == FUTURE and dict(alert.fields)["check"] == "crossed_book"

    health = [(h.ts_event, h.healthy, h.reason) for h in published[FeedHealth]]
    assert [(ok, reason) for _, ok, reason in health] == [
        (False, f"crossed_book {FUTURE}"), (True, "ok"), (False, "stale_feed"), (True, "ok"),
    ]
    assert health[0][0] == crossed.ts_event and health[2][0] == stale.ts_event
    # healthy again clear_after_s (5 s) after the cancel uncrossed the book / the data came back,
    # at the first record or 1 s check from then on
    assert faults.crossed_until_ns + 5 * S <= health[1][0] <= faults.crossed_until_ns + 6 * S
    assert faults.silence_until_ns + 5 * S <= health[3][0] <= faults.silence_until_ns + 6 * S

    assert quality["crossed_books"] == 1 and quality["healthy_at_end"] is True
    assert quality["sequence_gaps"] == 0 and quality["book_source"]["own_books"] == 0 and quality["handler_errors"] == 0
    [period] = quality["stale_periods"]
    assert period["seconds"] == pytest.approx((faults.silence_until_ns - faults.silence_from_ns) / S, abs=1e-3)
    assert 90 < period["seconds"] < 91
    assert result["live"]["healthy"] is True and result["live"]["crossed_books"] == 1

    # v3 (pause_on_feed_alarm) is unhealthy exactly while the feed is; v1 (fallback) trades meanwhile
    v3, v1 = result["strategies"]["ifd_v3"], result["strategies"]["ifd_v1"]
    assert [(e["ts"], e["healthy"], e["reason"]) for e in v3["status_events"]] == [
        (ts, ok, "ok" if ok else "feed alarm") for ts, ok, _ in health
    ]
    assert [(d.algorithm, d.ts_event, d.healthy, d.reason) for d in published[DetectorStatus]] == [
        ("ifd_v3", e["ts"], e["healthy"], e["reason"]) for e in v3["status_events"]
    ]
    assert [(e["ts"], e["trading"]) for e in v1["takeover_events"]] == [(ts, not ok) for ts, ok, _ in health]
    windows = [(health[0][0], health[1][0]), (health[2][0], health[3][0])]
    assert result["entries"]["ifd_v1"], "v1 entered nothing while it had taken over"
    assert all(any(lo <= ts <= hi for lo, hi in windows) for ts in result["entries"]["ifd_v1"])


def test_without_a_strategy_book_the_monitor_keeps_its_own_and_finds_the_same(faulty_catalog, tmp_path):
    """v1 alone reads no book: the monitor builds its own L3 books and judges them like v3's."""
    catalog, _ = faulty_catalog
    text = (PROJECT / "configs/backtests/shadow_v1_v3.toml").read_text()
    v3_block = text.index("[[strategies]]")
    v1_only = text[:v3_block] + text[text.index("[[strategies]]", v3_block + 1):]  # the v3 block dropped
    (tmp_path / "v1_only.toml").write_text(v1_only + MONITOR_ACTOR)
    own = _node_run(tmp_path / "v1_only.toml", catalog)
    shared = _node_run(_with_monitor("shadow_v1_v3.toml", tmp_path), catalog)
    assert set(own["strategies"]) == {"ifd_v1"}
    assert own["quality"]["book_source"] == {"strategy_books": 0, "own_books": 9}
    assert shared["quality"]["book_source"] == {"strategy_books": 9, "own_books": 0}
    same = ("records", "trades", "crossed_books", "crossed_boundaries", "locked_boundaries", "boundaries_judged",
            "agreement_rate", "agreement_checked", "stale_periods", "alarms", "health_changes", "per_minute")
    assert {k: own["quality"][k] for k in same} == {k: shared["quality"][k] for k in same}
    assert own["quality"]["crossed_books"] == 1 and own["quality"]["handler_errors"] == 0
