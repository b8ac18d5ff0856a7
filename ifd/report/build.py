"""``write_report``: a run folder (and its catalog) -> one self-contained ``report.html``."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from pathlib import Path

import pandas as pd

from ifd import __version__
from ifd.errors import IfdError
from ifd.evaluation.report import evaluate_run
from ifd.report import figures
from ifd.report import tables
from ifd.report.market_data import MarketData
from ifd.report.market_data import load_market_data
from ifd.report.page import Section
from ifd.report.page import figure_html
from ifd.report.page import render_page
from ifd.report.page import text
from ifd.report.pressure_grid import busiest_strikes
from ifd.report.pressure_grid import pressure_grid
from ifd.report.run_folder import LATENCY_FILE
from ifd.report.run_folder import QUALITY_FILE
from ifd.report.run_folder import REPORT_FILE
from ifd.report.run_folder import RunFolder
from ifd.report.run_folder import read_run_folder
from ifd.report.tearsheet import build_tearsheet
from ifd.report.tearsheet import frame_html

DEFAULT_BUCKET_S = 60.0
MAX_HEATMAP_STRIKES = 60


@dataclass(frozen=True)
class ReportResult:
    """Where the report went, how big it is, how long it took, and the signals drawn per algorithm."""

    path: Path
    size_bytes: int
    seconds: float
    signals: dict[str, int]


@dataclass
class Inputs:
    """Everything one page is drawn from."""

    run: RunFolder
    market: MarketData
    evaluation: dict | None
    evaluation_source: str
    bucket_ns: int


def _utc(ns: int | None) -> str:
    return "-" if ns is None else pd.Timestamp(int(ns), unit="ns", tz="UTC").strftime("%Y-%m-%d %H:%M:%S UTC")


def _bucket_text(bucket_ns: int) -> str:
    seconds = bucket_ns / 1e9
    return f"{seconds / 60:g} min" if seconds >= 60 and seconds % 60 == 0 else f"{seconds:g} s"


def signals_section(inputs: Inputs) -> Section:
    run, market = inputs.run, inputs.market
    signals = run.signals
    notes = list(run.notes)
    if not market.available:
        notes.append(f"{market.note}: the signals are drawn at their option's strike, without the price line")
    elif market.note:
        notes.append(market.note)
    elif market.underlying_trades.empty:
        notes.append(f"no {market.underlying} trades in the run's time range: signals at their option's strike")
    counts = []
    for algorithm in figures.ordered_algorithms(signals):
        own = signals[signals["algorithm"].astype(str) == algorithm]
        counts.append(f"{algorithm}: {len(own)} signals, {int(own['acted'].sum())} entered a trade")
    has_price = market.available and not market.underlying_trades.empty
    body = text(
        ("; ".join(counts) if counts else "no signals in this run")
        + ". Marker shape and colour: the algorithm; size: confidence (0-1); black outline: the signal entered a "
        "trade; hover for the option, side, premium and the detector's reasons."
        + (f" Line: {market.underlying} trade prices (index points)." if has_price else ""),
    )
    body += figure_html(figures.price_signals_figure(market, signals), "fig-signals")
    if len(signals):
        rows = [
            (_utc(int(r.ts_signal)), r.algorithm, r.instrument_id, r.side, r.bias, tables.fmt(float(r.confidence), 2),
             tables.fmt(float(r.notional_usd), 0, thousands=True), "yes" if bool(r.acted) else "no", str(r.reasons))
            for r in signals.sort_values("ts_signal", kind="stable").itertuples(index=False)
        ]
        header = ("signal time", "algorithm", "option", "side", "bias", "confidence", "premium (USD)", "acted",
                  "reasons")
        body += f"<details><summary>all {len(rows)} signals</summary>{tables.table(header, rows)}</details>"
    return Section("signals", "Underlying and signals", body, notes)


def pressure_section(inputs: Inputs) -> Section:
    market, bucket = inputs.market, _bucket_text(inputs.bucket_ns)
    if not market.available:
        return Section("pressure", "Option pressure by strike", "", [f"{market.note}: no option trades to show"])
    grid = pressure_grid(market.option_trades, inputs.bucket_ns, inputs.run.start_ns, inputs.run.end_ns)
    if grid.empty:
        return Section("pressure", "Option pressure by strike", "", ["no option trades in the run's time range"])
    grid, left_out = busiest_strikes(grid, MAX_HEATMAP_STRIKES)
    notes = []
    if left_out:
        notes.append(f"the {MAX_HEATMAP_STRIKES} strikes with the most contracts traded are shown; {left_out} "
                     "quieter strikes are left out")
    body = text(
        f"(buy - sell) / (buy + sell) of the option contracts traded per strike and {bucket}, by each trade's "
        "aggressor side from the feed: +1 (blue) all bought at the offer, -1 (red) all sold at the bid; all "
        f"expiries of a strike together; blank: no trade with a side. {grid.trades:,} option trades"
        + (f", {grid.no_side:,} without an aggressor side (left out)" if grid.no_side else "")
        + ". Open markers: the signals on their strike.",
    )
    signals = inputs.run.signals
    body += figure_html(figures.pressure_figure(grid, signals[signals["strike"].isin(grid.strikes)]), "fig-pressure")
    return Section("pressure", "Option pressure by strike", body, notes)


def ab_section(inputs: Inputs) -> Section:
    run = inputs.run
    comparison = run.summary.get("comparison") or []
    strategies = {row["strategy_id"]: str(row.get("algorithm", "")) for row in comparison if "strategy_id" in row}
    steps = figures.realized_pnl_steps(run.positions)
    notes = []
    if not comparison:
        notes.append("summary.json has no A/B comparison (no IFD strategy in this run)")
    if not run.positions.empty and "side" in run.positions.columns:
        flat = run.positions["side"].astype(str).str.upper().eq("FLAT")
        if (~flat).sum():
            notes.append(f"{int((~flat).sum())} position(s) still open at the end of the run: not in the realized "
                         "curves")
        if flat.sum() > len(steps):
            notes.append(f"{int(flat.sum()) - len(steps)} closed position(s) without a USD P&L and close time "
                         "left out")
    body = text(
        "Cumulative realized P&L per strategy (USD, from positions.csv: each closed position at its close time), "
        "from the run's start to its end.",
    )
    body += figure_html(figures.equity_figure(steps, strategies, run.start_ns, run.end_ns), "fig-equity")
    if comparison:
        body += "<h3>A/B comparison (summary.json)</h3>" + tables.ab_table(comparison)
    return Section("ab", "IFD v1 vs v3", body, notes)


def evaluation_section(inputs: Inputs) -> Section:
    evaluation = inputs.evaluation
    if evaluation is None:
        return Section(
            "evaluation", "Evaluation against labels", "",
            ["no labels for this run: run `ifd evaluate RUN_DIR --labels LABELS.parquet` or pass --labels"],
        )
    body = text(
        f"{inputs.evaluation_source}. Episodes: {tables.episodes_text(evaluation)}; tolerance "
        f"{tables.fmt(evaluation.get('tolerance_s'), 0)} s. Precision counts signals, recall counts institutional "
        "episodes; FP: false-positive signals by the labeled episode they fall on; forward accuracy: share of "
        "signals whose bias matched the underlying future's move over N minutes (n signals).",
    )
    body += tables.detection_table(evaluation)
    trading = tables.trading_table(evaluation)
    if trading:
        body += "<h3>Trading</h3>" + trading
    if evaluation.get("matching_rule"):
        body += "<details><summary>matching rule</summary>" + text(evaluation["matching_rule"]) + "</details>"
    return Section("evaluation", "Evaluation against labels", body)


def _strategy_quality(summary: dict) -> str:
    """The IFD strategies' own data-quality figures (aggressor/book agreement), when they kept them."""
    rows = []
    for sid, entry in (summary.get("strategies") or {}).items():
        quality = ((entry or {}).get("results") or {}).get("quality") if isinstance(entry, dict) else None
        if isinstance(quality, dict) and "agreement_rate" in quality:
            rows.append(
                (sid, tables.fmt(quality.get("trades_seen"), thousands=True),
                 tables.fmt_pct(quality.get("agreement_rate"), 3),
                 tables.fmt(quality.get("agreement_checked"), thousands=True),
                 tables.fmt(quality.get("unknown_initiation"), thousands=True)),
            )
    if not rows:
        return ""
    header = ("strategy", "trades seen", "aggressor/book agreement", "trades checked", "unknown initiation")
    return "<h3>Trade initiation checks of the strategies (summary.json)</h3>" + tables.table(header, rows)


def quality_section(inputs: Inputs) -> Section:
    quality = inputs.run.quality
    body = ""
    notes = []
    if quality is None:
        notes.append(f"data quality not recorded in this run (no {QUALITY_FILE}: the data-quality monitor did not run)")
    else:
        body += tables.quality_summary(quality)
        fig = figures.quality_figure(quality)
        if fig is not None:
            body += text("Per minute (UTC): records and trades checked, and the problems found; shaded: stale periods.")
            body += figure_html(fig, "fig-quality")
        else:
            notes.append(f"{QUALITY_FILE} has no per-minute figures")
        body += tables.gaps_table(quality.get("sequence_gaps_by_instrument") or {})
        body += tables.alarms_table(quality.get("alarms") or [])
    body += _strategy_quality(inputs.run.summary)
    return Section("quality", "Data quality", body, notes)


def latency_section(inputs: Inputs) -> Section:
    latency, signals = inputs.run.latency, inputs.run.signals
    body, notes = "", []
    if latency is None:
        notes.append(f"feed and processing latency not recorded in this run (no {LATENCY_FILE}: the latency monitor "
                     "did not run)")
    else:
        clock = str(latency.get("clock") or "unknown")
        if clock == "simulated":
            notes.append("simulated clock (latency.json): these latencies come from a replay on the backtest's "
                         "clock, not from a live node's wall clock")
        body += text(f"Clock: {clock}. Microseconds (µs).")
        body += tables.percentile_table(
            {"feed latency": latency.get("feed_latency_us"),
             "processing latency": latency.get("processing_latency_us")},
            "µs",
        )
        fig = figures.latency_figure(latency)
        if fig is not None:
            body += figure_html(fig, "fig-latency")
        body += tables.alarms_table(latency.get("alarms") or [])
        body += "".join(text(f"Note: {n}") for n in latency.get("notes") or [])
    fig = figures.signal_latency_figure(signals)
    if fig is not None:
        body += "<h3>Signal processing latency (signals.parquet latency_ns)</h3>" + text(
            "Per signal: from the triggering trade's arrival at the node to the signal, on the wall clock (in a "
            "backtest, where the engine's clock stands still, the detector's own time).",
        )
        body += figure_html(fig, "fig-signal-latency")
    elif len(signals):
        notes.append("the signals carry no processing latency (latency_ns)")
    return Section("latency", "Latency", body, notes)


def tearsheet_section(inputs: Inputs) -> Section:
    sheet = build_tearsheet(inputs.run)
    body = text(
        "NautilusTrader's own tearsheet (nautilus_trader.analysis.tearsheet.create_tearsheet_from_stats), drawn "
        f"from {sheet.source}; shown as its own document in a frame.",
    )
    body += frame_html(sheet)
    return Section("tearsheet", "Portfolio: NautilusTrader tearsheet", body, sheet.notes)


def render_report(inputs: Inputs) -> str:
    """The page's HTML."""
    run, summary = inputs.run, inputs.run.summary
    span = (
        f"{_utc(run.start_ns)} to {_utc(run.end_ns)} ({(run.end_ns - run.start_ns) / 60e9:,.1f} min)"
        if run.start_ns is not None and run.end_ns is not None else "-"
    )
    records = summary.get("records_processed")
    facts = [
        ("run folder", str(run.path)),
        ("config", str(summary.get("config") or "-")),
        ("catalog", str(summary.get("catalog") or "-")),
        ("time range", span),
        ("records replayed", f"{records:,} in {summary.get('wall_seconds')} s" if isinstance(records, int) else "-"),
    ]
    sections = [
        signals_section(inputs), pressure_section(inputs), ab_section(inputs), evaluation_section(inputs),
        quality_section(inputs), latency_section(inputs), tearsheet_section(inputs),
    ]
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    footer = f"ifd {__version__} report, generated {generated}"
    return render_page(f"IFD run report: {run.name}", facts, sections, footer)


def _write_atomic(path: Path, content: str) -> int:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(content, encoding="utf-8")
        size = tmp.stat().st_size
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return size


def _catalog_of(run: RunFolder, catalog: Path | None) -> Path | None:
    if catalog is not None:
        return Path(catalog)
    value = run.summary.get("catalog")
    return Path(value) if value else None


def write_report(
    run_dir: Path,
    labels: Path | None = None,
    out: Path | None = None,
    bucket_s: float = DEFAULT_BUCKET_S,
    catalog: Path | None = None,
) -> ReportResult:
    """Write the report of ``run_dir`` to ``out`` (default ``RUN_DIR/report.html``): through a temp
    file beside it, moved into place. ``labels`` scores the signals now (``ifd.evaluation``);
    without it the run's ``evaluation.json`` is shown when there is one."""
    started = time.perf_counter()
    if not bucket_s > 0:
        raise IfdError(f"--bucket {bucket_s}: must be a number of seconds > 0")
    run = read_run_folder(Path(run_dir))
    out = Path(out) if out is not None else run.path / REPORT_FILE
    if out.is_dir():
        raise IfdError(f"{out}: is a folder (give the report's file name)")
    if not out.parent.is_dir():
        raise IfdError(f"{out.parent}: no such folder for the report")
    catalog_path = _catalog_of(run, catalog)
    if labels is not None:
        evaluation = evaluate_run(run.path, Path(labels), catalog=catalog_path)
        source = f"Scored now against {labels}"
    else:
        evaluation = run.evaluation
        source = "From the run's evaluation.json (ifd evaluate)"
    hints = run.signals["underlying"].astype(str).value_counts().index.tolist() if len(run.signals) else []
    market = load_market_data(catalog_path, run.start_ns, run.end_ns, [h for h in hints if h])
    inputs = Inputs(run, market, evaluation, source, round(bucket_s * 1e9))
    size = _write_atomic(out, render_report(inputs))
    counts = run.signals["algorithm"].astype(str).value_counts().to_dict() if len(run.signals) else {}
    return ReportResult(out, size, round(time.perf_counter() - started, 3), {str(k): int(v) for k, v in counts.items()})
