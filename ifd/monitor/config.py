"""``configs/monitor.toml``: what the polling monitor downloads, which backtest it drives, where it keeps state."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from backtests.config import resolve_project_path
from ifd.errors import IfdError
from ifd.toml_files import read_toml

DEFAULT_CONFIG = Path("configs/monitor.toml")
KEYS = ("dataset", "schema", "symbols", "stype", "start", "every", "window", "retry", "alert_after_failures",
        "backtest", "catalog", "raw", "state", "runs", "alerts", "budget")
DAY_S = 86_400
_UNITS = {"s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class MonitorConfig:
    """Validated ``[monitor]`` settings (paths as given, relative to the working directory)."""

    dataset: str
    schema: str
    symbols: tuple[str, ...]
    stype: str
    start: dt.date | None  # first UTC day when the state is empty; None: the newest completed day only
    every_s: float
    window_s: int  # the data windows fetched: a whole number of minutes dividing a day (86400: whole UTC days)
    retry_s: float  # first wait after a transient failure (network, Databento 5xx), doubled up to every_s
    alert_after_failures: int  # consecutive transient failures before a warning alert
    backtest: Path
    catalog: Path
    raw: Path
    state: Path
    runs: Path
    alerts: Path
    budget: Path | None
    path: str = ""


def parse_interval(text: str, what: str = "every") -> float:
    """``"15m"``, ``"30s"``, ``"1h"`` or a number of seconds -> seconds (> 0)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not match or float(match.group(1)) <= 0:
        raise IfdError(f"{what} {text!r}: expected a positive interval like 15m, 30s or 1h")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def load_monitor_config(path: Path | str = DEFAULT_CONFIG) -> MonitorConfig:
    """Read ``[monitor]``; every refusal is a one-line ``IfdError`` naming the file and the setting."""
    path = resolve_project_path(path)
    raw = read_toml(path, f"{path}: no such monitor config (see configs/monitor.toml)")
    table = raw.get("monitor")
    if not isinstance(table, dict):
        raise IfdError(f"{path}: [monitor] is missing")
    unknown = sorted(set(raw) - {"monitor"}) + sorted(set(table) - set(KEYS))
    if unknown:
        raise IfdError(f"{path}: unknown setting(s) {', '.join(unknown)} (known: [monitor] {', '.join(KEYS)})")

    def text(key: str, default: str | None = None) -> str:
        value = table.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise IfdError(f"{path}: [monitor] {key} must be a non-empty string")
        return value.strip()

    symbols = table.get("symbols")
    if isinstance(symbols, str):
        symbols = [s for s in symbols.split(",")]
    if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
        raise IfdError(f"{path}: [monitor] symbols must be a list of strings, e.g. [\"NQ.OPT\", \"NQ.FUT\"]")
    start = table.get("start")
    if start is not None:
        try:
            start = dt.date.fromisoformat(str(start))
        except ValueError:
            raise IfdError(f"{path}: [monitor] start {start!r}: expected a date YYYY-MM-DD (UTC)") from None
    try:
        every_s = parse_interval(table.get("every", "15m"))
        window_s = parse_interval(table.get("window", "15m"), "window")
        retry_s = parse_interval(table.get("retry", "1m"), "retry")
    except IfdError as exc:
        raise IfdError(f"{path}: [monitor] {exc}") from None
    if window_s != int(window_s) or window_s % 60 or DAY_S % window_s:
        raise IfdError(f"{path}: [monitor] window {table.get('window')!r}: must be whole minutes that divide a day "
                       "(e.g. 15m, 1h, 24h)")
    failures = table.get("alert_after_failures", 3)
    if not isinstance(failures, int) or isinstance(failures, bool) or failures < 1:
        raise IfdError(f"{path}: [monitor] alert_after_failures must be a whole number >= 1")
    budget = table.get("budget")
    return MonitorConfig(
        dataset=text("dataset", "GLBX.MDP3"),
        schema=text("schema", "mbo"),
        symbols=tuple(sorted({s.strip() for s in symbols if s.strip()})),
        stype=text("stype", "parent"),
        start=start,
        every_s=every_s,
        window_s=int(window_s),
        retry_s=retry_s,
        alert_after_failures=failures,
        backtest=resolve_project_path(text("backtest", "configs/backtests/shadow_v1_v3.toml")),
        catalog=Path(text("catalog", "data/monitor/catalog")),
        raw=Path(text("raw", "data/raw")),
        state=Path(text("state", "data/monitor/state.sqlite")),
        runs=Path(text("runs", "data/monitor/runs")),
        alerts=resolve_project_path(text("alerts", "configs/alerts.toml")),
        budget=Path(budget) if budget else None,
        path=str(path),
    )
