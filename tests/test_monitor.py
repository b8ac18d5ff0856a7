"""The polling monitor (ifd/monitor/) against the loopback HTTPS historical gateway.

The gateway serves a generated NQ session on 2026-11-16, then one of 2026-11-17 is added;
the real ``databento.Historical`` client, the real downloader, the shadow v1 + v3 backtest and the
alerts module; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from adapters.databento.budget import BudgetRefused
from adapters.databento.downloads import historical_client
from adapters.databento.historical_gateway import HistoricalGateway, HistoricalStore
from ifd.alerts import AlertHistory, load_alerts_config
from ifd.alerts.signal_alerts import SIGNAL_KIND, alert_from_signal
from ifd.cli import main
from ifd.errors import IfdError
from ifd.monitor import Monitor, MonitorState, load_monitor_config
from ifd.scenario import ScenarioConfig, generate_scenario

SCENARIO = ScenarioConfig(seed=3, strikes=2, expiries=1, minutes=3, rate=50.0, days=1, institutional=1,
                          mm_straddle=0, volume_noise=0)
DAYS = ("2026-11-16", "2026-11-17")
DATA_ENDPOINTS = ("metadata.get_cost", "metadata.get_billable_size", "timeseries.get_range")


@pytest.fixture(scope="module")
def sessions(tmp_path_factory) -> dict[str, Path]:
    out = {}
    for day in DAYS:
        folder = tmp_path_factory.mktemp(f"session_{day}")
        generate_scenario(folder, dataclasses.replace(SCENARIO, date=day))
        out[day] = folder
    return out


@pytest.fixture
def gw(sessions, monkeypatch):
    """A fresh gateway over the first session (its dataset ends at 2026-11-17T00:00Z: the 16th is complete)."""
    with HistoricalGateway(HistoricalStore.from_paths([sessions[DAYS[0]]])) as gateway:
        gateway.unit_prices = {"mbo": 50.0}
        for name, value in gateway.client_env().items():
            monkeypatch.setenv(name, value)
        for name in ("DATABENTO_GATEWAY", "IFD_BUDGET_CONFIG"):
            monkeypatch.delenv(name, raising=False)
        yield gateway


def _write_configs(root: Path, gw: HistoricalGateway, daily: float = 8.0, window: str = "24h",
                   start: str | None = DAYS[0], extra: str = "") -> Path:
    (root / "alerts.toml").write_text(
        "[alerts]\ndedup_window_s = 0\n[console]\nenabled = false\n[log_file]\nenabled = false\n"
        f'[history]\nenabled = true\nmin_level = "info"\npath = "{root / "alerts.sqlite"}"\n',
    )
    (root / "budget.toml").write_text(
        f'[budget]\ndaily_usd = {daily}\nmonthly_usd = 200\nalert_at = 0.8\n'
        f'ledger = "{root / "ledger.sqlite"}"\nalerts = "{root / "alerts.toml"}"\n',
    )
    path = root / "monitor.toml"
    path.write_text(
        '[monitor]\ndataset = "GLBX.MDP3"\nschema = "mbo"\nsymbols = ["NQ.OPT", "NQ.FUT"]\nstype = "parent"\n'
        + (f'start = "{start}"\n' if start else "")
        + f'every = "15m"\nwindow = "{window}"\nretry = "1s"\n{extra}backtest = "configs/backtests/shadow_v1_v3.toml"\n'
        f'catalog = "{root / "catalog"}"\nraw = "{root / "raw"}"\nstate = "{root / "state.sqlite"}"\n'
        f'runs = "{root / "runs"}"\nalerts = "{root / "alerts.toml"}"\nbudget = "{root / "budget.toml"}"\n',
    )
    return path


def _monitor(config: Path, gw: HistoricalGateway) -> Monitor:
    env = {"DATABENTO_API_KEY": gw.api_key}
    return Monitor(load_monitor_config(config), client_factory=lambda: historical_client(env, gw.url))


def _signal_alerts(root: Path) -> list[dict]:
    return AlertHistory(root / "alerts.sqlite", readonly=True).query(kind=SIGNAL_KIND, limit=100_000)


def _expected(root: Path, day: str) -> list[tuple]:
    """(title, ts) of the alerts the day's backtest signals call for."""
    rules = load_alerts_config(root / "alerts.toml").signals
    rows = pq.read_table(root / "runs" / day / "signals.parquet").to_pylist()
    alerts = [alert_from_signal(r, rules) for r in rows]
    return sorted((a.title, a.ts_ns) for a in alerts if a is not None)


def _got(alerts: list[dict]) -> list[tuple]:
    return sorted((a["title"], a["ts_ns"]) for a in alerts)


def test_cycles_download_detect_alert_once(gw, sessions, tmp_path):
    config = _write_configs(tmp_path, gw)

    first = _monitor(config, gw).cycle()
    assert first.windows == [f"{DAYS[0]}T00:00:00Z..{DAYS[1]}T00:00:00Z"]
    assert gw.count("timeseries.get_range") == 2  # definitions + mbo of the 16th
    alerts = _signal_alerts(tmp_path)
    assert alerts, "the institutional episode raised no alert"
    assert _got(alerts) == _expected(tmp_path, DAYS[0])
    assert first.alerts == len(alerts)

    # A restart (new objects over the same state) with no new data: no data request, no alert.
    gw.reset()
    again = _monitor(config, gw).cycle()
    assert again.windows == [] and again.alerts == 0
    assert not any(gw.count(e) for e in DATA_ENDPOINTS)
    assert len(_signal_alerts(tmp_path)) == len(alerts)

    # The 17th arrives: only its signals alert.
    for file in sessions[DAYS[1]].rglob("*.dbn*"):
        gw.store.add_file(file)
    gw.reset()
    third = _monitor(config, gw).cycle()
    assert third.windows == [f"{DAYS[1]}T00:00:00Z..2026-11-18T00:00:00Z"]
    assert gw.count("timeseries.get_range") == 2  # only the 17th: the 16th is not downloaded again
    new = _signal_alerts(tmp_path)[len(alerts):]
    assert new and _got(new) == _expected(tmp_path, DAYS[1])
    with MonitorState(tmp_path / "state.sqlite") as state:
        assert [w["start"][:10] for w in state.processed_windows()] == [DAYS[0], DAYS[1]]
        assert len(state.alerted_keys()) >= len(alerts) + len(new)


def test_crash_between_dispatch_and_record_resends(gw, tmp_path):
    config = _write_configs(tmp_path, gw)
    _monitor(config, gw).cycle()
    before = _signal_alerts(tmp_path)
    # As if killed after dispatching the day's last alert but before recording it and the day.
    with MonitorState(tmp_path / "state.sqlite") as state:
        last = state.alerted_keys()[-1]
        state._db.execute("DELETE FROM alerted WHERE ts_event=? AND algorithm=?", (last.ts_event, last.algorithm))
        state._db.execute("DELETE FROM processed_windows")
    gw.reset()
    report = _monitor(config, gw).cycle()
    assert report.windows == [f"{DAYS[0]}T00:00:00Z..{DAYS[1]}T00:00:00Z"]
    assert not any(gw.count(e) for e in DATA_ENDPOINTS)  # the raw file is reused
    after = _signal_alerts(tmp_path)
    assert 0 < len(after) - len(before) <= 2  # that signal again (v1 and v3 may share a ts_event), never dropped


def test_budget_refusal_exits_3_without_signal_alerts(gw, tmp_path, monkeypatch, capsys):
    config = _write_configs(tmp_path, gw)
    gw.unit_prices = {"mbo": 5_000_000.0}
    with pytest.raises(BudgetRefused):
        _monitor(config, gw).cycle()
    for name, value in gw.client_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATABENTO_API_KEY", gw.api_key)
    code = main(["monitor", "poll", "--once", "--config", str(config), "--gateway", gw.url])
    assert code == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ifd: error:") and "refused" in err[-1]
    assert gw.count("timeseries.get_range") == 0
    assert _signal_alerts(tmp_path) == []
    warnings = AlertHistory(tmp_path / "alerts.sqlite", readonly=True).query(kind="data_budget")
    assert warnings
    with MonitorState(tmp_path / "state.sqlite") as state:
        assert state.processed_windows() == []


def test_gateway_down_and_bad_config_are_one_line(tmp_path, monkeypatch, capsys):
    config = tmp_path / "monitor.toml"
    config.write_text("[monitor]\nsymbols = 3\n")
    assert main(["monitor", "poll", "--once", "--config", str(config)]) == 2
    assert "symbols must be a list" in capsys.readouterr().err
    config.write_text(f'[monitor]\nsymbols = ["NQ.OPT"]\nstate = "{tmp_path / "s.sqlite"}"\n'
                      f'alerts = "{tmp_path / "none.toml"}"\n')
    monkeypatch.setenv("DATABENTO_API_KEY", "db-x")
    assert main(["monitor", "poll", "--once", "--config", str(config), "--gateway", "https://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ifd: error:") and len(err.splitlines()) == 1


INTRADAY = ScenarioConfig(seed=4, strikes=2, expiries=1, minutes=15, rate=40.0, days=1, institutional=3,
                          mm_straddle=0, volume_noise=0, date=DAYS[0], start_time="14:30")


def _at(hhmm: str) -> int:
    return int(dt.datetime.fromisoformat(f"{DAYS[0]}T{hhmm}:00+00:00").timestamp()) * 1_000_000_000


def _signal_rows(run_dir: Path, lo: int, hi: int) -> list[dict]:
    rows = pq.read_table(run_dir / "signals.parquet").to_pylist()
    return [r for r in rows if lo <= int(r["ts_event"]) < hi]


def test_intraday_windows_download_once_and_alert_what_a_full_replay_finds(tmp_path_factory, tmp_path, monkeypatch):
    session = tmp_path_factory.mktemp("intraday")
    generate_scenario(session, INTRADAY)
    with HistoricalGateway(HistoricalStore.from_paths([session])) as gw:
        gw.unit_prices = {"mbo": 50.0}
        for name, value in gw.client_env().items():
            monkeypatch.setenv(name, value)
        config = _write_configs(tmp_path, gw, window="5m", start=None)

        # Published up to 14:37: with an empty state only the newest complete window, 14:30-14:35.
        gw.store.available_until_ns = _at("14:37")
        first = _monitor(config, gw).cycle()
        assert first.windows == [f"{DAYS[0]}T14:30:00Z..{DAYS[0]}T14:35:00Z"]

        # Nothing new until 14:40.
        gw.store.available_until_ns = _at("14:39")
        gw.reset()
        assert _monitor(config, gw).cycle().windows == []
        assert gw.count("timeseries.get_range") == 0

        # 14:47: two more windows; only they are downloaded.
        gw.store.available_until_ns = _at("14:47")
        gw.reset()
        third = _monitor(config, gw).cycle()
        assert third.windows == [f"{DAYS[0]}T14:35:00Z..{DAYS[0]}T14:40:00Z",
                                 f"{DAYS[0]}T14:40:00Z..{DAYS[0]}T14:45:00Z"]

    from adapters.databento.ledger import Ledger

    with Ledger(tmp_path / "ledger.sqlite", readonly=True) as ledger:
        rows = ledger.rows(status="done")
    mbo = [(r.window, r.records) for r in rows if r.schema == "mbo"]
    assert [w for w, _ in mbo] == ["14:30-14:35", "14:35-14:40", "14:40-14:45"]
    assert all(n > 0 for _, n in mbo)
    definitions = [r.window for r in rows if r.schema == "definition"]
    assert definitions[0] == "00:00-14:35"  # the day's first window brings the day's definitions
    assert len(rows) == len({(r.schema, r.window) for r in rows})  # no window twice

    # Every signal a single replay of 00:00-14:45 finds in 14:30-14:45 was alerted, once, and nothing else.
    last_run = tmp_path / "runs" / "2026-11-16T144500Z"  # the last cycle's replay: 00:00 to 14:45
    expected = [alert_from_signal(r, load_alerts_config(tmp_path / "alerts.toml").signals)
                for r in _signal_rows(last_run, _at("14:30"), _at("14:45"))]
    expected = sorted((a.title, a.ts_ns) for a in expected if a is not None)
    assert expected, "the institutional episodes raised no signal"
    assert _got(_signal_alerts(tmp_path)) == expected
    with MonitorState(tmp_path / "state.sqlite") as state:
        assert [w["end"] for w in state.processed_windows()] == [
            f"{DAYS[0]}T14:35:00Z", f"{DAYS[0]}T14:40:00Z", f"{DAYS[0]}T14:45:00Z"]


def test_the_loop_retries_transient_failures_alerts_once_and_recovers(gw, tmp_path):
    config = _write_configs(tmp_path, gw, extra="alert_after_failures = 2\n")
    env = {"DATABENTO_API_KEY": gw.api_key}
    calls = {"n": 0}

    def flaky_client():  # the first two cycles find nothing listening
        calls["n"] += 1
        return historical_client(env, "https://127.0.0.1:9" if calls["n"] <= 2 else gw.url)

    said: list[str] = []
    monitor = Monitor(load_monitor_config(config), client_factory=flaky_client, progress=said.append)
    stop = threading.Event()
    thread = threading.Thread(target=monitor.run, args=(0.3, stop))
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while not any(line.startswith("monitor: processed") for line in said) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive()
    failures = [line for line in said if "retrying in" in line]
    assert len(failures) == 2 and "cannot reach Databento" in failures[0]
    assert any(line.startswith("monitor: processed 1 window(s)") for line in said)
    loop_alerts = AlertHistory(tmp_path / "alerts.sqlite", readonly=True).query(kind="monitor")
    assert sorted((a["level"], a["title"]) for a in loop_alerts) == [
        ("info", "Monitor recovered"), ("warning", "Monitor cannot get data")]
    assert _signal_alerts(tmp_path)  # the day was processed after all


def test_a_wrong_key_stops_the_loop_with_its_error(gw, tmp_path):
    config = _write_configs(tmp_path, gw)
    monitor = Monitor(load_monitor_config(config),
                      client_factory=lambda: historical_client({"DATABENTO_API_KEY": "db-" + "x" * 29}, gw.url))
    with pytest.raises(IfdError, match="401"):
        monitor.run(0.1, threading.Event())


def test_window_must_divide_a_day(tmp_path):
    path = tmp_path / "monitor.toml"
    path.write_text('[monitor]\nsymbols = ["NQ.OPT"]\nwindow = "7m"\n')
    with pytest.raises(IfdError, match="window '7m': must be whole minutes that divide a day"):
        load_monitor_config(path)
    path.write_text('[monitor]\nsymbols = ["NQ.OPT"]\nwindow = "15m"\n')
    assert load_monitor_config(path).window_s == 900


def test_a_version_1_state_of_whole_days_becomes_windows(tmp_path):
    import sqlite3

    path = tmp_path / "state.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE processed_days (dataset TEXT NOT NULL, symbols TEXT NOT NULL, day TEXT NOT NULL,"
        " signals INTEGER NOT NULL, alerts INTEGER NOT NULL, run_dir TEXT, processed_at TEXT NOT NULL,"
        " PRIMARY KEY (dataset, symbols, day));"
        "INSERT INTO processed_days VALUES ('GLBX.MDP3', 'parent-NQ.FUT+NQ.OPT', '2026-11-16', 4, 3, 'r', 'x');"
        "PRAGMA user_version = 1;",
    )
    db.close()
    with MonitorState(path) as state:
        assert state.last_end("GLBX.MDP3", "parent-NQ.FUT+NQ.OPT") == dt.datetime(2026, 11, 17, tzinfo=dt.UTC)
        [window] = state.processed_windows()
        assert (window["start"], window["end"], window["signals"]) == ("2026-11-16T00:00:00Z", "2026-11-17T00:00:00Z", 4)
