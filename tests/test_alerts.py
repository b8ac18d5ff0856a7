"""ifd.alerts without the network: levels, de-duplication, rate limits, isolation, log rotation, history, config,
command line."""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

import pytest

from ifd.alerts import Alert
from ifd.alerts import AlertDispatcher
from ifd.alerts import AlertHistory
from ifd.alerts import Level
from ifd.alerts import alert_from_signal
from ifd.alerts import build_dispatcher
from ifd.alerts import load_alerts_config
from ifd.alerts.cli import parse_since
from ifd.alerts.cli import register
from ifd.alerts.config import SignalRules
from ifd.alerts.history import SCHEMA_VERSION
from ifd.alerts.sinks import LogFileSink
from ifd.errors import IfdError

PROJECT = Path(__file__).resolve().parents[1]
S = 1_000_000_000  # ns
T0 = 1_794_839_400 * S  # 2026-11-16T14:30:00Z


class RecordingSink:
    def __init__(self, name: str, min_level: Level = Level.INFO, max_per_minute: int = 0) -> None:
        self.name, self.min_level, self.max_per_minute = name, min_level, max_per_minute
        self.alerts: list[Alert] = []
        self.closed = False

    def emit(self, alert: Alert) -> str:
        self.alerts.append(alert)
        return "sent"

    def close(self, timeout_s: float = 0.0) -> None:
        self.closed = True


class BrokenSink(RecordingSink):
    def emit(self, alert: Alert) -> str:
        raise OSError("disk full")


def alert(level="warning", key="k", ts_s: float = 0.0, title="t") -> Alert:
    return Alert.create(level, "test", title, "text", key=key, ts_ns=T0 + int(ts_s * S), fields={"a": 1})


def titles(sink: RecordingSink) -> list[str]:
    return [a.title for a in sink.alerts]


# -- dispatcher -------------------------------------------------------------------------------


def test_each_sink_takes_alerts_at_or_above_its_level(tmp_path):
    info, warning, critical = RecordingSink("i"), RecordingSink("w", Level.WARNING), RecordingSink("c", Level.CRITICAL)
    history = AlertHistory(tmp_path / "h.sqlite")
    dispatcher = AlertDispatcher([info, warning, critical], history, history_level=Level.WARNING, dedup_window_s=0)
    results = [dispatcher.dispatch(alert(level, key=level, title=level)) for level in ("info", "warning", "critical")]
    assert titles(info) == ["info", "warning", "critical"]
    assert titles(warning) == ["warning", "critical"]
    assert titles(critical) == ["critical"]
    assert [r.deliveries for r in results] == [{"i": "sent"}, {"i": "sent", "w": "sent"},
                                               {"i": "sent", "w": "sent", "c": "sent"}]
    rows = history.query()
    assert [r["title"] for r in rows] == ["warning", "critical"]  # the history's own level
    assert rows[1]["deliveries"] == {s: {"status": "sent", "attempts": 0, "error": ""} for s in ("c", "i", "w")}
    below = AlertDispatcher([warning]).dispatch(alert("info"))
    assert below.suppressed == "below_level" and not below.deliveries


def test_duplicates_are_suppressed_within_the_window_unless_the_level_rises():
    sink = RecordingSink("s")
    dispatcher = AlertDispatcher([sink], dedup_window_s=300)
    sent = [
        dispatcher.dispatch(alert("warning", "flow:a", 0, "first")),
        dispatcher.dispatch(alert("warning", "flow:a", 10, "same key, 10 s later")),
        dispatcher.dispatch(alert("warning", "flow:b", 20, "other key")),
        dispatcher.dispatch(alert("info", "flow:a", 30, "lower level")),
        dispatcher.dispatch(alert("critical", "flow:a", 40, "escalation")),
        dispatcher.dispatch(alert("critical", "flow:a", 50, "critical again")),
        dispatcher.dispatch(alert("warning", "flow:a", 340, "window after the escalation passed")),
    ]
    assert titles(sink) == ["first", "other key", "escalation", "window after the escalation passed"]
    assert [r.suppressed for r in sent] == ["", "duplicate", "", "duplicate", "", "duplicate", ""]
    assert dispatcher.stats()["duplicate"] == 3
    assert not AlertDispatcher([sink], dedup_window_s=0).dispatch(alert(key="flow:a")).suppressed


def test_rate_limit_per_sink_over_60_seconds_of_alert_time_and_critical_always_passes(tmp_path):
    limited, free = RecordingSink("limited", max_per_minute=2), RecordingSink("free")
    history = AlertHistory(tmp_path / "h.sqlite")
    dispatcher = AlertDispatcher([limited, free], history, dedup_window_s=0)
    for i, (level, ts) in enumerate([("warning", 0), ("warning", 1), ("warning", 2), ("critical", 3),
                                      ("warning", 59), ("warning", 61)]):
        dispatcher.dispatch(alert(level, key=f"k{i}", ts_s=ts, title=f"{level}@{ts}"))
    assert titles(free) == ["warning@0", "warning@1", "warning@2", "critical@3", "warning@59", "warning@61"]
    # At most 2 in any 60 s: 2 s and 59 s are held back; the critical one at 3 s passes (and counts);
    # at 61 s the window (1 s, 61 s] holds only the one at 3 s.
    assert titles(limited) == ["warning@0", "warning@1", "critical@3", "warning@61"]
    assert dispatcher.stats()["sinks"]["limited"] == {
        "queued": 0, "sent": 4, "failed": 0, "dropped": 0, "rate_limited": 2, "error": 0,
    }
    statuses = {r["title"]: r["deliveries"]["limited"]["status"] for r in history.query()}
    assert statuses["warning@2"] == "rate_limited" and statuses["critical@3"] == "sent"


def test_a_failing_sink_never_stops_the_others_or_the_caller(tmp_path):
    before, broken, after = RecordingSink("before"), BrokenSink("broken"), RecordingSink("after")
    warnings: list[str] = []
    history = AlertHistory(tmp_path / "h.sqlite")
    dispatcher = AlertDispatcher([before, broken, after], history, dedup_window_s=0, warn=warnings.append)
    result = dispatcher.dispatch(alert(title="goes on"))
    assert result.deliveries == {"before": "sent", "broken": "error", "after": "sent"}
    assert titles(before) == titles(after) == ["goes on"]
    assert warnings == ["broken: alert 'goes on' not delivered: OSError: disk full"]
    [row] = history.query()
    assert row["deliveries"]["broken"] == {"status": "error", "attempts": 0, "error": "OSError: disk full"}
    history.close()  # now the history itself fails: still no exception for the caller
    assert dispatcher.dispatch(alert(title="history closed", key="k2")).deliveries["after"] == "sent"
    assert dispatcher.stats()["history_errors"] == 1 and "not recorded" in warnings[-1]

    def broken_warn(message: str) -> None:
        raise RuntimeError("logger down")

    quiet = AlertDispatcher([BrokenSink("b")], warn=broken_warn)
    assert quiet.dispatch(alert()).deliveries == {"b": "error"}
    assert quiet.dispatch(None).suppressed == "error"  # not even an alert: still no exception
    quiet.close()
    assert quiet.dispatch(alert(key="after close")).suppressed == "closed"


def test_log_file_rotates_by_size(tmp_path):
    path = tmp_path / "logs" / "alerts.log"
    sink = LogFileSink(path, max_bytes=1_000, backup_count=2)
    lines = [alert(title=f"alert number {i:03d}", ts_s=i) for i in range(40)]
    for a in lines:
        sink.emit(a)
    sink.close()
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["alerts.log", "alerts.log.1", "alerts.log.2"]  # backup_count bounds the files
    for name in files:
        assert 0 < (path.parent / name).stat().st_size <= 1_000
    newest = path.read_text().splitlines()
    assert newest[-1] == lines[-1].one_line()
    assert newest[-1].startswith("2026-11-16T14:30:39.000Z WARNING  test alert number 039: text")
    older = (path.parent / "alerts.log.1").read_text().splitlines()
    assert older[-1] == lines[len(lines) - len(newest) - 1].one_line()  # contiguous across the rotation


def test_history_schema_wal_and_queries(tmp_path):
    path = tmp_path / "alerts.sqlite"
    history = AlertHistory(path)
    assert history.schema_version == SCHEMA_VERSION and history.journal_mode == "wal"
    for i, level in enumerate(["info", "warning", "critical", "info", "warning"]):
        a = Alert.create(level, "flow_signal" if i % 2 == 0 else "trading_state", f"a{i}", key=f"k{i}",
                         ts_ns=T0 + i * 60 * S, fields={"n": i}, source="test")
        history.record(a, {"console": "sent", "webhook": "queued"})
        if i == 2:
            history.set_delivery(a.alert_id, "webhook", "failed", 4, "HTTP 500 Internal Server Error")
    history.close()

    reader = AlertHistory(path, readonly=True)
    assert [r["title"] for r in reader.query()] == ["a0", "a1", "a2", "a3", "a4"]
    assert [r["title"] for r in reader.query(limit=2)] == ["a3", "a4"]  # the most recent, oldest first
    assert [r["title"] for r in reader.query(since_ns=T0 + 120 * S)] == ["a2", "a3", "a4"]
    assert [r["title"] for r in reader.query(min_level=Level.WARNING)] == ["a1", "a2", "a4"]
    assert [r["title"] for r in reader.query(kind="trading_state")] == ["a1", "a3"]
    row = reader.query(min_level=Level.CRITICAL)[0]
    assert row["deliveries"]["webhook"] == {
        "status": "failed", "attempts": 4, "error": "HTTP 500 Internal Server Error",
    }
    assert row["fields"] == {"n": "2"} and row["level"] == "critical" and row["ts"] == "2026-11-16T14:32:00.000Z"
    reader.close()

    with pytest.raises(IfdError, match="no alert history"):
        AlertHistory(tmp_path / "missing.sqlite", readonly=True)
    assert not (tmp_path / "missing.sqlite").exists()
    newer = tmp_path / "newer.sqlite"
    with sqlite3.connect(newer) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(IfdError, match="schema version 2 is newer"):
        AlertHistory(newer)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(IfdError, match="not an ifd alert history"):
        AlertHistory(other)


# -- config -----------------------------------------------------------------------------------


def test_the_shipped_config_loads_and_the_webhook_url_stays_secret(tmp_path):
    config = load_alerts_config(PROJECT / "configs" / "alerts.toml", env={})
    assert not config.webhook.enabled and config.console.min_level == Level.WARNING
    assert config.signals.algorithms == ("ifd_v1", "ifd_v3")

    secret = "https://hooks.slack.com/services/T000/B000/very-secret-token"
    text = (PROJECT / "configs" / "alerts.toml").read_text().replace("enabled = false", "enabled = true")
    path = tmp_path / "alerts.toml"
    path.write_text(text)
    config = load_alerts_config(path, env={"IFD_WEBHOOK_URL": secret})
    assert config.webhook.enabled and config.webhook.url == secret
    assert "very-secret" not in repr(config) and "very-secret" not in str(config.webhook)
    with pytest.raises(IfdError) as exc:
        load_alerts_config(path, env={})
    assert str(exc.value) == (
        f"{path}: [webhook] url_env names IFD_WEBHOOK_URL, which is empty or unset (set it, or set enabled = false)"
    )
    with pytest.raises(IfdError) as exc:
        load_alerts_config(path, env={"IFD_WEBHOOK_URL": "ftp://very-secret"})
    assert "very-secret" not in str(exc.value) and "does not hold an http(s) URL" in str(exc.value)
    assert not load_alerts_config(path, env={}, secrets=False).webhook.url  # ``alerts ls`` needs no secret


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[webhook]\nformat = 'teams'", "[webhook] format must be one of slack, discord, got 'teams'"),
        ("[console]\nmin_level = 'loud'", "[console] min_level must be one of info, warning, critical, got 'loud'"),
        ("[webhook]\ntimeout_s = 0", "[webhook] timeout_s must be greater than 0, got 0"),
        ("[webhook]\nretries = 1.5", "[webhook] retries must be a whole number, got 1.5"),
        ("[log_file]\nmax_byte = 10", "[log_file] unknown setting(s) max_byte"),
        ("[slack]\nurl = 'x'", "unknown table(s) slack"),
        ("[alerts]\ndedup_window_s = -1", "[alerts] dedup_window_s must be at least 0, got -1"),
        ("[signals]\nwarning_confidence = 0.9",
         "[signals] info_confidence <= warning_confidence <= critical_confidence"),
        ("[history]\nenabled = 'yes'", "[history] enabled must be true or false, got 'yes'"),
        ("[alerts\n", "invalid TOML"),
    ],
)
def test_config_errors_are_one_line_naming_the_file_and_setting(tmp_path, toml, message):
    path = tmp_path / "alerts.toml"
    path.write_text(toml + "\n")
    with pytest.raises(IfdError) as exc:
        load_alerts_config(path, env={})
    assert str(exc.value).startswith(f"{path}: ") and message in str(exc.value) and "\n" not in str(exc.value)


# -- signals ----------------------------------------------------------------------------------


def signal_row(**overrides) -> dict:
    row = {
        "ts_event": T0 + 5 * S, "ts_signal": T0 + 6 * S, "algorithm": "ifd_v3", "instrument_id": "NQZ6 C21000.GLBX",
        "underlying": "NQZ6", "strike": 21000.0, "option_kind": "CALL", "side": "BUY", "bias": "BULLISH",
        "confidence": 0.72, "notional_usd": 4_200_000.0, "window_start_ns": T0 - 60 * S,
        "reasons": "pressure 4.1x baseline", "strategy_id": "IfdV3Strategy-V3", "mode": "shadow", "acted": False,
    }
    return row | overrides


def test_signal_alerts_from_a_flow_signal_and_from_a_parquet_row_agree():
    from nautilus_trader.model.identifiers import InstrumentId

    from strategies.signals import FlowSignal

    rules = SignalRules()
    row = signal_row()
    signal = FlowSignal(
        ts_event=row["ts_event"], ts_init=row["ts_signal"], instrument_id=InstrumentId.from_str(row["instrument_id"]),
        **{k: row[k] for k in ("algorithm", "underlying", "strike", "option_kind", "side", "bias", "confidence",
                               "notional_usd", "window_start_ns", "reasons")},
    )
    from_signal, from_row = alert_from_signal(signal, rules, "test"), alert_from_signal(row, rules, "test")
    assert from_signal.level == from_row.level == Level.WARNING
    assert from_signal.title == from_row.title == "BULLISH flow: BUY NQZ6 C21000.GLBX (ifd_v3)"
    assert from_signal.key == from_row.key == "flow:ifd_v3:NQZ6 C21000.GLBX:BUY"
    assert from_signal.ts_ns == from_row.ts_ns == T0 + 6 * S
    assert from_signal.text == from_row.text == "$4.20M premium, confidence 0.72; pressure 4.1x baseline"
    assert dict(from_row.fields) == dict(from_signal.fields) | {
        "strategy_id": "IfdV3Strategy-V3", "mode": "shadow", "acted": "False",
    }
    assert dict(from_signal.fields)["window"] == "2026-11-16T14:29:00.000Z to 2026-11-16T14:30:05.000Z"


@pytest.mark.parametrize(
    ("confidence", "notional", "algorithm", "level"),
    [
        (0.90, 6e6, "ifd_v3", Level.CRITICAL),
        (0.90, 2e6, "ifd_v3", Level.WARNING),  # premium under the critical threshold
        (0.65, 9e6, "ifd_v1", Level.WARNING),  # confidence under it
        (0.50, 9e6, "ifd_v3", Level.INFO),
        (0.90, 6e6, "naive", None),  # not a listed algorithm
    ],
)
def test_signal_level_is_the_highest_whose_thresholds_it_meets_both(confidence, notional, algorithm, level):
    rules = SignalRules(info_confidence=0.3)
    made = alert_from_signal(signal_row(confidence=confidence, notional_usd=notional, algorithm=algorithm), rules)
    assert (made.level if made else None) == level
    assert alert_from_signal(signal_row(confidence=0.2), rules) is None  # under info


# -- command line -----------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="ifd")
    register(root.add_subparsers(dest="group", required=True))
    return root


def run_cli(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


def write_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "alerts.toml"
    path.write_text(
        f"[console]\nmin_level = 'info'\n[log_file]\npath = '{tmp_path / 'alerts.log'}'\n"
        f"[history]\npath = '{tmp_path / 'alerts.sqlite'}'\n{extra}",
    )
    return path


def test_alerts_ls_lists_filters_and_prints_json(tmp_path, capsys):
    config = load_alerts_config(write_config(tmp_path), env={})
    dispatcher = build_dispatcher(config)
    for i, level in enumerate(["info", "warning", "critical"]):
        dispatcher.dispatch(Alert.create(level, "flow_signal", f"alert {i}", key=f"k{i}", ts_ns=T0 + i * S,
                                         source="IFD-BACKTEST"))
    dispatcher.close()
    capsys.readouterr()
    db = str(tmp_path / "alerts.sqlite")

    assert run_cli(["alerts", "ls", "--db", db]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "2026-11-16T14:30:00.000Z  INFO      flow_signal      IFD-BACKTEST  alert 0  [console:sent log_file:sent]"
    )
    assert lines[-1] == "3 alert(s)"
    assert run_cli(["alerts", "ls", "--config", str(tmp_path / "alerts.toml"), "--level", "warning", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["title"], r["level"]) for r in rows] == [("alert 1", "warning"), ("alert 2", "critical")]
    assert run_cli(["alerts", "ls", "--db", db, "--since", "2026-11-16T14:30:01", "--limit", "1", "--json"]) == 0
    assert [r["title"] for r in json.loads(capsys.readouterr().out)] == ["alert 2"]
    with pytest.raises(IfdError, match="--since 'yesterday'"):
        run_cli(["alerts", "ls", "--db", db, "--since", "yesterday"])
    with pytest.raises(IfdError, match="no alert history"):
        run_cli(["alerts", "ls", "--db", str(tmp_path / "none.sqlite")])


def test_parse_since():
    now = T0
    assert parse_since("90s", now) == now - 90 * S
    assert parse_since("2h", now) == now - 7_200 * S
    assert parse_since("1.5d", now) == now - 129_600 * S
    assert parse_since("2026-11-16T14:30:00Z", now) == T0
    assert parse_since("2026-11-16T15:30:00+01:00", now) == T0
    assert parse_since("2026-11-16 14:30", now) == T0


def test_alerts_test_goes_through_every_enabled_sink(tmp_path, capsys):
    assert run_cli(["alerts", "test", "--config", str(write_config(tmp_path)), "--level", "warning"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["console: sent", "log_file: sent", f"history: recorded in {tmp_path / 'alerts.sqlite'}"]
    assert "WARNING  test [ifd alerts test] Test alert" in err  # the console sink writes to stderr
    assert "Test alert" in (tmp_path / "alerts.log").read_text()
    [row] = AlertHistory(tmp_path / "alerts.sqlite", readonly=True).query()
    assert row["kind"] == "test" and set(row["deliveries"]) == {"console", "log_file"}

    off = tmp_path / "off.toml"
    off.write_text("[console]\nenabled = false\n[log_file]\nenabled = false\n[history]\nenabled = false\n")
    with pytest.raises(IfdError, match="no sink is enabled"):
        run_cli(["alerts", "test", "--config", str(off)])


def test_a_monitor_alarm_becomes_an_alert_at_its_level_with_its_fields():
    from ifd.alerts.signal_alerts import alert_from_monitor_alarm
    from strategies.signals import MonitorAlarm

    alarm = MonitorAlarm(
        ts_event=1_700_000_000_000_000_000, ts_init=1_700_000_000_000_000_000, monitor="data_quality",
        kind="crossed_book", level="critical", title="Crossed book NQZ6", text="bid 21001 > ask 21000",
        fields="instrument=NQZ6.GLBX; bid=21001.0",
    )
    alert = alert_from_monitor_alarm(alarm, "IFD-PAPER")
    assert alert.level == Level.CRITICAL and alert.kind == "monitor.data_quality"
    assert alert.key == "monitor:data_quality:crossed_book" and alert.ts_ns == alarm.ts_event
    assert dict(alert.fields) == {"check": "crossed_book", "instrument": "NQZ6.GLBX", "bid": "21001.0"}
    assert alert.one_line().startswith("2023-11-14T22:13:20.000Z CRITICAL monitor.data_quality [IFD-PAPER] Crossed book")
