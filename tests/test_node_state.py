"""Node state in Redis (live/state.py), restarts, and the emergency stop, with real paper TradingNodes.

Every node runs in its own process (``tests.support.node_child``) on a generated session replayed
from a catalog by our replay data client, with the Sandbox venue, the RiskGuard with the hard
limits, and a real Redis on 127.0.0.1 (fixture ``redis_server``). The test strategy
(``tests.support.hold_strategy``) makes one losing round trip, then buys one contract with a
bracket and holds it, writing its status to a file after each position event.

- Restart: the first node is killed with SIGKILL while it holds the position; a second node with
  the same trader id and Redis, and no market data yet, has the position, its working stop and
  target, and the guard's trading-day figures back. A third node with data shows that the sandbox
  venue re-armed the restored stop/target (``live.sandbox``): one of them closes the position.
- A halt (a held future falling past the limits) survives a SIGKILL and a restart on the same day.
- Emergency stop: ``ifd live stop`` (SIGTERM through the pid file) and SIGINT cancel, flatten,
  halt and exit 0 with the session folder written.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from ifd.errors import IfdError
from live.state import StateSettings, check_redis, state_settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FUTURE = "NQZ6.GLBX"

CONFIG = """
[node]
trader_id = "{trader_id}"
timeout_connection = 30.0
timeout_disconnection = 5.0
timeout_post_stop = 1.0

[cache]
database = "redis"
host = "{host}"
port = {port}

[limits]
max_position_contracts = 1
max_daily_loss_usd = 50
max_total_risk_usd = 200
max_consecutive_losses = 3
max_drawdown_usd = 50
account_env = "IB_ACCOUNT_ID"

[sandbox]
venue = "GLBX"
starting_balances = ["1_000_000 USD"]
base_currency = "USD"
book_type = "L3_MBO"

[logging]
log_level = "INFO"

[replay]
catalog = "{catalog}"

[[strategies]]
strategy_path = "tests.support.hold_strategy:HoldStrategy"
config_path = "tests.support.hold_strategy:HoldConfig"

[strategies.config]
order_id_tag = "HOLD"
instrument_id = "{instrument}"
status_path = "{status}"
stop_points = {stop_points}
round_trips = {round_trips}
"""


@pytest.fixture(scope="module")
def catalog(small_session_catalog) -> Path:
    return small_session_catalog


class Node:
    """One paper node configuration (a fresh trader id, so each test has its own Redis keys)."""

    def __init__(self, tmp_path: Path, catalog: Path, redis: tuple[str, int], instrument: str,
                 stop_points: float = 1.0, round_trips: int = 1) -> None:
        self.tmp = tmp_path
        self.trader_id = f"IFD-T{uuid.uuid4().hex[:10].upper()}"
        self.status = tmp_path / "status.json"
        self.pid_dir = tmp_path / "pids"
        self.config = tmp_path / "paper.toml"
        self.config.write_text(CONFIG.format(trader_id=self.trader_id, host=redis[0], port=redis[1],
                                             catalog=catalog, instrument=instrument, status=self.status,
                                             stop_points=stop_points, round_trips=round_trips))
        self.catalog = catalog
        self.runs = 0

    def start(self, *, speed: float | None, start_delay_s: float = 0.5, duration_s: float | None = 60.0,
              stop_when_replayed: bool = False) -> tuple[subprocess.Popen, Path, Path]:
        self.runs += 1
        run = self.tmp / f"run{self.runs}"
        run.mkdir()
        spec = run / "spec.json"
        spec.write_text(json.dumps({
            "kind": "paper", "config": str(self.config), "catalog": str(self.catalog), "speed": speed,
            "start_delay_s": start_delay_s, "duration_s": duration_s, "summary": str(run / "summary.json"),
            "session_dir": str(run / "session"), "pid_dir": str(self.pid_dir),
            "stop_when_replayed": stop_when_replayed,
        }))
        log = (run / "node.log").open("w")
        env = {k: v for k, v in os.environ.items() if k not in ("DATABENTO_API_KEY", "IB_ACCOUNT_ID")}
        proc = subprocess.Popen([sys.executable, "-m", "tests.support.node_child", str(spec)], cwd=PROJECT_ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT)
        return proc, run / "summary.json", run / "node.log"

    def run(self, timeout_s: float = 90.0, **kwargs) -> dict:
        proc, summary, log = self.start(**kwargs)
        assert proc.wait(timeout=timeout_s) == 0, log.read_text()[-6000:]
        return json.loads(summary.read_text())

    def wait_status(self, proc: subprocess.Popen, log: Path, done, timeout_s: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-6000:]
            if self.status.exists():
                status = json.loads(self.status.read_text())
                if done(status):
                    return status
            time.sleep(0.1)
        proc.kill()
        pytest.fail(f"status not reached in {timeout_s} s: {self.status.read_text() if self.status.exists() else None}")


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)  # no stop, no save_state: only what was written as it happened
    proc.wait(timeout=10)


# -- restart --------------------------------------------------------------------------------------


def test_killed_node_restarts_with_its_position_and_guard_day(tmp_path, catalog, redis_server):
    node = Node(tmp_path, catalog, redis_server, FUTURE)
    proc, _, log = node.start(speed=2.0)
    status = node.wait_status(proc, log, lambda s: s["phase"] == "holding")
    time.sleep(1.5)  # the bracket's stop and target are accepted
    _kill(proc)
    assert status["closed"] == 1 and status["closed_realized_usd"] < 0  # one losing round trip
    held = status["open_positions"]
    assert len(held) == 1 and held[0]["quantity"] == 1.0

    # Restart with no market data yet: everything comes from Redis.
    back = node.run(speed=None, start_delay_s=3600, duration_s=3.0)
    assert [(p["position_id"], p["side"], p["quantity"], p["avg_px_open"]) for p in back["open_positions"]] == \
        [(p["position_id"], p["side"], p["quantity"], p["avg_px_open"]) for p in held]
    working = {o["type"] for o in back["open_orders"]}
    assert working == {"STOP_MARKET", "LIMIT"}, back["open_orders"]  # the bracket's stop and target
    figures = back["figures"]
    assert figures["day_realized_closed_usd"] == pytest.approx(status["closed_realized_usd"])
    assert figures["consecutive_losses"] == 1 and figures["halted"] is False
    assert back["trading_state"] == "ACTIVE" and back["limit_events"] == []

    # Restart with data: the sandbox venue re-armed the restored stop/target; one of them closes it.
    restored = {o["client_order_id"] for o in back["open_orders"]}
    node.run(speed=None, start_delay_s=0.5, duration_s=60.0, stop_when_replayed=True)
    positions = pd.read_csv(tmp_path / "run3" / "session" / "positions.csv")
    row = positions[positions["position_id"] == held[0]["position_id"]].iloc[-1]
    assert row["closing_order_id"] in restored, row.to_dict()


def test_halt_survives_a_kill_and_restart(tmp_path, catalog, redis_server):
    # Long the future with a far stop (8 points) and hold it while it falls: the guard halts
    # (daily loss, or drawdown when the position was up first) and flattens.
    node = Node(tmp_path, catalog, redis_server, FUTURE, stop_points=8.0, round_trips=0)
    proc, _, log = node.start(speed=4.0)
    status = node.wait_status(proc, log, lambda s: s["closed"] >= 1)
    time.sleep(1.5)
    _kill(proc)
    assert status["closed"] == 1 and status["open_positions"] == [], status  # flattened by the guard

    back = node.run(speed=None, start_delay_s=3600, duration_s=3.0)
    assert back["figures"]["halted"] is True
    assert back["trading_state"] == "HALTED"  # the RiskEngine denies new orders again
    assert back["open_positions"] == []
    halts = [e for e in back["limit_events"] if e["action"] == "halt"]
    assert len(halts) == 1 and halts[0]["limit"] in ("daily_loss", "drawdown"), back["limit_events"]


# -- emergency stop -------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["ifd live stop", "SIGINT"])
def test_emergency_stop_cancels_flattens_and_exits(tmp_path, catalog, redis_server, how):
    node = Node(tmp_path, catalog, redis_server, FUTURE)
    proc, summary_path, log = node.start(speed=1.0, duration_s=120.0)
    node.wait_status(proc, log, lambda s: s["phase"] == "holding")
    time.sleep(1.0)
    if how == "SIGINT":
        proc.send_signal(signal.SIGINT)
    else:
        out = subprocess.run([sys.executable, "-m", "ifd.cli", "live", "stop", "--pid-dir", str(node.pid_dir)],
                             cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["trader_id"] == node.trader_id
    assert proc.wait(timeout=60) == 0, log.read_text()[-6000:]
    summary = json.loads(summary_path.read_text())
    assert summary["stopped_by"] == ("SIGINT" if how == "SIGINT" else "SIGTERM")
    assert summary["open_positions"] == [] and summary["open_orders"] == []
    assert summary["trading_state"] == "HALTED"
    assert [e["limit"] for e in summary["limit_events"]] == ["emergency_stop"]
    assert (summary_path.parent / "session" / "summary.json").exists()
    assert not list(node.pid_dir.glob("*.pid"))  # the pid file is gone with the process


def test_live_stop_without_a_running_node_fails_cleanly(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ifd.cli", "live", "stop", "--pid-dir", str(tmp_path)],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode != 0
    assert out.stderr.strip().splitlines()[-1] == f"ifd: error: no running node found in {tmp_path}"


# -- the [cache] section --------------------------------------------------------------------------


@pytest.mark.parametrize(("table", "needle"), [
    ({"database": "postgres"}, "[cache] database must be one of redis, none"),
    ({"port": 70000}, "[cache] port must be 1-65535"),
    ({"buffer_interval_ms": 5000}, "[cache] buffer_interval_ms must be 1-1000"),
    ({"password_env": "IFD_TEST_UNSET_REDIS_PW"}, "environment variable IFD_TEST_UNSET_REDIS_PW is empty or unset"),
    ({"colour": "red"}, "[cache] unknown key(s) colour"),
])
def test_cache_section_errors_name_the_setting(table, needle):
    with pytest.raises(IfdError) as info:
        state_settings(Path("x.toml"), table, env={})
    assert needle in str(info.value) and str(info.value).startswith("x.toml: ")


def test_limited_nodes_require_redis():
    with pytest.raises(IfdError, match=r'\[cache\] is missing'):
        state_settings(Path("x.toml"), None, required=True)
    with pytest.raises(IfdError, match=r'\[cache\] database must be "redis" here'):
        state_settings(Path("x.toml"), {"database": "none"}, required=True)


def test_unreachable_redis_is_one_clear_line():
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(IfdError) as info:
        check_redis(StateSettings(database="redis", host="127.0.0.1", port=port), timeout_s=1.0)
    message = str(info.value)
    assert message.startswith(f"Redis at 127.0.0.1:{port} is unreachable") and "\n" not in message


def test_paper_node_refuses_to_build_without_its_redis(tmp_path, catalog):
    import socket

    from live.paper import build_paper_node

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "paper.toml"
    config.write_text(CONFIG.format(trader_id="IFD-NOREDIS", host="127.0.0.1", port=port, catalog=catalog,
                                    instrument=FUTURE, status=tmp_path / "s.json", stop_points=1.0, round_trips=1))
    with pytest.raises(IfdError, match="is unreachable"):
        build_paper_node(config, env={})
