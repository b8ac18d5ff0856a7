"""The custom NautilusTrader data the IFD strategies publish, and the run's ``signals.parquet``."""

# No `from __future__ import annotations`: customdataclass reads the annotations as types.

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from nautilus_trader.core.data import Data
from nautilus_trader.model.data import DataType
from nautilus_trader.model.custom import customdataclass
from nautilus_trader.model.identifiers import InstrumentId


@customdataclass
class FlowSignal(Data):
    """Institutional flow found on one option: published on the message bus by an IFD strategy.

    ``ts_event`` is the last trade that triggered it, ``ts_init`` the signal time. ``latency_ns`` is
    the processing latency: from the triggering trade's ``ts_init`` (its arrival at the node) to the
    signal, measured on the wall clock (queueing on a live node plus the detector's own time; in a
    backtest, where the clock stands still, the detector's time alone).
    """

    instrument_id: InstrumentId = InstrumentId.from_str("NONE.NONE")
    algorithm: str = ""  # "ifd_v1" | "ifd_v3"
    underlying: str = ""
    strike: float = 0.0
    option_kind: str = ""  # "CALL" | "PUT"
    side: str = ""  # the institution's side on the option: "BUY" | "SELL"
    bias: str = ""  # "BULLISH" | "BEARISH"
    confidence: float = 0.0
    notional_usd: float = 0.0
    window_start_ns: int = 0
    reasons: str = ""
    latency_ns: int = 0


@customdataclass
class DetectorStatus(Data):
    """A detector's health, published when it changes: the fallback strategy listens to it."""

    algorithm: str = ""
    healthy: bool = True
    reason: str = ""


@customdataclass
class FeedHealth(Data):
    """The feed's data-quality verdict, published by the data-quality monitor when it changes.

    Strategies whose profile sets ``[quality] pause_on_feed_alarm`` mark themselves unhealthy while
    ``healthy`` is false (their fallback takes over). ``reason``: the breached checks, "; "-joined.
    """

    healthy: bool = True
    reason: str = ""


@customdataclass
class MonitorAlarm(Data):
    """A monitor's finding (data quality, latency), published on the message bus; the
    AlertsActor turns each into an alert. ``kind`` names the check (e.g. "crossed_book",
    "p99_processing_latency"), ``key`` what de-duplication compares (default: monitor:kind),
    ``level`` info | warning | critical, ``fields`` "name=value" pairs joined by "; "."""

    monitor: str = ""  # "data_quality" | "latency"
    kind: str = ""
    level: str = "warning"
    title: str = ""
    text: str = ""
    key: str = ""
    fields: str = ""


def data_topic(cls: type) -> str:
    """The message-bus topic where ``publish_data(DataType(cls), ...)`` publishes.

    Subscribers use it directly: NautilusTrader 1.231's ``subscribe_data`` without a client id
    logs an error (and still subscribes).
    """
    return f"data.{DataType(cls).topic}"


SIGNAL_SCHEMA = pa.schema(
    [
        ("ts_event", pa.int64()),
        ("ts_signal", pa.int64()),
        ("algorithm", pa.string()),
        ("instrument_id", pa.string()),
        ("underlying", pa.string()),
        ("strike", pa.float64()),
        ("option_kind", pa.string()),
        ("side", pa.string()),
        ("bias", pa.string()),
        ("confidence", pa.float64()),
        ("notional_usd", pa.float64()),
        ("window_start_ns", pa.int64()),
        ("reasons", pa.string()),
        ("latency_ns", pa.int64()),
        ("strategy_id", pa.string()),
        ("mode", pa.string()),
        ("acted", pa.bool_()),
    ],
)


def signal_row(signal: FlowSignal, strategy_id: str, mode: str, acted: bool) -> dict:
    """One ``signals.parquet`` row."""
    return {
        "ts_event": signal.ts_event,
        "ts_signal": signal.ts_init,
        "algorithm": signal.algorithm,
        "instrument_id": signal.instrument_id.value,
        "underlying": signal.underlying,
        "strike": signal.strike,
        "option_kind": signal.option_kind,
        "side": signal.side,
        "bias": signal.bias,
        "confidence": signal.confidence,
        "notional_usd": signal.notional_usd,
        "window_start_ns": signal.window_start_ns,
        "reasons": signal.reasons,
        "latency_ns": signal.latency_ns,
        "strategy_id": strategy_id,
        "mode": mode,
        "acted": acted,
    }


def write_signals(rows: list[dict], path: Path) -> int:
    """Write signal rows (sorted by signal time) to Parquet atomically; returns the row count."""
    rows = sorted(rows, key=lambda r: (r["ts_signal"], r["algorithm"]))
    table = pa.Table.from_pylist(rows, schema=SIGNAL_SCHEMA)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return table.num_rows
