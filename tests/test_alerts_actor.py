"""AlertsActor in real BacktestNode runs: IFD v3 (trading) and v1 on a small generated session publish
FlowSignals; the actor alerts on each one, on a trading halt and on the orders the halted RiskEngine
denies, through the log file, the history and a webhook on 127.0.0.1. A webhook that is down or an
alert that fails to build changes nothing in the run."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from nautilus_trader.common.messages import TradingStateChanged
from nautilus_trader.core.uuid import UUID4
from nautilus_trader.model.enums import TradingState
from nautilus_trader.model.identifiers import TraderId

from backtests.config import build_run_config
from backtests.config import load_backtest_spec
from backtests.runner import ProgressBacktestNode
from backtests.runner import ReplayProgress
from backtests.runner import catalog_rows
from catalogs.ingest import ingest
from ifd.alerts import AlertHistory
from ifd.alerts import Level
from ifd.alerts import alert_from_signal
from ifd.alerts import load_alerts_config
from ifd.alerts.actor import AlertsActor
from ifd.alerts.signal_alerts import alert_from_detector_status
from ifd.alerts.signal_alerts import alert_from_trading_state
from ifd.scenario.generate import ScenarioConfig
from ifd.scenario.generate import generate_scenario
from strategies.signals import DetectorStatus
from tests.support.configs import without_actors
from tests.support.webhook_server import SECRET_PATH
from tests.support.webhook_server import WebhookServer
from tests.support.webhook_server import refused_url

PROJECT = Path(__file__).resolve().parents[1]

ALERTS_TOML = """
[alerts]
dedup_window_s = 0              # one alert per signal, to compare with the strategies' own rows
close_timeout_s = 10
[console]
min_level = "critical"
[log_file]
path = "{tmp}/alerts.log"
[history]
path = "{tmp}/alerts.sqlite"
[webhook]
enabled = true
min_level = "warning"
format = "slack"
timeout_s = 2
retries = 1
backoff_s = 0.01
max_per_minute = 0
"""


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("alerts_run")
    generate_scenario(root / "scenario", ScenarioConfig(seed=3, strikes=4, expiries=1, minutes=10, rate=100.0))
    ingest([root / "scenario" / "definition.dbn.zst", root / "scenario" / "mbo.dbn.zst"], root / "catalog")
    return root / "catalog"


def run_with_alerts(catalog: Path, tmp: Path, with_actor: bool = True) -> tuple[AlertsActor | None, list[dict]]:
    """v3 trading + v1 fallback (ab_v1_v3.toml) with the AlertsActor; trading is halted at the first signal."""
    tmp.mkdir(exist_ok=True)
    config_text = without_actors("ab_v1_v3.toml")
    config_text += "" if not with_actor else (
        '\n[[actors]]\nactor_path = "ifd.alerts.actor:AlertsActor"\n'
        'config_path = "ifd.alerts.actor:AlertsActorConfig"\n'
        f'[actors.config]\nconfig_path = "{tmp / "alerts.toml"}"\nsource = "IFD-BACKTEST"\n'
    )
    (tmp / "alerts.toml").write_text(ALERTS_TOML.format(tmp=tmp))
    (tmp / "run.toml").write_text(config_text)
    spec = load_backtest_spec(tmp / "run.toml", catalog_override=catalog)
    config = build_run_config(spec, {name: sorted(per) for name, per in catalog_rows(spec).items()})
    assert len(config.engine.actors) == with_actor
    node = ProgressBacktestNode([msgspec.structs.replace(config, raise_exception=True)], ReplayProgress(total=0))
    try:
        node.build()
        engine = node.get_engine(config.id)
        risk = engine.kernel.risk_engine

        def halt_on_first_signal(signal) -> None:  # something halts trading mid-session
            if risk.trading_state != TradingState.HALTED:
                risk.set_trading_state(TradingState.HALTED)

        engine.kernel.msgbus.subscribe(topic="data.FlowSignal*", handler=halt_on_first_signal)
        node.run()
        actor = engine.trader.actors()[0] if with_actor else None
        # latency_ns is wall-clock time: the one field that differs run to run
        rows = [{k: v for k, v in row.items() if k != "latency_ns"}
                for strategy in engine.trader.strategies() for row in strategy.signal_rows()]
        return actor, rows
    finally:
        node.dispose()


def test_alerts_actor_in_a_backtest_run(catalog, tmp_path, monkeypatch):
    server = WebhookServer()
    monkeypatch.setenv("IFD_WEBHOOK_URL", server.url)
    try:
        actor, rows = run_with_alerts(catalog, tmp_path)
    finally:
        server.close()
    assert len(rows) >= 5 and {r["algorithm"] for r in rows} == {"ifd_v1", "ifd_v3"}

    rules = load_alerts_config(tmp_path / "alerts.toml", env={"IFD_WEBHOOK_URL": "http://x"}).signals
    expected = sorted(
        (a.ts_ns, a.level.label, a.title) for a in (alert_from_signal(r, rules, "IFD-BACKTEST") for r in rows) if a
    )
    history = AlertHistory(tmp_path / "alerts.sqlite", readonly=True)
    alerts = history.query(limit=10_000)
    flow = [a for a in alerts if a["kind"] == "flow_signal"]
    assert sorted((a["ts_ns"], a["level"], a["title"]) for a in flow) == expected  # every signal, same level
    assert {a["source"] for a in alerts} == {"IFD-BACKTEST"}
    assert {a["level"] for a in flow} >= {"info", "warning"}

    [halt] = [a for a in alerts if a["kind"] == "trading_state"]
    assert halt["level"] == "critical" and halt["title"] == "Trading HALTED"
    assert halt["ts_ns"] == min(a["ts_ns"] for a in flow)  # halted at the first signal, on the backtest clock
    denied = [a for a in alerts if a["kind"] == "order_denied"]
    v3_entries_after_halt = [r for r in rows if r["algorithm"] == "ifd_v3" and r["acted"]]
    assert v3_entries_after_halt and denied  # the halted RiskEngine denied v3's brackets
    assert all(a["text"] == "TradingState.HALTED" for a in denied)

    # The webhook got exactly the warning-and-above alerts, each delivered once.
    to_webhook = [a for a in alerts if Level.parse(a["level"]) >= Level.WARNING]
    assert all(a["deliveries"]["webhook"] == {"status": "sent", "attempts": 1, "error": ""} for a in to_webhook)
    assert all("webhook" not in a["deliveries"] for a in alerts if a["level"] == "info")
    received = sorted(body["blocks"][0]["text"]["text"].split(": ", 2)[2] for body in server.bodies())
    assert received == sorted(a["title"] for a in to_webhook)
    assert all(r["path"] == SECRET_PATH for r in server.requests)

    log_lines = (tmp_path / "alerts.log").read_text().splitlines()
    assert len(log_lines) == len(alerts)
    stats = actor.stats()
    assert stats["alerts"] == len(alerts) and stats["handler_errors"] == 0
    assert stats["sinks"]["webhook"]["sent"] == len(to_webhook)


def test_a_down_webhook_or_a_failing_alert_changes_nothing_in_the_run(catalog, tmp_path, monkeypatch):
    import ifd.alerts.actor as actor_module

    reference = run_with_alerts(catalog, tmp_path / "without_alerts", with_actor=False)[1]
    monkeypatch.setenv("IFD_WEBHOOK_URL", refused_url())
    calls = {"n": 0}
    real = actor_module.alert_from_signal

    def every_other_one_raises(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] % 2:
            raise ValueError("bad signal")
        return real(*args, **kwargs)

    monkeypatch.setattr(actor_module, "alert_from_signal", every_other_one_raises)
    actor, rows = run_with_alerts(catalog, tmp_path / "down")
    assert rows == reference  # detection and trading went on exactly as before
    stats = actor.stats()
    assert stats["handler_errors"] == (len(rows) + 1) // 2
    history = AlertHistory(tmp_path / "down" / "alerts.sqlite", readonly=True)
    to_webhook = [a for a in history.query(limit=10_000) if "webhook" in a["deliveries"]]
    assert to_webhook and all(
        a["deliveries"]["webhook"] == {"status": "failed", "attempts": 2, "error": "connection refused"}
        for a in to_webhook
    )


def test_engine_event_alerts():
    halted = TradingStateChanged(TraderId("IFD-LIVE"), TradingState.HALTED, {}, UUID4(), 5, 6)
    alert = alert_from_trading_state(halted, "live")
    assert (alert.level, alert.title, alert.key, alert.ts_ns) == (
        Level.CRITICAL, "Trading HALTED", "trading_state:HALTED", 5,
    )
    active = alert_from_trading_state(TradingStateChanged(TraderId("IFD-LIVE"), TradingState.ACTIVE, {}, UUID4(), 7, 7))
    assert active.level == Level.INFO
    status = DetectorStatus(ts_event=9, ts_init=9, algorithm="ifd_v3", healthy=False, reason="feed gap")
    alert = alert_from_detector_status(status)
    assert (alert.level, alert.title, alert.text) == (Level.WARNING, "ifd_v3 unhealthy", "feed gap")
