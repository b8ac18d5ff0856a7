"""The dashboard's snapshot: plain inputs in, one JSON-able dict out (no engine objects here).

``DashboardActor`` gathers the inputs on the node's thread (bus messages into a ``BusLog``,
positions from the cache as ``PositionRow``s, book counters into a ``FeedMeter``, each figure
source's ``live_figures()``, the data budget from ``read_budget``) and calls ``build_snapshot``;
the web server only serves the latest result. Everything here is unit-tested without a node.

Numbers stay numbers (the page formats them), except the generic figure sections
(``figure_section``), which arrive as text rows with an optional usage percentage, because their
keys are only known to whoever wrote the source. Non-finite floats become ``None`` (JSON has no
infinity); a usage whose value is infinite (e.g. total risk of a position without a stop) reads
"unbounded" at 100%.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SNAPSHOT_VERSION = 1
LATENCY_SAMPLES = 500  # signal latencies kept for the percentiles
MAX_TEXT = 240  # characters of any free text (reasons, alarm texts) shown
ALERT_IF_TRUE = {"halted", "alarm", "in_alarm", "breached", "stale", "degraded"}
ALERT_IF_FALSE = {"healthy", "ok", "connected"}
UNITS = {"_usd": "USD", "_ms": "ms", "_us": "µs", "_s": "s", "_pct": "%"}


def iso_ns(ts_ns: int | None) -> str | None:
    """``2026-11-20T14:31:05.123Z`` (UTC, milliseconds) of a UNIX-nanosecond time; None for 0/None."""
    if not ts_ns:
        return None
    moment = dt.datetime.fromtimestamp(ts_ns / 1e9, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def duration_text(seconds: float) -> str:
    """``3d 04:05:06`` / ``04:05:06``."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}d {clock}" if days else clock


def finite(value: float | None, digits: int = 2) -> float | None:
    """``value`` rounded, or None when missing or not finite."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


def jsonable(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (``json.dumps(allow_nan=False)`` safe)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return value


def _clip(text: Any) -> str:
    text = str(text)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


# -- bus messages ---------------------------------------------------------------------------------


def signal_entry(signal: Any) -> dict:
    """A signal table row from a ``FlowSignal`` (or anything with its attributes)."""
    return {
        "time": iso_ns(signal.ts_init),
        "market_time": iso_ns(signal.ts_event),
        "algorithm": str(signal.algorithm),
        "instrument_id": str(getattr(signal.instrument_id, "value", signal.instrument_id)),
        "option_kind": str(signal.option_kind),
        "strike": finite(signal.strike, 4),
        "side": str(signal.side),
        "bias": str(signal.bias),
        "confidence": finite(signal.confidence, 4),
        "premium_usd": finite(signal.notional_usd, 0),
        "latency_ms": finite(signal.latency_ns / 1e6, 3),
        "reasons": _clip(signal.reasons),
    }


class BusLog:
    """What the dashboard heard on the message bus: recent signals and alarms, detector and feed health."""

    def __init__(self, max_signals: int, max_alarms: int) -> None:
        self.signals: deque[dict] = deque(maxlen=max_signals)
        self.signals_total = 0
        self.latencies_ms: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self.alarms: deque[dict] = deque(maxlen=max_alarms)
        self.alarms_total = 0
        self.detectors: dict[str, dict] = {}
        self.feed_health: dict | None = None

    def add_signal(self, signal: Any) -> None:
        entry = signal_entry(signal)
        self.signals.appendleft(entry)  # newest first
        self.signals_total += 1
        if entry["latency_ms"] is not None and signal.latency_ns > 0:
            self.latencies_ms.append(entry["latency_ms"])

    def set_detector(self, status: Any) -> None:
        """A ``DetectorStatus``: the latest per algorithm."""
        self.detectors[str(status.algorithm)] = {
            "algorithm": str(status.algorithm), "healthy": bool(status.healthy),
            "reason": _clip(status.reason), "time": iso_ns(status.ts_init),
        }

    def set_feed_health(self, health: Any) -> None:
        """A ``FeedHealth`` verdict (the data-quality monitor's)."""
        self.feed_health = {"healthy": bool(health.healthy), "reason": _clip(health.reason),
                            "time": iso_ns(health.ts_init)}

    def add_alarm(self, alarm: Any) -> None:
        """A ``MonitorAlarm``."""
        self.alarms.appendleft({
            "time": iso_ns(alarm.ts_init), "monitor": str(alarm.monitor), "kind": str(alarm.kind),
            "level": str(alarm.level), "title": _clip(alarm.title), "text": _clip(alarm.text),
        })
        self.alarms_total += 1


def latency_summary(samples_ms: Iterable[float]) -> dict:
    """Count, median, p99 and max of signal latencies (ms); None figures without samples."""
    values = sorted(samples_ms)
    if not values:
        return {"count": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}

    def pct(q: float) -> float:
        return values[min(len(values) - 1, math.ceil(q * len(values)) - 1)]

    return {"count": len(values), "p50_ms": round(pct(0.5), 3), "p99_ms": round(pct(0.99), 3),
            "max_ms": round(values[-1], 3)}


# -- feed -----------------------------------------------------------------------------------------


class FeedMeter:
    """Book-update rate and data freshness from successive samples of the cache's counters."""

    def __init__(self) -> None:
        self._previous: tuple[int, int] | None = None  # (now_ns, total updates)
        self._rate: float | None = None

    def sample(self, now_ns: int, books: int, updates: int, last_event_ns: int | None,
               last_trade_ns: int | None, live_data: bool) -> dict:
        """``books``: instruments with an order book; ``updates``: their update counts summed.
        ``live_data``: the feed's timestamps are today's (not a replay), so their age means something."""
        if self._previous is not None and now_ns > self._previous[0]:
            elapsed_s = (now_ns - self._previous[0]) / 1e9
            if elapsed_s >= 0.2:  # a rate over a shorter span is noise
                self._rate = max(0, updates - self._previous[1]) / elapsed_s
                self._previous = (now_ns, updates)
        else:
            self._previous = (now_ns, updates)
        age = (now_ns - last_event_ns) / 1e9 if live_data and last_event_ns else None
        return {
            "books": books, "updates": updates, "updates_per_s": finite(self._rate, 1),
            "last_event": iso_ns(last_event_ns), "last_trade": iso_ns(last_trade_ns),
            "age_s": finite(age, 3),
        }


# -- positions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PositionRow:
    """One open position, marked (``mark``: bid for a long, ask for a short, else the last trade)."""

    position_id: str
    instrument_id: str
    strategy_id: str
    side: str
    quantity: float
    avg_px_open: float
    mark: float | None
    unrealized_usd: float | None
    realized_usd: float
    opened: str | None


def positions_section(rows: Iterable[PositionRow], realized_closed_today_usd: float) -> dict:
    """Open positions and the day's P&L: realized (positions closed today plus the open ones'
    realized part, e.g. commissions) and unrealized at the marks."""
    rows = list(rows)
    unrealized = sum(r.unrealized_usd for r in rows if r.unrealized_usd is not None)
    realized = realized_closed_today_usd + sum(r.realized_usd for r in rows)
    return {
        "rows": [jsonable({k: (finite(v, 6) if isinstance(v, float) else v) for k, v in asdict(r).items()})
                 for r in rows],
        "unrealized_usd": round(unrealized, 2),
        "realized_day_usd": round(realized, 2),
        "day_pnl_usd": round(realized + unrealized, 2),
    }


# -- figure sources -------------------------------------------------------------------------------


def _label(key: str) -> str:
    for suffix, unit in UNITS.items():
        if key.endswith(suffix) and len(key) > len(suffix):
            return f"{key[: -len(suffix)].replace('_', ' ')} ({unit})"
    return key.replace("_", " ")


def number_text(value: float | int) -> str:
    """``1,234`` / ``12.50`` / ``0.0123`` / ``unbounded`` / ``n/a``."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "unbounded" if value > 0 else "-unbounded"
    if value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) < 1:
        return f"{value:.4g}"
    return f"{value:,.2f}"


def _scalar_text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool | int | float):
        return number_text(value)
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        if all(not isinstance(v, Mapping | list | tuple) for v in items):
            shown = ", ".join(_scalar_text(v) for v in items[:10])
            return shown + (f" (+{len(items) - 10} more)" if len(items) > 10 else "") if items else "none"
        return f"{len(items)} items"
    return _clip(value)


def _is_usage(value: Any) -> bool:
    return isinstance(value, Mapping) and "value" in value and set(value) <= {"value", "limit", "unit"}


def _row(key: str, value: Any) -> dict:
    row: dict[str, Any] = {"key": key, "label": _label(key), "text": "", "pct": None, "alert": False}
    if _is_usage(value):
        used, limit = value.get("value"), value.get("limit")
        text = _scalar_text(used)
        if isinstance(limit, int | float) and not isinstance(limit, bool):
            text += f" of {_scalar_text(limit)}"
            if isinstance(used, int | float) and limit > 0:
                pct = 100.0 if math.isinf(used) and used > 0 else 100.0 * used / limit
                if math.isfinite(pct):
                    row["pct"] = round(max(0.0, pct), 1)
                    row["alert"] = pct >= 100.0
        row["text"] = text + (f" {value['unit']}" if value.get("unit") else "")
        return row
    row["text"] = _scalar_text(value)
    name = key.rsplit(".", 1)[-1]
    if isinstance(value, bool):
        row["alert"] = (name in ALERT_IF_TRUE and value) or (name in ALERT_IF_FALSE and not value)
    return row


def figure_section(source: str, figures: Mapping[str, Any] | None, error: str | None = None) -> dict:
    """One titled key/value section of a figure source's ``live_figures()``.

    Values: scalars, lists, ``{"value": x, "limit": y}`` (shown as "x of y" with a usage bar,
    alerting at 100%) and nested tables (flattened one level, ``outer.inner``). A ``title`` key
    names the section (else the source's id). Booleans named ``halted``/``alarm``/``stale`` alert
    when true, ``healthy``/``ok``/``connected`` when false.
    """
    if error is not None:
        return {"id": source, "title": source, "error": _clip(error), "alert": True, "rows": []}
    figures = dict(figures or {})
    title = str(figures.pop("title", source))
    rows = []
    for key, value in figures.items():
        if isinstance(value, Mapping) and not _is_usage(value):
            rows.extend(_row(f"{key}.{inner}", v) for inner, v in value.items())
        else:
            rows.append(_row(str(key), value))
    return {"id": source, "title": title, "error": None, "alert": any(r["alert"] for r in rows), "rows": rows}


# -- data budget ----------------------------------------------------------------------------------


def budget_view(limits: Mapping[str, float] | None, spend: Mapping[str, Any] | None, *,
                ledger: str | None = None, error: str | None = None, at: str | None = None) -> dict:
    """The data budget section: ``state`` ok | alert | exhausted | no ledger | error.

    ``limits``: ``daily_usd``, ``monthly_usd``, ``alert_at``; ``spend``: ``day``, ``month``,
    ``day_usd``, ``month_usd`` (None: no ledger yet, nothing spent).
    """
    if error is not None:
        return {"state": "error", "text": _clip(error), "ledger": ledger, "at": at, "today": None, "month": None}
    assert limits is not None
    if spend is None:
        return {"state": "no ledger", "text": f"no ledger ({ledger})" if ledger else "no ledger", "ledger": ledger,
                "at": at, "today": {"period": None, "spent_usd": 0.0, "limit_usd": limits["daily_usd"], "pct": 0.0},
                "month": {"period": None, "spent_usd": 0.0, "limit_usd": limits["monthly_usd"], "pct": 0.0}}

    def period(name: str, spent: float, limit: float) -> dict:
        return {"period": name, "spent_usd": round(spent, 4), "limit_usd": limit,
                "pct": round(100.0 * spent / limit, 1) if limit > 0 else None}

    today = period(spend["day"], spend["day_usd"], limits["daily_usd"])
    month = period(spend["month"], spend["month_usd"], limits["monthly_usd"])
    epsilon = 1e-9
    if spend["day_usd"] >= limits["daily_usd"] - epsilon or spend["month_usd"] >= limits["monthly_usd"] - epsilon:
        state = "exhausted"
    elif spend["month_usd"] >= limits.get("alert_at", 0.8) * limits["monthly_usd"] - epsilon:
        state = "alert"
    else:
        state = "ok"
    return {"state": state, "text": state, "ledger": ledger, "at": at, "today": today, "month": month}


def read_budget(budget_config: str | None, env: Mapping[str, str], now: dt.datetime | None = None) -> dict:
    """The budget section from ``configs/budget.toml`` (or ``budget_config`` / ``IFD_BUDGET_CONFIG``)
    and its ledger, read-only; never raises (a bad file becomes ``state: error``)."""
    from adapters.databento.budget import budget_status, load_budget

    at = iso_ns(int((now or dt.datetime.now(dt.UTC)).timestamp() * 1e9))
    try:
        config = load_budget(budget_config, env)
        limits = {"daily_usd": config.daily_usd, "monthly_usd": config.monthly_usd, "alert_at": config.alert_at}
        if not Path(config.ledger).is_file():
            return budget_view(limits, None, ledger=str(config.ledger), at=at)
        spend = budget_status(config, now).spend
    except Exception as exc:  # the node keeps running; the section says what is wrong
        return budget_view(None, None, error=f"{type(exc).__name__}: {exc}", at=at)
    return budget_view(limits, asdict(spend), ledger=str(config.ledger), at=at)


# -- the snapshot ---------------------------------------------------------------------------------


def build_snapshot(
    *,
    title: str,
    trader_id: str,
    mode: str,
    trading_state: str | None,
    started_ns: int,
    now_ns: int,
    refresh_s: float,
    bus: BusLog,
    positions: dict,
    orders: Mapping[str, int],
    feed: dict,
    sources: list[dict],
    budget: dict,
) -> dict:
    """The JSON-able state the page renders (``positions``: ``positions_section``; ``feed``:
    ``FeedMeter.sample``; ``sources``: ``figure_section`` per source; ``budget``: ``read_budget``)."""
    uptime_s = max(0.0, (now_ns - started_ns) / 1e9)
    snapshot = {
        "version": SNAPSHOT_VERSION,
        "title": title,
        "trader_id": trader_id,
        "mode": mode,
        "trading_state": trading_state,
        "started": iso_ns(started_ns),
        "now": iso_ns(now_ns),
        "uptime_s": round(uptime_s, 1),
        "uptime": duration_text(uptime_s),
        "refresh_s": refresh_s,
        "signals": {"total": bus.signals_total, "rows": list(bus.signals)},
        "detectors": sorted(bus.detectors.values(), key=lambda d: d["algorithm"]),
        "feed": {**feed, "health": bus.feed_health},
        "latency": latency_summary(bus.latencies_ms),
        "alarms": {"total": bus.alarms_total, "rows": list(bus.alarms)},
        "positions": positions,
        "orders": dict(orders),
        "sources": sources,
        "budget": budget,
    }
    return jsonable(snapshot)
