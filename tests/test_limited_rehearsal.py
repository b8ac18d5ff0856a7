"""The limited-live node in a real TradingNode, with the Sandbox standing in for Interactive Brokers.

``ifd live limited configs/... --sandbox --replay CATALOG`` runs the limited node exactly as
configured for live trading (the hard limits, the RiskGuard, NautilusTrader's RiskEngine, Redis
state, the account and IB settings validated) but with the Sandbox execution client filling
against the replayed L3 book. A deliberately losing strategy (tests/support/losing_strategy.py)
fires bursts of three brackets at once (market entry, stop 8 points away: $160 of risk) on the
future about 29 s into the session, where it falls, and holds; when flat it tries again.

Shown here: trading halts at the $50 daily loss (RiskEngine HALTED; the guard re-checks on every
book update of an open position, so it halts at the first bid that marks the loss at $50 or
more), every position is flat at the end, no fill ever takes a position past 1 contract (the bursts are denied), nothing is accepted
after the halt but the guard's own flattening, and neither the account id, the IB settings nor
a Databento key appear in anything the run prints or writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FUTURE = "NQZ6.GLBX"
ACCOUNT = "DU9988776"
KEY = "db-REHEARSALkeyREHEARSALkey12345"
ENV = {"IB_ACCOUNT_ID": ACCOUNT, "IB_HOST": "127.0.0.1", "IB_PORT": "4002", "IB_CLIENT_ID": "23",
       "DATABENTO_API_KEY": KEY}

LOSING = f"""
[[strategies]]
strategy_path = "tests.support.losing_strategy:LosingStrategy"
config_path = "tests.support.losing_strategy:LosingConfig"

[strategies.config]
instrument_id = "{FUTURE}"
period_ms = 15500
burst = 3
hold = true
stop_points = 8.0
"""


def _config(tmp_path: Path, redis: tuple[str, int]) -> tuple[Path, str]:
    text = (PROJECT_ROOT / "configs" / "live" / "limited.toml").read_text()
    trader_id = f"IFD-R{uuid.uuid4().hex[:10].upper()}"
    text = text.replace('trader_id = "IFD-LIMITED"', f'trader_id = "{trader_id}"')
    text = text.replace('host = "127.0.0.1"\nport = 6379', f'host = "{redis[0]}"\nport = {redis[1]}')
    text = text[: text.index("[[strategies]]")] + LOSING  # the shipped limits, a losing strategy
    path = tmp_path / "limited.toml"
    path.write_text(text)
    return path, trader_id


def test_losing_session_halts_at_the_daily_loss_and_stays_within_one_contract(
    tmp_path, small_session_catalog, redis_server,
):
    config, trader_id = _config(tmp_path, redis_server)
    session = tmp_path / "session"
    cmd = [sys.executable, "-m", "ifd.cli", "live", "limited", str(config), "--sandbox",
           "--replay", str(small_session_catalog), "--speed", "2", "--duration", "24",
           "--session", str(session), "--summary", str(tmp_path / "result.json"), "--pid-dir", str(tmp_path / "pids")]
    env = {k: v for k, v in os.environ.items() if k not in ENV} | ENV
    run = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=180, check=False)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    result = json.loads((tmp_path / "result.json").read_text())

    # Halted once, on the daily loss, flat at the end.
    halts = [e for e in result["limit_events"] if e["action"] == "halt"]
    assert len(halts) == 1 and halts[0]["limit"] == "daily_loss" and 50.0 <= halts[0]["value"] < 60.0, \
        result["limit_events"]
    assert result["trading_state"] == "HALTED" and result["figures"]["halted"] is True
    assert result["open_positions"] == [] and result["open_orders"] == []
    # The bursts: denied by the position cap before the halt.
    denied = [e for e in result["limit_events"] if e["limit"] == "max_position"]
    assert denied and all(e["action"] == "deny" and e["ts"] < halts[0]["ts"] for e in denied)

    # Never more than one contract: the filled orders in fill order.
    fills = pd.read_csv(session / "fills.csv").sort_values("ts_last")
    signed = fills["filled_qty"].where(fills["side"] == "BUY", -fills["filled_qty"])
    net = signed.cumsum()
    assert net.abs().max() == 1 and net.iloc[-1] == 0
    # After the halt only the guard's own flattening orders were filled.
    halt_ts = halts[0]["ts"]
    orders = pd.read_csv(session / "orders.csv")
    late = orders[(orders["ts_init"] >= halt_ts) & ~orders["client_order_id"].str.startswith("RG-")]
    assert set(late["status"]) <= {"DENIED"}, late[["client_order_id", "status"]]
    assert (orders[orders["client_order_id"].str.startswith("RG-")]["status"] == "FILLED").all()

    summary = json.loads((session / "summary.json").read_text())
    assert [e["limit"] for e in next(iter(summary["limit_events"].values())) if e["action"] == "halt"] == ["daily_loss"]

    # No secrets in anything the run printed or wrote.
    secrets = [ACCOUNT, KEY]
    written = [tmp_path / "result.json", *session.iterdir()]
    for text in [output] + [f.read_text(errors="replace") for f in written]:
        for secret in secrets:
            assert secret not in text
    assert trader_id in output  # the node did log (under its trader id)
