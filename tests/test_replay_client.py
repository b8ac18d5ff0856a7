"""The replay data client in a paper TradingNode: a generated, ingested session streamed from the catalog.

Each node runs in a child process (one NautilusTrader node/logger per process), which writes the
strategies' summaries and the replay client's stats to a JSON file.
Run by hand: ``python -m tests.test_replay_client child CONFIG CATALOG_OR_DBN SPEED OUT``.
Signal parity with ``ifd backtest run`` (v1 and v3, through ``ifd live paper --replay CATALOG``)
is shown in ``tests/test_paper_parity.py``, next to the live client's, on the same session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ifd.errors import IfdError

PROJECT_ROOT = Path(__file__).resolve().parents[1]

CONFIG = """
[node]
trader_id = "IFD-REPLAYTEST"
timeout_connection = 30.0
timeout_disconnection = 5.0
timeout_post_stop = 1.0

[sandbox]
venue = "GLBX"
starting_balances = ["1_000_000 USD"]
base_currency = "USD"
book_type = "L3_MBO"

[logging]
log_level = "WARNING"

[replay]
catalog = "CATALOG"
speed = 0
start_delay_s = 0.5

[[strategies]]
strategy_path = "strategies.flow_counter:FlowCounter"
config_path = "strategies.flow_counter:FlowCounterConfig"

[strategies.config]
order_id_tag = "COUNT"
"""


def _child(config: str, source: str, speed: str, out: str) -> int:
    from live.paper import build_paper_node, load_paper_spec, run_paper, with_replay
    from live.replay_client import replay_clients, replay_finished

    spec = load_paper_spec(config)
    paths = source.split(",")
    if len(paths) == 1 and Path(paths[0]).is_dir():
        spec = with_replay(spec, catalog=paths[0], speed=float(speed), start_delay_s=0.5)
    else:
        spec = with_replay(spec, dbn_files=paths, speed=float(speed), start_delay_s=0.5)
    node = build_paper_node(spec, env={})  # no API key needed
    client = replay_clients(node)[0]
    started = time.monotonic()
    result = run_paper(node, 120.0, stop_when=replay_finished, poll_s=0.05)
    result["wall_seconds"] = time.monotonic() - started
    result["replay_seconds"] = client.replay_seconds
    result["published"] = client.published
    Path(out).write_text(json.dumps(result, indent=2, default=str))
    return 0


def _run_child(tmp_path: Path, source: str, speed: float, config: str = CONFIG) -> dict:
    path = tmp_path / "paper.toml"
    path.write_text(config.replace("CATALOG", source))
    out = tmp_path / "result.json"
    cmd = [sys.executable, "-m", "tests.test_replay_client", "child", str(path), source, str(speed), str(out)]
    env = {k: v for k, v in os.environ.items() if k != "DATABENTO_API_KEY"}
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    from catalogs.ingest import ingest
    from ifd.scenario.generate import ScenarioConfig, generate_scenario

    root = tmp_path_factory.mktemp("replay")
    generate_scenario(root / "scenario", ScenarioConfig(seed=5, strikes=4, expiries=1, minutes=8, rate=100))
    files = [root / "scenario" / "definition.dbn.zst", root / "scenario" / "mbo.dbn.zst"]
    ingest(files, root / "catalog")
    return root / "catalog", files


def _catalog_rows(catalog: Path, kind: str) -> int:
    return sum(pq.read_metadata(f).num_rows for f in (catalog / "data" / kind).rglob("*.parquet"))


def test_replay_spec_needs_no_databento_section_or_key(tmp_path):
    from live.paper import load_paper_spec, node_config

    path = tmp_path / "paper.toml"
    path.write_text(CONFIG.replace("CATALOG", str(tmp_path)))
    spec = load_paper_spec(path)
    assert spec.databento is None and spec.replay.catalog_path == str(tmp_path)
    assert spec.replay.speed is None  # 0 = as fast as possible
    assert set(node_config(spec).data_clients) == {"REPLAY"}
    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG.replace('catalog = "CATALOG"', 'dbn_files = []'))
    with pytest.raises(IfdError, match=r"\[replay\]: give a catalog folder or DBN files"):
        load_paper_spec(bad)


def test_paper_node_replays_the_whole_catalog(tmp_path, session):
    catalog, _ = session
    deltas = _catalog_rows(catalog, "order_book_deltas")
    trades = _catalog_rows(catalog, "trade_tick")
    assert deltas > 1000 and trades > 0
    result = _run_child(tmp_path, str(catalog), 0)
    assert result["stopped_by"] == "stop condition"
    counter = result["strategies"]["FlowCounter-COUNT"]
    assert result["published"] == {"order_book_deltas": deltas, "trade_ticks": trades, "instruments": 9}
    assert counter["order_book_deltas"] == deltas
    assert counter["trade_ticks"] == trades
    assert counter["instruments_seen"] == 9  # 8 options + the future


def test_paper_node_replays_dbn_files(tmp_path, session):
    _, files = session
    result = _run_child(tmp_path, ",".join(str(f) for f in files), 0)
    counter = result["strategies"]["FlowCounter-COUNT"]
    assert result["published"]["instruments"] == 9
    assert counter["order_book_deltas"] == result["published"]["order_book_deltas"] > 1000
    assert counter["trade_ticks"] == result["published"]["trade_ticks"] > 0


def test_real_time_replay_takes_about_the_recorded_duration(tmp_path, session):
    """A 3-second slice (the first instrument's definitions through its first records) at 1x."""
    from nautilus_trader.model.data import OrderBookDelta, TradeTick
    from nautilus_trader.persistence.catalog.parquet import ParquetDataCatalog

    catalog, _ = session
    source = ParquetDataCatalog(str(catalog))
    first = min(d.ts_init for d in source.query(OrderBookDelta))
    slice_root = tmp_path / "slice"
    # A catalog holding the first 3 s only, written with the catalog itself.
    end = first + 3_000_000_000
    sliced = ParquetDataCatalog(str(slice_root))
    sliced.write_data(source.instruments())
    sliced.write_data(source.query(OrderBookDelta, start=first, end=end))
    trades = source.query(TradeTick, start=first, end=end)
    if trades:
        sliced.write_data(trades)
    span_s = (max(d.ts_init for d in source.query(OrderBookDelta, start=first, end=end)) - first) / 1e9
    assert span_s > 2.0
    result = _run_child(tmp_path, str(slice_root), 1.0)
    assert result["stopped_by"] == "stop condition"
    assert span_s * 0.9 <= result["replay_seconds"] <= span_s + 2.0, (span_s, result["replay_seconds"])


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "child":
        sys.exit(_child(*sys.argv[2:]))
    sys.exit("usage: python -m tests.test_replay_client child CONFIG CATALOG_OR_DBN SPEED OUT")
