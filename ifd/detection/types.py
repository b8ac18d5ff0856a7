"""Values shared by the detectors, the strategies that drive them, and the evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field

BUY = 1
SELL = -1
UNKNOWN = 0

SIDE_NAMES = {BUY: "BUY", SELL: "SELL", UNKNOWN: "UNKNOWN"}


def bias_of(option_kind: str, side: int) -> str:
    """BULLISH for bought calls or sold puts, BEARISH for bought puts or sold calls."""
    if option_kind == "FUT":
        return "BULLISH" if side == BUY else "BEARISH"
    up = (option_kind == "CALL") == (side == BUY)
    return "BULLISH" if up else "BEARISH"


@dataclass(frozen=True, slots=True)
class InstrumentInfo:
    """What the detectors know about an instrument (taken from the NautilusTrader instrument)."""

    instrument_id: str  # NautilusTrader id, e.g. "NQZ6 C21000.GLBX"
    kind: str  # "CALL" | "PUT" | "FUT"
    strike: float  # index points; 0.0 for futures
    expiration_ns: int
    underlying: str  # raw symbol of the underlying future, e.g. "NQZ6" ("" for futures)
    multiplier: float  # 20.0 for NQ
    price_increment: float


@dataclass(frozen=True, slots=True)
class TradeEvent:
    """One trade as the detectors see it, with the book just before it (NaN when unknown)."""

    instrument_id: str
    ts_event: int
    ts_init: int
    price: float
    size: int
    feed_side: int  # aggressor side from the feed (Databento 'T' side): BUY, SELL or UNKNOWN
    best_bid: float
    best_ask: float
    bid_size: int = 0
    ask_size: int = 0


@dataclass(frozen=True, slots=True)
class Detection:
    """A detector's finding; the strategies turn it into a ``FlowSignal``."""

    algorithm: str  # "ifd_v1" | "ifd_v3"
    instrument_id: str
    ts_event: int  # the last trade that triggered it
    side: int  # the institution's side on the instrument: BUY or SELL
    confidence: float  # 0..1
    notional_usd: float  # premium behind the detection
    window_start_ns: int
    reasons: tuple[str, ...] = ()
    factors: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BaselineStats:
    """Historical statistics of one instrument's windowed activity (see ``baselines.py``).

    Per window of ``window_ns`` during the session, over ``days`` days of history:
    traded volume (contracts), pressure (buy volume / total volume, windows with volume only)
    and net premium (buy minus sell premium, USD).
    """

    instrument_id: str
    source: str  # "instrument" | "moneyness" (similar strikes when this one has no history)
    days: int
    window_ns: int
    volume_mean: float
    volume_std: float
    volume_p50: float
    volume_p90: float
    volume_p99: float
    pressure_mean: float
    pressure_std: float
    net_premium_mean: float
    net_premium_std: float
    net_premium_abs_p99: float
