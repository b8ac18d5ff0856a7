"""Node state in Redis: the ``[cache]`` section of the paper and limited TOML files.

With ``database = "redis"`` the node's NautilusTrader cache (orders, positions, accounts,
instruments) is written to Redis as it changes (``CacheConfig.database``), loaded back when the
node is built (``LiveExecEngineConfig.load_cache``), and actor/strategy state is saved and loaded
(``save_state`` / ``load_state``); the risk guard writes its day figures and halt state on every
change, so a node killed without warning comes back with them. Keys are prefixed with the
trader id (``trader-IFD-PAPER:...``): two nodes with the same trader id share their state.

``database = "none"`` keeps the cache in memory only (paper nodes only; a restart starts empty).
The password, when Redis needs one, comes from the environment variable ``password_env`` names.
``check_redis`` answers the question "is Redis there?" with one line before the node is built.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nautilus_trader.cache.config import CacheConfig
from nautilus_trader.common.config import DatabaseConfig

from ifd.errors import IfdError

CACHE_KEYS = {"database", "host", "port", "password_env", "buffer_interval_ms", "flush_on_start"}
DATABASES = ("redis", "none")


@dataclass(frozen=True)
class StateSettings:
    """The validated ``[cache]`` section; the password is never shown."""

    database: str = "none"
    host: str = "127.0.0.1"
    port: int = 6379
    password_env: str | None = None
    password: str | None = field(default=None, repr=False)
    buffer_interval_ms: int | None = None
    flush_on_start: bool = False

    @property
    def persistent(self) -> bool:
        return self.database == "redis"

    def cache_config(self) -> CacheConfig:
        """The node's ``CacheConfig`` (in memory when ``database = "none"``)."""
        if not self.persistent:
            return CacheConfig()
        database = DatabaseConfig(type="redis", host=self.host, port=self.port, password=self.password,
                                  connection_timeout=5, response_timeout=5, number_of_retries=3)
        return CacheConfig(database=database, buffer_interval_ms=self.buffer_interval_ms,
                           flush_on_start=self.flush_on_start)


def state_settings(path: Path, table: Mapping | None, env: Mapping[str, str] = os.environ,
                   *, required: bool = False) -> StateSettings:
    """Validate a ``[cache]`` table (``required``: it must say ``database = "redis"``)."""
    if table is None:
        if required:
            raise IfdError(f'{path}: [cache] is missing (database = "redis": the node state must survive a restart)')
        return StateSettings()
    unknown = set(table) - CACHE_KEYS
    if unknown:
        raise IfdError(f"{path}: [cache] unknown key(s) {', '.join(sorted(unknown))}")
    database = table.get("database", "redis")
    if database not in DATABASES:
        raise IfdError(f"{path}: [cache] database must be one of {', '.join(DATABASES)}, got {database!r}")
    if required and database != "redis":
        raise IfdError(f'{path}: [cache] database must be "redis" here (the node state must survive a restart)')
    host = table.get("host", "127.0.0.1")
    if not isinstance(host, str) or not host.strip():
        raise IfdError(f"{path}: [cache] host must be a host name or address, got {host!r}")
    port = table.get("port", 6379)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise IfdError(f"{path}: [cache] port must be 1-65535, got {port!r}")
    buffer = table.get("buffer_interval_ms")
    if buffer is not None and (isinstance(buffer, bool) or not isinstance(buffer, int) or not 0 < buffer <= 1000):
        raise IfdError(f"{path}: [cache] buffer_interval_ms must be 1-1000 (or absent: write at once), got {buffer!r}")
    flush = table.get("flush_on_start", False)
    if not isinstance(flush, bool):
        raise IfdError(f"{path}: [cache] flush_on_start must be true or false, got {flush!r}")
    password_env = table.get("password_env")
    password = None
    if password_env is not None:
        if not isinstance(password_env, str) or not password_env.strip():
            raise IfdError(f"{path}: [cache] password_env must name an environment variable")
        password = env.get(password_env) or None
        if password is None:
            raise IfdError(f"{path}: [cache] Redis password not set: environment variable {password_env} is empty or unset")
    return StateSettings(database=database, host=host, port=port, password_env=password_env, password=password,
                         buffer_interval_ms=buffer, flush_on_start=flush)


def _resp(*parts: str) -> bytes:
    out = f"*{len(parts)}\r\n"
    for part in parts:
        out += f"${len(part.encode())}\r\n{part}\r\n"
    return out.encode()


def check_redis(settings: StateSettings, timeout_s: float = 3.0) -> None:
    """Raise ``IfdError`` (one line) unless the configured Redis answers PING; no-op without Redis."""
    if not settings.persistent:
        return
    where = f"Redis at {settings.host}:{settings.port}"
    try:
        with socket.create_connection((settings.host, settings.port), timeout=timeout_s) as conn:
            if settings.password:
                conn.sendall(_resp("AUTH", settings.password))
                if not conn.recv(256).startswith(b"+OK"):
                    raise IfdError(f"{where}: authentication refused (check {settings.password_env})")
            conn.sendall(_resp("PING"))
            reply = conn.recv(256)
    except OSError as exc:
        raise IfdError(f"{where} is unreachable ({exc.strerror or exc}); start redis-server or fix [cache]") from None
    if not reply.startswith(b"+PONG"):
        first = reply.decode(errors="replace").strip().splitlines()[0] if reply else "no reply"
        raise IfdError(f"{where} did not answer PING ({first})")


__all__ = ["StateSettings", "check_redis", "state_settings"]
