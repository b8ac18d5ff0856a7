"""Alerts from what the nodes publish: flow signals, trading-state changes, detector health, denied orders.

One place, so the monitor, the backtests and the live nodes alert the same way. A signal is a
``strategies.signals.FlowSignal`` or a ``signals.parquet`` row (dict); its level is the highest
whose confidence and premium thresholds (``[signals]`` in ``configs/alerts.toml``) it meets both.
Nothing here imports NautilusTrader: events are read by attribute.
"""

from __future__ import annotations

from collections.abc import Mapping

from ifd.alerts.alert import Alert
from ifd.alerts.alert import Level
from ifd.alerts.alert import iso_utc
from ifd.alerts.config import SignalRules

SIGNAL_KIND = "flow_signal"
TRADING_STATE_KIND = "trading_state"
DETECTOR_KIND = "detector_health"
ORDER_DENIED_KIND = "order_denied"

_SIGNAL_FIELDS = ("algorithm", "underlying", "strike", "option_kind", "side", "bias", "confidence", "notional_usd",
                  "window_start_ns", "reasons")


def usd(amount: float) -> str:
    """``$4.20M``, ``$350.0k``, ``$120``."""
    if abs(amount) >= 1e6:
        return f"${amount / 1e6:,.2f}M"
    if abs(amount) >= 1e3:
        return f"${amount / 1e3:,.1f}k"
    return f"${amount:,.0f}"


def signal_level(confidence: float, notional_usd: float, rules: SignalRules) -> Level | None:
    """The highest level whose confidence and premium thresholds are both met; ``None`` under info's."""
    for level in (Level.CRITICAL, Level.WARNING, Level.INFO):
        name = level.label
        if (confidence >= getattr(rules, f"{name}_confidence")
                and notional_usd >= getattr(rules, f"{name}_notional_usd")):
            return level
    return None


def _signal_values(signal) -> dict:
    if isinstance(signal, Mapping):
        values = dict(signal)
        values["ts"] = int(values.get("ts_signal") or values.get("ts_init") or values.get("ts_event") or 0)
        values["instrument_id"] = str(values.get("instrument_id", ""))
        return values
    values = {name: getattr(signal, name) for name in _SIGNAL_FIELDS}
    values["instrument_id"] = signal.instrument_id.value
    values["ts_event"] = int(signal.ts_event)
    values["ts"] = int(signal.ts_init)  # the signal time
    return values


def alert_from_signal(signal, rules: SignalRules, source: str = "") -> Alert | None:
    """The alert for a FlowSignal or a ``signals.parquet`` row, or ``None`` (algorithm not listed, under info)."""
    v = _signal_values(signal)
    algorithm = str(v.get("algorithm", ""))
    if algorithm not in rules.algorithms:
        return None
    confidence, notional = float(v.get("confidence", 0.0)), float(v.get("notional_usd", 0.0))
    level = signal_level(confidence, notional, rules)
    if level is None:
        return None
    instrument, side, bias = v["instrument_id"], str(v.get("side", "")), str(v.get("bias", ""))
    fields = {
        "algorithm": algorithm,
        "instrument": instrument,
        "option": f"{v.get('option_kind', '')} {float(v.get('strike', 0.0)):g}".strip(),
        "side": side,
        "bias": bias,
        "confidence": f"{confidence:.2f}",
        "premium": usd(notional),
    }
    if v.get("window_start_ns") and v.get("ts_event"):
        fields["window"] = f"{iso_utc(int(v['window_start_ns']))} to {iso_utc(int(v['ts_event']))}"
    for name in ("strategy_id", "mode", "acted"):
        if name in v and v[name] is not None:
            fields[name] = str(v[name])
    reasons = str(v.get("reasons") or "")
    text = f"{usd(notional)} premium, confidence {confidence:.2f}" + (f"; {reasons}" if reasons else "")
    return Alert.create(
        level, SIGNAL_KIND, f"{bias} flow: {side} {instrument} ({algorithm})", text,
        key=f"flow:{algorithm}:{instrument}:{side}", fields=fields, ts_ns=v["ts"], source=source,
    )


def alert_from_trading_state(event, source: str = "") -> Alert:
    """A RiskEngine ``TradingStateChanged``: HALTED (the risk guard halts on a limit) critical, REDUCING a warning."""
    state = getattr(event.state, "name", str(event.state))
    level = {"HALTED": Level.CRITICAL, "REDUCING": Level.WARNING}.get(state, Level.INFO)
    text = {
        "HALTED": "trading halted: the RiskEngine denies every new order (risk limit breached or emergency stop)",
        "REDUCING": "trading reducing: only orders that reduce positions pass",
    }.get(state, f"trading state {state}")
    return Alert.create(
        level, TRADING_STATE_KIND, f"Trading {state}", text, key=f"trading_state:{state}",
        fields={"trader": str(event.trader_id), "state": state}, ts_ns=int(event.ts_event), source=source,
    )


def alert_from_detector_status(status, source: str = "") -> Alert:
    """A detector's ``DetectorStatus``: unhealthy is a warning (its fallback may take over), recovered info."""
    healthy = bool(status.healthy)
    state = "healthy" if healthy else "unhealthy"
    return Alert.create(
        Level.INFO if healthy else Level.WARNING, DETECTOR_KIND, f"{status.algorithm} {state}", str(status.reason),
        key=f"detector:{status.algorithm}:{state}", fields={"algorithm": status.algorithm, "reason": status.reason},
        ts_ns=int(status.ts_event), source=source,
    )


def alert_from_order_denied(event, source: str = "") -> Alert:
    """An ``OrderDenied`` (position cap of the risk guard, RiskEngine checks, a halt): a warning."""
    strategy = str(event.strategy_id)
    return Alert.create(
        Level.WARNING, ORDER_DENIED_KIND, f"Order denied: {event.instrument_id} ({strategy})", str(event.reason),
        key=f"order_denied:{strategy}:{event.reason}",
        fields={"strategy": strategy, "instrument": str(event.instrument_id), "order": str(event.client_order_id)},
        ts_ns=int(event.ts_event), source=source,
    )


def alert_from_monitor_alarm(alarm, source: str = "") -> Alert:
    """A monitor's ``MonitorAlarm`` (data quality, latency) at the level it gives."""
    fields = dict(
        part.split("=", 1) for part in str(alarm.fields).split("; ") if "=" in part
    )
    return Alert.create(
        alarm.level, f"monitor.{alarm.monitor}", str(alarm.title), str(alarm.text),
        key=alarm.key or f"monitor:{alarm.monitor}:{alarm.kind}", fields={"check": alarm.kind, **fields},
        ts_ns=int(alarm.ts_event), source=source,
    )
