"""live.risk_guard: the RiskGuard actor in real BacktestNode runs on a small generated session.

A deliberately losing strategy (tests/support/losing_strategy.py) buys at the ask and sells at
the bid, one contract, and tries to open three at once: the guard denies the burst, halts the
trader (RiskEngine HALTED) at the first breach, cancels and flattens, and records the event.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from nautilus_trader.config import ImportableActorConfig
from nautilus_trader.model.enums import OrderStatus
from nautilus_trader.model.enums import TradingState
from nautilus_trader.model.events import OrderAccepted

from backtests.config import build_run_config
from backtests.config import load_backtest_spec
from backtests.runner import ProgressBacktestNode
from backtests.runner import ReplayProgress
from backtests.runner import catalog_rows
from catalogs.ingest import ingest
from ifd.scenario.generate import ScenarioConfig
from ifd.scenario.generate import generate_scenario
from live.limits import load_limits
from live.risk_guard import GUARD_TAG
from live.risk_guard import RiskGuard
from live.risk_guard import RiskGuardConfig

PROJECT = Path(__file__).resolve().parents[1]
OPTION = "NQZ6 P20950.GLBX"
FUTURE = "NQZ6.GLBX"

RUN_TOML = """
[run]
name = "risk_guard"
catalog = "{catalog}"
end = "2026-11-16T14:36:00Z"     # six minutes of the session are enough

[venue]
name = "GLBX"
oms_type = "NETTING"
account_type = "MARGIN"
base_currency = "USD"
starting_balances = ["1_000_000 USD"]
book_type = "L3_MBO"

[venue.latency_model]
base_latency_nanos = 1_000_000

[data]
types = ["OrderBookDelta"]
instrument_ids = ["{instrument}"]

[logging]
log_level = "ERROR"

[[strategies]]
strategy_path = "tests.support.losing_strategy:LosingStrategy"
config_path = "tests.support.losing_strategy:LosingConfig"

[strategies.config]
instrument_id = "{instrument}"
period_ms = {period_ms}
burst = 3
hold = {hold}
stop_points = {stop_points}
"""


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("guard")
    generate_scenario(root / "scenario", ScenarioConfig(seed=3, strikes=4, expiries=1, minutes=20))
    ingest([root / "scenario" / "definition.dbn.zst", root / "scenario" / "mbo.dbn.zst"], root / "catalog")
    return root / "catalog"


@pytest.fixture
def run(catalog, tmp_path, monkeypatch):
    """Run the losing strategy with the guard in a BacktestNode; yield (engine, guard, strategy)."""
    monkeypatch.syspath_prepend(str(PROJECT))  # the node imports tests.support.losing_strategy
    nodes = []

    def go(instrument: str, period_ms: int, guard: dict, hold: bool = False, stop_points: float = 2.0):
        path = tmp_path / "run.toml"
        path.write_text(RUN_TOML.format(catalog=catalog, instrument=instrument, period_ms=period_ms,
                                        hold=str(hold).lower(), stop_points=stop_points))
        spec = load_backtest_spec(path)
        config = build_run_config(spec, {name: sorted(per) for name, per in catalog_rows(spec).items()})
        actor = ImportableActorConfig(
            actor_path="live.risk_guard:RiskGuard", config_path="live.risk_guard:RiskGuardConfig", config=guard,
        )
        config = msgspec.structs.replace(config, engine=msgspec.structs.replace(config.engine, actors=[actor]))
        node = ProgressBacktestNode([config], ReplayProgress(total=0))
        nodes.append(node)
        node.run()
        engine = node.get_engine(config.id)
        [guard_actor] = engine.trader.actors()
        [strategy] = engine.trader.strategies()
        return engine, guard_actor, strategy

    yield go
    for node in nodes:
        node.dispose()


def guard_settings() -> dict:
    limits = load_limits(PROJECT / "configs" / "live" / "limits.toml", env={"IB_ACCOUNT_ID": "DU1"})
    return RiskGuardConfig.from_limits(limits).dict() | {"max_drawdown_usd": 50.0}


def check_position_never_over_one(strategy) -> None:
    net, worst = 0.0, 0.0
    for _ts, side, qty, _id in sorted(strategy.fills):
        net += qty if side == "BUY" else -qty
        worst = max(worst, abs(net))
    assert worst == 1.0 and net == 0.0


def check_nothing_accepted_after_halt(engine, guard) -> None:
    halt = guard.halt_ts
    for order in engine.cache.orders():
        mine = GUARD_TAG in (order.tags or [])
        if order.ts_init >= halt and not mine:
            assert order.status == OrderStatus.DENIED, order  # new strategy orders are all denied
        accepted_after = [e for e in order.events if isinstance(e, OrderAccepted) and e.ts_event > halt]
        if accepted_after:
            assert mine or order.ts_init < halt


def test_daily_loss_halts_cancels_and_flattens(run):
    # Long the future 16 s in, where it falls, and hold it (stop 8 points away: $160 of risk).
    engine, guard, strategy = run(FUTURE, period_ms=16_000, guard=guard_settings(), hold=True, stop_points=8.0)
    halts = [e for e in guard.events() if e["action"] == "halt"]
    assert len(halts) == 1 and halts[0]["limit"] == "daily_loss" and 50.0 <= halts[0]["value"] < 60.0, halts
    assert guard.halted and guard.halt_ts == halts[0]["ts"]
    assert engine.kernel.risk_engine.trading_state == TradingState.HALTED
    # The burst of three brackets: two denied by the position cap before reaching the RiskEngine.
    denied = [e for e in guard.events() if e["limit"] == "max_position"]
    assert denied and all(e["action"] == "deny" and e["ts"] < guard.halt_ts for e in denied)
    assert not engine.cache.positions_open()
    assert not engine.cache.orders_open()
    flattening = [o for o in engine.cache.orders() if GUARD_TAG in (o.tags or [])]
    assert flattening and all(o.status == OrderStatus.FILLED and o.is_reduce_only for o in flattening)
    check_position_never_over_one(strategy)
    check_nothing_accepted_after_halt(engine, guard)
    # The strategy kept trying after the halt; the RiskEngine denied it.
    assert any(ts > guard.halt_ts for ts, _ in strategy.submitted)


def test_drawdown_halts_when_the_day_gives_back_its_profit(run):
    # Long the future 40 s in: it rises first (a day's P&L peak above 0), then falls.
    engine, guard, strategy = run(FUTURE, period_ms=40_000, guard=guard_settings() | {"max_drawdown_usd": 30.0},
                                  hold=True, stop_points=8.0)
    halts = [e for e in guard.events() if e["action"] == "halt"]
    assert len(halts) == 1 and halts[0]["limit"] == "drawdown" and 30.0 <= halts[0]["value"] < 40.0, halts
    figures = guard.figures()
    assert figures["day_peak_usd"] > 0.0
    assert not engine.cache.positions_open()
    check_position_never_over_one(strategy)


def test_entries_whose_spread_alone_would_break_the_day_are_denied(run):
    # The generated options trade 4-5 points wide: $80-110 to cross, more than the $50 day.
    engine, guard, strategy = run(OPTION, period_ms=2_000, guard=guard_settings())
    denied = [e for e in guard.events() if e["limit"] == "daily_loss_headroom"]
    assert denied and all(e["action"] == "deny" and e["value"] >= 50.0 for e in denied)
    assert strategy.fills == [] and not guard.halted
    assert all(o.status == OrderStatus.DENIED for o in engine.cache.orders())


def test_consecutive_losses_circuit_breaker(run):
    engine, guard, strategy = run(FUTURE, period_ms=100, guard=guard_settings())
    halts = [e for e in guard.events() if e["action"] == "halt"]
    assert len(halts) == 1 and halts[0]["limit"] == "consecutive_losses" and halts[0]["value"] == 3
    assert engine.kernel.risk_engine.trading_state == TradingState.HALTED
    closed = sorted(engine.cache.position_snapshots() + engine.cache.positions_closed(), key=lambda p: p.ts_closed)
    pnls = [p.realized_pnl.as_double() for p in closed if p.ts_closed <= guard.halt_ts]
    assert len(pnls) >= 3 and all(x < 0 for x in pnls[-3:])
    assert guard.figures()["day_pnl_usd"] > -50  # the breaker, not the daily loss, stopped it
    assert not engine.cache.positions_open()
    check_position_never_over_one(strategy)
    check_nothing_accepted_after_halt(engine, guard)


def test_guard_config_is_held_to_the_hard_caps():
    with pytest.raises(ValueError, match="exceeds the hard cap 1"):
        RiskGuard(RiskGuardConfig(max_position_contracts=2))
    with pytest.raises(ValueError, match="exceeds the hard cap 50"):
        RiskGuard(RiskGuardConfig(max_daily_loss_usd=500))
    with pytest.raises(ValueError, match="positive"):
        RiskGuard(RiskGuardConfig(max_drawdown_usd=0))


def test_emergency_stop_in_a_run(run, monkeypatch):
    """emergency_stop() mid-session, with a position open: halted, cancelled, flat, recorded."""
    from tests.support import losing_strategy

    started: list[RiskGuard] = []
    original_start = RiskGuard.on_start
    original_fill = losing_strategy.LosingStrategy.on_order_filled

    def remember(self):
        started.append(self)
        original_start(self)

    def stop_after_first_fill(self, event):
        original_fill(self, event)
        if len(self.fills) == 1:
            started[0].emergency_stop("operator")

    monkeypatch.setattr(RiskGuard, "on_start", remember)
    monkeypatch.setattr(losing_strategy.LosingStrategy, "on_order_filled", stop_after_first_fill)
    engine, guard, strategy = run(FUTURE, period_ms=100, guard=guard_settings())
    assert [e["limit"] for e in guard.events() if e["action"] == "halt"] == ["emergency_stop"]
    assert engine.kernel.risk_engine.trading_state == TradingState.HALTED
    assert not engine.cache.positions_open() and not engine.cache.orders_open()
    assert any(GUARD_TAG in (o.tags or []) for o in engine.cache.orders())  # the guard flattened it
    check_position_never_over_one(strategy)
    check_nothing_accepted_after_halt(engine, guard)
