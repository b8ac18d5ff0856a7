"""``ifd demo``: generate the demo scenario, ingest it, run the demo backtest, print the summary."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from pathlib import Path

from backtests.runner import RunResult
from backtests.runner import run_backtest
from catalogs.ingest import ingest
from ifd.scenario.generate import ScenarioConfig
from ifd.scenario.generate import generate_scenario

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "backtests" / "demo.toml"


def run_demo(
    workdir: Path,
    seed: int = 7,
    config: Path = DEMO_CONFIG,
    scenario: ScenarioConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> RunResult:
    """The whole path on data the project makes itself: DBN -> catalog -> BacktestNode -> run folder."""
    say = progress or (lambda _msg: None)
    scenario_dir = workdir / "scenario"
    catalog = workdir / "catalog"
    # A fresh catalog each time, so the demo's counts are this scenario's alone.
    shutil.rmtree(catalog, ignore_errors=True)

    say(f"generating scenario (seed {seed}) into {scenario_dir}")
    generate_scenario(scenario_dir, scenario or ScenarioConfig(seed=seed), progress=say)

    report = ingest(
        [scenario_dir / "definition.dbn.zst", scenario_dir / "mbo.dbn.zst"],
        catalog,
        progress=say,
    )
    say(
        f"ingested {report.records:,} records in {report.seconds:.1f} s "
        f"({report.records_per_second:,.0f} records/s)",
    )
    run_dir = workdir / "runs" / (datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-demo")
    result = run_backtest(config, catalog=catalog, out=run_dir, progress=say)
    _print_summary(result, scenario_dir)
    return result


def _print_summary(result: RunResult, scenario_dir: Path) -> None:
    s = result.summary
    print(f"run folder        {result.run_dir}")
    print(f"records replayed  {s['records_processed']:,} of {s['records_total']:,} in {s['wall_seconds']} s "
          f"({s['records_per_second']:,} records/s)")
    print(f"labels            {scenario_dir / 'labels.parquet'}")
    for sid, entry in s["strategies"].items():
        res = entry.get("results", {})
        print(f"strategy {sid}: {res.get('order_book_deltas', 0):,} book deltas, "
              f"{res.get('trade_ticks', 0):,} trades over {res.get('instruments_seen', 0)} instruments, "
              f"{entry['orders']} orders")
