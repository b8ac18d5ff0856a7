"""``ifd backtest run``: build a ``BacktestNode`` from a TOML file, replay the catalog, write a run folder."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import replace
from datetime import UTC
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import msgspec
from nautilus_trader.backtest.config import BacktestRunConfig
from nautilus_trader.backtest.node import BacktestNode
from nautilus_trader.model import BOOK_DATA_TYPES
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.model.identifiers import Venue
from nautilus_trader.persistence.funcs import class_to_filename

from backtests.config import DATA_TYPES
from backtests.config import BacktestSpec
from backtests.config import build_run_config
from backtests.config import load_backtest_spec
from catalogs.layout import check_catalog_path
from catalogs.layout import file_interval
from catalogs.layout import leaf_dir
from catalogs.listing import describe_catalog
from ifd.errors import IfdError
from backtests.trades_report import trades_report
from strategies.signals import write_signals

RUNS_DIR = Path("backtests/runs")
PROGRESS_EVERY_SECONDS = 2.0


@dataclass
class ReplayProgress:
    """Counts records handed to the engine, chunk by chunk, and reports them."""

    total: int
    report: Callable[[str], None] | None = None
    processed: int = 0
    started: float = 0.0
    _last: float = 0.0
    _reported: int = -1

    def start(self) -> None:
        self.started = self._last = time.perf_counter()

    def added(self, count: int) -> None:
        self.processed += count

    def chunk_done(self, final: bool = False) -> None:
        now = time.perf_counter()
        if self.report is None or self._reported == self.processed:
            return
        if not final and now - self._last < PROGRESS_EVERY_SECONDS:
            return
        self._last, self._reported = now, self.processed
        elapsed = now - self.started
        pct = 100.0 * self.processed / self.total if self.total else 100.0
        rate = self.processed / elapsed if elapsed > 0 else 0.0
        self.report(
            f"replayed {self.processed:,} of {self.total:,} records ({pct:.0f}%) "
            f"in {elapsed:.1f} s ({rate:,.0f} records/s)",
        )


class _CountingEngine:
    """Delegates to a ``BacktestEngine``, counting the data each streamed chunk adds."""

    def __init__(self, engine, progress: ReplayProgress) -> None:
        self._engine = engine
        self._progress = progress

    def add_data(self, data, *args, **kwargs):
        self._progress.added(len(data))
        return self._engine.add_data(data, *args, **kwargs)

    def run(self, *args, **kwargs):
        result = self._engine.run(*args, **kwargs)
        self._progress.chunk_done()
        return result

    def __getattr__(self, name: str):
        return getattr(self._engine, name)


class ProgressBacktestNode(BacktestNode):
    """A ``BacktestNode`` whose streamed runs report records processed and elapsed time.

    It also accepts book data configured for a whole chain: NautilusTrader's validation wants
    an L2/L3 venue's book data as one config per ``instrument_id``, and one config per
    instrument makes the node scan the catalog's instruments once per config (seconds for a
    chain). Validation runs on an equivalent per-instrument view of the same configs.
    """

    def __init__(self, configs, progress: ReplayProgress) -> None:
        super().__init__(configs)
        self._progress = progress
        self._counting = False

    def build(self) -> None:
        """Build the engines, then hand each engine's RiskEngine to actors that act on it (the risk guard)."""
        super().build()
        for engine in self.get_engines():
            for actor in engine.trader.actors():
                if hasattr(actor, "attach_risk_engine"):
                    actor.attach_risk_engine(engine.kernel.risk_engine)

    def _validate_configs(self, configs) -> None:
        super()._validate_configs([_per_instrument_book_view(config) for config in configs])

    def get_engine(self, run_config_id: str):
        engine = super().get_engine(run_config_id)
        if engine is None or not self._counting:
            return engine
        return _CountingEngine(engine, self._progress)

    def _run(self, *args, **kwargs):
        self._counting = True
        try:
            return super()._run(*args, **kwargs)
        finally:
            self._counting = False


def _per_instrument_book_view(config: BacktestRunConfig) -> BacktestRunConfig:
    """The same run with each multi-instrument book data config split per instrument."""
    data = []
    for data_config in config.data:
        if data_config.data_type in BOOK_DATA_TYPES and data_config.instrument_ids:
            data.extend(
                msgspec.structs.replace(data_config, instrument_ids=None, instrument_id=InstrumentId.from_str(i))
                for i in data_config.instrument_ids
            )
        else:
            data.append(data_config)
    return msgspec.structs.replace(config, data=data)


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    summary: dict


def catalog_rows(spec: BacktestSpec) -> dict[str, dict[str, int]]:
    """Rows to replay per configured data type and instrument (within the run's time range)."""
    check_catalog_path(spec.catalog, create=False)
    described = describe_catalog(spec.catalog)["data_types"]
    wanted = set(spec.instrument_ids)
    lo = _ns(spec.start, 0)
    hi = _ns(spec.end, 2**63 - 1)
    out: dict[str, dict[str, int]] = {}
    for name in spec.data_types:
        folder = class_to_filename(_data_class(name))
        per = described.get(folder, {}).get("instruments", {})
        rows = {}
        for instrument, info in per.items():
            if wanted and instrument not in wanted:
                continue
            if spec.start is None and spec.end is None:
                rows[instrument] = info["rows"]
            else:
                rows[instrument] = _rows_in_range(leaf_dir(spec.catalog, _data_class(name), instrument), lo, hi)
        out[name] = {k: v for k, v in rows.items() if v}
    return out


def _iso(ns: int | None) -> str | None:
    return pd.Timestamp(int(ns), unit="ns", tz="UTC").isoformat() if ns else None


def _ns(value: str | int | None, default: int) -> int:
    if value is None:
        return default
    return int(value) if isinstance(value, int) else pd.Timestamp(value).value


def _rows_in_range(leaf: Path, lo: int, hi: int) -> int:
    """Rows with lo <= ts_init <= hi: footers for files inside the range, the ts column otherwise."""
    total = 0
    for file in leaf.glob("*.parquet"):
        interval = file_interval(file)
        if interval is not None and (interval[1] < lo or interval[0] > hi):
            continue
        if interval is not None and lo <= interval[0] and interval[1] <= hi:
            total += pq.ParquetFile(file).metadata.num_rows
            continue
        ts = pq.read_table(file, columns=["ts_init"]).column("ts_init").to_numpy()
        total += int(((ts >= lo) & (ts <= hi)).sum())
    return total


def _data_class(name: str) -> type:
    module, cls = DATA_TYPES[name].split(":")
    return getattr(__import__(module, fromlist=[cls]), cls)


def default_run_dir(spec: BacktestSpec) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return RUNS_DIR / f"{stamp}-{spec.name}"


def _jsonable(value):
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _write_report(frame: pd.DataFrame, path: Path) -> int:
    frame = frame if frame is not None else pd.DataFrame()
    frame.to_csv(path, index=not isinstance(frame.index, pd.RangeIndex))
    return len(frame)


def write_trader_reports(trader, cache, venue: Venue, folder: Path) -> tuple[dict[str, int], pd.DataFrame, pd.DataFrame]:
    """Orders, fills, positions, account, trades (planned vs filled) and signals of a stopped trader
    into ``folder``, and ``<report_name>.json`` of every actor with ``report_name`` and
    ``run_report()`` (the monitors); returns (row counts, orders report, positions report)."""
    orders = trader.generate_orders_report()
    positions = trader.generate_positions_report()
    counts = {
        "orders": _write_report(orders, folder / "orders.csv"),
        "fills": _write_report(trader.generate_order_fills_report(), folder / "fills.csv"),
        "positions": _write_report(positions, folder / "positions.csv"),
        "account": _write_report(trader.generate_account_report(venue), folder / "account.csv"),
        "trades": _write_report(trades_report(trader, cache), folder / "trades.csv"),
    }
    rows = [row for strategy in trader.strategies() if hasattr(strategy, "signal_rows")
            for row in strategy.signal_rows()]
    counts["signals"] = write_signals(rows, folder / "signals.parquet")  # empty is valid
    for actor in trader.actors():  # monitors: their figures of the run, as <report_name>.json
        name = getattr(actor, "report_name", None)
        if name and callable(getattr(actor, "run_report", None)):
            report = _jsonable(actor.run_report())
            (folder / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
            counts[name] = 1
    return counts, orders, positions


def run_backtest(
    config_path: Path,
    catalog: Path | None = None,
    out: Path | None = None,
    progress: Callable[[str], None] | None = None,
    start: str | int | None = None,
    end: str | int | None = None,
) -> RunResult:
    """Run one backtest file and write its run folder; returns the folder and the summary.

    ``start`` / ``end`` (ISO time or ns, inclusive) override the file's ``[run]`` range.
    """
    spec = load_backtest_spec(config_path, catalog_override=catalog)
    if start is not None or end is not None:
        spec = replace(spec, start=start if start is not None else spec.start, end=end if end is not None else spec.end)
    rows = catalog_rows(spec)
    total = sum(sum(per.values()) for per in rows.values())
    if total == 0:
        raise IfdError(f"{spec.catalog}: no {' / '.join(spec.data_types)} data to replay in the catalog")

    run_dir = Path(out) if out else default_run_dir(spec)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise IfdError(f"{run_dir}: run folder already exists and is not empty")

    run_config = build_run_config(spec, {name: sorted(per) for name, per in rows.items()})
    tracker = ReplayProgress(total=total, report=progress)
    node = ProgressBacktestNode([run_config], tracker)
    if progress:
        progress(f"backtest {spec.name}: {total:,} records from {spec.catalog}")
    started = time.perf_counter()
    tracker.start()
    try:
        node.run()
    except IfdError:
        raise
    except Exception as exc:
        node.dispose()
        raise IfdError(f"{spec.path}: backtest failed ({type(exc).__name__}: {exc})") from exc
    wall = time.perf_counter() - started
    tracker.chunk_done(final=True)

    engine = node.get_engine(run_config.id)
    try:
        summary = _write_run_folder(run_dir, spec, engine, rows, tracker, wall)
    finally:
        node.dispose()
    return RunResult(run_dir=run_dir, summary=summary)


def _write_run_folder(run_dir: Path, spec: BacktestSpec, engine, rows, tracker: ReplayProgress, wall: float) -> dict:
    """Write reports and summary.json into a temp folder, then move it into place."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = run_dir.parent / f".{run_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        trader = engine.trader
        counts, orders, positions = write_trader_reports(trader, engine.cache, Venue(spec.venue.name), staging)
        strategies = _strategy_results(trader, orders, positions)
        result = engine.get_result()
        counts.update(write_portfolio_files(engine, result, Venue(spec.venue.name), staging))
        summary = {
            "config": str(spec.path),
            "name": spec.name,
            "catalog": str(spec.catalog),
            "records_total": tracker.total,
            "records_processed": tracker.processed,
            "wall_seconds": round(wall, 3),
            "records_per_second": round(tracker.processed / wall) if wall > 0 else None,
            "catalog_rows": rows,
            "backtest_start": _iso(result.backtest_start),
            "backtest_end": _iso(result.backtest_end),
            "iterations": result.iterations,
            "total_events": result.total_events,
            "total_orders": result.total_orders,
            "total_positions": result.total_positions,
            "reports": counts,
            "stats_pnls": _jsonable(result.stats_pnls),
            "stats_returns": _jsonable(result.stats_returns),
            "strategies": strategies,
        }
        comparison = _comparison(strategies)
        if comparison:
            summary["comparison"] = comparison
        (staging / "summary.json").write_text(json.dumps(_jsonable(summary), indent=2) + "\n")
        if run_dir.exists():
            run_dir.rmdir()  # empty (checked before the run)
        os.replace(staging, run_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


PORTFOLIO_FILE = "portfolio.json"
RETURNS_FILE = "returns.parquet"


def write_portfolio_files(engine, result, venue: Venue, folder: Path) -> dict[str, int]:
    """What NautilusTrader's tearsheet needs, kept for ``ifd report``: ``portfolio.json`` (the
    ``PortfolioAnalyzer``'s PnL, returns and general statistics, the run's figures, the venue
    account's balances) and ``returns.parquet`` (``ts_ns``, ``return``: the analyzer's returns
    series: daily portfolio returns when the account spans two days or more, else per-position
    returns, as the tearsheet picks them). Returns row counts for ``summary.json`` ``reports``."""
    analyzer = engine.portfolio.analyzer
    returns = analyzer.returns()
    daily = not analyzer.portfolio_returns().empty
    basis = "portfolio (daily, account balance)" if daily else "position (per closed position)"
    account = engine.cache.account_for_venue(venue)
    balances = {}
    if account is not None:
        starting, ending = account.starting_balances(), account.balances_total()
        for currency in sorted(set(starting) | set(ending), key=lambda c: c.code):
            balances[currency.code] = {
                "starting": round(starting[currency].as_double(), currency.precision) if currency in starting else None,
                "ending": round(ending[currency].as_double(), currency.precision) if currency in ending else None,
            }
    portfolio = {
        "source": "NautilusTrader PortfolioAnalyzer at the end of the run",
        "run": {
            "run_id": result.run_id,
            "run_started_ns": result.run_started,
            "run_finished_ns": result.run_finished,
            "backtest_start_ns": result.backtest_start,
            "backtest_end_ns": result.backtest_end,
            "iterations": result.iterations,
            "total_events": result.total_events,
            "total_orders": result.total_orders,
            "total_positions": result.total_positions,
        },
        "account": {
            "venue": venue.value,
            "account_id": account.id.value if account is not None else None,
            "balances": balances,
        },
        "stats_pnls": {c.code: analyzer.get_performance_stats_pnls(currency=c) for c in analyzer.currencies},
        "stats_returns": analyzer.get_performance_stats_returns(),
        "stats_general": analyzer.get_performance_stats_general(),
        "returns_basis": basis,
        "returns_count": len(returns),
    }
    (folder / PORTFOLIO_FILE).write_text(json.dumps(_jsonable(portfolio), indent=2) + "\n")
    index = pd.to_datetime(returns.index, utc=True)
    ts_ns = ((index - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "ns")).to_numpy(dtype="int64")
    frame = pd.DataFrame({"ts_ns": ts_ns, "return": returns.to_numpy(dtype="float64")})
    frame.sort_values("ts_ns", kind="stable").to_parquet(folder / RETURNS_FILE, index=False)
    return {"portfolio": 1, "returns": len(frame)}


def _money(value) -> float:
    """A NautilusTrader money string ("12.50 USD") or number as float."""
    if isinstance(value, str):
        value = value.split()[0] if value.strip() else "nan"
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _strategy_results(trader, orders: pd.DataFrame, positions: pd.DataFrame) -> dict:
    results = {}
    for strategy in trader.strategies():
        sid = strategy.id.value
        entry = {
            "class": type(strategy).__name__,
            "config": _jsonable(strategy.config.dict()),
            "orders": int((orders["strategy_id"] == sid).sum()) if "strategy_id" in orders else 0,
        }
        if "strategy_id" in positions:
            mine = positions[positions["strategy_id"] == sid]
            pnl = mine["realized_pnl"].map(_money) if "realized_pnl" in mine else pd.Series(dtype=float)
            entry["positions"] = len(mine)
            entry["realized_pnl_usd"] = round(float(pnl.sum()), 2) if len(pnl) else 0.0
        if hasattr(strategy, "summary"):
            entry["results"] = strategy.summary()
        results[sid] = entry
    return results


def _comparison(strategies: dict) -> list[dict]:
    """The A/B table: one row per IFD strategy, side by side."""
    rows = []
    for sid, entry in strategies.items():
        res = entry.get("results", {})
        if "algorithm" not in res:
            continue
        rows.append(
            {
                "strategy_id": sid,
                "algorithm": res["algorithm"],
                "mode": res.get("mode"),
                "signals": res.get("signals"),
                "signals_acted": res.get("signals_acted"),
                "orders": entry["orders"],
                "positions": entry.get("positions", 0),
                "realized_pnl_usd": entry.get("realized_pnl_usd", 0.0),
                "healthy_at_end": res.get("healthy_at_end"),
                "fallback": res.get("takeover_events") or res.get("status_events") or [],
                "decision_latency_us_p99": (res.get("decision_latency_us") or {}).get("p99"),
            },
        )
    return rows
