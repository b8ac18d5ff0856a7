"""``ifd demo``: generate the demo scenario, ingest it, run the A/B backtest, evaluate it, write its
HTML report, print the summary.

The default run is ``configs/backtests/ab_v1_v3.toml``: IFD v3 trading, IFD v1 as its fallback,
scored against the scenario's labels next to the naive reference detector.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from pathlib import Path

from backtests.runner import RunResult
from backtests.runner import run_backtest
from catalogs.ingest import ingest
from ifd.evaluation.report import evaluate_run
from ifd.evaluation.report import write_evaluation
from ifd.scenario.generate import ScenarioConfig
from ifd.scenario.generate import generate_scenario

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "backtests" / "ab_v1_v3.toml"


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
    evaluation = evaluate_run(result.run_dir, scenario_dir / "labels.parquet", catalog=catalog)
    write_evaluation(result.run_dir, evaluation)
    from ifd.report.build import write_report

    report_file = write_report(result.run_dir).path
    _print_summary(result, scenario_dir, evaluation)
    print(f"report            {report_file} (open it in a browser)")
    return result


def _print_summary(result: RunResult, scenario_dir: Path, evaluation: dict) -> None:
    s = result.summary
    print(f"run folder        {result.run_dir}")
    print(f"records replayed  {s['records_processed']:,} of {s['records_total']:,} in {s['wall_seconds']} s "
          f"({s['records_per_second']:,} records/s)")
    print(f"labels            {scenario_dir / 'labels.parquet'}")
    for sid, entry in s["strategies"].items():
        res = entry.get("results", {})
        if "algorithm" in res:
            takeover = "; took over trading" if res["takeover_events"] else ""
            print(f"strategy {sid} ({res['algorithm']}, {res['mode']}{takeover}): {res['signals']} signals, "
                  f"{res['entries']} entries, {entry['orders']} orders, "
                  f"realized P&L {entry.get('realized_pnl_usd', 0.0):,.2f} USD, "
                  f"decision latency p99 {res['decision_latency_us']['p99']} us")
        else:
            print(f"strategy {sid}: {res.get('order_book_deltas', 0):,} book deltas, "
                  f"{res.get('trade_ticks', 0):,} trades over {res.get('instruments_seen', 0)} instruments, "
                  f"{entry['orders']} orders")
    print()
    print(f"{'algorithm':<20} {'precision':>9} {'recall':>7} {'F1':>6} {'signals':>8} {'FP straddle':>12}")
    for name in evaluation["algorithms"]:
        row = evaluation[name]
        print(f"{name:<20} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>6.3f} {row['signals']:>8} "
              f"{row['false_positives_by_cause']['mm_straddle']:>12}")
    print(f"(full table: {result.run_dir / 'evaluation.md'})")
