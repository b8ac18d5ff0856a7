"""Backtest TOML files -> NautilusTrader ``BacktestRunConfig`` (the factory for ``BacktestNode``).

A backtest file has these tables (see ``configs/backtests/demo.toml``):

- ``[run]``: ``name``, ``catalog`` (relative paths resolve from the working directory),
  ``baselines`` (true: strategies read `ifd baselines build` output from the catalog),
  ``chunk_size`` (records per streamed chunk), optional ``start`` / ``end``.
- ``[venue]``: fields of ``BacktestVenueConfig``; ``[venue.fill_model]`` fields of
  ``FillModelConfig``; ``[venue.latency_model]`` fields of ``LatencyModelConfig``.
- ``[data]``: ``types`` (``OrderBookDelta``, ``TradeTick``, ``QuoteTick``) and
  ``instrument_ids`` (empty: every instrument in the catalog).
- ``[risk_engine]``: fields of ``RiskEngineConfig``; ``[logging]``: fields of ``LoggingConfig``.
- ``[[strategies]]``: ``strategy_path``, ``config_path``, an optional ``profile`` (a TOML under
  ``configs/profiles/`` whose tables fill the config) and a ``[strategies.config]`` table;
  several strategies may run side by side.
- ``[[actors]]``: ``actor_path``, ``config_path`` and a ``[actors.config]`` table (e.g. a risk guard).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from nautilus_trader.backtest.config import BacktestDataConfig
from nautilus_trader.backtest.config import BacktestEngineConfig
from nautilus_trader.backtest.config import BacktestRunConfig
from nautilus_trader.backtest.config import BacktestVenueConfig
from nautilus_trader.backtest.config import FillModelConfig
from nautilus_trader.backtest.config import ImportableFillModelConfig
from nautilus_trader.backtest.config import ImportableLatencyModelConfig
from nautilus_trader.backtest.config import LatencyModelConfig
from nautilus_trader.config import ImportableActorConfig
from nautilus_trader.config import ImportableStrategyConfig
from nautilus_trader.config import LoggingConfig
from nautilus_trader.config import RiskEngineConfig
from nautilus_trader.model.enums import AccountType
from nautilus_trader.model.enums import BookType
from nautilus_trader.model.enums import OmsType

from ifd.errors import IfdError
from ifd.toml_files import read_toml

DATA_TYPES = {
    "OrderBookDelta": "nautilus_trader.model.data:OrderBookDelta",
    "TradeTick": "nautilus_trader.model.data:TradeTick",
    "QuoteTick": "nautilus_trader.model.data:QuoteTick",
}
SECTIONS = {"run", "venue", "data", "risk_engine", "logging", "strategies", "actors"}


@dataclass(frozen=True)
class BacktestSpec:
    """A parsed, validated backtest file."""

    path: Path
    name: str
    catalog: Path
    chunk_size: int
    start: str | None
    end: str | None
    venue: BacktestVenueConfig
    data_types: tuple[str, ...]
    instrument_ids: tuple[str, ...]
    risk_engine: RiskEngineConfig
    logging: LoggingConfig
    strategies: tuple[ImportableStrategyConfig, ...]
    actors: tuple[ImportableActorConfig, ...] = ()


def _convert(path: Path, section: str, value: Any, cls: type) -> Any:
    try:
        return msgspec.convert(value, cls, strict=False)
    except msgspec.ValidationError as exc:
        raise IfdError(f"{path}: [{section}] {exc}") from None


PROFILE_KEYS = {"detector", "trading", "quality", "data_mode"}


def actor_configs(path: Path, entries: list[dict]) -> tuple[ImportableActorConfig, ...]:
    """The ``[[actors]]`` of a backtest or node file (monitors, alerts, a risk guard).

    Each has ``actor_path``, ``config_path``, an optional ``profile`` (a TOML under ``configs/``
    whose keys fill the config, as a strategy's profile does) and a ``[actors.config]`` table,
    which wins over the profile. The config is checked against its class here, so a wrong key or
    value is refused before any node is built.
    """
    actors = []
    for index, entry in enumerate(entries):
        where = f"{path}: [[actors]] #{index + 1}"
        unknown = set(entry) - {"actor_path", "config_path", "profile", "config"}
        if unknown or not entry.get("actor_path") or not entry.get("config_path"):
            raise IfdError(f"{where} needs actor_path and config_path (and an optional profile and config)")
        config: dict = {}
        if entry.get("profile"):
            profile = resolve_project_path(entry["profile"])
            config.update(read_toml(profile, f"{where}: profile {entry['profile']} not found"))
            where = f"{where} (profile {entry['profile']})"
        config.update(entry.get("config", {}))
        _check_actor_config(where, entry["config_path"], config)
        actors.append(
            ImportableActorConfig(actor_path=entry["actor_path"], config_path=entry["config_path"], config=config),
        )
    return tuple(actors)


def _check_actor_config(where: str, config_path: str, config: dict) -> None:
    module, _, name = config_path.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise IfdError(f"{where}: config class {config_path} not found ({exc})") from None
    try:
        cls.parse(msgspec.json.encode(config))
    except (msgspec.ValidationError, TypeError, ValueError) as exc:
        raise IfdError(f"{where}: {exc}") from None


def resolve_project_path(value: str | Path) -> Path:
    """A path as given, or else relative to the project root (configs/... work from anywhere)."""
    path = Path(value)
    if path.is_absolute() or path.exists():
        return path
    candidate = Path(__file__).resolve().parents[1] / path
    return candidate if candidate.exists() else path




def _profile_tables(config_path: Path, profile: str) -> dict:
    """The strategy-config fields a profile TOML supplies ([detector], [trading], [quality], data_mode)."""
    profile_path = resolve_project_path(profile)
    raw = read_toml(profile_path, f"{config_path}: profile {profile} not found")
    unknown = set(raw) - PROFILE_KEYS
    if unknown:
        raise IfdError(f"{profile_path}: unknown profile key(s) {', '.join(sorted(unknown))}")
    if raw.get("data_mode", "historical") not in ("historical", "live"):
        raise IfdError(f"{profile_path}: data_mode must be 'historical' or 'live'")
    tables = {key: raw[key] for key in ("detector", "trading", "quality") if key in raw}
    tables["data_mode"] = raw.get("data_mode", "historical")
    tables["profile"] = str(profile)
    return tables


def _accepts(config_path: str, field: str) -> bool:
    """Whether the strategy config class at ``module:Class`` has ``field``."""
    module, _, name = config_path.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return False  # reported when the node builds the strategy
    return field in getattr(cls, "__struct_fields__", ())


def load_backtest_spec(path: Path | str, catalog_override: Path | None = None) -> BacktestSpec:
    """Read and validate a backtest TOML file; every error names the file and the setting."""
    path = Path(path)
    raw = read_toml(path, f"{path}: no such backtest config")
    unknown = set(raw) - SECTIONS
    if unknown:
        raise IfdError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}")

    run = raw.get("run", {})
    unknown_run = set(run) - {"name", "catalog", "chunk_size", "start", "end", "baselines"}
    if unknown_run:
        raise IfdError(f"{path}: [run] unknown key(s) {', '.join(sorted(unknown_run))}")
    name = str(run.get("name") or path.stem)
    catalog_value = catalog_override or run.get("catalog")
    if not catalog_value:
        raise IfdError(f"{path}: [run] catalog is missing (or pass --catalog)")
    chunk_size = run.get("chunk_size", 100_000)
    if not isinstance(chunk_size, int) or chunk_size <= 0:
        raise IfdError(f"{path}: [run] chunk_size must be a positive integer, got {chunk_size!r}")

    venue_raw = dict(raw.get("venue") or {})
    if not venue_raw:
        raise IfdError(f"{path}: [venue] is missing")
    fill = venue_raw.pop("fill_model", None)
    latency = venue_raw.pop("latency_model", None)
    venue = _convert(path, "venue", venue_raw, BacktestVenueConfig)
    # NautilusTrader's enum parsers abort the process on unknown names: check them here.
    for key, enum in (("book_type", BookType), ("oms_type", OmsType), ("account_type", AccountType)):
        value = getattr(venue, key)
        allowed = [member.name for member in enum]
        if isinstance(value, str) and value not in allowed:
            raise IfdError(f"{path}: [venue] {key} {value!r} is not one of {', '.join(allowed)}")
    replace: dict[str, Any] = {}
    if fill is not None:
        _convert(path, "venue.fill_model", fill, FillModelConfig)
        replace["fill_model"] = ImportableFillModelConfig(
            fill_model_path="nautilus_trader.backtest.models:FillModel",
            config_path="nautilus_trader.backtest.config:FillModelConfig",
            config=fill,
        )
    if latency is not None:
        _convert(path, "venue.latency_model", latency, LatencyModelConfig)
        replace["latency_model"] = ImportableLatencyModelConfig(
            latency_model_path="nautilus_trader.backtest.models:LatencyModel",
            config_path="nautilus_trader.backtest.config:LatencyModelConfig",
            config=latency,
        )
    if replace:
        venue = msgspec.structs.replace(venue, **replace)

    data = raw.get("data", {})
    data_types = tuple(data.get("types", ["OrderBookDelta", "TradeTick"]))
    bad = [t for t in data_types if t not in DATA_TYPES]
    if bad or not data_types:
        raise IfdError(f"{path}: [data] types {bad or data_types} not supported (use {', '.join(DATA_TYPES)})")

    strategies = []
    for index, entry in enumerate(raw.get("strategies", [])):
        for key in ("strategy_path", "config_path"):
            if not entry.get(key):
                raise IfdError(f"{path}: [[strategies]] #{index + 1} needs {key}")
        unknown = set(entry) - {"strategy_path", "config_path", "profile", "config"}
        if unknown:
            raise IfdError(f"{path}: [[strategies]] #{index + 1} unknown key(s) {', '.join(sorted(unknown))}")
        config = _profile_tables(path, entry["profile"]) if entry.get("profile") else {}
        config.update(entry.get("config", {}))
        if run.get("baselines") and _accepts(entry["config_path"], "baselines_catalog"):
            config.setdefault("baselines_catalog", str(Path(catalog_value)))
        strategies.append(
            ImportableStrategyConfig(
                strategy_path=entry["strategy_path"],
                config_path=entry["config_path"],
                config=config,
            ),
        )
    actors = actor_configs(path, raw.get("actors", []))
    if not strategies:
        raise IfdError(f"{path}: no [[strategies]] configured")

    return BacktestSpec(
        path=path,
        name=name,
        catalog=Path(catalog_value),
        chunk_size=chunk_size,
        start=run.get("start"),
        end=run.get("end"),
        venue=venue,
        data_types=data_types,
        instrument_ids=tuple(data.get("instrument_ids", [])),
        risk_engine=_convert(path, "risk_engine", raw.get("risk_engine", {}), RiskEngineConfig),
        logging=_convert(path, "logging", raw.get("logging", {"log_level": "ERROR"}), LoggingConfig),
        strategies=tuple(strategies),
        actors=tuple(actors),
    )


def build_run_config(spec: BacktestSpec, instrument_ids: dict[str, list[str]]) -> BacktestRunConfig:
    """The ``BacktestRunConfig`` a ``BacktestNode`` runs for this spec.

    ``instrument_ids`` maps each data type to the instruments to replay (resolved from the
    catalog); each data type is one data config over all of them.
    """
    catalog = str(spec.catalog.resolve())
    data = [
        BacktestDataConfig(catalog_path=catalog, data_cls=DATA_TYPES[name], instrument_ids=sorted(ids))
        for name in spec.data_types
        if (ids := instrument_ids.get(name))
    ]
    engine = BacktestEngineConfig(
        trader_id="IFD-BACKTEST",
        strategies=list(spec.strategies),
        actors=list(spec.actors),
        risk_engine=spec.risk_engine,
        logging=spec.logging,
    )
    return BacktestRunConfig(
        venues=[spec.venue],
        data=data,
        engine=engine,
        chunk_size=spec.chunk_size,
        raise_exception=True,
        dispose_on_completion=False,
        start=spec.start,
        end=spec.end,
    )
