"""NautilusTrader's own tearsheet for the portfolio part of the report.

``nautilus_trader.analysis.tearsheet.create_tearsheet_from_stats`` draws it from the
``PortfolioAnalyzer`` statistics and returns series the run kept (``portfolio.json``,
``returns.parquet``; older run folders and live sessions: the PnL and returns statistics of
``summary.json``, no returns series). It returns a whole HTML document with its own copy of
plotly.js; the report shows that document in an ``<iframe srcdoc>`` and, to keep the file at one
copy of plotly.js (~4.9 MB), swaps the document's copy for a line that runs the report page's
copy inside the frame (its own ``Plotly``, so the frame's charts stay independent).
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import nautilus_trader
import pandas as pd
from nautilus_trader.analysis.tearsheet import create_tearsheet_from_stats
from nautilus_trader.core.datetime import unix_nanos_to_iso8601
from plotly.offline import get_plotlyjs

from ifd.report.run_folder import PORTFOLIO_FILE
from ifd.report.run_folder import RETURNS_FILE
from ifd.report.run_folder import RunFolder
from ifd.report.run_folder import time_ns

PLOTLYJS_ELEMENT_ID = "ifd-plotlyjs"
FRAME_HEIGHT_PX = 1560  # the tearsheet's default height (1500) plus the frame's margins
# Runs the page's plotly.js (a <script id=PLOTLYJS_ELEMENT_ID>) in the frame; srcdoc frames share the page's origin.
_SHARED_PLOTLYJS = (
    "(function(){var s=document.createElement('script');"
    f"s.text=window.parent.document.getElementById('{PLOTLYJS_ELEMENT_ID}').text;"
    "document.head.appendChild(s);})();"
)


@dataclass
class Tearsheet:
    """The tearsheet document (None when it could not be drawn) and what to say above it."""

    document: str | None
    notes: list[str]
    source: str


def _duration(start: int | None, end: int | None) -> str:
    return "N/A" if start is None or end is None else str(pd.Timedelta(end - start, unit="ns"))


def _stamp(ns: int | None) -> str:
    return unix_nanos_to_iso8601(int(ns)) if ns is not None else "N/A"


def run_info(run: RunFolder) -> dict[str, str]:
    """The tearsheet's "Run Information" rows, from portfolio.json (else summary.json)."""
    info = (run.portfolio or {}).get("run") or {}
    summary = run.summary
    started, finished = time_ns(info.get("run_started_ns")), time_ns(info.get("run_finished_ns"))

    def count(key: str) -> str:
        value = info.get(key, summary.get(key))
        return f"{value:_}" if isinstance(value, int) else "N/A"

    rows = {
        "Run ID": str(info.get("run_id") or "N/A"),
        "Run started": _stamp(started),
        "Run finished": _stamp(finished),
        "Elapsed time": _duration(started, finished),
        "Backtest start": _stamp(run.start_ns),
        "Backtest end": _stamp(run.end_ns),
        "Backtest range": _duration(run.start_ns, run.end_ns),
        "Iterations": count("iterations"),
        "Total events": count("total_events"),
        "Total orders": count("total_orders"),
        "Total positions": count("total_positions"),
    }
    if info.get("run_id") is None and started is None:  # not recorded: leave those rows out
        for key in ("Run ID", "Run started", "Run finished", "Elapsed time"):
            rows.pop(key)
    return rows


def account_info(portfolio: dict | None) -> dict[str, str]:
    """Starting and ending balance per currency of the venue account."""
    account = (portfolio or {}).get("account") or {}
    venue = account.get("venue") or ""
    out = {}
    for currency, balance in (account.get("balances") or {}).items():
        where = f"{venue}, {currency}" if venue else currency
        for label, key in (("Starting balance", "starting"), ("Ending balance", "ending")):
            value = (balance or {}).get(key)
            if isinstance(value, (int, float)):
                out[f"{label} ({where})"] = f"{value:,.2f} {currency}"
    return out


def position_count(run: RunFolder) -> int:
    """Positions of the run (NautilusTrader's count, else the positions report's rows)."""
    info = (run.portfolio or {}).get("run") or {}
    for value in (info.get("total_positions"), run.summary.get("total_positions")):
        if isinstance(value, int):
            return value
    return len(run.positions)


def share_plotlyjs(document: str) -> tuple[str, bool]:
    """The document with its inline plotly.js replaced by the loader of the page's copy; unchanged
    (and False) when the exact bundle is not found in it."""
    bundle = get_plotlyjs()
    if document.count(bundle) != 1:
        return document, False
    return document.replace(bundle, _SHARED_PLOTLYJS), True


def build_tearsheet(run: RunFolder) -> Tearsheet:
    """Draw NautilusTrader's tearsheet for ``run``; never raises for an empty or older run."""
    portfolio = run.portfolio
    notes = []
    if portfolio is not None:
        source = (
            f"NautilusTrader's PortfolioAnalyzer at the end of the run ({PORTFOLIO_FILE}), returns series "
            f"{RETURNS_FILE}: {portfolio.get('returns_basis', 'returns')}, {portfolio.get('returns_count', 0)} value(s)"
        )
        stats_pnls = portfolio.get("stats_pnls") or {}
        stats_returns = portfolio.get("stats_returns") or {}
        stats_general = portfolio.get("stats_general") or {}
    else:
        source = "summary.json's PnL and returns statistics"
        notes.append(
            f"this run folder has no {PORTFOLIO_FILE} (made before the report existed, or a live session): "
            "no general statistics, no returns series, so the equity, drawdown and returns charts are empty",
        )
        stats_pnls = run.summary.get("stats_pnls") or {}
        stats_returns = run.summary.get("stats_returns") or {}
        stats_general = {}
    returns = run.returns if run.returns is not None else pd.Series(dtype="float64")
    if position_count(run) == 0:
        notes.insert(0, "no trades in this run (no positions, e.g. strategies in shadow mode): "
                        "the tearsheet's statistics and charts are empty")
    elif returns.empty:
        notes.append("no closed position returns yet: the returns charts are empty")
    title = (
        f"<b>NautilusTrader</b> v{nautilus_trader.__version__} tearsheet"
        f"<br><sub>{html.escape(run.name)} · {html.escape(run.path.name)}</sub>"
    )
    try:
        document = create_tearsheet_from_stats(
            stats_pnls=_nan_back(stats_pnls),
            stats_returns=_nan_back(stats_returns),
            stats_general=_nan_back(stats_general),
            returns=returns,
            output_path=None,
            title=title,
            run_info=run_info(run),
            account_info=account_info(portfolio),
        )
    except Exception as exc:  # noqa: BLE001 (NautilusTrader's code: a failure there must not lose the report)
        notes.append(f"NautilusTrader's tearsheet could not be drawn ({type(exc).__name__}: {exc})")
        return Tearsheet(None, notes, source)
    document, shared = share_plotlyjs(document)
    if not shared:
        notes.append("the tearsheet carries its own copy of plotly.js (its bundle differs from the report's)")
    return Tearsheet(document, notes, source)


def _nan_back(stats: dict) -> dict:
    """The analyzer's NaN statistics (stored as JSON null) back to NaN, as the tearsheet shows them
    for a live engine; per-currency PnL dicts one level down."""
    return {
        key: _nan_back(value) if isinstance(value, dict) else (float("nan") if value is None else value)
        for key, value in stats.items()
    }


def frame_html(sheet: Tearsheet, frame_id: str = "tearsheet-frame") -> str:
    """The ``<iframe srcdoc>`` holding the tearsheet document ("" when there is none)."""
    if sheet.document is None:
        return ""
    return (
        f'<iframe id="{frame_id}" class="tearsheet" title="NautilusTrader tearsheet" '
        f'style="width:100%;height:{FRAME_HEIGHT_PX}px;border:0" srcdoc="{html.escape(sheet.document, quote=True)}">'
        "</iframe>"
    )
