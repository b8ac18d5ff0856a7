"""The backtest runner on a real catalog: run folder contents, progress, failures leave nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ifd.cli import main

pytestmark = pytest.mark.real_data

ESM4_MBO = "nautilus_trader/orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst"
ESM4_DEF = "nautilus_trader/orderbooks_definition.dbn.zst"
DEMO = Path("configs/backtests/demo.toml")


@pytest.fixture(scope="module")
def esm4_catalog(tmp_path_factory, shared_data) -> Path:
    catalog = tmp_path_factory.mktemp("esm4") / "catalog"
    code = main(["catalog", "ingest", str(shared_data / ESM4_MBO), str(shared_data / ESM4_DEF), "--catalog", str(catalog)])
    assert code == 0
    return catalog


def test_run_folder_has_summary_and_reports(esm4_catalog, tmp_path, capsys):
    config = tmp_path / "small_chunks.toml"
    config.write_text(DEMO.read_text().replace("chunk_size = 100_000", "chunk_size = 2_000"))
    run_dir = tmp_path / "run"
    assert main(["backtest", "run", str(config), "--catalog", str(esm4_catalog), "--out", str(run_dir)]) == 0
    err = capsys.readouterr().err
    # Streamed in chunks: the final progress line shows every record processed.
    assert "replayed 13,791 of 13,791 records (100%)" in err

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["records_processed"] == summary["records_total"] == 13_791
    assert summary["wall_seconds"] > 0
    assert summary["catalog_rows"] == {"OrderBookDelta": {"ESM4.GLBX": 13_786}, "TradeTick": {"ESM4.GLBX": 5}}
    strategy = summary["strategies"]["FlowCounter-001"]
    assert strategy["orders"] == 0
    assert strategy["results"]["per_instrument"]["ESM4.GLBX"]["order_book_deltas"] == 13_786
    for name in ("orders", "fills", "positions", "account"):
        assert (run_dir / f"{name}.csv").exists()
    account = pd.read_csv(run_dir / "account.csv")
    assert len(account) >= 1  # the starting balance event
    assert not list(tmp_path.glob(".run.partial-*"))


def test_failing_strategy_leaves_no_run_folder(esm4_catalog, tmp_path, capsys):
    config = tmp_path / "broken.toml"
    config.write_text(DEMO.read_text().replace("strategies.flow_counter:FlowCounter\"", "strategies.flow_counter:NoSuchStrategy\""))
    run_dir = tmp_path / "run"
    assert main(["backtest", "run", str(config), "--catalog", str(esm4_catalog), "--out", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("ifd: error:") and "backtest failed" in err and "NoSuchStrategy" in err
    assert not run_dir.exists()
    assert not list(tmp_path.glob(".run*"))


def test_existing_run_folder_is_not_overwritten(esm4_catalog, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "summary.json").write_text("{}")
    assert main(["backtest", "run", str(DEMO), "--catalog", str(esm4_catalog), "--out", str(run_dir)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (run_dir / "summary.json").read_text() == "{}"
