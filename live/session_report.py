"""The session folder of a stopped paper node, in the formats of a backtest run folder.

``write_session_report(node, session_dir, ...)`` writes (to a temp folder next to ``session_dir``,
then moved into place):

- ``summary.json``: node (trader id, instance id), start/end times, how the session stopped, the
  strategies' results (``backtests.runner._strategy_results``: class, config, orders, positions,
  realized PnL and each strategy's ``summary()``), the A/B ``comparison`` rows
  (``backtests.runner._comparison``), the report row counts, risk-guard limit events (actors with
  ``events()``) and, when given, the ``catalog`` the session's data was ingested into;
- ``signals.parquet``: every strategy's ``signal_rows()`` (``strategies.signals.write_signals``);
- ``orders.csv``, ``fills.csv``, ``positions.csv``, ``account.csv``: the trader's reports;
- ``trades.csv``: each bracket entry as planned (reference price, stop, target, predicted P&L at
  each) against the fill (slippage) and the position's realized P&L (``backtests.trades_report``).

So ``ifd evaluate SESSION_DIR --labels ... [--catalog ...]`` scores a paper session like a backtest.

No secrets: nothing from the node's data client config is written, and the written files are
checked for the Databento API key (``DATABENTO_API_KEY``); a hit aborts the write.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nautilus_trader.model.identifiers import Venue

from backtests.runner import (
    _comparison,
    _iso,
    _jsonable,
    _strategy_results,
    write_trader_reports,
)
from ifd.errors import IfdError

API_KEY_ENV = "DATABENTO_API_KEY"
DEFAULT_VENUE = "GLBX"


def limit_events(trader) -> dict[str, list[dict]]:
    """Risk-guard limit events: ``events()`` of every actor that has one, keyed by actor id."""
    out = {}
    for actor in trader.actors():
        if callable(getattr(actor, "events", None)):
            out[actor.id.value] = list(actor.events())
    return out


def _check_no_secret(folder: Path, secrets: list[str]) -> None:
    for file in folder.iterdir():
        data = file.read_bytes()
        for secret in secrets:
            if secret.encode() in data:
                raise IfdError(f"session report: {file.name} would contain a secret; not written")


def write_session_report(
    node,
    session_dir: Path | str,
    *,
    started_ns: int | None = None,
    ended_ns: int | None = None,
    stopped_by: str | None = None,
    venue: str = DEFAULT_VENUE,
    catalog: Path | str | None = None,
    extra: Mapping[str, Any] | None = None,
    env: Mapping[str, str] = os.environ,
) -> dict:
    """Write the session folder of a stopped (not yet disposed) ``TradingNode``; returns the summary.

    ``session_dir`` must not exist or be empty. ``extra`` is merged into ``summary.json``.
    """
    session_dir = Path(session_dir)
    if session_dir.exists() and any(session_dir.iterdir()):
        raise IfdError(f"{session_dir}: session folder already exists and is not empty")
    session_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = session_dir.parent / f".{session_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        trader = node.trader
        counts, orders, positions = write_trader_reports(trader, node.cache, Venue(venue), staging)
        strategies = _strategy_results(trader, orders, positions)
        summary: dict[str, Any] = {
            "kind": "paper_session",
            "name": f"paper-{trader.trader_id.value}",
            "trader_id": trader.trader_id.value,
            "instance_id": str(node.kernel.instance_id),
            "session_start": _iso(started_ns),
            "session_end": _iso(ended_ns),
            "stopped_by": stopped_by,
            "venue": venue,
            "reports": counts,
            "strategies": strategies,
            "limit_events": limit_events(trader),
        }
        if catalog is not None:
            summary["catalog"] = str(catalog)
        comparison = _comparison(strategies)
        if comparison:
            summary["comparison"] = comparison
        summary.update(extra or {})
        (staging / "summary.json").write_text(json.dumps(_jsonable(summary), indent=2) + "\n")
        secret = env.get(API_KEY_ENV)
        _check_no_secret(staging, [secret] if secret else [])
        if session_dir.exists():
            session_dir.rmdir()  # empty (checked above)
        os.replace(staging, session_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary
