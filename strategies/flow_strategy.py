"""The NautilusTrader side of the IFD detectors: feed them trades with the book, publish signals, trade.

A thin shell: detection math lives in ``ifd.detection``, entry decisions in ``strategies.trading``.
Modes: ``shadow`` (signals only), ``trade`` (signals, and bracket entries at or above the
profile's threshold), ``fallback`` (shadow until the detector it backs up reports itself
unhealthy, then trade until it recovers).
"""

from __future__ import annotations

import time
from array import array
from collections import defaultdict
from collections.abc import Mapping
from datetime import timedelta
from functools import partial

import numpy as np
from nautilus_trader.config import StrategyConfig
from nautilus_trader.model.data import DataType
from nautilus_trader.model.data import TradeTick
from nautilus_trader.model.enums import AggressorSide
from nautilus_trader.model.enums import BookType
from nautilus_trader.model.enums import OrderSide
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.model.instruments import FuturesContract
from nautilus_trader.model.instruments import OptionContract
from nautilus_trader.trading.strategy import Strategy

from ifd.detection.types import BUY
from ifd.detection.types import SELL
from ifd.detection.types import SIDE_NAMES
from ifd.detection.types import UNKNOWN
from ifd.detection.types import Detection
from ifd.detection.types import InstrumentInfo
from ifd.detection.types import TradeEvent
from ifd.detection.types import bias_of
from ifd.errors import IfdError
from strategies.node_loop import on_node_loop
from strategies.signals import DetectorStatus
from strategies.signals import FeedHealth
from strategies.signals import FlowSignal
from strategies.signals import data_topic
from strategies.signals import signal_row
from strategies.trading import MODES
from strategies.trading import QualityParams
from strategies.trading import TradingParams
from strategies.trading import plan_entry

_FEED_SIDE = {AggressorSide.BUYER: BUY, AggressorSide.SELLER: SELL, AggressorSide.NO_AGGRESSOR: UNKNOWN}
_NAN = float("nan")


REPLAYED_WAIT_NS = 60_000_000_000


class FlowStrategyConfig(StrategyConfig, frozen=True):
    """An IFD strategy: its mode and the profile tables ([detector], [trading], [quality])."""

    mode: str = "shadow"
    detector: dict = {}
    trading: dict = {}
    quality: dict = {}
    data_mode: str = "historical"  # "historical" | "live": the same profile serves both
    profile: str | None = None  # the profile file the tables came from (recorded in the summary)
    instrument_ids: list[str] | None = None  # none: every option and future in the cache
    fallback_for: str | None = None  # mode "fallback": the algorithm this strategy backs up
    baselines_catalog: str | None = None  # catalog holding `ifd baselines build` output
    baseline_lookback: int = 20


def instrument_info(instrument) -> InstrumentInfo | None:
    """Detector view of a NautilusTrader instrument (options and futures only)."""
    if isinstance(instrument, OptionContract):
        kind = "CALL" if int(instrument.option_kind) == 1 else "PUT"
        strike, underlying = float(instrument.strike_price), str(instrument.underlying)
    elif isinstance(instrument, FuturesContract):
        kind, strike, underlying = "FUT", 0.0, ""
    else:
        return None
    return InstrumentInfo(
        instrument_id=instrument.id.value,
        kind=kind,
        strike=strike,
        expiration_ns=int(instrument.expiration_ns),
        underlying=underlying,
        multiplier=float(instrument.multiplier),
        price_increment=float(instrument.price_increment),
    )


class FlowStrategy(Strategy):
    """Base of the IFD v1 and v3 strategies; subclasses name the algorithm and build the detector."""

    algorithm = ""
    needs_book = True

    def __init__(self, config: FlowStrategyConfig) -> None:
        super().__init__(config)
        if config.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {config.mode!r}")
        if config.mode == "fallback" and not config.fallback_for:
            raise ValueError("mode 'fallback' needs fallback_for (the algorithm to back up)")
        self._trading = TradingParams.from_dict(config.trading)
        self._quality = QualityParams.from_dict(config.quality)
        self._params = self.parse_detector_params(config.detector)
        self._detector = None
        self._infos: dict[str, InstrumentInfo] = {}
        self._future_price: dict[str, float] = {}
        self._signal_rows: list[dict] = []
        self._latency_ns = array("q")
        self._trade_wait_ns = 0
        self._trade_started_ns = 0
        self._trades_seen = 0
        self._last_trade_ns = 0
        self._healthy = True
        self._failed = False
        self._unhealthy_reasons: set[str] = set()
        self._status_events: list[dict] = []
        self._takeover = False
        self._takeover_events: list[dict] = []
        self._pending_entries: dict[str, int] = defaultdict(int)
        self._entry_ids: dict[str, str] = {}
        self._plans: list[dict] = []  # one per bracket entry: what the strategy expected (trades report)
        self._last_entry_ns: dict[str, int] = {}
        self._entries = 0
        self._time_exits = 0
        self._baseline_note = "not configured"

    # -- subclass hooks ---------------------------------------------------------------------

    def parse_detector_params(self, values: dict):
        raise NotImplementedError

    def make_detector(self, params, instruments: Mapping[str, InstrumentInfo], baselines):
        raise NotImplementedError

    # -- lifecycle ----------------------------------------------------------------------------

    def on_start(self) -> None:
        ids = (
            [InstrumentId.from_str(i) for i in self.config.instrument_ids]
            if self.config.instrument_ids
            else sorted(self.cache.instrument_ids(), key=str)
        )
        for instrument_id in ids:
            instrument = self.cache.instrument(instrument_id)
            info = instrument_info(instrument) if instrument is not None else None
            if info is None:
                self.log.warning(f"{instrument_id}: not an option or future in the cache; skipped")
                continue
            self._infos[info.instrument_id] = info
            if self.needs_book:
                self.subscribe_order_book_deltas(instrument_id, book_type=BookType.L3_MBO)
            self.subscribe_trade_ticks(instrument_id)
        self._detector = self.make_detector(self._params, self._infos, self._load_baselines())
        if self.config.mode == "fallback":
            self.msgbus.subscribe(topic=data_topic(DetectorStatus), handler=self.on_data)
        if self._quality.pause_on_feed_alarm:
            self.msgbus.subscribe(topic=data_topic(FeedHealth), handler=self.on_data)
        gap = self._quality.max_feed_gap_s
        self.clock.set_timer(
            f"{self.id}-feed-gap", timedelta(seconds=max(gap / 4.0, 1.0)), callback=on_node_loop(self._on_gap_timer),
        )

    def _load_baselines(self):
        if not self.config.baselines_catalog:
            return None
        from ifd.detection.baselines import Baselines

        date = self.clock.utc_now().date().isoformat()
        try:
            baselines = Baselines.for_date(
                self.config.baselines_catalog, date, self.config.baseline_lookback, self._window_ns(),
            )
        except IfdError as exc:
            self._baseline_note = f"unavailable ({exc})"
            if "intraday" not in self._quality.allowed_baseline_sources:
                self._set_health(False, "baseline missing and intraday fallback not allowed")
            return None
        self._baseline_note = f"{self.config.baseline_lookback}-day history for {date}"
        return baselines

    def _window_ns(self) -> int:
        return int(getattr(self._params, "window_ns", 300_000_000_000))

    # -- data -----------------------------------------------------------------------------------

    def on_trade_tick(self, tick: TradeTick) -> None:
        started = time.perf_counter_ns()
        # Time the trade waited between its arrival (ts_init) and this handler: real on a live node,
        # 0 in a backtest. Signals add the handler's own time (``FlowSignal.latency_ns``). A replay of
        # recorded data on a live clock keeps the recording's ts_init, so a "wait" of more than
        # REPLAYED_WAIT_NS is the recording's age, not a wait: unknown, counted 0.
        wait = self.clock.timestamp_ns() - tick.ts_init
        self._trade_wait_ns = wait if 0 < wait < REPLAYED_WAIT_NS else 0
        self._trade_started_ns = started
        key = tick.instrument_id.value
        info = self._infos.get(key)
        if info is None:
            return
        ts = tick.ts_event
        self._trades_seen += 1
        if "feed gap" in self._unhealthy_reasons:
            self._clear_health("feed gap")
        self._last_trade_ns = ts
        price = tick.price.as_double()
        if info.kind == "FUT":
            self._future_price[key.split(".")[0]] = price
        if self._failed:
            return
        bid = ask = _NAN
        bid_size = ask_size = 0
        if self.needs_book:
            book = self.cache.order_book(tick.instrument_id)
            if book is not None:
                best = book.best_bid_price()
                if best is not None:
                    bid, bid_size = best.as_double(), int(book.best_bid_size().as_double())
                best = book.best_ask_price()
                if best is not None:
                    ask, ask_size = best.as_double(), int(book.best_ask_size().as_double())
        event = TradeEvent(
            key, ts, tick.ts_init, price, int(tick.size.as_double()), _FEED_SIDE[tick.aggressor_side],
            bid, ask, bid_size, ask_size,
        )
        try:
            detections = self._detector.on_trade(event)
            if self._trades_seen % 100 == 0:
                self._check_quality()
        except Exception as exc:  # a failing detector hands trading to its fallback
            self._fail(f"{type(exc).__name__}: {exc}")
            return
        for detection in detections:
            self._emit(detection, event)
        self._latency_ns.append(time.perf_counter_ns() - started)

    def on_data(self, data) -> None:
        if isinstance(data, FeedHealth):
            if data.healthy:
                self._clear_health("feed alarm")
            else:
                self.log.warning(f"{self.algorithm} paused by the data-quality monitor: {data.reason}")
                self._set_health(False, "feed alarm")
            return
        if isinstance(data, DetectorStatus) and data.algorithm == self.config.fallback_for:
            takeover = not data.healthy
            if takeover != self._takeover:
                self._takeover = takeover
                self._takeover_events.append(
                    {"ts": int(data.ts_event), "trading": takeover, "reason": data.reason},
                )
                verb = "takes over trading" if takeover else "hands trading back"
                self.log.warning(f"{self.algorithm} {verb}: {self.config.fallback_for} {data.reason}")

    # -- health ---------------------------------------------------------------------------------

    def _on_gap_timer(self, event) -> None:
        if self._last_trade_ns and event.ts_event - self._last_trade_ns > self._quality.max_feed_gap_s * 1e9:
            self._set_health(False, "feed gap")

    def _check_quality(self) -> None:
        quality = getattr(self._detector, "quality", None)
        if quality is None:
            return
        q = quality()
        rate = q.get("agreement_rate")
        checked = q.get("agreement_checked", q.get("trades", 0))
        if rate is not None and checked >= self._quality.min_trades_for_agreement:
            if rate < self._quality.min_agreement_rate:
                self._set_health(False, "aggressor agreement")
            else:
                self._clear_health("aggressor agreement")
        for source, count in (q.get("baseline_sources") or {}).items():
            if count and source not in self._quality.allowed_baseline_sources:
                self._set_health(False, f"baseline source {source}")

    def _fail(self, reason: str) -> None:
        self._failed = True
        self.log.error(f"{self.algorithm} detector failed: {reason}")
        self._set_health(False, f"failed: {reason}")

    def _set_health(self, healthy: bool, reason: str) -> None:
        if healthy:
            self._unhealthy_reasons.discard(reason)
        else:
            self._unhealthy_reasons.add(reason)
        now_healthy = not self._unhealthy_reasons and not self._failed
        if now_healthy == self._healthy:
            return
        self._healthy = now_healthy
        ts = self.clock.timestamp_ns()
        text = "ok" if now_healthy else "; ".join(sorted(self._unhealthy_reasons))
        self._status_events.append({"ts": ts, "healthy": now_healthy, "reason": text})
        status = DetectorStatus(ts_event=ts, ts_init=ts, algorithm=self.algorithm, healthy=now_healthy, reason=text)
        self.publish_data(DataType(DetectorStatus), status)

    def _clear_health(self, reason: str) -> None:
        if reason in self._unhealthy_reasons:
            self._set_health(True, reason)

    # -- signals and trading ----------------------------------------------------------------

    def _trading_enabled(self) -> bool:
        if self.config.mode == "trade":
            return self._healthy
        return self.config.mode == "fallback" and self._takeover and self._healthy

    def _emit(self, detection: Detection, event: TradeEvent) -> None:
        info = self._infos[detection.instrument_id]
        bias = bias_of(info.kind, detection.side)
        now = self.clock.timestamp_ns()
        signal = FlowSignal(
            ts_event=detection.ts_event,
            ts_init=now,
            instrument_id=InstrumentId.from_str(detection.instrument_id),
            algorithm=self.algorithm,
            underlying=info.underlying,
            strike=info.strike,
            option_kind=info.kind,
            side=SIDE_NAMES[detection.side],
            bias=bias,
            confidence=float(detection.confidence),
            notional_usd=float(detection.notional_usd),
            window_start_ns=int(detection.window_start_ns),
            reasons="; ".join(detection.reasons),
            latency_ns=self._trade_wait_ns + time.perf_counter_ns() - self._trade_started_ns,
        )
        self.publish_data(DataType(FlowSignal), signal)
        acted = self._trading_enabled() and self._enter(detection, info, event, bias, now)
        self._signal_rows.append(signal_row(signal, self.id.value, self.config.mode, acted))

    def _exposure(self) -> int:
        open_qty = sum(abs(p.signed_qty) for p in self.cache.positions_open(strategy_id=self.id))
        return int(open_qty) + sum(self._pending_entries.values())

    def _enter(self, detection: Detection, info: InstrumentInfo, event: TradeEvent, bias: str, now: int) -> bool:
        params = self._trading
        future_id = f"{info.underlying}.GLBX"
        target_id = future_id if params.instrument == "future" else info.instrument_id
        last = self._last_entry_ns.get(target_id)
        if last is not None and now - last < params.reentry_cooldown_minutes * 60e9:
            return False
        plan = plan_entry(
            params, detection.confidence, detection.side, bias, info.instrument_id, info.kind, event.price,
            future_id, self._future_price.get(info.underlying), self._exposure(),
        )
        if plan is None:
            return False
        instrument = self.cache.instrument(InstrumentId.from_str(plan.instrument_id))
        if instrument is None:
            return False
        orders = self.order_factory.bracket(
            instrument_id=instrument.id,
            order_side=OrderSide.BUY if plan.side == BUY else OrderSide.SELL,
            quantity=instrument.make_qty(plan.quantity),
            sl_trigger_price=instrument.make_price(plan.stop_loss),
            tp_price=instrument.make_price(plan.take_profit),
        )
        entry = orders.first
        self._plans.append({
            "strategy_id": self.id.value, "client_order_id": entry.client_order_id.value, "ts_decision": now,
            "instrument_id": plan.instrument_id, "side": "BUY" if plan.side == BUY else "SELL",
            "quantity": plan.quantity, "reference_price": plan.reference_price,
            "stop_loss": plan.stop_loss, "take_profit": plan.take_profit,
            "multiplier": instrument.multiplier.as_double(), "confidence": detection.confidence,
        })
        self._pending_entries[entry.client_order_id.value] = plan.quantity
        self._entry_ids[entry.client_order_id.value] = plan.instrument_id
        self._last_entry_ns[plan.instrument_id] = now
        self.submit_order_list(orders)
        self._entries += 1
        self.clock.set_time_alert(
            f"{self.id}-exit-{entry.client_order_id.value}",
            self.clock.utc_now() + timedelta(minutes=params.time_exit_minutes),
            callback=partial(self._time_exit, instrument.id),
        )
        return True

    def _entry_done(self, client_order_id) -> None:
        self._pending_entries.pop(client_order_id.value, None)

    def on_order_filled(self, event) -> None:
        self._entry_done(event.client_order_id)

    def on_order_rejected(self, event) -> None:
        self._entry_done(event.client_order_id)

    def on_order_canceled(self, event) -> None:
        self._entry_done(event.client_order_id)

    def on_order_denied(self, event) -> None:
        self._entry_done(event.client_order_id)

    def on_order_expired(self, event) -> None:
        self._entry_done(event.client_order_id)

    def _time_exit(self, instrument_id: InstrumentId, event) -> None:
        if self.cache.positions_open(instrument_id=instrument_id, strategy_id=self.id) or self.cache.orders_open(
            instrument_id=instrument_id, strategy_id=self.id,
        ):
            self._time_exits += 1
        self.cancel_all_orders(instrument_id)
        self.close_all_positions(instrument_id)

    # -- results --------------------------------------------------------------------------------

    def signal_rows(self) -> list[dict]:
        return list(self._signal_rows)

    def entry_plans(self) -> list[dict]:
        """The bracket entries as planned (reference price, stop, target), for the trades report."""
        return list(self._plans)

    def summary(self) -> dict:
        """Per-strategy results for the run summary."""
        latency = np.frombuffer(self._latency_ns, dtype=np.int64) / 1_000.0
        quality = getattr(self._detector, "quality", None)
        return {
            "algorithm": self.algorithm,
            "mode": self.config.mode,
            "fallback_for": self.config.fallback_for,
            "profile": self.config.profile,
            "data_mode": self.config.data_mode,
            "instruments": len(self._infos),
            "trades_seen": self._trades_seen,
            "signals": len(self._signal_rows),
            "signals_acted": sum(1 for r in self._signal_rows if r["acted"]),
            "entries": self._entries,
            "time_exits": self._time_exits,
            "healthy_at_end": self._healthy,
            "failed": self._failed,
            "status_events": self._status_events,
            "takeover_events": self._takeover_events,
            "baselines": self._baseline_note,
            "quality": quality() if quality is not None and self._detector is not None else {},
            "decision_latency_us": {
                "n": int(latency.size),
                "p50": round(float(np.percentile(latency, 50)), 2) if latency.size else None,
                "p99": round(float(np.percentile(latency, 99)), 2) if latency.size else None,
                "max": round(float(latency.max()), 2) if latency.size else None,
            },
        }
