"""The risk guard: one NautilusTrader ``Actor`` that enforces the limited-live limits.

What it does (same code in a ``BacktestNode`` and a ``TradingNode``):

- **Pre-trade position cap.** On start it puts itself in front of the RiskEngine: the
  ``RiskEngine.execute`` message-bus endpoint (where every strategy's ``submit_order`` /
  ``submit_order_list`` goes) is re-registered to the guard, which denies (``OrderDenied`` to
  ``ExecEngine.process``, as the RiskEngine itself does) any entry that would take the open plus
  pending contracts over ``max_position_contracts``, and passes everything else on to
  ``RiskEngine.execute``. Orders that only reduce a position, and contingent children of a
  bracket (stop / target), always pass.
- **Spread headroom.** An entry is also denied when crossing the spread alone (bid-ask x quantity x
  multiplier, from the L3 book) would use up what is left of the day's loss limit: a one-lot with
  a 5-point option spread costs $100 the moment it fills, more than the whole $50 day.
- **Post-trade limits**, checked on every position event (opened, changed, closed), on every book
  update of an instrument with an open position, and on a timer: the day's
  loss (realized + unrealized), total risk, consecutive losses, drawdown from the day's P&L
  peak (definitions in ``live/limits.py``). On a breach it halts: ``RiskEngine
  .set_trading_state(TradingState.HALTED)`` (the RiskEngine then denies every new order and
  publishes ``TradingStateChanged``), cancels every open order (``CancelOrder`` to
  ``ExecEngine.execute``) and flattens every open position with a reduce-only market order
  submitted on behalf of the strategy that owns it, straight to ``ExecEngine.execute`` (the
  HALTED RiskEngine would deny it). While halted it re-flattens anything that opens later
  (an order already in flight when the halt came). The halt is not lifted automatically.
- ``emergency_stop(reason)`` does the same on demand; ``events()`` lists what happened
  (``ts``, ``limit``, ``value``, ``action``) for the session report.
- **State across restarts.** The day is the CME trading day (``ifd.sessions``: 17:00 Chicago
  starts the next day). The day's realized P&L, consecutive losses, P&L peak, the halt and the
  day's limit events are the guard's state (``on_save`` / ``on_load``); the guard writes it to the
  cache database on every change (``Cache.update_actor``), so with Redis (``live.state``) a node
  killed without warning comes back, on the same trading day, with them (and HALTED if it was).
  A restart on a later trading day starts the day fresh.

The RiskEngine is found through the message bus the guard is registered on (the component
holding it that is a ``RiskEngine``), or given explicitly with ``attach_risk_engine`` (e.g.
``node.kernel.risk_engine``) before the node starts.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from dataclasses import dataclass
from datetime import timedelta

from nautilus_trader.common.actor import Actor
from nautilus_trader.common.enums import LogColor
from nautilus_trader.config import ActorConfig
from nautilus_trader.core.uuid import UUID4
from nautilus_trader.execution.messages import CancelOrder
from nautilus_trader.execution.messages import SubmitOrder
from nautilus_trader.execution.messages import SubmitOrderList
from nautilus_trader.model.enums import BookType
from nautilus_trader.model.enums import OrderSide
from nautilus_trader.model.enums import PositionSide
from nautilus_trader.model.enums import PriceType
from nautilus_trader.model.enums import TimeInForce
from nautilus_trader.model.enums import TradingState
from nautilus_trader.model.events import OrderDenied
from nautilus_trader.model.events import PositionClosed
from nautilus_trader.model.identifiers import ClientOrderId
from nautilus_trader.model.instruments import OptionContract
from nautilus_trader.model.orders import MarketOrder
from nautilus_trader.risk.engine import RiskEngine

from ifd.sessions import cme_trading_day
from strategies.node_loop import on_node_loop
from live.limits import HARD_CAPS
from live.limits import LiveLimits
from live.limits import check_limit

GUARD_TAG = "RISK_GUARD"
RISK_ENDPOINT = "RiskEngine.execute"
EXEC_ENDPOINT = "ExecEngine.execute"
STATE_KEY = "risk_guard"
STATE_VERSION = 1


class RiskGuardConfig(ActorConfig, frozen=True):
    """The guard's limits (each positive and within ``live.limits.HARD_CAPS``); no account id."""

    max_position_contracts: int = 1
    max_daily_loss_usd: float = 50.0
    max_total_risk_usd: float = 200.0
    max_consecutive_losses: int = 3
    max_drawdown_usd: float = 50.0
    check_interval_ms: int = 1_000  # timer for the unrealized-P&L limits between events
    stop_grace_ms: int = 2_000  # an open position may lack a working stop this long

    @classmethod
    def from_limits(cls, limits: LiveLimits, **overrides) -> RiskGuardConfig:
        return cls(**{**limits.guard_settings(), **overrides})


@dataclass(frozen=True)
class LimitEvent:
    ts: int  # ns, the guard's clock
    limit: str  # daily_loss | total_risk | consecutive_losses | drawdown | max_position | emergency_stop
    value: float  # the measured figure (USD, contracts or losses)
    action: str  # halt | deny | flatten (limit daily_loss_headroom: an entry denied for its spread cost)


class RiskGuard(Actor):
    """Watches the portfolio, denies entries over the position cap, halts and flattens on a breach."""

    def __init__(self, config: RiskGuardConfig | None = None) -> None:
        config = config or RiskGuardConfig()
        super().__init__(config)
        for name in ("max_position_contracts", "max_daily_loss_usd", "max_total_risk_usd",
                     "max_consecutive_losses", "max_drawdown_usd"):
            check_limit(name, getattr(config, name))  # ValueError when looser than HARD_CAPS
        if config.check_interval_ms <= 0 or config.stop_grace_ms < 0:
            raise ValueError("check_interval_ms must be > 0 and stop_grace_ms >= 0")
        self._risk: RiskEngine | None = None
        self._gate_installed = False
        self._events: list[LimitEvent] = []
        self._halted = False
        self._halt_ts: int | None = None
        self._flatten_orders: dict = {}  # position id -> client order id of the pending close
        self._seq = 0
        self._day = None
        self._realized_closed = 0.0  # day's realized P&L of closed position cycles
        self._consecutive = 0
        self._peak = 0.0
        self._last = {"pnl": 0.0, "total_risk": 0.0}
        self._watched: set = set()  # instruments whose book updates trigger a check

    # -- wiring ---------------------------------------------------------------------------

    def attach_risk_engine(self, risk_engine: RiskEngine) -> None:
        """The node's RiskEngine (``node.kernel.risk_engine``): node factories call this after building."""
        self._risk = risk_engine

    def on_start(self) -> None:
        if self._risk is None:
            raise RuntimeError("RiskGuard: no RiskEngine attached (the node factory calls attach_risk_engine)")
        self.msgbus.deregister(RISK_ENDPOINT, self._risk.execute)
        self.msgbus.register(RISK_ENDPOINT, self._gate)
        self._gate_installed = True
        self._roll_day()
        if self._halted:
            self.log.warning(f"RISK GUARD restored HALTED state of trading day {self._day}", LogColor.RED)
            if self._risk.trading_state != TradingState.HALTED:
                self._risk.set_trading_state(TradingState.HALTED)
        self.msgbus.subscribe("events.position.*", self._on_position_event)
        self.clock.set_timer(
            "risk-guard-check",
            interval=timedelta(milliseconds=self.config.check_interval_ms),
            callback=on_node_loop(lambda _event: self.check()),
        )

    def on_order_book_deltas(self, deltas) -> None:
        if self.cache.positions_open(instrument_id=deltas.instrument_id):
            self.check()

    def on_stop(self) -> None:
        self.clock.cancel_timers()
        if self._gate_installed:
            self.msgbus.deregister(RISK_ENDPOINT, self._gate)
            self.msgbus.register(RISK_ENDPOINT, self._risk.execute)
            self._gate_installed = False

    # -- public ---------------------------------------------------------------------------

    @property
    def halted(self) -> bool:
        return self._halted

    @property
    def halt_ts(self) -> int | None:
        return self._halt_ts

    def trading_state(self) -> TradingState | None:
        return self._risk.trading_state if self._risk is not None else None

    def events(self) -> list[dict]:
        return [asdict(e) for e in self._events]

    def figures(self) -> dict:
        """The latest measured figures (for a report)."""
        return {"trading_day": self._day.isoformat() if self._day is not None else None,
                "day_pnl_usd": round(self._last["pnl"], 2), "day_peak_usd": round(self._peak, 2),
                "day_realized_closed_usd": round(self._realized_closed, 2),
                "total_risk_usd": round(self._last["total_risk"], 2),
                "consecutive_losses": self._consecutive, "halted": self._halted}

    def live_figures(self) -> dict:
        """Each limit's use against it, for a live dashboard (``{"value", "limit"}`` pairs; total risk
        is ``inf`` for a position without a stop). Measured now while running, else the last check."""
        cfg = self.config
        if self.is_running:
            pnl, risk, contracts = self.day_pnl(), self.total_risk(), self._exposure()
        else:
            pnl, risk, contracts = self._last["pnl"], self._last["total_risk"], 0.0
        last = self._events[-1] if self._events else None
        return {
            "title": "Risk limits",
            "trading_day": self._day.isoformat() if self._day is not None else None,
            "trading_state": self.trading_state().name if self._risk is not None else None,
            "halted": self._halted,
            "daily_loss_usd": {"value": round(max(0.0, -pnl), 2), "limit": cfg.max_daily_loss_usd},
            "total_risk_usd": {"value": risk if math.isinf(risk) else round(risk, 2), "limit": cfg.max_total_risk_usd},
            "drawdown_usd": {"value": round(max(0.0, self._peak - pnl) if self._peak > 0.0 else 0.0, 2),
                             "limit": cfg.max_drawdown_usd},
            "consecutive_losses": {"value": self._consecutive, "limit": cfg.max_consecutive_losses},
            "open_contracts": {"value": contracts, "limit": cfg.max_position_contracts},
            "day_pnl_usd": round(pnl, 2),
            "day_realized_closed_usd": round(self._realized_closed, 2),
            "limit_events": len(self._events),
            "last_event": f"{last.limit} -> {last.action}" if last is not None else None,
        }

    def day(self):
        """The CME trading day the figures belong to."""
        return self._day

    def realized_today(self) -> float:
        """Realized P&L of the positions closed this trading day (USD)."""
        return self._realized_closed

    # -- state (saved to the cache database on every change) -------------------------------

    def on_save(self) -> dict[str, bytes]:
        state = {
            "version": STATE_VERSION,
            "day": self._day.isoformat() if self._day is not None else None,
            "realized_closed": self._realized_closed,
            "consecutive": self._consecutive,
            "peak": self._peak,
            "halted": self._halted,
            "halt_ts": self._halt_ts,
            "events": [asdict(e) for e in self._events],
        }
        return {STATE_KEY: json.dumps(state).encode()}

    def on_load(self, state: dict[str, bytes]) -> None:
        raw = state.get(STATE_KEY)
        if not raw:
            return
        saved = json.loads(raw)
        if saved.get("version") != STATE_VERSION:
            self.log.warning(f"RISK GUARD ignoring saved state version {saved.get('version')}")
            return
        today = cme_trading_day(self.clock.timestamp_ns())
        if saved.get("day") != today.isoformat():
            self.log.info(f"RISK GUARD saved state is of trading day {saved.get('day')}; {today} starts fresh")
            return
        self._day = today
        self._realized_closed = float(saved["realized_closed"])
        self._consecutive = int(saved["consecutive"])
        self._peak = float(saved["peak"])
        self._halted = bool(saved["halted"])
        self._halt_ts = saved.get("halt_ts")
        self._events = [LimitEvent(**e) for e in saved.get("events", [])]
        self.log.warning(
            f"RISK GUARD restored trading day {today}: realized {self._realized_closed:.2f} USD, "
            f"{self._consecutive} consecutive losses, halted={self._halted}", LogColor.YELLOW,
        )

    def _persist(self) -> None:
        if self.is_initialized:
            self.cache.update_actor(self)  # writes on_save() to Redis when the cache has a database

    def emergency_stop(self, reason: str = "manual") -> None:
        """Cancel every open order, flatten every position and halt trading, now."""
        self._breach("emergency_stop", 0.0, note=reason)

    # -- pre-trade gate -------------------------------------------------------------------

    def _gate(self, command) -> None:
        entry = None
        if isinstance(command, SubmitOrder):
            entry = command.order
        elif isinstance(command, SubmitOrderList):
            roots = [o for o in command.order_list.orders if o.parent_order_id is None]
            entry = roots[0] if len(roots) == 1 else None
        if entry is not None and not self._halted and self._adds_exposure(entry):
            exposure = self._exposure(exclude={o.client_order_id for o in _orders_of(command)})
            if exposure + entry.quantity.as_double() > self.config.max_position_contracts:
                self._record("max_position", exposure + entry.quantity.as_double(), "deny")
                self._deny(command, f"RISK_GUARD max_position_contracts {self.config.max_position_contracts}")
                return
            cost = self._spread_cost(entry)
            headroom = self.config.max_daily_loss_usd + min(0.0, self.day_pnl())
            if cost >= headroom:
                self._record("daily_loss_headroom", cost, "deny", f"spread cost {cost:.2f} >= headroom {headroom:.2f}")
                self._deny(command, f"RISK_GUARD spread cost {cost:.2f} USD >= daily loss headroom {headroom:.2f} USD")
                return
        self._risk.execute(command)

    def _spread_cost(self, order) -> float:
        """What crossing the spread costs the moment ``order`` fills: bid-ask x quantity x multiplier (USD)."""
        book = self.cache.order_book(order.instrument_id)
        instrument = self.cache.instrument(order.instrument_id)
        if book is None or instrument is None:
            return 0.0
        bid, ask = book.best_bid_price(), book.best_ask_price()
        if bid is None or ask is None:
            return 0.0
        return max(0.0, ask.as_double() - bid.as_double()) * order.quantity.as_double() * instrument.multiplier.as_double()

    def _adds_exposure(self, order) -> bool:
        if order.is_reduce_only:
            return False
        net = self._net(order.instrument_id)
        if net > 0 and order.side == OrderSide.SELL and order.quantity.as_double() <= net:
            return False
        if net < 0 and order.side == OrderSide.BUY and order.quantity.as_double() <= -net:
            return False
        return True

    def _net(self, instrument_id) -> float:
        return sum(p.signed_qty for p in self.cache.positions_open(instrument_id=instrument_id))

    def _exposure(self, exclude=frozenset()) -> float:
        """Open contracts plus the leaves of pending entry orders (not reduce-only, not bracket children)."""
        total = sum(abs(p.signed_qty) for p in self.cache.positions_open())
        for order in self.cache.orders():
            if order.is_closed or order.client_order_id in exclude:
                continue
            if order.is_reduce_only or order.parent_order_id is not None or GUARD_TAG in (order.tags or []):
                continue
            net = self._net(order.instrument_id)
            reduces = (net > 0 and order.side == OrderSide.SELL) or (net < 0 and order.side == OrderSide.BUY)
            if not reduces:
                total += order.leaves_qty.as_double()
        return total

    def _deny(self, command, reason: str) -> None:
        for order in _orders_of(command):
            if order.is_closed:
                continue
            denied = OrderDenied(order.trader_id, order.strategy_id, order.instrument_id, order.client_order_id,
                                 reason, UUID4(), self.clock.timestamp_ns())
            self.msgbus.send("ExecEngine.process", denied)

    # -- post-trade limits ----------------------------------------------------------------

    def _roll_day(self) -> None:
        day = cme_trading_day(self.clock.timestamp_ns())
        if day != self._day:
            self._day, self._realized_closed, self._consecutive, self._peak = day, 0.0, 0, 0.0
            self._events = [e for e in self._events if cme_trading_day(e.ts) == day]

    def _on_position_event(self, event) -> None:
        if event.instrument_id not in self._watched:  # re-check on every book update of it
            self._watched.add(event.instrument_id)
            # managed=False: a managed subscription would replace the book the strategies built
            self.subscribe_order_book_deltas(event.instrument_id, book_type=BookType.L3_MBO, managed=False)
        self._roll_day()
        if isinstance(event, PositionClosed):
            pnl = event.realized_pnl.as_double() if event.realized_pnl is not None else 0.0
            self._realized_closed += pnl
            self._consecutive = self._consecutive + 1 if pnl < 0 else 0
            self._flatten_orders.pop(event.position_id, None)
            self._persist()
        self.check()

    def day_pnl(self) -> float:
        """Realized (closed cycles + open positions) plus unrealized at the exit price, USD."""
        total = self._realized_closed
        for position in self.cache.positions_open():
            if position.realized_pnl is not None:
                total += position.realized_pnl.as_double()
            total += self._unrealized(position)
        return total

    def _mark(self, position):
        book = self.cache.order_book(position.instrument_id)
        price = None
        if book is not None:
            price = book.best_bid_price() if position.side == PositionSide.LONG else book.best_ask_price()
        if price is None:
            price = self.cache.price(position.instrument_id, PriceType.LAST)
        return price

    def _unrealized(self, position) -> float:
        price = self._mark(position)
        if price is None:
            return 0.0
        return position.unrealized_pnl(price).as_double()

    def total_risk(self) -> float:
        realized = self._realized_closed + sum(
            p.realized_pnl.as_double() for p in self.cache.positions_open() if p.realized_pnl is not None
        )
        risk = max(0.0, -realized)
        now = self.clock.timestamp_ns()
        for position in self.cache.positions_open():
            qty, mult = position.quantity.as_double(), position.multiplier.as_double()
            closing = OrderSide.SELL if position.side == PositionSide.LONG else OrderSide.BUY
            stops = [
                o.trigger_price.as_double()
                for o in self.cache.orders(instrument_id=position.instrument_id)
                if not o.is_closed and o.side == closing and getattr(o, "trigger_price", None) is not None
            ]
            if stops:
                stop = min(stops) if position.side == PositionSide.LONG else max(stops)
                sign = 1.0 if position.side == PositionSide.LONG else -1.0
                risk += max(0.0, sign * (position.avg_px_open - stop)) * qty * mult
            elif now - position.ts_opened < self.config.stop_grace_ms * 1_000_000:
                continue  # the stop may still be on its way
            elif position.side == PositionSide.LONG and isinstance(self.cache.instrument(position.instrument_id),
                                                                   OptionContract):
                risk += position.avg_px_open * qty * mult  # a long option can lose its premium
            else:
                risk = math.inf  # short or future without a stop: unbounded
        return risk

    def check(self) -> None:
        """Measure the figures and act on the first limit breached (re-flatten while halted)."""
        if not self.is_running:
            return
        self._roll_day()
        if self._halted:
            self._flatten()
            return
        pnl = self.day_pnl()
        if pnl > self._peak:
            self._peak = pnl
            self._persist()
        risk = self.total_risk()
        self._last = {"pnl": pnl, "total_risk": risk}
        cfg = self.config
        if -pnl >= cfg.max_daily_loss_usd:
            self._breach("daily_loss", -pnl)
        elif risk > cfg.max_total_risk_usd:
            self._breach("total_risk", risk)
        elif self._consecutive >= cfg.max_consecutive_losses:
            self._breach("consecutive_losses", self._consecutive)
        elif self._peak > 0.0 and self._peak - pnl >= cfg.max_drawdown_usd:  # profit given back
            self._breach("drawdown", self._peak - pnl)

    # -- halt, cancel, flatten ------------------------------------------------------------

    def _record(self, limit: str, value: float, action: str, note: str = "") -> None:
        event = LimitEvent(self.clock.timestamp_ns(), limit, float(value), action)
        self._events.append(event)
        self._persist()
        self.log.warning(f"RISK LIMIT {limit}: value {value:.2f} -> {action}{' (' + note + ')' if note else ''}",
                         LogColor.RED)

    def _breach(self, limit: str, value: float, note: str = "") -> None:
        if self._halted:
            self._record(limit, value, "flatten", note)
            self._cancel_all()
            self._flatten()
            return
        self._halted = True
        self._halt_ts = self.clock.timestamp_ns()
        self._record(limit, value, "halt", note)  # persists the halt with the event
        if self._risk.trading_state != TradingState.HALTED:
            self._risk.set_trading_state(TradingState.HALTED)
        self._cancel_all()
        self._flatten()

    def _cancel_all(self) -> None:
        for order in self.cache.orders_open() + self.cache.orders_inflight():
            if GUARD_TAG in (order.tags or []):
                continue
            command = CancelOrder(order.trader_id, order.strategy_id, order.instrument_id, order.client_order_id,
                                  order.venue_order_id, UUID4(), self.clock.timestamp_ns())
            self.msgbus.send(EXEC_ENDPOINT, command)

    def _flatten(self) -> None:
        for position in self.cache.positions_open():
            pending = self._flatten_orders.get(position.id)
            if pending is not None:
                order = self.cache.order(pending)
                if order is not None and not order.is_closed:
                    continue
            self._seq += 1
            side = OrderSide.SELL if position.side == PositionSide.LONG else OrderSide.BUY
            order = MarketOrder(
                trader_id=self.trader_id,
                strategy_id=position.strategy_id,
                instrument_id=position.instrument_id,
                client_order_id=ClientOrderId(f"RG-{self.clock.timestamp_ns()}-{self._seq}"),
                order_side=side,
                quantity=position.quantity,
                init_id=UUID4(),
                ts_init=self.clock.timestamp_ns(),
                time_in_force=TimeInForce.IOC,
                reduce_only=True,
                tags=[GUARD_TAG],
            )
            self.cache.add_order(order, position.id)
            self.msgbus.publish(f"events.order.{position.strategy_id}", order.init_event)
            command = SubmitOrder(self.trader_id, position.strategy_id, order, UUID4(), self.clock.timestamp_ns(),
                                  position_id=position.id)
            self._flatten_orders[position.id] = order.client_order_id
            self.log.warning(f"RISK GUARD flattening {position.id} ({side.name} {position.quantity})", LogColor.RED)
            self.msgbus.send(EXEC_ENDPOINT, command)


def _orders_of(command) -> list:
    if isinstance(command, SubmitOrderList):
        return list(command.order_list.orders)
    return [command.order]


__all__ = ["GUARD_TAG", "HARD_CAPS", "LimitEvent", "RiskGuard", "RiskGuardConfig"]
