"""Reading and validating a run folder (backtest run or live session) for the report.

Required: ``summary.json``. Everything else is optional and read when present: ``signals.parquet``,
``positions.csv``, ``portfolio.json`` + ``returns.parquet`` (what NautilusTrader's tearsheet
needs), ``evaluation.json`` (``ifd evaluate``), ``quality.json`` and ``latency.json`` (the
monitors). A file that is present but unreadable is an ``IfdError`` naming it and the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from backtests.runner import PORTFOLIO_FILE
from backtests.runner import RETURNS_FILE
from ifd.errors import IfdError
from ifd.evaluation.report import EVALUATION_JSON
from ifd.evaluation.report import POSITIONS_FILE
from ifd.evaluation.report import SIGNALS_FILE
from ifd.evaluation.report import load_signals
from ifd.evaluation.report import load_summary
from ifd.evaluation.trading_stats import read_positions
from strategies.signals import SIGNAL_SCHEMA

QUALITY_FILE = "quality.json"
LATENCY_FILE = "latency.json"
REPORT_FILE = "report.html"


@dataclass
class RunFolder:
    """The parts of a run folder the report shows; optional parts are None when absent."""

    path: Path
    summary: dict
    signals: pd.DataFrame
    positions: pd.DataFrame
    start_ns: int | None
    end_ns: int | None
    portfolio: dict | None = None
    returns: pd.Series | None = None
    evaluation: dict | None = None
    quality: dict | None = None
    latency: dict | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.summary.get("name") or self.path.name)


def read_json(path: Path, what: str) -> dict | None:
    """A JSON object file, None when it does not exist."""
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise IfdError(f"{path}: not a {what} (bad JSON: {exc})") from exc
    if not isinstance(value, dict):
        raise IfdError(f"{path}: not a {what} (expected a JSON object)")
    return value


def empty_signals() -> pd.DataFrame:
    """A signals table with no rows and the columns of ``signals.parquet``."""
    return SIGNAL_SCHEMA.empty_table().to_pandas()


def read_returns(path: Path) -> pd.Series | None:
    """``returns.parquet`` (``ts_ns``, ``return``) as a float Series on a UTC DatetimeIndex."""
    if not path.is_file():
        return None
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise IfdError(f"{path}: not a returns table (unreadable as Parquet: {exc})") from exc
    missing = [c for c in ("ts_ns", "return") if c not in table.column_names]
    if missing:
        raise IfdError(f"{path}: not a returns table (missing columns: {', '.join(missing)})")
    ts = table.column("ts_ns").to_numpy().astype(np.int64)
    values = table.column("return").to_numpy().astype(np.float64)
    return pd.Series(values, index=pd.to_datetime(ts, unit="ns", utc=True), name="return").sort_index()


def time_ns(value) -> int | None:
    """A summary time (ISO 8601, or nanoseconds as int or digit string) as ns, None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    try:
        stamp = pd.Timestamp(text)
    except ValueError:
        return None
    return int((stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp).value)


def run_range(summary: dict, portfolio: dict | None, signals: pd.DataFrame) -> tuple[int | None, int | None]:
    """The replayed (or live) time range: portfolio.json's, else summary.json's, else the signals'."""
    run = (portfolio or {}).get("run") or {}
    start = time_ns(run.get("backtest_start_ns")) or time_ns(summary.get("backtest_start"))
    end = time_ns(run.get("backtest_end_ns")) or time_ns(summary.get("backtest_end"))
    start = start or time_ns(summary.get("session_start"))
    end = end or time_ns(summary.get("session_end"))
    if (start is None or end is None) and not signals.empty:
        start = start if start is not None else int(signals["ts_event"].min())
        end = end if end is not None else int(signals["ts_event"].max())
    return start, end


def _complete_signals(signals: pd.DataFrame) -> pd.DataFrame:
    """Older signals files lack some columns: ``ts_signal`` falls back to ``ts_event``, the rest
    to "unknown" (NaN, "", False)."""
    if "ts_signal" not in signals.columns:
        signals["ts_signal"] = signals["ts_event"]
    signals["ts_signal"] = signals["ts_signal"].fillna(signals["ts_event"]).astype(np.int64)
    for column in ("confidence", "notional_usd", "strike", "latency_ns"):
        if column not in signals.columns:
            signals[column] = np.nan
    signals["reasons"] = signals["reasons"].fillna("") if "reasons" in signals.columns else ""
    signals["acted"] = signals["acted"].fillna(False).astype(bool) if "acted" in signals.columns else False
    return signals


def read_run_folder(path: Path) -> RunFolder:
    """Read ``path``; raises ``IfdError`` (one line: the file and the reason) when it is not a run
    folder or a file in it is broken."""
    path = Path(path)
    if not path.is_dir():
        raise IfdError(f"{path}: no such run folder")
    summary = load_summary(path)
    notes: list[str] = []
    if (path / SIGNALS_FILE).is_file():
        signals = _complete_signals(load_signals(path))
    else:
        signals = empty_signals()
        notes.append(f"no {SIGNALS_FILE} in the run folder: no signals to show")
    positions = read_positions(path / POSITIONS_FILE)
    portfolio = read_json(path / PORTFOLIO_FILE, "portfolio statistics file")
    returns = read_returns(path / RETURNS_FILE)
    start, end = run_range(summary, portfolio, signals)
    return RunFolder(
        path=path,
        summary=summary,
        signals=signals,
        positions=positions,
        start_ns=start,
        end_ns=end,
        portfolio=portfolio,
        returns=returns,
        evaluation=read_json(path / EVALUATION_JSON, "evaluation"),
        quality=read_json(path / QUALITY_FILE, "data-quality report"),
        latency=read_json(path / LATENCY_FILE, "latency report"),
        notes=notes,
    )
