"""Run the paper TradingNode against our loopback Databento gateway in a private mount namespace.

NautilusTrader's live client connects to the built-in host glbx-mdp3.lsg.databento.com:13000, so
the node runs in a child process (``unshare -m``) whose /etc/hosts (bind-mounted) maps that host
to 127.0.0.1; the child runs the gateway on 127.0.0.1:13000 too, then ``live.paper.run_paper``
until the replay is delivered (or a timeout), and writes a JSON result (the strategies'
summaries, the gateway's sessions) for the test to read.

``run_paper_child(tmp_path, config_text, mbo, definition, ...)`` does it all from a test;
``namespace_or_skip(tmp_path)`` skips when the namespace is refused.
By hand (inside such a namespace): ``python -m tests.support.live_harness child SPEC.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapters.databento.dbn_files import open_dbn

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KEY = "db-HARNESStestKEYharnessKEY12345"  # 32 characters, like a real key
GATEWAY_HOST = "glbx-mdp3.lsg.databento.com"
GATEWAY_PORT = 13000


def namespace_or_skip(tmp_path: Path) -> Path:
    """A hosts file mapping the gateway host to 127.0.0.1; skip when ``unshare -m`` is refused."""
    if not shutil.which("unshare") or not shutil.which("mount"):
        pytest.skip("unshare/mount not available")
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n127.0.0.1 {GATEWAY_HOST}\n")
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         f"mount --bind {hosts} /etc/hosts && getent hosts {GATEWAY_HOST}"],
        capture_output=True, text=True, timeout=20, check=False,
    )
    if probe.returncode != 0 or "127.0.0.1" not in probe.stdout:
        pytest.skip(f"private mount namespace refused: {probe.stderr.strip() or probe.stdout.strip()}")
    return hosts


def run_paper_child(
    tmp_path: Path,
    config_text: str,
    mbo: Path,
    definition: Path,
    *,
    timeout_s: float = 120.0,
    session_dir: Path | None = None,
    drop_after_records: int | None = None,
    drop_sessions: int = 1,
    stable_s: float = 2.0,
    after_drop_s: float = 20.0,
    gateway_options: dict | None = None,
) -> tuple[dict, str]:
    """Run the node in the namespace child; returns (the child's JSON result, its log).

    ``gateway_options``: further ``DatabentoGateway`` keyword arguments (JSON values), e.g.
    ``{"speed": 30.0, "sync_schemas": ["mbo", "trades"], "sync_gap_s": 0.002}``.
    """
    hosts = namespace_or_skip(tmp_path)
    config = tmp_path / "paper.toml"
    config.write_text(config_text)
    out = tmp_path / "result.json"
    spec = tmp_path / "child.json"
    spec.write_text(json.dumps({
        "config": str(config), "mbo": str(mbo), "definition": str(definition), "out": str(out),
        "timeout_s": timeout_s, "session_dir": str(session_dir) if session_dir else None,
        "drop_after_records": drop_after_records, "drop_sessions": drop_sessions,
        "stable_s": stable_s, "after_drop_s": after_drop_s, "gateway_options": gateway_options or {},
    }))
    child = (
        f"mount --bind {hosts} /etc/hosts && exec {sys.executable} -m tests.support.live_harness child {spec}"
    )
    env = {k: v for k, v in os.environ.items() if k != "DATABENTO_API_KEY"} | {"DATABENTO_API_KEY": KEY}
    proc = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", child],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    try:
        log, _ = proc.communicate(timeout=timeout_s + 60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        pytest.fail(f"paper node child did not finish:\n{log[-4000:]}")
    assert proc.returncode == 0, log[-6000:]
    return json.loads(out.read_text()), log


# ---------------------------------------------------------------------------------------- child


def _session_rows(gateway) -> list[dict]:
    return [
        {
            "session_id": s.session_id,
            "schemas": sorted({sub.schema for sub in s.subscriptions}),
            "stype_in": sorted({sub.stype_in for sub in s.subscriptions}),
            "snapshot": any(sub.snapshot for sub in s.subscriptions),
            "records_sent": s.records_sent,
            "heartbeats_sent": s.heartbeats_sent,
            "dropped": bool(getattr(s, "dropped", False)),
            "error": s.error,
            "synced": bool(getattr(s, "synced", False)),
        }
        for s in gateway.sessions
    ]


def _live_rows(path: Path) -> list[dict]:
    from adapters.databento.ledger import Ledger

    if not path.is_file():
        return []
    with Ledger(path, readonly=True) as ledger:
        return [{"schema": r.schema, "window": r.window, "records": r.records, "bytes": r.received_bytes,
                 "cost_usd": r.actual_cost_usd} for r in ledger.rows()]


def _child(spec_path: str) -> int:
    """Gateway on 127.0.0.1:13000 + the paper node until everything is delivered (or timeout)."""
    import logging

    from live.databento_gateway import DatabentoGateway
    from live.paper import run_paper

    spec = json.loads(Path(spec_path).read_text())
    logging.basicConfig(level=logging.INFO, format="gateway %(message)s")
    gateway = DatabentoGateway(
        {("GLBX.MDP3", "mbo"): spec["mbo"], ("GLBX.MDP3", "definition"): spec["definition"]},
        api_keys=[KEY],
        host="127.0.0.1",
        port=GATEWAY_PORT,
        heartbeat_interval_s=1,
        drop_after_records=spec["drop_after_records"],
        drop_sessions=spec["drop_sessions"],
        **spec.get("gateway_options", {}),
    )
    gateway.start()
    state = {"last": None, "since": time.monotonic(), "dropped_at": None}

    def replayed(schema: str) -> bool:
        # A session goes to heartbeats once its replay is sent.
        return any(
            s.heartbeats_sent > 0 and any(sub.schema == schema for sub in s.subscriptions)
            for s in gateway.sessions
        )

    def delivered(node) -> bool:
        counts = tuple(
            (s.summary().get("order_book_deltas"), s.summary().get("trade_ticks"), s.summary().get("trades_seen"))
            for s in node.trader.strategies()
        )
        now = time.monotonic()
        if counts != state["last"]:
            state["last"], state["since"] = counts, now
        stable = now - state["since"] >= spec["stable_s"]  # counts stable: the node has drained
        if any(getattr(s, "dropped", False) for s in gateway.sessions):
            state["dropped_at"] = state["dropped_at"] or now
            if replayed("trades") and now - state["dropped_at"] >= spec["after_drop_s"] and stable:
                return True  # no recovery within the grace period
        # A synced gateway (sync_schemas) replays its market on one thread: wait for it to finish.
        markets_done = all(m.finished.is_set() for m in getattr(gateway, "markets", {}).values() if m.started.is_set())
        return replayed("mbo") and replayed("trades") and markets_done and stable

    session_dir = spec["session_dir"]
    # The node prices its live streaming (list_unit_prices) before it connects, and meters it into
    # the budget ledger: a loopback historical gateway and a budget of this run's own.
    from adapters.databento.historical_gateway import HistoricalGateway, HistoricalStore

    work = Path(spec["out"]).parent
    (work / "budget.toml").write_text(
        f"[budget]\ndaily_usd = 8\nmonthly_usd = 200\nledger = \"{work / 'ledger.sqlite'}\"\nalerts = \"{work / 'alerts.toml'}\"\n")
    (work / "alerts.toml").write_text("[console]\nenabled = false\n[log_file]\nenabled = false\n"
                                      "[history]\nenabled = false\n")
    prices = HistoricalGateway(HistoricalStore.from_paths([spec["mbo"], spec["definition"]]), api_keys=[KEY],
                               unit_prices={"mbo": 1.0, "trades": 1.0, "definition": 1.0})
    prices.start()
    os.environ.update(prices.client_env())
    os.environ.update({"DATABENTO_GATEWAY": prices.url, "IFD_BUDGET_CONFIG": str(work / "budget.toml")})
    try:
        result = run_paper(spec["config"], float(spec["timeout_s"]), stop_when=delivered, session_dir=session_dir)
    finally:
        gateway.stop()
        prices.stop()
    result["gateway_sessions"] = _session_rows(gateway)
    result["ledger_live_rows"] = _live_rows(work / "ledger.sqlite")
    result["gateway_markets"] = {ds: market.stats for ds, market in getattr(gateway, "markets", {}).items()}
    Path(spec["out"]).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "child":
        sys.exit(_child(sys.argv[2]))
    sys.exit("usage: python -m tests.support.live_harness child SPEC.json")


def sent_counts(mbo: Path) -> tuple[int, int]:
    """Book deltas (A/C/M/R records) and trades (T records) a gateway replaying ``mbo`` sends."""
    actions = open_dbn(mbo).action_counts()
    return sum(actions.get(a, 0) for a in ("A", "C", "M", "R")), actions.get("T", 0)
