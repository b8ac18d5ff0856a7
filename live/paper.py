"""Paper trading: a NautilusTrader ``TradingNode`` on the Databento live feed with a sandbox venue.

``build_paper_node(path)`` reads a paper TOML (see ``configs/live/paper.toml``) and returns a built
``TradingNode`` with

- the Databento live data client (dataset ``GLBX.MDP3``): instrument definitions for the parent
  symbols (``NQ.OPT``, ``NQ.FUT``) or the explicit instrument ids are loaded at connect, before the
  strategies start; the strategies' L3 (MBO) subscriptions are made in their ``on_start`` and the
  adapter batches them into one MBO session (``mbo_subscriptions_delay`` must cover the definition
  load); trades arrive through a separate ``trades`` subscription (NautilusTrader 1.231 forwards
  only book deltas from the live MBO stream);
- the sandbox execution client (simulated venue ``GLBX`` fed by the same live data, L3 book);
- the IFD strategies from their profiles (``[[strategies]]`` like a backtest file; ``mode`` per
  strategy: ``shadow``, ``trade`` or ``fallback``); ``data_mode`` is set to ``live``.

The Databento API key is read by the adapter from ``DATABENTO_API_KEY``; it is never put in the
node config, logged or printed. A node on the live feed refuses to start, before it connects, once
the Databento data budget of the day or the month is used up (``configs/budget.toml`` and its
ledger, shared with the downloads: ``adapters.databento.budget.check_live_budget``).
``run_paper(config, duration_s)`` runs a node until the duration elapses, an optional ``stop_when(node)`` predicate holds, or Ctrl-C, then stops it, disposes of it
and returns (and optionally writes) the strategies' summaries.

Replay instead of the live feed: a ``[replay]`` section (``catalog`` = a ParquetDataCatalog folder
or ``dbn_files`` = DBN paths, ``speed`` = 1.0 real time / N x / 0 as fast as possible,
``start_delay_s``), or ``with_replay(spec, ...)``, or ``--replay PATH... [--speed N]``, makes the
node use ``live.replay_client.ReplayDataClient`` instead of Databento's (no API key needed; the
``[databento]`` section is then optional).

CLI: ``python -m live.paper configs/live/paper.toml [--duration S] [--summary out.json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
from nautilus_trader.adapters.databento import (
    DATABENTO,
    DatabentoDataClientConfig,
    DatabentoLiveDataClientFactory,
)
from nautilus_trader.adapters.sandbox.config import SandboxExecutionClientConfig
from live.sandbox import SandboxLiveExecClientFactory
from nautilus_trader.config import (
    ImportableActorConfig,
    ImportableStrategyConfig,
    LiveExecEngineConfig,
    LiveRiskEngineConfig,
    LoggingConfig,
    TradingNodeConfig,
)
from nautilus_trader.live.node import TradingNode
from nautilus_trader.model.enums import AccountType, BookType, OmsType
from nautilus_trader.model.identifiers import InstrumentId

from adapters.databento.budget import check_live_budget, load_budget
from backtests.config import _accepts, _profile_tables, actor_configs, resolve_project_path
from live.data_meter import data_meter_config, data_meters, price_data_meters
from ifd.toml_files import read_toml
from ifd.errors import IfdError
from live.control import pid_file, remove_pid, write_pid
from live.dashboard.actor import DashboardActor
from live.limits import limits_section
from live.replay_client import (
    REPLAY,
    ReplayDataClientConfig,
    ReplayLiveDataClientFactory,
    replay_finished,
)
from live.risk_guard import RiskGuard, RiskGuardConfig
from live.state import StateSettings, check_redis, state_settings
from strategies.trading import MODES

API_KEY_ENV = "DATABENTO_API_KEY"
RISK_GUARD_PATH = "live.risk_guard:RiskGuard"
RISK_GUARD_CONFIG_PATH = "live.risk_guard:RiskGuardConfig"
SANDBOX = "SANDBOX"
SECTIONS = {"node", "databento", "sandbox", "risk_engine", "logging", "strategies", "actors", "replay", "cache", "limits"}
REPLAY_KEYS = {"catalog", "dbn_files", "speed", "start_delay_s", "instrument_ids"}
NODE_KEYS = {"trader_id", "timeout_connection", "timeout_reconciliation", "timeout_portfolio",
             "timeout_disconnection", "timeout_post_stop"}
DATABENTO_KEYS = {"dataset", "parent_symbols", "instrument_ids", "use_exchange_as_venue",
                  "timeout_initial_load", "mbo_subscriptions_delay", "reconnect_timeout_mins"}
SANDBOX_KEYS = {"venue", "starting_balances", "base_currency", "oms_type", "account_type",
                "default_leverage", "book_type", "trade_execution", "bar_execution",
                "reject_stop_orders", "support_contingent_orders", "use_reduce_only"}
STRATEGY_KEYS = {"strategy_path", "config_path", "profile", "config"}


@dataclass(frozen=True)
class PaperSpec:
    """A parsed, validated paper TOML file."""

    path: Path
    trader_id: str
    node: dict
    dataset: str
    parent_symbols: tuple[str, ...]
    instrument_ids: tuple[str, ...]
    databento: DatabentoDataClientConfig | None
    sandbox: SandboxExecutionClientConfig
    risk_engine: LiveRiskEngineConfig
    logging: LoggingConfig
    strategies: tuple[ImportableStrategyConfig, ...]
    replay: ReplayDataClientConfig | None = None  # set: replay recorded data, not the live feed
    state: StateSettings = StateSettings()  # [cache]: Redis (orders, positions, guard state) or memory
    guard: dict | None = None  # [limits]: the RiskGuard's settings (paper rehearses the limits)
    actors: tuple[ImportableActorConfig, ...] = ()  # [[actors]]: monitors, alerts, dashboard


def _check_keys(path: Path, section: str, table: Mapping, allowed: set[str]) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise IfdError(f"{path}: [{section}] unknown key(s) {', '.join(sorted(unknown))}")


def _convert(path: Path, section: str, value: Any, cls: type) -> Any:
    try:
        return msgspec.convert(value, cls, strict=False)
    except (msgspec.ValidationError, TypeError, ValueError) as exc:
        raise IfdError(f"{path}: [{section}] {exc}") from None


def _strategies(path: Path, entries: list[dict]) -> tuple[ImportableStrategyConfig, ...]:
    out = []
    for index, entry in enumerate(entries):
        where = f"[[strategies]] #{index + 1}"
        for key in ("strategy_path", "config_path"):
            if not entry.get(key):
                raise IfdError(f"{path}: {where} needs {key}")
        unknown = set(entry) - STRATEGY_KEYS
        if unknown:
            raise IfdError(f"{path}: {where} unknown key(s) {', '.join(sorted(unknown))}")
        config = _profile_tables(path, entry["profile"]) if entry.get("profile") else {}
        if _accepts(entry["config_path"], "data_mode"):
            config["data_mode"] = "live"  # the profile's thresholds, fed by the live feed
        config.update(entry.get("config", {}))
        mode = config.get("mode")
        if mode is not None and mode not in MODES:
            raise IfdError(f"{path}: {where} mode must be one of {', '.join(MODES)}, got {mode!r}")
        out.append(
            ImportableStrategyConfig(
                strategy_path=entry["strategy_path"], config_path=entry["config_path"], config=config,
            ),
        )
    if not out:
        raise IfdError(f"{path}: no [[strategies]] configured")
    return tuple(out)


def load_paper_spec(path: Path | str, env: Mapping[str, str] = os.environ) -> PaperSpec:
    """Read and validate a paper TOML file; every error names the file and the setting."""
    path = resolve_project_path(path)
    return paper_spec_from_tables(path, read_toml(path, f"{path}: no such paper config"), env)


def _databento(path: Path, raw: dict) -> tuple[str, tuple[str, ...], tuple[str, ...], DatabentoDataClientConfig]:
    db = dict(raw.get("databento", {}))
    _check_keys(path, "databento", db, DATABENTO_KEYS)
    dataset = str(db.pop("dataset", "GLBX.MDP3"))
    parents = tuple(str(s) for s in db.pop("parent_symbols", []))
    for symbol in parents:
        if not symbol.endswith((".FUT", ".OPT")):
            raise IfdError(f"{path}: [databento] parent symbol {symbol!r} must end with .FUT or .OPT")
    ids = tuple(str(s) for s in db.pop("instrument_ids", []))
    for value in ids:
        try:
            InstrumentId.from_str(value)
        except ValueError:
            raise IfdError(f"{path}: [databento] instrument id {value!r} is not SYMBOL.VENUE") from None
    if not parents and not ids:
        raise IfdError(f"{path}: [databento] needs parent_symbols or instrument_ids")
    db.setdefault("use_exchange_as_venue", False)  # instrument ids on GLBX, the sandbox venue
    db.setdefault("mbo_subscriptions_delay", 10.0)
    # The adapter loads definitions only for instrument ids: the parent symbols are passed as
    # ids too ("NQ.OPT.GLBX"), which the live client sends as stype_in=parent subscriptions.
    load_ids = list(ids) + [f"{symbol}.GLBX" for symbol in parents]
    try:
        databento = DatabentoDataClientConfig(
            **db,
            instrument_ids=[InstrumentId.from_str(i) for i in load_ids],
            parent_symbols={dataset: set(parents)} if parents else None,
        )
    except (TypeError, ValueError) as exc:
        raise IfdError(f"{path}: [databento] {exc}") from None
    if databento.mbo_subscriptions_delay is not None and databento.mbo_subscriptions_delay <= 0:
        raise IfdError(f"{path}: [databento] mbo_subscriptions_delay must be > 0 (MBO is one batch)")
    return dataset, parents, ids, databento


def _replay_config(path: Path, table: dict) -> ReplayDataClientConfig:
    table = dict(table)
    _check_keys(path, "replay", table, REPLAY_KEYS)
    catalog, files = table.pop("catalog", None), table.pop("dbn_files", None)
    return replay_config(
        catalog=resolve_project_path(catalog) if catalog else None,
        dbn_files=[resolve_project_path(f) for f in files] if files else None,
        where=f"{path}: [replay]",
        **table,
    )


def replay_config(
    catalog: Path | str | None = None,
    dbn_files: list[Path | str] | None = None,
    speed: float | None = None,
    start_delay_s: float = 1.0,
    instrument_ids: list[str] | None = None,
    where: str = "replay",
) -> ReplayDataClientConfig:
    """A replay data client config (a catalog folder or DBN files; speed None/0: max speed)."""
    if bool(catalog) == bool(dbn_files):
        raise IfdError(f"{where}: give a catalog folder or DBN files (exactly one)")
    if speed is not None and speed < 0:
        raise IfdError(f"{where}: speed must be >= 0, got {speed}")
    return ReplayDataClientConfig(
        catalog_path=str(catalog) if catalog else None,
        dbn_files=[str(f) for f in dbn_files] if dbn_files else None,
        speed=float(speed) if speed else None,
        start_delay_s=float(start_delay_s),
        instrument_ids=list(instrument_ids) if instrument_ids else None,
    )


def with_replay(spec: PaperSpec, **kwargs: Any) -> PaperSpec:
    """``spec`` with its data from a replay (``replay_config`` arguments) instead of Databento."""
    return replace(spec, replay=replay_config(**kwargs))


def paper_spec_from_tables(path: Path, raw: dict, env: Mapping[str, str] = os.environ) -> PaperSpec:
    """Validate a paper node's tables (read from ``path``, which errors name)."""
    unknown = set(raw) - SECTIONS
    if unknown:
        raise IfdError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}")

    node = dict(raw.get("node", {}))
    _check_keys(path, "node", node, NODE_KEYS)
    trader_id = str(node.pop("trader_id", "IFD-PAPER"))
    if "-" not in trader_id:
        raise IfdError(f"{path}: [node] trader_id must look like NAME-TAG, got {trader_id!r}")

    replay = _replay_config(path, raw["replay"]) if "replay" in raw else None
    if replay is not None and "databento" not in raw:
        databento = None
        dataset, parents, ids = "GLBX.MDP3", (), ()
    else:
        dataset, parents, ids, databento = _databento(path, raw)

    sandbox_raw = dict(raw.get("sandbox") or {})
    _check_keys(path, "sandbox", sandbox_raw, SANDBOX_KEYS)
    sandbox_raw.setdefault("venue", "GLBX")
    sandbox_raw.setdefault("book_type", "L3_MBO")
    # The live ExecEngine applies fills through its queue, so when the simulated venue releases a
    # bracket's stop and target (at the entry's fill) the position does not exist yet and a venue
    # reduce-only check would reject them. They only ever reduce: OTO after the entry, OCO together.
    sandbox_raw.setdefault("use_reduce_only", False)
    if not sandbox_raw.get("starting_balances"):
        raise IfdError(f"{path}: [sandbox] starting_balances is missing")
    sandbox_raw["starting_balances"] = [str(b).replace("_", "") for b in sandbox_raw["starting_balances"]]
    if "default_leverage" in sandbox_raw:
        sandbox_raw["default_leverage"] = Decimal(str(sandbox_raw["default_leverage"]))
    for key, enum in (("book_type", BookType), ("oms_type", OmsType), ("account_type", AccountType)):
        value = sandbox_raw.get(key)
        allowed = [member.name for member in enum]
        if value is not None and value not in allowed:
            raise IfdError(f"{path}: [sandbox] {key} {value!r} is not one of {', '.join(allowed)}")
    sandbox = _convert(path, "sandbox", sandbox_raw, SandboxExecutionClientConfig)

    return PaperSpec(
        path=path,
        trader_id=trader_id,
        node=node,
        dataset=dataset,
        parent_symbols=parents,
        instrument_ids=ids,
        databento=databento,
        sandbox=sandbox,
        risk_engine=_convert(path, "risk_engine", raw.get("risk_engine", {}), LiveRiskEngineConfig),
        logging=_convert(path, "logging", raw.get("logging", {"log_level": "INFO"}), LoggingConfig),
        strategies=_strategies(path, raw.get("strategies", [])),
        actors=actor_configs(path, raw.get("actors", [])),
        replay=replay,
        state=state_settings(path, raw.get("cache"), env),
        guard=limits_section(path, raw, env, need_account=False).guard_settings() if "limits" in raw else None,
    )


def guard_actor_config(settings: dict) -> ImportableActorConfig:
    """The RiskGuard actor of a node (``settings``: ``LiveLimits.guard_settings()``)."""
    RiskGuardConfig(**settings)  # validates against the hard caps
    return ImportableActorConfig(actor_path=RISK_GUARD_PATH, config_path=RISK_GUARD_CONFIG_PATH, config=dict(settings))


def meter_actors(spec: PaperSpec, env: Mapping[str, str] = os.environ) -> list[ImportableActorConfig]:
    """The DataMeter of a node on the live Databento feed (none for a replay: it costs nothing)."""
    if spec.replay is not None:
        return []
    symbols = spec.parent_symbols + spec.instrument_ids
    return [data_meter_config(spec.dataset, symbols, str(load_budget(None, env).source))]


def node_config(spec: PaperSpec, env: Mapping[str, str] = os.environ) -> TradingNodeConfig:
    """The ``TradingNodeConfig`` of a paper spec (no API key in it: the adapter reads the env)."""
    return TradingNodeConfig(
        trader_id=spec.trader_id,
        logging=spec.logging,
        risk_engine=spec.risk_engine,
        # The sandbox venue has no history to reconcile with; orders and positions come from the cache.
        exec_engine=LiveExecEngineConfig(reconciliation=False),
        cache=spec.state.cache_config(),
        load_state=spec.state.persistent,
        save_state=spec.state.persistent,
        data_clients={REPLAY: spec.replay} if spec.replay is not None else {DATABENTO: spec.databento},
        exec_clients={SANDBOX: spec.sandbox},
        actors=([guard_actor_config(spec.guard)] if spec.guard else []) + meter_actors(spec, env) + list(spec.actors),
        strategies=list(spec.strategies),
        **spec.node,
    )


def risk_guards(node: TradingNode) -> list[RiskGuard]:
    """The node's RiskGuard actors."""
    return [actor for actor in node.trader.actors() if isinstance(actor, RiskGuard)]


def attach_guards(node: TradingNode) -> list[RiskGuard]:
    """Hand every RiskGuard actor of ``node`` its RiskEngine (before the node runs)."""
    guards = risk_guards(node)
    for guard in guards:
        guard.attach_risk_engine(node.kernel.risk_engine)
    return guards


def attach_dashboards(node: TradingNode, mode: str, *, replay: bool = False) -> list[DashboardActor]:
    """Hand every DashboardActor of ``node`` its mode, RiskEngine and figure sources (the other
    actors and strategies with ``live_figures()``), and take its port: ``IfdError`` before anything
    connects when the port is in use (a node that should be watched does not start unwatched)."""
    components = [*node.trader.actors(), *node.trader.strategies()]
    dashboards = [a for a in components if isinstance(a, DashboardActor)]
    for dashboard in dashboards:
        dashboard.attach(mode=mode, sources=components, risk_engine=node.kernel.risk_engine, replay=replay)
        dashboard.bind()
    return dashboards


def build_paper_node(
    config_path: Path | str | PaperSpec, env: Mapping[str, str] = os.environ,
) -> TradingNode:
    """A built (not yet running) paper ``TradingNode``; ``IfdError`` if the config or key is bad."""
    spec = config_path if isinstance(config_path, PaperSpec) else load_paper_spec(config_path, env)
    check_redis(spec.state)
    if spec.replay is not None:  # recorded data: no Databento client, no key
        node = TradingNode(config=node_config(spec))
        node.add_data_client_factory(REPLAY, ReplayLiveDataClientFactory)
        node.add_exec_client_factory(SANDBOX, SandboxLiveExecClientFactory)
        attach_guards(node)
        attach_dashboards(node, "paper · Sandbox", replay=True)
        node.build()
        return node
    if not env.get(API_KEY_ENV):
        raise IfdError(f"{API_KEY_ENV} is not set (the Databento API key; it is never logged)")
    check_live_budget(env, what=f"paper node {spec.trader_id} on the live Databento feed")
    if env is not os.environ and os.environ.get(API_KEY_ENV) != env[API_KEY_ENV]:
        os.environ[API_KEY_ENV] = env[API_KEY_ENV]  # the adapter reads the process environment
    node = TradingNode(config=node_config(spec, env))
    node.add_data_client_factory(DATABENTO, DatabentoLiveDataClientFactory)
    node.add_exec_client_factory(SANDBOX, SandboxLiveExecClientFactory)
    attach_guards(node)
    attach_dashboards(node, "paper · Sandbox")
    node.build()
    return node


def strategy_summaries(node: TradingNode) -> dict[str, dict]:
    """Each strategy's ``summary()`` (strategies without one: their state), keyed by strategy id."""
    out = {}
    for strategy in node.trader.strategies():
        summary = strategy.summary() if hasattr(strategy, "summary") else {}
        out[strategy.id.value] = {"strategy": type(strategy).__name__, **summary}
    return out


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """An emergency stop asked for by a signal (SIGTERM, SIGINT; ``ifd live stop`` sends SIGTERM)."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def __call__(self, sig: signal.Signals) -> None:
        self.request(sig.name)

    def request(self, reason: str) -> None:
        """An emergency stop for ``reason`` (the first one asked for wins)."""
        self.reason = self.reason or reason


def emergency_flatten(node: TradingNode, reason: str) -> None:
    """Cancel every working order and flatten every position: through the RiskGuard (which also
    halts trading) when the node has one, else through each strategy's own cancel / close."""
    guards = risk_guards(node)
    if guards:
        for guard in guards:
            guard.emergency_stop(reason)
        return
    for strategy in node.trader.strategies():
        instruments = {o.instrument_id for o in node.cache.orders_open(strategy_id=strategy.id)}
        instruments |= {p.instrument_id for p in node.cache.positions_open(strategy_id=strategy.id)}
        for instrument_id in instruments:
            strategy.cancel_all_orders(instrument_id)
            strategy.close_all_positions(instrument_id)


def _flat(node: TradingNode) -> bool:
    cache = node.cache
    return not cache.positions_open() and not cache.orders_open() and not cache.orders_inflight()


async def _run_until(
    node: TradingNode,
    duration_s: float | None,
    stop_when: Callable[[TradingNode], bool] | None,
    poll_s: float,
    stop_request: StopRequest,
    flatten_timeout_s: float,
) -> str:
    run = asyncio.ensure_future(node.run_async())
    started = time.monotonic()
    reason = "node stopped"
    try:
        while not run.done():
            await asyncio.sleep(poll_s)
            if stop_request.reason is not None:
                reason = stop_request.reason
                node.kernel.logger.warning(f"{reason}: emergency stop, cancelling and flattening")
                emergency_flatten(node, reason)
                deadline = time.monotonic() + flatten_timeout_s
                while not _flat(node) and time.monotonic() < deadline and not run.done():
                    await asyncio.sleep(poll_s)
                if not _flat(node):
                    node.kernel.logger.error(f"{reason}: not flat after {flatten_timeout_s:g} s")
                break
            if duration_s is not None and time.monotonic() - started >= duration_s:
                reason = "duration"
                break
            if stop_when is not None and node.trader.is_running and stop_when(node):
                reason = "stop condition"
                break
    finally:
        await node.stop_async()
        try:
            await asyncio.wait_for(run, timeout=10.0)
        except (TimeoutError, asyncio.CancelledError):
            run.cancel()
    if run.done() and not run.cancelled() and run.exception() is not None:
        raise run.exception()
    return reason


def open_positions(node: TradingNode) -> list[dict]:
    """The node's open positions (id, instrument, strategy, side, quantity, average open price)."""
    return [
        {"position_id": p.id.value, "instrument_id": p.instrument_id.value, "strategy_id": p.strategy_id.value,
         "side": p.side.name, "quantity": p.quantity.as_double(), "avg_px_open": p.avg_px_open,
         "ts_opened": p.ts_opened}
        for p in node.cache.positions_open()
    ]


def run_paper(
    config: Path | str | PaperSpec | TradingNode,
    duration_s: float | None = None,
    *,
    stop_when: Callable[[TradingNode], bool] | None = None,
    summary_path: Path | str | None = None,
    poll_s: float = 0.25,
    session_dir: Path | str | None = None,
    pid_dir: Path | str | None = None,
    flatten_timeout_s: float = 10.0,
) -> dict:
    """Run a paper node until ``duration_s`` (None: until ``stop_when`` or a signal); always stops it.

    SIGTERM or SIGINT (Ctrl-C, ``ifd live stop``) is an emergency stop: every working order is
    cancelled and every position flattened (by the RiskGuard, which also halts trading, when the
    node has one), waiting up to ``flatten_timeout_s``, then the node stops. Any other ending
    leaves positions as they are (kept in Redis when the node has ``[cache]``).

    Returns ``{"stopped_by", "seconds", "strategies": {id: summary}, "open_positions"}`` plus the
    guard's ``limit_events`` and ``figures`` when the node has a RiskGuard, and writes it as JSON to
    ``summary_path`` when given. With ``session_dir`` the stopped node's session folder (summary,
    signals, reports; see ``live.session_report``) is written there before the node is disposed.
    With ``pid_dir`` the process id is kept in ``pid_dir/<trader id>.pid`` while the node runs.
    """
    node = config if isinstance(config, TradingNode) else build_paper_node(config)
    try:
        price_data_meters(node, os.environ)  # before anything streams; IfdError: not started
    except BaseException:
        node.dispose()
        raise
    guards = risk_guards(node)
    loop = node.get_event_loop()
    stop_request = StopRequest()
    for meter in data_meters(node):  # the data budget used up: the same emergency stop as SIGTERM
        meter.on_exhausted = lambda reason: stop_request.request(f"data budget: {reason}")
    for sig in STOP_SIGNALS:  # replaces the kernel's handlers, which stop without flattening
        loop.add_signal_handler(sig, stop_request, sig)
    pid_path = pid_file(pid_dir, node.trader_id.value) if pid_dir is not None else None
    if pid_path is not None:
        write_pid(pid_path)
    started = time.monotonic()
    started_ns = time.time_ns()
    try:
        reason = loop.run_until_complete(
            _run_until(node, duration_s, stop_when, poll_s, stop_request, flatten_timeout_s),
        )
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        if pid_path is not None:
            remove_pid(pid_path)
    result = {
        "stopped_by": reason,
        "seconds": round(time.monotonic() - started, 3),
        "strategies": strategy_summaries(node),
        "open_positions": open_positions(node),
        "open_orders": [
            {"client_order_id": o.client_order_id.value, "instrument_id": o.instrument_id.value,
             "type": o.order_type.name, "side": o.side.name}
            for o in node.cache.orders_open()
        ],
        "trading_state": node.kernel.risk_engine.trading_state.name,
    }
    if guards:
        result["limit_events"] = [e for guard in guards for e in guard.events()]
        result["figures"] = guards[0].figures()
    if session_dir is not None:
        from live.session_report import write_session_report

        try:
            write_session_report(
                node, session_dir, started_ns=started_ns, ended_ns=time.time_ns(), stopped_by=reason,
            )
        finally:
            node.dispose()
        result["session_dir"] = str(session_dir)
    else:
        node.dispose()
    if summary_path is not None:
        Path(summary_path).write_text(json.dumps(result, indent=2, default=str))
    return result


def paper_config(config: Path | str, replay: list[Path] | None = None, speed: float = 1.0) -> Path | str | PaperSpec:
    """The paper config, switched to replay a catalog folder (one path) or DBN files when given."""
    if not replay:
        return config
    spec = load_paper_spec(config)
    if len(replay) == 1 and Path(replay[0]).is_dir():
        return with_replay(spec, catalog=Path(replay[0]), speed=speed)
    return with_replay(spec, dbn_files=[Path(p) for p in replay], speed=speed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m live.paper", description=__doc__.split("\n")[0])
    parser.add_argument("config", nargs="?", default="configs/live/paper.toml")
    parser.add_argument("--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)")
    parser.add_argument("--summary", type=Path, default=None, help="write the strategies' summaries here")
    parser.add_argument("--replay", nargs="+", default=None, metavar="PATH",
                        help="replay a catalog folder or DBN files instead of the Databento feed")
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed (1 real time, 0 max)")
    args = parser.parse_args(argv)
    try:
        config = paper_config(args.config, [Path(p) for p in args.replay or []], args.speed)
        stop_when = replay_finished if args.replay else None
        result = run_paper(config, args.duration, stop_when=stop_when, summary_path=args.summary)
    except IfdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in result.items() if k != "strategies"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
