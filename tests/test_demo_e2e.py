"""The demo path end to end on a small generated session, and the book check on generated MBO."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from backtests.demo import run_demo
from catalogs.listing import describe_catalog
from ifd.cli import main
from ifd.scenario.generate import ScenarioConfig
from ifd.scenario.generate import generate_scenario
from tests.support.nautilus_book import compare_books

SMALL = ScenarioConfig(seed=11, strikes=4, expiries=1, minutes=12, rate=150.0)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    # The flow counter sees every book delta and trade: the replay's counts must equal the catalog's.
    return workdir, run_demo(workdir, scenario=SMALL, config=Path("configs/backtests/demo.toml"))


def test_demo_replays_exactly_what_the_catalog_holds(demo_run):
    workdir, result = demo_run
    summary = json.loads((result.run_dir / "summary.json").read_text())
    catalog = describe_catalog(workdir / "catalog")["data_types"]
    deltas = catalog["order_book_deltas"]["instruments"]
    trades = catalog["trade_tick"]["instruments"]

    assert summary["records_processed"] == summary["records_total"]
    assert summary["records_processed"] == catalog["order_book_deltas"]["rows"] + catalog["trade_tick"]["rows"]
    assert summary["records_processed"] > 10_000

    results = summary["strategies"]["FlowCounter-001"]["results"]
    assert results["order_book_deltas"] == catalog["order_book_deltas"]["rows"] > 0
    assert results["trade_ticks"] == catalog["trade_tick"]["rows"] > 0
    # Every instrument of the chain (future + 4 strikes x call/put) reached the strategy, row for row.
    assert len(deltas) == 1 + 4 * 2
    for instrument, row in deltas.items():
        assert results["per_instrument"][instrument]["order_book_deltas"] == row["rows"]
    for instrument, row in trades.items():
        assert results["per_instrument"][instrument]["trade_ticks"] == row["rows"]


def test_demo_catalog_counts_equal_the_generated_dbn(demo_run):
    workdir, _ = demo_run
    import databento as db

    records = db.DBNStore.from_file(workdir / "scenario" / "mbo.dbn.zst").to_ndarray()
    book = sum(int((records["action"] == a).sum()) for a in (b"A", b"C", b"M", b"R"))
    catalog = describe_catalog(workdir / "catalog")["data_types"]
    assert catalog["order_book_deltas"]["rows"] == book
    assert catalog["trade_tick"]["rows"] == int((records["action"] == b"T").sum())
    labels = pq.read_table(workdir / "scenario" / "labels.parquet")
    assert set(labels.column("kind").to_pylist()) >= {"institutional", "mm_straddle", "volume_noise"}


def test_generated_multi_instrument_stream_passes_the_book_check(tmp_path):
    generate_scenario(tmp_path, SMALL)
    comparison = compare_books(tmp_path / "definition.dbn.zst", tmp_path / "mbo.dbn.zst", n_checkpoints=120)
    assert comparison.compared >= 100 * 9 // 2, comparison.report()
    assert comparison.ok, comparison.report()
    assert comparison.full_depth > 0


def test_cli_generate_then_ls(tmp_path, capsys):
    out = tmp_path / "scenario"
    args = ["scenario", "generate", "--out", str(out), "--seed", "5", "--strikes", "2", "--expiries", "1",
            "--minutes", "5", "--rate", "60"]
    assert main(args) == 0
    generated = json.loads(capsys.readouterr().out)
    assert generated["instruments"] == 1 + 2 * 2
    assert main(["catalog", "ingest", str(out / "mbo.dbn.zst"), str(out / "definition.dbn.zst"),
                 "--catalog", str(tmp_path / "cat")]) == 0
    capsys.readouterr()
    assert main(["catalog", "ls", "--catalog", str(tmp_path / "cat"), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    kinds = {i["type"] for i in listing["instruments"]}
    assert kinds == {"FuturesContract", "OptionContract"}
    options = [i for i in listing["instruments"] if i["type"] == "OptionContract"]
    assert all(i["multiplier"] == "20" and i["underlying"] == generated["future"] for i in options)
    for name, info in listing["data_types"].items():
        assert all(row["rows"] > 0 for row in info["instruments"].values()), name


def test_bad_scenario_settings_are_one_line_errors(tmp_path, capsys):
    assert main(["scenario", "generate", "--out", str(tmp_path), "--strikes", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ifd: error:") and "strikes" in err and "\n" not in err


def test_default_demo_runs_the_ab_backtest_and_evaluates_it(tmp_path, capsys):
    result = run_demo(tmp_path, scenario=SMALL)
    out = capsys.readouterr().out
    summary = json.loads((result.run_dir / "summary.json").read_text())
    modes = {row["algorithm"]: row["mode"] for row in summary["comparison"]}
    assert modes == {"ifd_v3": "trade", "ifd_v1": "fallback"}
    evaluation = json.loads((result.run_dir / "evaluation.json").read_text())
    assert {"ifd_v1", "ifd_v3", "naive_net_premium"} <= set(evaluation)
    assert "naive_net_premium" in out and "ifd_v3" in out
    assert (result.run_dir / "evaluation.md").exists()
