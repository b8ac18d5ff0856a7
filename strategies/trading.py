"""Trading and data-quality settings of an IFD profile, and the entry decision (engine-free)."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import fields

from ifd.detection.types import BUY
from ifd.detection.types import SELL
from ifd.products import round_to_tick

MODES = ("shadow", "trade", "fallback")


def _from_dict(cls, values: dict, section: str):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"[{section}] unknown setting(s): {', '.join(unknown)}")
    return cls(**values)


@dataclass(frozen=True)
class TradingParams:
    """When and how a strategy in trade mode enters; every limit is a profile setting."""

    threshold: float = 0.8  # minimum signal confidence to act on
    instrument: str = "option"  # "option": the signal's option, same side; "future": NQ in the bias direction
    quantity: int = 1
    max_position: int = 1  # contracts, across all instruments of the strategy, open and pending
    stop_loss_pct: float = 0.30  # of the entry reference price
    take_profit_pct: float = 0.50
    time_exit_minutes: float = 15.0
    reentry_cooldown_minutes: float = 10.0  # per instrument

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"[trading] threshold must be within 0..1, got {self.threshold}")
        if self.instrument not in ("option", "future"):
            raise ValueError(f"[trading] instrument must be 'option' or 'future', got {self.instrument!r}")
        if self.quantity < 1 or self.max_position < self.quantity:
            raise ValueError("[trading] need 1 <= quantity <= max_position")
        if not (0 < self.stop_loss_pct < 1 and self.take_profit_pct > 0):
            raise ValueError("[trading] stop_loss_pct must be within (0, 1) and take_profit_pct > 0")
        if self.time_exit_minutes <= 0:
            raise ValueError("[trading] time_exit_minutes must be > 0")

    @classmethod
    def from_dict(cls, values: dict) -> TradingParams:
        return _from_dict(cls, values, "trading")


@dataclass(frozen=True)
class QualityParams:
    """Data-quality checks that mark a detector unhealthy (the fallback takes over)."""

    max_feed_gap_s: float = 120.0  # no trade anywhere in the chain for this long
    min_agreement_rate: float = 0.90  # feed aggressor side vs book
    min_trades_for_agreement: int = 200
    allowed_baseline_sources: tuple[str, ...] = ("instrument", "moneyness", "intraday")
    pause_on_feed_alarm: bool = False  # unhealthy while the data-quality monitor reports the feed unhealthy

    @classmethod
    def from_dict(cls, values: dict) -> QualityParams:
        values = dict(values)
        if "allowed_baseline_sources" in values:
            values["allowed_baseline_sources"] = tuple(values["allowed_baseline_sources"])
        return _from_dict(cls, values, "quality")


@dataclass(frozen=True)
class EntryPlan:
    """A bracket entry: side and instrument, with stop-loss and take-profit prices."""

    instrument_id: str
    kind: str  # "CALL" | "PUT" | "FUT"
    side: int  # BUY or SELL
    quantity: int
    stop_loss: float
    take_profit: float
    reference_price: float


def plan_entry(
    params: TradingParams,
    confidence: float,
    side: int,
    bias: str,
    option_id: str,
    option_kind: str,
    option_price: float,
    future_id: str,
    future_price: float | None,
    exposure: int,
) -> EntryPlan | None:
    """The entry a signal calls for, or None (below threshold, no price, or over the position limit)."""
    if confidence < params.threshold or exposure + params.quantity > params.max_position:
        return None
    if params.instrument == "future":
        if future_price is None or future_price <= 0:
            return None
        instrument_id, kind, price = future_id, "FUT", future_price
        side = BUY if bias == "BULLISH" else SELL
    else:
        if option_price <= 0:
            return None
        instrument_id, kind, price = option_id, option_kind, option_price
    if side == BUY:
        stop = round_to_tick(kind, price * (1 - params.stop_loss_pct), up=False)
        target = round_to_tick(kind, price * (1 + params.take_profit_pct), up=True)
    else:
        stop = round_to_tick(kind, price * (1 + params.stop_loss_pct), up=True)
        target = round_to_tick(kind, price * (1 - params.take_profit_pct), up=False)
    if side == SELL and target >= price:
        return None  # no room below a near-zero premium
    return EntryPlan(instrument_id, kind, side, params.quantity, stop, target, price)
