"""Limited-live trading: Databento live data, Interactive Brokers execution, hard limits.

``load_limited_spec(path, env)`` reads a limited TOML (see ``configs/live/limited.toml``) and
validates everything before anything connects; each refusal is an ``IfdError`` whose one line
names the file and the setting:

- the sections shared with paper trading (``[node]``, ``[databento]``, ``[risk_engine]``,
  ``[logging]``, ``[[strategies]]``) are read by ``live.paper.load_paper_spec`` (same rules);
- ``[limits]`` (inline settings, or ``path = "configs/live/limits.toml"``) by
  ``live.limits.load_limits``: every limit present and no looser than its hard cap, the account
  id set in the environment variable it names, the data budget read from ``configs/budget.toml``;
- every strategy's ``[trading] quantity`` and ``max_position`` at most the limits'
  ``max_position_contracts``;
- ``[ib]``: the environment variables holding the TWS / IB Gateway host, port and client id are
  named, set and valid;
- ``[risk_engine]`` does not bypass the RiskEngine;
- ``DATABENTO_API_KEY`` is set;
- on the live Databento feed (not a replay), the day's and the month's Databento data budget
  (``configs/budget.toml``, its ledger shared with the downloads) is not used up.

``node_config(spec)`` is the ``TradingNodeConfig``: the Databento data client (as paper), the
Interactive Brokers execution client (``InteractiveBrokersExecClientConfig``: host, port, client
id, account id; its instrument provider loads the NQ futures option chain, secType FOP on CME,
with ids on the Databento venue GLBX so that the strategies' orders match IB contracts), the
RiskEngine with the order rates and a max notional per order, and the ``RiskGuard`` actor with
the limits. ``build_limited_node(path, env)`` validates, creates the node without connecting (the
node is not built: building the IB client connects) and attaches the guard to the node's RiskEngine.
``run_limited`` builds the node, then runs it like ``live.paper.run_paper``.

The account id and the API key never appear in the node config's ``repr`` or in our log lines
(the IB execution client itself names its account ``INTERACTIVE_BROKERS-<id>`` once connected).

CLI: ``python -m live.limited configs/live/limited.toml [--duration S] [--summary out.json]``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from nautilus_trader.adapters.databento import DATABENTO, DatabentoLiveDataClientFactory
from nautilus_trader.adapters.sandbox.config import SandboxExecutionClientConfig
from live.sandbox import SandboxLiveExecClientFactory
from nautilus_trader.adapters.interactive_brokers.common import IB, IBContract
from nautilus_trader.adapters.interactive_brokers.config import (
    InteractiveBrokersExecClientConfig,
    InteractiveBrokersInstrumentProviderConfig,
    SymbologyMethod,
)
from nautilus_trader.adapters.interactive_brokers.factories import (
    InteractiveBrokersLiveExecClientFactory,
)
from nautilus_trader.config import (
    ImportableActorConfig,
    LiveExecEngineConfig,
    LiveRiskEngineConfig,
    TradingNodeConfig,
)
from nautilus_trader.live.node import TradingNode

from adapters.databento.budget import check_live_budget
from backtests.config import resolve_project_path
from ifd.toml_files import read_toml
from ifd.errors import IfdError
from live import paper
from live.limits import LiveLimits, limits_section
from live.data_meter import price_data_meters
from live.paper import API_KEY_ENV, SANDBOX, PaperSpec, run_paper
from live.replay_client import REPLAY, ReplayDataClientConfig, ReplayLiveDataClientFactory
from live.risk_guard import RiskGuard
from live.state import check_redis, state_settings

LIMITED_SECTIONS = {"ib", "limits"}
IB_KEYS = {"host_env", "port_env", "client_id_env", "exchange", "underlying", "trading_classes",
           "min_expiry_days", "max_expiry_days", "venue", "connection_timeout", "request_timeout_secs"}
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")


class LimitedIBExecClientConfig(InteractiveBrokersExecClientConfig, frozen=True):
    """``InteractiveBrokersExecClientConfig`` whose ``repr`` masks the account id."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(ibg_host={self.ibg_host!r}, ibg_port={self.ibg_port!r}, "
            f"ibg_client_id={self.ibg_client_id!r}, account_id={'***' if self.account_id else None!r}, "
            f"instrument_provider={self.instrument_provider!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True)
class IbSettings:
    host: str
    port: int
    client_id: int
    exchange: str
    underlying: str
    trading_classes: tuple[str, ...]
    min_expiry_days: int
    max_expiry_days: int
    venue: str
    connection_timeout: int
    request_timeout_secs: int


@dataclass(frozen=True)
class LimitedSpec:
    """A parsed, validated limited TOML file (the account id only inside ``limits``, masked)."""

    path: Path
    paper: PaperSpec  # [node], [databento], [risk_engine], [logging], [[strategies]]
    ib: IbSettings
    limits: LiveLimits
    risk_engine: LiveRiskEngineConfig

    @property
    def strategies(self):
        return self.paper.strategies


def _paper_part(path: Path, raw: dict, env: Mapping[str, str]) -> PaperSpec:
    """``load_paper_spec`` on the shared sections (a placeholder sandbox it requires, unused here)."""
    shared = {k: v for k, v in raw.items() if k not in LIMITED_SECTIONS}
    if "sandbox" in shared:
        raise IfdError(f"{path}: [sandbox] is not allowed in a limited config (orders go to Interactive Brokers)")
    shared["sandbox"] = {"starting_balances": ["1 USD"]}
    shared.setdefault("node", {}).setdefault("trader_id", "IFD-LIMITED")
    spec = paper.paper_spec_from_tables(path, shared, env)
    state_settings(path, raw.get("cache"), env, required=True)  # Redis, or refuse
    return spec


def _int(path: Path, name: str, value, low: int, high: int) -> int:
    text = str(value).strip()
    if not re.fullmatch(r"[0-9]+", text) or not low <= int(text) <= high:
        raise IfdError(f"{path}: [ib] {name} must be a whole number {low}-{high}, got {text!r}")
    return int(text)


def _ib(path: Path, raw: dict, env: Mapping[str, str]) -> IbSettings:
    table = raw.get("ib")
    if not isinstance(table, dict):
        raise IfdError(f"{path}: [ib] is missing (TWS / IB Gateway host_env, port_env, client_id_env)")
    paper._check_keys(path, "ib", table, IB_KEYS)
    values = {}
    for key in ("host_env", "port_env", "client_id_env"):
        name = table.get(key)
        if not isinstance(name, str) or not name.strip():
            raise IfdError(f"{path}: [ib] {key} is missing (the environment variable to read)")
        value = (env.get(name) or "").strip()
        if not value:
            raise IfdError(f"{path}: [ib] {key}: environment variable {name} is empty or unset")
        values[key] = (name, value)
    name, host = values["host_env"]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.match(host):
            raise IfdError(f"{path}: [ib] host_env: {name} is not a host name or IP address") from None
    port = _int(path, f"port ({values['port_env'][0]})", values["port_env"][1], 1, 65535)
    client_id = _int(path, f"client id ({values['client_id_env'][0]})", values["client_id_env"][1], 0, 2**31 - 1)
    classes = table.get("trading_classes", [])
    if not isinstance(classes, list) or not all(isinstance(c, str) and c.isalnum() for c in classes):
        raise IfdError(f"{path}: [ib] trading_classes must be a list of IB trading classes, e.g. [\"Q1A\"]")
    settings = {}
    for key, default, low, high in (("min_expiry_days", 0, 0, 3650), ("max_expiry_days", 7, 0, 3650),
                                    ("connection_timeout", 60, 1, 3600), ("request_timeout_secs", 60, 1, 3600)):
        settings[key] = _int(path, key, table.get(key, default), low, high)
    if settings["min_expiry_days"] > settings["max_expiry_days"]:
        raise IfdError(f"{path}: [ib] min_expiry_days exceeds max_expiry_days")
    for key, default in (("exchange", "CME"), ("underlying", "NQ"), ("venue", "GLBX")):
        value = table.get(key, default)
        if not isinstance(value, str) or not value.isalnum():
            raise IfdError(f"{path}: [ib] {key} must be a name like {default!r}, got {value!r}")
        settings[key] = value
    return IbSettings(host=host, port=port, client_id=client_id, trading_classes=tuple(classes), **settings)


def _check_strategies(path: Path, spec: PaperSpec, limits: LiveLimits) -> None:
    cap = limits.max_position_contracts
    for index, strategy in enumerate(spec.strategies):
        trading = strategy.config.get("trading") or {}
        where = f"[[strategies]] #{index + 1} ({trading.get('profile', strategy.config.get('profile', strategy.strategy_path))})"
        for key in ("max_position", "quantity"):
            value = trading.get(key, 1)  # strategies.trading.TradingParams defaults: 1
            if isinstance(value, bool) or not isinstance(value, int) or value > cap:
                raise IfdError(f"{path}: {where} [trading] {key} {value!r} exceeds the limits' "
                               f"max_position_contracts {cap}")


def _risk_engine(path: Path, spec: PaperSpec, limits: LiveLimits) -> LiveRiskEngineConfig:
    base = spec.risk_engine
    if base.bypass:
        raise IfdError(f"{path}: [risk_engine] bypass = true is not allowed in limited-live trading")
    notional = int(limits.max_total_risk_usd)  # one order can never carry more than the total risk cap
    own = dict(base.max_notional_per_order or {})
    for instrument_id in spec.instrument_ids:
        own[instrument_id] = min(int(own.get(instrument_id, notional)), notional)
    return LiveRiskEngineConfig(
        bypass=False,
        max_order_submit_rate=base.max_order_submit_rate,
        max_order_modify_rate=base.max_order_modify_rate,
        max_notional_per_order=own,
        debug=base.debug,
        graceful_shutdown_on_exception=base.graceful_shutdown_on_exception,
        qsize=base.qsize,
    )


def load_limited_spec(path: Path | str, env: Mapping[str, str] = os.environ, *, data_key: bool = True) -> LimitedSpec:
    """Read and validate a limited TOML file before anything connects; ``IfdError`` on any refusal.

    ``data_key=False`` (a rehearsal on recorded data) does not need the Databento key.
    """
    path = resolve_project_path(path)
    raw = read_toml(path, f"{path}: no such limited config")
    spec = _paper_part(path, raw, env)
    limits = limits_section(path, raw, env)
    _check_strategies(path, spec, limits)
    ib = _ib(path, raw, env)
    risk_engine = _risk_engine(path, spec, limits)
    if data_key and not (env.get(API_KEY_ENV) or "").strip():
        raise IfdError(f"{path}: {API_KEY_ENV} is not set (the Databento API key; it is never logged)")
    return LimitedSpec(path=path, paper=spec, ib=ib, limits=limits, risk_engine=risk_engine)


def instrument_provider_config(ib: IbSettings) -> InteractiveBrokersInstrumentProviderConfig:
    """The IB instrument provider: NQ futures and their option chain (secType FOP on CME), on venue GLBX."""
    contracts = {
        IBContract(secType="CONTFUT", exchange=ib.exchange, symbol=ib.underlying, build_futures_chain=False,
                   build_options_chain=True, min_expiry_days=ib.min_expiry_days, max_expiry_days=ib.max_expiry_days),
    }
    contracts |= {IBContract(secType="FOP", exchange=ib.exchange, symbol=ib.underlying, tradingClass=tc)
                  for tc in ib.trading_classes}
    return InteractiveBrokersInstrumentProviderConfig(
        symbology_method=SymbologyMethod.IB_SIMPLIFIED,  # "NQZ6 C21000", like Databento's raw symbols
        load_contracts=frozenset(contracts),
        min_expiry_days=ib.min_expiry_days,
        max_expiry_days=ib.max_expiry_days,
        symbol_to_mic_venue={prefix: ib.venue for prefix in (ib.underlying, *ib.trading_classes)},
        filter_sec_types=frozenset({"WAR", "IOPT"}),
    )


def ib_exec_config(spec: LimitedSpec) -> LimitedIBExecClientConfig:
    ib = spec.ib
    return LimitedIBExecClientConfig(
        ibg_host=ib.host,
        ibg_port=ib.port,
        ibg_client_id=ib.client_id,
        account_id=spec.limits.account_id,
        instrument_provider=instrument_provider_config(ib),
        connection_timeout=ib.connection_timeout,
        request_timeout_secs=ib.request_timeout_secs,
    )


def risk_guard_config(limits: LiveLimits) -> ImportableActorConfig:
    return paper.guard_actor_config(limits.guard_settings())


def rehearsal_sandbox(spec: LimitedSpec) -> SandboxExecutionClientConfig:
    """The Sandbox execution client standing in for Interactive Brokers (``--sandbox``): paper fills
    against the live (or replayed) L3 book on the same venue, with the same limits and guard."""
    return SandboxExecutionClientConfig(
        venue=spec.ib.venue, starting_balances=["1000000 USD"], base_currency="USD",
        oms_type="NETTING", account_type="MARGIN", book_type="L3_MBO", trade_execution=True,
        use_reduce_only=False,  # as live.paper: bracket children reach the venue before the position
    )


def node_config(
    spec: LimitedSpec, *, sandbox: bool = False, replay: ReplayDataClientConfig | None = None,
    env: Mapping[str, str] = os.environ,
) -> TradingNodeConfig:
    """The limited node's ``TradingNodeConfig`` (no API key in it; the account id masked in repr).

    ``sandbox``: the Sandbox execution client instead of Interactive Brokers (a rehearsal with
    every limit in force); ``replay``: recorded data instead of the Databento feed (needs ``sandbox``).
    """
    if replay is not None and not sandbox:
        raise IfdError("a replay can only be traded against the sandbox (--sandbox), never a broker")
    base = spec.paper
    return TradingNodeConfig(
        trader_id=base.trader_id,
        logging=base.logging,
        risk_engine=spec.risk_engine,
        # The broker's orders and positions; the sandbox has none beyond the cache's.
        exec_engine=LiveExecEngineConfig(reconciliation=not sandbox),
        cache=base.state.cache_config(),
        load_state=True,
        save_state=True,
        data_clients={REPLAY: replay} if replay is not None else {DATABENTO: base.databento},
        exec_clients={SANDBOX: rehearsal_sandbox(spec)} if sandbox else {IB: ib_exec_config(spec)},
        actors=[risk_guard_config(spec.limits), *([] if replay is not None else paper.meter_actors(spec.paper, env)),
                *spec.paper.actors],
        strategies=list(base.strategies),
        **base.node,
    )


def risk_guard(node: TradingNode) -> RiskGuard:
    guards = paper.risk_guards(node)
    if len(guards) != 1:
        raise IfdError(f"the limited node needs exactly one RiskGuard actor, found {len(guards)}")
    return guards[0]


def build_limited_node(
    config_path: Path | str | LimitedSpec,
    env: Mapping[str, str] = os.environ,
    *,
    sandbox: bool = False,
    replay: ReplayDataClientConfig | None = None,
) -> TradingNode:
    """A validated limited ``TradingNode``, NOT built and not connected, with the RiskGuard on its RiskEngine.

    ``node.build()`` is deliberately not called here: building the Interactive Brokers execution
    client connects to TWS / IB Gateway at once (NautilusTrader's ``get_cached_interactive_brokers_client``
    starts the client, and with the event loop not running that runs the connection to completion).
    ``run_limited`` builds the node right before running it. The kernel (trader, strategies, the
    RiskGuard actor, the RiskEngine) exists already, so the guard is attached here. Redis must
    answer first (``live.state.check_redis``): the limits' day state lives there.
    """
    spec = (config_path if isinstance(config_path, LimitedSpec)
            else load_limited_spec(config_path, env, data_key=replay is None))
    if replay is None:
        key = env.get(API_KEY_ENV) or os.environ.get(API_KEY_ENV)
        if not key:
            raise IfdError(f"{API_KEY_ENV} is not set (the Databento API key; it is never logged)")
        check_live_budget(env, what=f"limited node {spec.paper.trader_id} on the live Databento feed")
        if os.environ.get(API_KEY_ENV) != key:
            os.environ[API_KEY_ENV] = key  # the Databento adapter reads the process environment
    check_redis(spec.paper.state)
    node = TradingNode(config=node_config(spec, sandbox=sandbox, replay=replay, env=env))
    if replay is not None:
        node.add_data_client_factory(REPLAY, ReplayLiveDataClientFactory)
    else:
        node.add_data_client_factory(DATABENTO, DatabentoLiveDataClientFactory)
    if sandbox:
        node.add_exec_client_factory(SANDBOX, SandboxLiveExecClientFactory)
    else:
        node.add_exec_client_factory(IB, InteractiveBrokersLiveExecClientFactory)
    risk_guard(node).attach_risk_engine(node.kernel.risk_engine)
    paper.attach_dashboards(node, f"limited · {'Sandbox' if sandbox else 'Interactive Brokers'}",
                            replay=replay is not None)
    return node


def run_limited(
    config: Path | str | LimitedSpec | TradingNode,
    duration_s: float | None = None,
    *,
    env: Mapping[str, str] = os.environ,
    stop_when: Callable[[TradingNode], bool] | None = None,
    summary_path: Path | str | None = None,
    poll_s: float = 0.25,
    session_dir: Path | str | None = None,
    pid_dir: Path | str | None = None,
) -> dict:
    """Run a limited node like ``run_paper`` (stops, disposes, returns the strategies' summaries
    plus the guard's ``limit_events`` and ``figures``)."""
    node = config if isinstance(config, TradingNode) else build_limited_node(config, env)
    price_data_meters(node, env)  # before the broker or the feed connects
    if not node.is_built():
        node.build()  # connects the Interactive Brokers client (see build_limited_node)
    result = run_paper(node, duration_s, stop_when=stop_when, poll_s=poll_s, session_dir=session_dir,
                       pid_dir=pid_dir)
    if summary_path is not None:
        Path(summary_path).write_text(json.dumps(result, indent=2, default=str))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m live.limited", description=__doc__.split("\n")[0])
    parser.add_argument("config", nargs="?", default="configs/live/limited.toml")
    parser.add_argument("--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)")
    parser.add_argument("--summary", type=Path, default=None, help="write the summaries and limit events here")
    args = parser.parse_args(argv)
    try:
        result = run_limited(args.config, args.duration, summary_path=args.summary)
    except IfdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in result.items() if k not in ("strategies", "limit_events")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
