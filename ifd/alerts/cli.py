"""``ifd alerts ls`` (the alert history) and ``ifd alerts test`` (a test alert through the configured sinks).

``register(subparsers)`` adds the ``alerts`` group to the ``ifd`` parser. Failures are ``IfdError``
(one line, exit code 2); ``alerts test`` exits 1 when a sink did not take the test alert.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import time
from datetime import UTC
from datetime import datetime
from pathlib import Path

from ifd.alerts.alert import Alert
from ifd.alerts.alert import Level
from ifd.alerts.config import DEFAULT_CONFIG
from ifd.alerts.config import HistoryConfig
from ifd.alerts.config import load_alerts_config
from ifd.alerts.config import resolve_config_path
from ifd.alerts.dispatcher import build_dispatcher
from ifd.alerts.history import AlertHistory
from ifd.errors import IfdError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400}
LEVELS = tuple(level.label for level in Level)


def parse_since(value: str, now_ns: int | None = None) -> int:
    """``--since``: ISO 8601 (UTC when no zone is given) or a duration back from now (``90s``, ``2h``, ``1d``)."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    match = _DURATION.match(value)
    if match:
        return now_ns - int(float(match[1]) * _SECONDS[match[2]] * 1e9)
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise IfdError(
            f"--since {value!r}: expected an ISO 8601 time (2026-11-16T14:30Z) or a duration (90s, 30m, 2h, 1d)",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1e9)


def history_path(config: str | None, db: str | None) -> Path:
    """``--db``, else the ``[history] path`` of ``--config`` (the default one when that file does not exist)."""
    if db:
        return Path(db)
    path = resolve_config_path(config or DEFAULT_CONFIG)
    if not path.exists() and config in (None, str(DEFAULT_CONFIG)):
        return HistoryConfig.path
    return load_alerts_config(path, secrets=False).history.path


def _deliveries_text(deliveries: dict) -> str:
    parts = []
    for sink, d in deliveries.items():
        extra = f"({d['attempts']})" if d["attempts"] > 1 else ""  # attempts, when retried
        parts.append(f"{sink}:{d['status']}{extra}")
    return " ".join(parts)


def format_alerts(rows: list[dict]) -> str:
    """One line per alert: time, level, kind, source, title, delivery per sink."""
    if not rows:
        return "no alerts"
    lines = [
        f"{r['ts']}  {r['level'].upper():<8}  {r['kind']:<15}  {r['source'] or '-'}  {r['title']}"
        + (f"  [{_deliveries_text(r['deliveries'])}]" if r["deliveries"] else "")
        for r in rows
    ]
    lines.append(f"{len(rows)} alert(s)")
    return "\n".join(lines)


def cmd_alerts_ls(args: argparse.Namespace) -> int:
    """List alerts from the history, most recent ``--limit``, oldest first."""
    if args.limit <= 0:
        raise IfdError(f"--limit must be a positive number, got {args.limit}")
    since = parse_since(args.since) if args.since else None
    history = AlertHistory(history_path(args.config, args.db), readonly=True)
    try:
        rows = history.query(
            since_ns=since, min_level=Level.parse(args.level) if args.level else None, kind=args.kind, limit=args.limit,
        )
    finally:
        history.close()
    print(json.dumps(rows, indent=2) if args.json else format_alerts(rows))
    return 0


def cmd_alerts_test(args: argparse.Namespace) -> int:
    """Send a test alert through every enabled sink (levels, de-duplication and rate limits bypassed)."""
    config = load_alerts_config(args.config)
    dispatcher = build_dispatcher(config)
    if not dispatcher.sinks and dispatcher.history is None:
        dispatcher.close(0)
        raise IfdError(f"{config.path}: no sink is enabled")
    alert = Alert.create(
        Level.parse(args.level), "test", "Test alert",
        f"ifd alerts test from {socket.gethostname()}: this sink works",
        key=f"test:{time.time_ns()}", fields={"config": config.path, "level": args.level},
        source=config.source or "ifd alerts test",
    )
    dispatcher.dispatch(alert, force=True)
    timeout = config.close_timeout_s if args.timeout is None else args.timeout
    dispatcher.close(timeout)
    ok = True
    for sink, d in dispatcher.deliveries(alert.alert_id).items():
        status = d["status"]
        line = f"{sink}: {status}"
        if status == "queued":
            line += f" (no answer within {timeout:g} s)"
        if d["attempts"]:
            line += f" after {d['attempts']} attempt(s)"
        if d["error"]:
            line += f": {d['error']}"
        print(line)
        ok = ok and status == "sent"
    if dispatcher.history is not None:
        print(f"history: recorded in {config.history.path}")
    return 0 if ok else 1


def register(subparsers) -> None:
    """Add ``alerts ls`` and ``alerts test`` to the ``ifd`` command's subparsers."""
    alerts = subparsers.add_parser(
        "alerts", help="alert history and a test alert through the configured sinks",
    ).add_subparsers(dest="action", metavar="ACTION", required=True)

    ls = alerts.add_parser(
        "ls",
        help="list alerts from the SQLite history, with each sink's delivery status",
        description="The most recent alerts (alert time: simulated in a backtest), oldest first, with the delivery "
        "status per sink: sent, queued, failed, dropped (webhook queue full), rate_limited, error.",
    )
    ls.add_argument("--since", help="ISO 8601 time (UTC without a zone) or a duration back from now: 90s, 30m, 2h, 1d")
    ls.add_argument("--level", choices=LEVELS, help="only alerts at or above this level")
    ls.add_argument("--kind", help="only this kind (flow_signal, trading_state, detector_health, order_denied, test)")
    ls.add_argument("--limit", type=int, default=50, help="at most this many, the most recent (default: %(default)s)")
    ls.add_argument("--json", action="store_true", help="print JSON (fields and delivery errors included)")
    ls.add_argument("--db", help="history file (default: the [history] path of --config)")
    ls.add_argument("--config", default=str(DEFAULT_CONFIG), help="alerts TOML (default: %(default)s)")
    ls.set_defaults(func=cmd_alerts_ls)

    test = alerts.add_parser(
        "test",
        help="send a test alert through every enabled sink and report each one's delivery",
        description="Send one alert through the console, log file, history and webhook as configured (levels, "
        "de-duplication and rate limits bypassed), wait for the webhook, and print each sink's status. "
        "Exit code 1 when a sink did not take it.",
    )
    test.add_argument("--config", default=str(DEFAULT_CONFIG), help="alerts TOML (default: %(default)s)")
    test.add_argument("--level", choices=LEVELS, default="info", help="level of the test alert (default: %(default)s)")
    test.add_argument(
        "--timeout", type=float, help="seconds to wait for the webhook (default: [alerts] close_timeout_s)",
    )
    test.set_defaults(func=cmd_alerts_test)
