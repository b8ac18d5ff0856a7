"""The polling monitor (ifd/monitor/) against the loopback HTTPS historical gateway.

The gateway serves a generated NQ session on 2026-11-16, then one of 2026-11-17 is added;
the real ``databento.Historical`` client, the real downloader, the shadow v1 + v3 backtest and the
alerts module; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from adapters.databento.budget import BudgetRefused
from adapters.databento.downloads import historical_client
from adapters.databento.historical_gateway import HistoricalGateway, HistoricalStore
from ifd.alerts import AlertHistory, load_alerts_config
from ifd.alerts.signal_alerts import SIGNAL_KIND, alert_from_signal
from ifd.cli import main
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


def _write_configs(root: Path, gw: HistoricalGateway, daily: float = 8.0) -> Path:
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
        f'start = "{DAYS[0]}"\nevery = "15m"\nbacktest = "configs/backtests/shadow_v1_v3.toml"\n'
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
    assert first.days == [DAYS[0]]
    assert gw.count("timeseries.get_range") == 2  # definitions + mbo of the 16th
    alerts = _signal_alerts(tmp_path)
    assert alerts, "the institutional episode raised no alert"
    assert _got(alerts) == _expected(tmp_path, DAYS[0])
    assert first.alerts == len(alerts)

    # A restart (new objects over the same state) with no new data: no data request, no alert.
    gw.reset()
    again = _monitor(config, gw).cycle()
    assert again.days == [] and again.alerts == 0
    assert not any(gw.count(e) for e in DATA_ENDPOINTS)
    assert len(_signal_alerts(tmp_path)) == len(alerts)

    # The 17th arrives: only its signals alert.
    for file in sessions[DAYS[1]].rglob("*.dbn*"):
        gw.store.add_file(file)
    gw.reset()
    third = _monitor(config, gw).cycle()
    assert third.days == [DAYS[1]]
    assert gw.count("timeseries.get_range") == 2  # only the 17th: the 16th is not downloaded again
    new = _signal_alerts(tmp_path)[len(alerts):]
    assert new and _got(new) == _expected(tmp_path, DAYS[1])
    with MonitorState(tmp_path / "state.sqlite") as state:
        assert [d["day"] for d in state.processed_days()] == [DAYS[0], DAYS[1]]
        assert len(state.alerted_keys()) >= len(alerts) + len(new)


def test_crash_between_dispatch_and_record_resends(gw, tmp_path):
    config = _write_configs(tmp_path, gw)
    _monitor(config, gw).cycle()
    before = _signal_alerts(tmp_path)
    # As if killed after dispatching the day's last alert but before recording it and the day.
    with MonitorState(tmp_path / "state.sqlite") as state:
        last = state.alerted_keys()[-1]
        state._db.execute("DELETE FROM alerted WHERE ts_event=? AND algorithm=?", (last.ts_event, last.algorithm))
        state._db.execute("DELETE FROM processed_days")
    gw.reset()
    report = _monitor(config, gw).cycle()
    assert report.days == [DAYS[0]]
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
        assert state.processed_days() == []


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
