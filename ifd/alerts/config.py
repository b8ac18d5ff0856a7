"""``configs/alerts.toml``: which sinks are on, their levels and limits, and how signals become alerts.

``load_alerts_config(path)`` returns a frozen ``AlertsConfig`` or raises ``IfdError`` with one line
naming the file and the setting. Unknown tables and settings are refused (a typo would otherwise
silently turn an alert off). The webhook URL is a secret: it is read from the environment
variable the file names (``url_env``), only when the webhook is enabled, and is never part of a
``repr``, an error message or a log line. Relative paths in the file are relative to the working
directory.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from urllib.parse import urlsplit

from ifd.alerts.alert import Level
from ifd.errors import IfdError
from ifd.toml_files import read_toml

DEFAULT_CONFIG = Path("configs/alerts.toml")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
WEBHOOK_FORMATS = ("slack", "discord")
STREAMS = ("stderr", "stdout")


@dataclass(frozen=True)
class SignalRules:
    """How a FlowSignal becomes an alert: the highest level whose confidence and premium it both meets.

    A signal under the info thresholds, or of an algorithm not listed, raises no alert.
    """

    algorithms: tuple[str, ...] = ("ifd_v1", "ifd_v3")
    info_confidence: float = 0.0
    info_notional_usd: float = 0.0
    warning_confidence: float = 0.6
    warning_notional_usd: float = 1_000_000.0
    critical_confidence: float = 0.8
    critical_notional_usd: float = 5_000_000.0


@dataclass(frozen=True)
class ConsoleConfig:
    enabled: bool = True
    min_level: Level = Level.WARNING
    stream: str = "stderr"  # stdout carries the commands' JSON output
    max_per_minute: int = 0  # 0: no rate limit


@dataclass(frozen=True)
class LogFileConfig:
    enabled: bool = True
    min_level: Level = Level.INFO
    path: Path = Path("data/alerts/alerts.log")
    max_bytes: int = 5_000_000
    backup_count: int = 5
    max_per_minute: int = 0


@dataclass(frozen=True)
class HistoryConfig:
    enabled: bool = True
    min_level: Level = Level.INFO
    path: Path = Path("data/alerts/alerts.sqlite")


@dataclass(frozen=True)
class WebhookConfig:
    """The webhook sink; ``url`` (from ``url_env``) is excluded from ``repr`` and ``str``."""

    enabled: bool = False
    min_level: Level = Level.WARNING
    url_env: str = "IFD_WEBHOOK_URL"
    format: str = "slack"
    timeout_s: float = 5.0
    retries: int = 3  # attempts after the first one
    backoff_s: float = 1.0  # first retry delay, doubled each retry
    backoff_max_s: float = 30.0  # cap on one delay, Retry-After included
    queue_size: int = 100
    max_per_minute: int = 10
    url: str = field(default="", repr=False, compare=False)


@dataclass(frozen=True)
class AlertsConfig:
    """Every alerts setting, validated."""

    source: str = ""  # label in every alert; empty: the caller's (e.g. the node's trader id)
    dedup_window_s: float = 300.0
    close_timeout_s: float = 5.0
    signals: SignalRules = SignalRules()
    console: ConsoleConfig = ConsoleConfig()
    log_file: LogFileConfig = LogFileConfig()
    history: HistoryConfig = HistoryConfig()
    webhook: WebhookConfig = WebhookConfig()
    path: str = ""  # the file it was read from


class _Table:
    """Reads one TOML table, each refusal one line naming the file, the table and the setting."""

    def __init__(self, path: Path, name: str, raw: object) -> None:
        if not isinstance(raw, dict):
            raise IfdError(f"{path}: [{name}] must be a table")
        self.path, self.name, self.raw = path, name, raw
        self.used: set[str] = set()

    def fail(self, key: str, reason: str) -> IfdError:
        return IfdError(f"{self.path}: [{self.name}] {key} {reason}")

    def get(self, key: str, default):
        self.used.add(key)
        return self.raw.get(key, default)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, got {value!r}")
        return value

    def number(self, key: str, default: float, *, minimum: float = 0.0, above: bool = False,
               integer: bool = False) -> float | int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(key, f"must be a number, got {value!r}")
        if integer and int(value) != value:
            raise self.fail(key, f"must be a whole number, got {value!r}")
        if value < minimum or (above and value == minimum):
            relation = "greater than" if above else "at least"
            raise self.fail(key, f"must be {relation} {minimum:g}, got {value!r}")
        return int(value) if integer else float(value)

    def string(self, key: str, default: str, choices: tuple[str, ...] | None = None) -> str:
        value = self.get(key, default)
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, got {value!r}")
        if choices is not None and value not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def level(self, key: str, default: Level) -> Level:
        value = self.get(key, default.label)
        try:
            if not isinstance(value, str):
                raise ValueError(f"must be one of info, warning, critical, got {value!r}")
            return Level.parse(value)
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None

    def file_path(self, key: str, default: Path) -> Path:
        value = self.string(key, str(default))
        if not value.strip():
            raise self.fail(key, "must not be empty")
        return Path(value).expanduser()

    def strings(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.get(key, list(default))
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, f"must be a list of names, got {value!r}")
        return tuple(value)

    def done(self) -> None:
        unknown = sorted(set(self.raw) - self.used)
        if unknown:
            raise IfdError(f"{self.path}: [{self.name}] unknown setting(s) {', '.join(unknown)}")


def resolve_config_path(value: str | Path) -> Path:
    """A config path as given, or else relative to the project root (so configs/... works anywhere)."""
    path = Path(value)
    if path.is_absolute() or path.exists():
        return path
    candidate = PROJECT_ROOT / path
    return candidate if candidate.exists() else path


def _table(path: Path, raw: dict, name: str) -> _Table:
    return _Table(path, name, raw.get(name, {}))


def _signals(path: Path, raw: dict) -> SignalRules:
    t = _table(path, raw, "signals")
    d = SignalRules()
    values = {"algorithms": t.strings("algorithms", d.algorithms)}
    for level in ("info", "warning", "critical"):
        values[f"{level}_confidence"] = t.number(f"{level}_confidence", getattr(d, f"{level}_confidence"))
        values[f"{level}_notional_usd"] = t.number(f"{level}_notional_usd", getattr(d, f"{level}_notional_usd"))
    t.done()
    for measure in ("confidence", "notional_usd"):
        info, warning, critical = (values[f"{level}_{measure}"] for level in ("info", "warning", "critical"))
        if not info <= warning <= critical:
            raise IfdError(
                f"{path}: [signals] info_{measure} <= warning_{measure} <= critical_{measure} does not hold "
                f"({info:g}, {warning:g}, {critical:g})",
            )
        if measure == "confidence" and critical > 1.0:
            raise IfdError(f"{path}: [signals] critical_confidence must be at most 1, got {critical:g}")
    return SignalRules(**values)


def _webhook(path: Path, raw: dict, env: Mapping[str, str] | None) -> WebhookConfig:
    t = _table(path, raw, "webhook")
    d = WebhookConfig()
    values = {
        "enabled": t.boolean("enabled", d.enabled),
        "min_level": t.level("min_level", d.min_level),
        "url_env": t.string("url_env", d.url_env),
        "format": t.string("format", d.format, WEBHOOK_FORMATS),
        "timeout_s": t.number("timeout_s", d.timeout_s, above=True),
        "retries": t.number("retries", d.retries, integer=True),
        "backoff_s": t.number("backoff_s", d.backoff_s),
        "backoff_max_s": t.number("backoff_max_s", d.backoff_max_s),
        "queue_size": t.number("queue_size", d.queue_size, minimum=1, integer=True),
        "max_per_minute": t.number("max_per_minute", d.max_per_minute, integer=True),
    }
    t.done()
    if values["backoff_max_s"] < values["backoff_s"]:
        raise t.fail("backoff_max_s", f"must be at least backoff_s ({values['backoff_s']:g})")
    if not values["enabled"] or env is None:
        return WebhookConfig(**values)
    name = values["url_env"].strip()
    if not name:
        raise t.fail("url_env", "is empty (the environment variable holding the webhook URL)")
    url = (env.get(name) or "").strip()
    if not url:
        raise t.fail("url_env", f"names {name}, which is empty or unset (set it, or set enabled = false)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise t.fail("url_env", f"names {name}, which does not hold an http(s) URL")  # the value is a secret
    return WebhookConfig(**values, url=url)


def load_alerts_config(
    path: Path | str = DEFAULT_CONFIG, env: Mapping[str, str] | None = None, *, secrets: bool = True,
) -> AlertsConfig:
    """Read and validate an alerts TOML; every refusal is an ``IfdError`` naming the file and setting.

    ``env`` defaults to ``os.environ``; ``secrets=False`` skips reading the webhook URL (for
    ``ifd alerts ls``, which only needs the history path).
    """
    path = resolve_config_path(path)
    env = (os.environ if env is None else env) if secrets else None
    raw = read_toml(path, f"{path}: no such alerts config file")
    tables = ("alerts", "signals", "console", "log_file", "history", "webhook")
    unknown = sorted(set(raw) - set(tables))
    if unknown:
        raise IfdError(f"{path}: unknown table(s) {', '.join(unknown)} (known: {', '.join(tables)})")

    t = _table(path, raw, "alerts")
    d = AlertsConfig()
    top = {
        "source": t.string("source", d.source),
        "dedup_window_s": t.number("dedup_window_s", d.dedup_window_s),
        "close_timeout_s": t.number("close_timeout_s", d.close_timeout_s),
    }
    t.done()

    t = _table(path, raw, "console")
    console = ConsoleConfig(
        enabled=t.boolean("enabled", ConsoleConfig.enabled),
        min_level=t.level("min_level", ConsoleConfig.min_level),
        stream=t.string("stream", ConsoleConfig.stream, STREAMS),
        max_per_minute=t.number("max_per_minute", ConsoleConfig.max_per_minute, integer=True),
    )
    t.done()

    t = _table(path, raw, "log_file")
    log_file = LogFileConfig(
        enabled=t.boolean("enabled", LogFileConfig.enabled),
        min_level=t.level("min_level", LogFileConfig.min_level),
        path=t.file_path("path", LogFileConfig.path),
        max_bytes=t.number("max_bytes", LogFileConfig.max_bytes, minimum=1_000, integer=True),
        backup_count=t.number("backup_count", LogFileConfig.backup_count, minimum=1, integer=True),
        max_per_minute=t.number("max_per_minute", LogFileConfig.max_per_minute, integer=True),
    )
    t.done()

    t = _table(path, raw, "history")
    history = HistoryConfig(
        enabled=t.boolean("enabled", HistoryConfig.enabled),
        min_level=t.level("min_level", HistoryConfig.min_level),
        path=t.file_path("path", HistoryConfig.path),
    )
    t.done()

    return AlertsConfig(
        **top,
        signals=_signals(path, raw),
        console=console,
        log_file=log_file,
        history=history,
        webhook=_webhook(path, raw, env),
        path=str(path),
    )
