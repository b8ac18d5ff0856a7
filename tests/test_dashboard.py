"""The live dashboard (live/dashboard): the snapshot model, the web server, and a browser watching a node.

- ``state.py`` on plain inputs: generic figure sections (usage bars, "unbounded", alerts), the
  bus log (newest signals first, capped), positions and day P&L, the feed meter, the data budget
  from a real ledger, a snapshot that is strict JSON; the risk guard's ``live_figures()``;
- the actor on a bare message bus and test clock: signals, detector status, feed health and
  monitor alarms from the bus, a figure source, the timer's snapshot over HTTP, the port freed at stop;
- the server with a real HTTP client on loopback: page and snapshot, the port released on stop,
  a port in use refused in one line, the token rule (off loopback: 401 without it, Bearer or
  ?token= with it, never logged), and a browser that keeps a ?token= for its API calls;
- ``ifd live paper`` refusing, before it builds or connects anything, a taken port or a
  non-loopback bind without a token;
- headless Chromium on a paper node replaying a generated session at 10x (the dashboard from
  ``configs/monitors/dashboard.toml`` on port 0, IFD v1 and v3 in shadow, a test strategy holding
  the future, a stub figure source): signal and position rows appear while the session runs, the
  source's section shows, every ``live_figures()`` call was on the node's thread, no console
  errors; once the node stops the page says so and the port is free.

Each node runs in a child process (one NautilusTrader node per process):
``python -m tests.test_dashboard child SPEC.json``. The screenshot in docs is made the same way
(with the data-quality and latency monitors when the checkout has them):
``.venv/bin/python -m tests.test_dashboard screenshot docs/dashboard.png``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from nautilus_trader.common.actor import Actor
from nautilus_trader.config import ActorConfig

from ifd.errors import IfdError
from live.dashboard.server import DashboardServer, access_token
from live.dashboard.state import (
    BusLog,
    FeedMeter,
    PositionRow,
    budget_view,
    build_snapshot,
    duration_text,
    figure_section,
    iso_ns,
    positions_section,
    read_budget,
)
from tests.support.configs import SHADOW_V3_V1

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FUTURE = "NQZ6.GLBX"
TOKEN = "dashboard-TEST-token-0123456789"
T0 = 1_794_839_400_000_000_000  # 2026-11-16T14:30:00Z


# -- state.py ---------------------------------------------------------------------------------------


def _signal(i: int, latency_ns: int = 2_000_000) -> SimpleNamespace:
    return SimpleNamespace(ts_init=T0 + i * 1_000_000_000, ts_event=T0 + i * 1_000_000_000 - 5_000_000,
                           algorithm="ifd_v3", instrument_id=SimpleNamespace(value=f"NQZ6 C2100{i}.GLBX"),
                           option_kind="CALL", strike=21000.0 + i, side="BUY", bias="BULLISH",
                           confidence=0.7712345, notional_usd=3_025_870.4, latency_ns=latency_ns, reasons="z=5.1")


def test_times_and_durations():
    assert iso_ns(T0 + 123_456_789) == "2026-11-16T14:30:00.123Z"
    assert iso_ns(0) is None and iso_ns(None) is None
    assert duration_text(3 * 3600 + 4 * 60 + 5.9) == "03:04:05"
    assert duration_text(2 * 86_400 + 61) == "2d 00:01:01"


def test_figure_section_renders_any_source_generically():
    section = figure_section("RiskGuard-000", {
        "title": "Risk limits",
        "halted": False,
        "daily_loss_usd": {"value": 40.0, "limit": 50.0},
        "total_risk_usd": {"value": math.inf, "limit": 200.0},  # a position without a stop
        "consecutive_losses": {"value": 3, "limit": 3},
        "p99_latency_ms": 12.3456,
        "checks": {"crossed_book": 0, "healthy": False},  # nested: flattened one level
        "instruments": ["NQZ6.GLBX", "NQZ6 C21000.GLBX"],
        "note": None,
    })
    rows = {r["key"]: r for r in section["rows"]}
    assert section["title"] == "Risk limits" and section["id"] == "RiskGuard-000" and section["alert"]
    assert rows["halted"]["text"] == "no" and not rows["halted"]["alert"]
    assert rows["daily_loss_usd"] | {} == {"key": "daily_loss_usd", "label": "daily loss (USD)", "text": "40 of 50",
                                           "pct": 80.0, "alert": False}
    assert rows["total_risk_usd"]["text"] == "unbounded of 200" and rows["total_risk_usd"]["pct"] == 100.0
    assert rows["total_risk_usd"]["alert"] and rows["consecutive_losses"]["alert"]  # at 100%: alert
    assert rows["p99_latency_ms"]["label"] == "p99 latency (ms)" and rows["p99_latency_ms"]["text"] == "12.35"
    assert rows["checks.crossed_book"]["text"] == "0" and rows["checks.healthy"]["alert"]
    assert rows["instruments"]["text"] == "NQZ6.GLBX, NQZ6 C21000.GLBX" and rows["note"]["text"] == "—"
    assert figure_section("X", {"halted": True})["rows"][0]["alert"]
    broken = figure_section("LatencyMonitor", None, error="ValueError: boom")
    assert broken["error"] == "ValueError: boom" and broken["alert"] and broken["rows"] == []


def test_bus_log_keeps_the_newest_signals_and_their_latency():
    bus = BusLog(max_signals=3, max_alarms=2)
    for i in range(5):
        bus.add_signal(_signal(i, latency_ns=(i + 1) * 1_000_000))
    assert bus.signals_total == 5 and [s["strike"] for s in bus.signals] == [21004.0, 21003.0, 21002.0]
    row = bus.signals[0]
    assert row["time"] == iso_ns(T0 + 4_000_000_000) and row["instrument_id"] == "NQZ6 C21004.GLBX"
    assert row["confidence"] == 0.7712 and row["premium_usd"] == 3_025_870.0 and row["latency_ms"] == 5.0
    bus.set_detector(SimpleNamespace(algorithm="ifd_v3", healthy=False, reason="no trade for 30 s", ts_init=T0))
    bus.set_feed_health(SimpleNamespace(healthy=True, reason="", ts_init=T0))
    for i in range(3):
        bus.add_alarm(SimpleNamespace(ts_init=T0 + i, monitor="latency", kind="p99", level="warning",
                                      title=f"alarm {i}", text="x" * 1000))
    assert [a["title"] for a in bus.alarms] == ["alarm 2", "alarm 1"] and bus.alarms_total == 3
    assert len(bus.alarms[0]["text"]) == 240  # free text is clipped
    snap = _snapshot(bus)
    assert snap["latency"] == {"count": 5, "p50_ms": 3.0, "p99_ms": 5.0, "max_ms": 5.0}
    assert snap["detectors"] == [{"algorithm": "ifd_v3", "healthy": False, "reason": "no trade for 30 s",
                                  "time": iso_ns(T0)}]
    assert snap["feed"]["health"]["healthy"] is True and snap["signals"]["total"] == 5


def test_a_real_flow_signal_fits_the_row():
    from nautilus_trader.model.identifiers import InstrumentId

    from strategies.signals import FlowSignal

    signal = FlowSignal(ts_event=T0, ts_init=T0 + 1_000_000, instrument_id=InstrumentId.from_str("NQZ6 P20900.GLBX"),
                        algorithm="ifd_v1", underlying="NQZ6", strike=20900.0, option_kind="PUT", side="SELL",
                        bias="BULLISH", confidence=0.6, notional_usd=3.1e6, latency_ns=250_000)
    bus = BusLog(5, 5)
    bus.add_signal(signal)
    assert bus.signals[0] | {} == {
        "time": "2026-11-16T14:30:00.001Z", "market_time": "2026-11-16T14:30:00.000Z", "algorithm": "ifd_v1",
        "instrument_id": "NQZ6 P20900.GLBX", "option_kind": "PUT", "strike": 20900.0, "side": "SELL",
        "bias": "BULLISH", "confidence": 0.6, "premium_usd": 3_100_000.0, "latency_ms": 0.25, "reasons": "",
    }


def test_positions_and_day_pnl():
    rows = [
        PositionRow("P-1", FUTURE, "HoldStrategy-HOLD", "LONG", 1.0, 21000.25, 21001.0, 15.0, -2.5, iso_ns(T0)),
        PositionRow("P-2", "NQZ6 C21000.GLBX", "IfdV3-V3", "SHORT", 1.0, 120.5, None, None, -2.5, None),
    ]
    section = positions_section(rows, realized_closed_today_usd=-40.0)
    assert section["unrealized_usd"] == 15.0 and section["realized_day_usd"] == -45.0
    assert section["day_pnl_usd"] == -30.0
    assert section["rows"][0]["instrument_id"] == FUTURE and section["rows"][1]["mark"] is None
    assert positions_section([], 0.0) == {"rows": [], "unrealized_usd": 0.0, "realized_day_usd": 0.0,
                                          "day_pnl_usd": 0.0}


def test_feed_meter_rate_and_age():
    meter = FeedMeter()
    first = meter.sample(T0, books=9, updates=1_000, last_event_ns=T0 - 500_000_000, last_trade_ns=None,
                         live_data=True)
    assert first["updates_per_s"] is None and first["age_s"] == 0.5 and first["last_trade"] is None
    second = meter.sample(T0 + 2_000_000_000, books=9, updates=1_500, last_event_ns=T0, last_trade_ns=T0,
                          live_data=True)
    assert second["updates_per_s"] == 250.0 and second["age_s"] == 2.0 and second["books"] == 9
    replayed = FeedMeter().sample(T0, 9, 10, last_event_ns=T0 - 10**15, last_trade_ns=None, live_data=False)
    assert replayed["age_s"] is None  # recorded timestamps: their age says nothing


def _budget_file(tmp_path: Path, ledger: Path) -> Path:
    path = tmp_path / "budget.toml"
    path.write_text(f'[budget]\ndaily_usd = 8\nmonthly_usd = 200\nalert_at = 0.8\nledger = "{ledger}"\n')
    return path


def test_budget_from_the_ledger(tmp_path):
    from adapters.databento.ledger import Ledger, RequestKey

    ledger_path = tmp_path / "ledger.sqlite"
    budget = _budget_file(tmp_path, ledger_path)
    missing = read_budget(str(budget), {})
    assert missing["state"] == "no ledger" and str(ledger_path) in missing["text"]
    assert missing["today"]["limit_usd"] == 8.0 and missing["month"]["spent_usd"] == 0.0

    now = dt.datetime(2026, 11, 21, 9, 0, tzinfo=dt.UTC)
    with Ledger(ledger_path) as ledger:
        key = RequestKey("GLBX.MDP3", "mbo", ("NQ.OPT",), "parent", dt.date(2026, 11, 20))
        row_id, _ = ledger.reserve(key, 2.0, 1_000, lambda spend, cost: None, now=now)
        ledger.finish(row_id, "done", received_bytes=1_000, records=10, actual_cost_usd=2.0, path="x", now=now)
    view = read_budget(str(budget), {}, now=now)
    assert view["state"] == "ok" and view["today"] == {"period": "2026-11-21", "spent_usd": 2.0, "limit_usd": 8.0,
                                                       "pct": 25.0}
    assert view["month"]["period"] == "2026-11" and view["month"]["pct"] == 1.0
    assert read_budget(str(tmp_path / "nope.toml"), {})["state"] == "error"
    limits = {"daily_usd": 8.0, "monthly_usd": 200.0, "alert_at": 0.8}
    spend = {"day": "d", "month": "m", "day_usd": 1.0, "month_usd": 170.0}
    assert budget_view(limits, spend)["state"] == "alert"
    assert budget_view(limits, spend | {"day_usd": 8.0})["state"] == "exhausted"


def _snapshot(bus: BusLog | None = None, sources: list | None = None) -> dict:
    return build_snapshot(
        title="ifd-flow", trader_id="IFD-TEST", mode="paper · Sandbox · replay", trading_state="ACTIVE",
        started_ns=T0, now_ns=T0 + 3_725_000_000_000, refresh_s=1.0, bus=bus or BusLog(5, 5),
        positions=positions_section([], 0.0), orders={"open": 2, "inflight": 0},
        feed=FeedMeter().sample(T0, 0, 0, None, None, live_data=False), sources=sources or [],
        budget=budget_view(None, None, error="not read yet"),
    )


def test_snapshot_is_strict_json():
    source = figure_section("RiskGuard-000", {"total_risk_usd": {"value": math.inf, "limit": 200.0},
                                              "raw": float("nan")})
    snap = _snapshot(sources=[source, {"id": "x", "value": math.inf}])
    text = json.dumps(snap, allow_nan=False)  # no Infinity / NaN for the browser's JSON.parse
    assert json.loads(text)["sources"][1]["value"] is None
    assert snap["uptime"] == "01:02:05" and snap["uptime_s"] == 3725.0 and snap["orders"]["open"] == 2


def test_risk_guard_live_figures():
    from live.risk_guard import RiskGuard, RiskGuardConfig

    figures = RiskGuard(RiskGuardConfig(max_daily_loss_usd=40.0)).live_figures()  # not running: last check
    assert figures["title"] == "Risk limits" and figures["halted"] is False
    assert figures["daily_loss_usd"] == {"value": 0.0, "limit": 40.0}
    assert figures["total_risk_usd"] == {"value": 0.0, "limit": 200.0}
    assert figures["open_contracts"] == {"value": 0.0, "limit": 1}
    rows = {r["key"]: r for r in figure_section("RiskGuard", figures)["rows"]}
    assert rows["daily_loss_usd"]["pct"] == 0.0 and rows["daily_loss_usd"]["text"] == "0 of 40"
    json.dumps(figures, allow_nan=False)


# -- config and access ------------------------------------------------------------------------------


def test_profile_configures_the_actor(tmp_path):
    from backtests.config import actor_configs

    entry = {"actor_path": "live.dashboard.actor:DashboardActor",
             "config_path": "live.dashboard.actor:DashboardConfig",
             "profile": "configs/monitors/dashboard.toml", "config": {"port": 0}}
    (actor,) = actor_configs(tmp_path / "node.toml", [entry])
    assert actor.config["port"] == 0 and actor.config["host"] == "127.0.0.1"
    assert actor.config["token_env"] == "IFD_DASHBOARD_TOKEN" and actor.config["refresh_s"] == 1.0
    with pytest.raises(IfdError, match=r"node\.toml: \[\[actors\]\] #1 .*port must be 0-65535"):
        actor_configs(tmp_path / "node.toml", [entry | {"config": {"port": 70000}}])


def test_token_rule():
    assert access_token("127.0.0.1", "IFD_DASHBOARD_TOKEN", {}) is None
    assert access_token("::1", "IFD_DASHBOARD_TOKEN", {}) is None
    assert access_token("localhost", "IFD_DASHBOARD_TOKEN", {"IFD_DASHBOARD_TOKEN": TOKEN}) is None
    with pytest.raises(IfdError, match=r"^dashboard: binding 0\.0\.0\.0 needs a token: set IFD_DASHBOARD_TOKEN"):
        access_token("0.0.0.0", "IFD_DASHBOARD_TOKEN", {"IFD_DASHBOARD_TOKEN": "  "})
    with pytest.raises(IfdError, match="MY_TOKEN is too short"):
        access_token("192.0.2.7", "MY_TOKEN", {"MY_TOKEN": "short"})
    assert access_token("0.0.0.0", "MY_TOKEN", {"MY_TOKEN": TOKEN}) == TOKEN
    assert access_token("127.0.0.1", "MY_TOKEN", {"MY_TOKEN": TOKEN}, require_token=True) == TOKEN
    with pytest.raises(IfdError, match="require_token"):
        access_token("127.0.0.1", "MY_TOKEN", {}, require_token=True)


def test_actor_refuses_a_public_bind_without_token_at_construction(monkeypatch):
    from live.dashboard.actor import DashboardActor, DashboardConfig

    monkeypatch.delenv("IFD_DASHBOARD_TOKEN", raising=False)
    with pytest.raises(IfdError, match="IFD_DASHBOARD_TOKEN"):
        DashboardActor(DashboardConfig(host="0.0.0.0", port=0))
    monkeypatch.setenv("IFD_DASHBOARD_TOKEN", TOKEN)
    actor = DashboardActor(DashboardConfig(host="0.0.0.0", port=0))
    assert actor.url == "http://0.0.0.0:0/"  # not bound yet: nothing listens until the node is built


def test_actor_serves_what_it_hears_on_the_bus():
    """The actor registered on a bare message bus and test clock: the four feeds, a figure source,
    the timer's snapshots over HTTP, and the port released at stop."""
    from nautilus_trader.cache.cache import Cache
    from nautilus_trader.common.component import MessageBus, TestClock
    from nautilus_trader.model.identifiers import InstrumentId, TraderId
    from nautilus_trader.portfolio.portfolio import Portfolio

    from live.dashboard.actor import DashboardActor, DashboardConfig
    from strategies.signals import DetectorStatus, FeedHealth, FlowSignal, MonitorAlarm, data_topic

    clock = TestClock()
    clock.set_time(T0)
    msgbus = MessageBus(TraderId("IFD-UNIT"), clock)
    cache = Cache()
    actor = DashboardActor(DashboardConfig(port=0, refresh_s=0.5, budget_config="/nonexistent/budget.toml"))
    actor.register_base(Portfolio(msgbus, cache, clock), msgbus, cache, clock)
    source = SimpleNamespace(id=SimpleNamespace(value="RiskGuard-000"),
                             live_figures=lambda: {"title": "Risk limits", "halted": True})
    actor.attach(mode="paper · Sandbox", sources=[actor, source, object()], replay=True)
    actor.start()
    try:
        url = actor.url
        assert json.loads(_get(url + "api/state")[2])["signals"]["total"] == 0  # published at start
        msgbus.publish(data_topic(FlowSignal), FlowSignal(
            ts_event=T0, ts_init=T0, instrument_id=InstrumentId.from_str("NQZ6 C21000.GLBX"), algorithm="ifd_v3",
            strike=21000.0, option_kind="CALL", side="BUY", bias="BULLISH", confidence=0.8, notional_usd=2e6))
        msgbus.publish(data_topic(DetectorStatus), DetectorStatus(ts_event=T0, ts_init=T0, algorithm="ifd_v3",
                                                                  healthy=False, reason="feed gap"))
        msgbus.publish(data_topic(FeedHealth), FeedHealth(ts_event=T0, ts_init=T0, healthy=False,
                                                          reason="crossed_book"))
        msgbus.publish(data_topic(MonitorAlarm), MonitorAlarm(ts_event=T0, ts_init=T0, monitor="data_quality",
                                                              kind="crossed_book", level="critical", title="crossed"))
        assert json.loads(_get(url + "api/state")[2])["signals"]["total"] == 0  # until the timer fires
        for event in clock.advance_time(T0 + 600_000_000):  # a TestClock hands back the due timer events
            event.handle()
        state = json.loads(_get(url + "api/state")[2])
        assert state["trader_id"] == "IFD-UNIT" and state["mode"] == "paper · Sandbox · replay"
        assert state["uptime_s"] == 0.6 and state["refresh_s"] == 0.5
        assert state["signals"]["rows"][0]["instrument_id"] == "NQZ6 C21000.GLBX"
        assert state["detectors"][0]["reason"] == "feed gap" and state["feed"]["health"]["reason"] == "crossed_book"
        assert state["alarms"]["rows"][0]["level"] == "critical"
        assert [s["title"] for s in state["sources"]] == ["Risk limits"] and state["sources"][0]["alert"]
        assert state["budget"]["state"] == "error" and "nonexistent" in state["budget"]["text"]
        assert state["positions"]["rows"] == [] and state["orders"] == {"open": 0, "inflight": 0}
        assert clock.timer_names == ["dashboard-budget", "dashboard-refresh"]
    finally:
        actor.stop()
    port = int(url.rsplit(":", 1)[1].strip("/"))
    assert clock.timer_names == [] and _port_free("127.0.0.1", port)
    actor.dispose()


# -- the server -------------------------------------------------------------------------------------


def _get(url: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _port_free(host: str, port: int) -> bool:
    """Nothing listens on ``host:port`` (a server may bind it again: closed connections in
    TIME_WAIT do not count, SO_REUSEADDR as every server sets it)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            probe.listen(1)
        except OSError:
            return False
        return True


def test_server_serves_the_page_and_the_latest_snapshot():
    server = DashboardServer("127.0.0.1", 0)
    server.start()
    try:
        url = server.url
        port = int(url.rsplit(":", 1)[1].strip("/"))
        assert url == f"http://127.0.0.1:{port}/" and port > 0
        status, headers, body = _get(url)
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert b'id="signals"' in body and b"http" not in body.split(b"<body>")[1]  # nothing external
        csp = headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'sha256-" in csp and "unsafe" not in csp
        assert headers["Cache-Control"] == "no-store"
        assert json.loads(_get(url + "api/state")[2]) == {"status": "starting"}
        server.publish({"version": 1, "n": 1})
        assert json.loads(_get(url + "api/state")[2]) == {"version": 1, "n": 1}
        server.publish({"version": 1, "n": 2})
        assert json.loads(_get(url + "api/state")[2])["n"] == 2
        assert _get(url + "nope")[0] == 404
    finally:
        server.stop()
    assert not server.running and _port_free("127.0.0.1", port)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "api/state", timeout=2)
    server.stop()  # idempotent


def test_port_in_use_is_one_line_naming_host_and_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(IfdError) as error:
            DashboardServer("127.0.0.1", port).bind()
    message = str(error.value)
    assert message.startswith(f"dashboard: 127.0.0.1:{port} is already in use") and "\n" not in message


def test_token_required_off_loopback(caplog):
    caplog.set_level(logging.DEBUG)
    server = DashboardServer("127.0.0.2", 0, token=access_token("127.0.0.2", "T", {"T": TOKEN}))
    server.start()
    try:
        server.publish({"version": 1})
        url = server.url
        assert url.startswith("http://127.0.0.2:")
        status, headers, body = _get(url + "api/state")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer") and TOKEN.encode() not in body
        assert _get(url)[0] == 401
        assert _get(url + "api/state", {"Authorization": "Bearer " + TOKEN[:-1] + "x"})[0] == 401
        assert _get(url + "api/state?token=" + TOKEN[:-1])[0] == 401
        assert _get(url + "api/state", {"Authorization": "Bearer " + TOKEN}) == (
            200, _get(url + "api/state", {"Authorization": "Bearer " + TOKEN})[1], b'{"version":1}')
        assert _get(url + "api/state?token=" + TOKEN)[0] == 200
        assert _get(url + "?token=" + TOKEN)[0] == 200
    finally:
        server.stop()
    assert TOKEN not in caplog.text  # no access log, no token in any log record


def test_browser_keeps_the_token_for_its_api_calls():
    from tests.support.browser import chromium, console_errors, require_chromium, wait_for

    require_chromium()
    server = DashboardServer("127.0.0.2", 0, token=TOKEN)
    server.start()
    try:
        server.publish(_snapshot())
        with chromium() as driver:
            driver.get(server.url + "?token=" + TOKEN)
            wait_for(driver, "return document.getElementById('conn').textContent === 'live'", timeout=20)
            assert _text(driver, "trader") == "IFD-TEST" and _text(driver, "uptime") == "01:02:05"
            assert TOKEN not in driver.current_url  # out of the address bar, kept for the API calls
            server.publish(_snapshot() | {"trader_id": "IFD-NEXT"})
            wait_for(driver, "return document.getElementById('trader').textContent === 'IFD-NEXT'", timeout=10)
            assert console_errors(driver) == []  # the CSP lets the page's own script and style run
    finally:
        server.stop()


# -- nodes ------------------------------------------------------------------------------------------

NODE_CONFIG = """
[node]
trader_id = "IFD-DASHTEST"
timeout_connection = 30.0
timeout_disconnection = 5.0
timeout_post_stop = 1.0

[sandbox]
venue = "GLBX"
starting_balances = ["1_000_000 USD"]
base_currency = "USD"
book_type = "L3_MBO"

[logging]
log_level = "INFO"

[replay]
catalog = "{catalog}"

[[actors]]
actor_path = "live.dashboard.actor:DashboardActor"
config_path = "live.dashboard.actor:DashboardConfig"
profile = "configs/monitors/dashboard.toml"

[actors.config]
{dashboard}
{actors}
""" + SHADOW_V3_V1 + """
[[strategies]]
strategy_path = "tests.support.hold_strategy:HoldStrategy"
config_path = "tests.support.hold_strategy:HoldConfig"

[strategies.config]
order_id_tag = "HOLD"
instrument_id = "{future}"
status_path = "{status}"
stop_points = 100.0
round_trips = 0
"""

# A figure source standing in for the data-quality and latency monitors (their live_figures()).
STUB_MONITOR = """
[[actors]]
actor_path = "tests.test_dashboard:StubMonitor"
config_path = "tests.test_dashboard:StubMonitorConfig"
"""

# No [limits] in the browser run: at the hard caps the risk guard flattens a held NQ future within
# seconds of this generated market (drawdown or daily loss: $50 is 2.5 points), about 0.3 s of wall
# time at 10x, too short to be the position the page must show. Its section is tested on its own.


class StubMonitorConfig(ActorConfig, frozen=True):
    title: str = "Stub monitor"


class StubMonitor(Actor):
    """A figure source: ``live_figures()`` counts its calls, reports a fixed usage and how often it was
    called off the node's thread (``run_paper`` runs the node's loop on the thread that built it)."""

    def __init__(self, config: StubMonitorConfig | None = None) -> None:
        super().__init__(config or StubMonitorConfig())
        self.calls = 0
        self.node_thread = threading.get_ident()
        self.off_thread_calls = 0

    def live_figures(self) -> dict:
        self.calls += 1
        self.off_thread_calls += threading.get_ident() != self.node_thread
        return {"title": self.config.title, "calls": self.calls, "usage": {"value": 3, "limit": 4},
                "calls_off_node_thread": self.off_thread_calls}


def _node_config(folder: Path, catalog: Path, dashboard: str = "port = 0\nrefresh_s = 0.5",
                 actors: str = STUB_MONITOR) -> Path:
    path = folder / "paper.toml"
    path.write_text(NODE_CONFIG.format(catalog=catalog, dashboard=dashboard, actors=actors, future=FUTURE,
                                       status=folder / "hold.json"))
    return path


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("DATABENTO_API_KEY", "IFD_DASHBOARD_TOKEN")}


def test_paper_node_refuses_a_taken_port_or_a_public_bind_before_connecting(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = _node_config(tmp_path, tmp_path / "no-catalog", dashboard=f"port = {port}", actors="")
        run = subprocess.run([sys.executable, "-m", "ifd.cli", "live", "paper", str(config)], cwd=PROJECT_ROOT,
                             env=_env(), capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr == f"ifd: error: dashboard: 127.0.0.1:{port} is already in use (set another " \
                         "[actors.config] port, or 0 for any free one)\n"
    assert "DataClient-REPLAY" not in run.stdout  # refused before the node was built: no client, nothing connected

    config = _node_config(tmp_path, tmp_path / "no-catalog", dashboard='host = "0.0.0.0"\nport = 0', actors="")
    run = subprocess.run([sys.executable, "-m", "ifd.cli", "live", "paper", str(config)], cwd=PROJECT_ROOT,
                         env=_env(), capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.startswith("ifd: error: dashboard: binding 0.0.0.0 needs a token: set IFD_DASHBOARD_TOKEN")
    assert run.stderr.count("\n") == 1 and "DataClient-REPLAY" not in run.stdout


def _child(spec_path: str) -> int:
    """One paper node on the replay with its dashboard; writes its URL, runs until the replay is
    done or ``stop_file`` appears, then checks the port is free again."""
    from live.dashboard.actor import DashboardActor
    from live.paper import build_paper_node, load_paper_spec, run_paper, with_replay
    from live.replay_client import replay_finished

    spec = json.loads(Path(spec_path).read_text())
    paper = with_replay(load_paper_spec(spec["config"]), catalog=spec["catalog"], speed=spec["speed"],
                        start_delay_s=spec["start_delay_s"])
    node = build_paper_node(paper, env={})
    (dashboard,) = [a for a in node.trader.actors() if isinstance(a, DashboardActor)]
    url = dashboard.url
    Path(spec["url_file"]).write_text(url)
    stop_file = Path(spec["stop_file"])
    result = run_paper(node, spec["timeout_s"], stop_when=lambda n: stop_file.exists() or replay_finished(n),
                       poll_s=0.1)
    host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    result["url"] = url
    result["port_free"] = _port_free(host, int(port))
    Path(spec["result_file"]).write_text(json.dumps(result, default=str))
    return 0


class DashboardNode:
    """A paper node with its dashboard in a child process (``python -m tests.test_dashboard child``);
    the replay starts ``start_delay_s`` after the strategies subscribe (time for the browser to open)."""

    def __init__(self, folder: Path, catalog: Path, speed: float, *, start_delay_s: float = 3.0,
                 actors: str = STUB_MONITOR, timeout_s: float = 120.0) -> None:
        self.folder = folder
        self.url_file, self.stop_file, self.result_file = folder / "url", folder / "stop", folder / "result.json"
        spec = folder / "spec.json"
        spec.write_text(json.dumps({
            "config": str(_node_config(folder, catalog, actors=actors)), "catalog": str(catalog), "speed": speed,
            "start_delay_s": start_delay_s, "timeout_s": timeout_s, "url_file": str(self.url_file),
            "stop_file": str(self.stop_file), "result_file": str(self.result_file),
        }))
        self.log = folder / "node.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "tests.test_dashboard", "child", str(spec)],
                                         cwd=PROJECT_ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT)

    def url(self, timeout_s: float = 60.0) -> str:
        deadline = time.monotonic() + timeout_s
        while not self.url_file.exists():
            assert self.proc.poll() is None, self.log.read_text()[-6000:]
            assert time.monotonic() < deadline, "the node did not report its dashboard URL"
            time.sleep(0.1)
        return self.url_file.read_text()

    def stop(self, timeout_s: float = 60.0) -> dict:
        self.stop_file.touch()
        try:
            assert self.proc.wait(timeout=timeout_s) == 0, self.log.read_text()[-6000:]
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        return json.loads(self.result_file.read_text())


ROWS = "return document.querySelectorAll('#{table} tbody tr.row').length"
FIGURE = ("return [...document.querySelectorAll('#sources tr')].filter(r => r.cells[0].textContent === '{label}')"
          ".map(r => r.cells[1].textContent)[0]")


def _text(driver, element_id: str) -> str:
    return driver.execute_script(f"return document.getElementById('{element_id}').textContent")


def test_browser_sees_signals_and_positions_appear_on_a_replayed_paper_node(tmp_path, small_session_catalog):
    from tests.support.browser import chromium, console_errors, require_chromium, wait_for

    require_chromium()
    started = time.monotonic()
    node = DashboardNode(tmp_path, small_session_catalog, speed=10.0)
    try:
        url = node.url()
        with chromium() as driver:
            driver.get(url)
            wait_for(driver, "return document.getElementById('conn').textContent === 'live'", timeout=30)
            assert _text(driver, "trader") == "IFD-DASHTEST" and "replay" in _text(driver, "mode")
            assert driver.execute_script(ROWS.format(table="signals")) == 0  # none before the session runs
            wait_for(driver, ROWS.format(table="positions") + " > 0", timeout=60)
            position = driver.find_element("css selector", "#positions tbody tr.row").text
            assert FUTURE in position and "LONG" in position and "HoldStrategy-HOLD" in position, position
            wait_for(driver, ROWS.format(table="signals") + " > 0", timeout=60)
            signal = driver.find_element("css selector", "#signals tbody tr.row").text
            assert "ifd_v" in signal and "NQZ6 " in signal and ".GLBX" in signal, signal
            assert int(_text(driver, "n-signals")) >= 1 and _text(driver, "n-positions") == "1"
            sources = _text(driver, "sources")
            assert "Stub monitor" in sources, sources  # a figure source, rendered generically
            assert driver.execute_script(FIGURE.format(label="usage")) == "3 of 4"
            assert driver.execute_script(FIGURE.format(label="calls off node thread")) == "0"
            assert "no ledger" in _text(driver, "budget") or "of $8.00" in _text(driver, "budget")
            assert _text(driver, "updated").endswith("UTC") and _text(driver, "trading-state") == "ACTIVE"
            assert _text(driver, "uptime").startswith("00:00:")
            assert console_errors(driver) == []
            seen_s = time.monotonic() - started
            result = node.stop()
            # The page notices the node is gone.
            wait_for(driver, "return document.getElementById('conn').textContent === 'disconnected'", timeout=15)
    finally:
        if node.proc.poll() is None:
            node.proc.kill()
    assert result["stopped_by"] == "stop condition" and result["port_free"] is True
    log = node.log.read_text()
    assert f"dashboard at {url}" in log and "dashboard stopped" in log
    print(f"browser test: rows seen after {seen_s:.1f} s, done after {time.monotonic() - started:.1f} s")


# -- the screenshot in docs/ ------------------------------------------------------------------------


def _monitors() -> str:
    """The data-quality and latency monitors' [[actors]] when this checkout has them."""
    import importlib.util

    present = all(importlib.util.find_spec(m) for m in ("ifd.monitoring.latency_actor", "ifd.monitoring.quality_actor"))
    profiles = all((PROJECT_ROOT / "configs" / "monitors" / f).is_file() for f in ("latency.toml", "data_quality.toml"))
    return MONITORS if present and profiles else ""


MONITORS = """
[[actors]]
actor_path = "ifd.monitoring.latency_actor:LatencyMonitor"
config_path = "ifd.monitoring.latency_actor:LatencyConfig"
profile = "configs/monitors/latency.toml"

[[actors]]
actor_path = "ifd.monitoring.quality_actor:DataQualityMonitor"
config_path = "ifd.monitoring.quality_actor:DataQualityConfig"
profile = "configs/monitors/data_quality.toml"
"""


def _screenshot(out: str) -> int:
    """The browser test's session (generated, replayed at 10x) with the latency and data-quality
    monitors as figure sources; the screenshot is taken once six signals and the position show."""
    import tempfile

    from catalogs.ingest import ingest
    from ifd.scenario.generate import ScenarioConfig, generate_scenario
    from tests.support.browser import chromium, console_errors, wait_for

    with tempfile.TemporaryDirectory(prefix="ifd-dashboard-") as tmp:
        root = Path(tmp)
        generate_scenario(root / "scenario", ScenarioConfig(seed=5, strikes=4, expiries=1, minutes=8, rate=100))
        ingest([root / "scenario" / "definition.dbn.zst", root / "scenario" / "mbo.dbn.zst"], root / "catalog")
        node = DashboardNode(root, root / "catalog", speed=10.0, actors=_monitors())
        try:
            with chromium(width=1400, height=1100) as driver:
                driver.get(node.url())
                wait_for(driver, ROWS.format(table="positions") + " > 0", timeout=60)
                wait_for(driver, ROWS.format(table="signals") + " >= 6", timeout=90)
                for _ in range(3):  # the whole page: the window is taller than its viewport
                    missing = driver.execute_script(
                        "return document.documentElement.scrollHeight - window.innerHeight")
                    if missing <= 0:
                        break
                    driver.set_window_size(1400, driver.get_window_size()["height"] + missing + 20)
                    time.sleep(0.5)
                errors = console_errors(driver)
                Path(out).parent.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(out)
            node.stop()
        finally:
            if node.proc.poll() is None:
                node.proc.kill()
    print(f"wrote {out}" + (f" (console errors: {errors})" if errors else ""))
    return 0 if not errors else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "child":
        sys.exit(_child(sys.argv[2]))
    if len(sys.argv) == 3 and sys.argv[1] == "screenshot":
        sys.exit(_screenshot(sys.argv[2]))
    sys.exit("usage: python -m tests.test_dashboard child SPEC.json | screenshot OUT.png")
