"""The limited-live limits: read from a TOML ``[limits]`` table and validated before anything connects.

``load_limits(path)`` returns a frozen ``LiveLimits`` or raises ``IfdError`` with one line naming
the file and the setting. Every money / count limit must be present, a positive number and no
looser than its hard cap (``HARD_CAPS``); the broker account id comes from the environment
variable the file names (``account_env``), is required, and never appears in ``repr``/``str``.

Definitions (also in ``configs/live/limits.toml``):

- ``max_position_contracts``: open plus pending (working entry orders) contracts, account-wide.
- ``max_daily_loss_usd``: the session day's realized P&L (closed and partly closed positions,
  commissions included) plus the unrealized P&L of open positions, marked at the price they
  could be closed at (best bid for longs, best ask for shorts); the limit is hit when the loss
  reaches it.
- ``max_total_risk_usd``: the day's realized loss (0 when the day is up) plus the worst-case loss
  of every open position: down to its working stop order, or, without a stop, the whole premium
  of a long option (an open short, or a long future, without a stop is unbounded: a breach).
- ``max_consecutive_losses``: closed positions in a row with a realized loss (a win resets it).
- ``max_drawdown_usd``: the drop of the day's P&L (realized + unrealized) from its highest point,
  once the day has been in profit (until then the daily loss limit is the one that applies).
- ``data_budget_daily_usd`` / ``data_budget_monthly_usd``: the Databento data budget. It is not
  set here but in ``configs/budget.toml`` (``adapters.databento.budget``), the one place shared with
  the downloads and the live nodes' start check; ``load_limits`` reads it from there (validated
  against the same hard caps) and refuses these two settings in ``[limits]``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

from ifd.errors import IfdError
from ifd.toml_files import read_toml

# The hard caps no configuration may exceed (USD or contracts / positions).
HARD_CAPS: dict[str, float] = {
    "max_position_contracts": 1,
    "max_daily_loss_usd": 50.0,
    "max_total_risk_usd": 200.0,
    "data_budget_daily_usd": 8.0,
    "data_budget_monthly_usd": 200.0,
    "max_consecutive_losses": 3,
    "max_drawdown_usd": 50.0,
}
INTEGER_LIMITS = ("max_position_contracts", "max_consecutive_losses")
DATA_BUDGET_LIMITS = ("data_budget_daily_usd", "data_budget_monthly_usd")  # set in configs/budget.toml
LIMIT_KEYS = tuple(name for name in HARD_CAPS if name not in DATA_BUDGET_LIMITS)  # set in [limits]
KEYS = (*LIMIT_KEYS, "account_env")


def _mask(account_id: str) -> str:
    return "***" if account_id else ""


@dataclass(frozen=True)
class LiveLimits:
    """Validated limits of a limited-live session; the account id is masked in ``repr``/``str``."""

    max_position_contracts: int
    max_daily_loss_usd: float
    max_total_risk_usd: float
    data_budget_daily_usd: float
    data_budget_monthly_usd: float
    max_consecutive_losses: int
    max_drawdown_usd: float
    account_env: str
    account_id: str = field(repr=False)
    source: str = ""
    budget_source: str = ""  # the budget file the data budget was read from

    def __repr__(self) -> str:
        parts = [f"{name}={getattr(self, name)!r}" for name in HARD_CAPS]
        parts += [f"account_env={self.account_env!r}", f"account_id={_mask(self.account_id)!r}"]
        return f"LiveLimits({', '.join(parts)})"

    __str__ = __repr__

    def guard_settings(self) -> dict:
        """The risk guard's fields (``live.risk_guard.RiskGuardConfig``); no account id."""
        return {
            "max_position_contracts": self.max_position_contracts,
            "max_daily_loss_usd": self.max_daily_loss_usd,
            "max_total_risk_usd": self.max_total_risk_usd,
            "max_consecutive_losses": self.max_consecutive_losses,
            "max_drawdown_usd": self.max_drawdown_usd,
        }


def _fmt(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def check_limit(name: str, value, label: str | None = None) -> float | int:
    """A limit value checked against its hard cap; raises ``ValueError`` with the reason.

    ``label``: the setting's name in the caller's file when it differs from the cap's (``daily_usd``).
    """
    cap = HARD_CAPS[name]
    label = label or name
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{label} must be a positive number, got {value!r}")
    if value <= 0:
        raise ValueError(f"{label} must be a positive number, got {_fmt(value)}")
    if name in INTEGER_LIMITS and int(value) != value:
        raise ValueError(f"{label} must be a whole number, got {_fmt(value)}")
    if value > cap:
        raise ValueError(f"{label} {_fmt(value)} exceeds the hard cap {_fmt(cap)}")
    return int(value) if name in INTEGER_LIMITS else float(value)


def limits_section(path: Path, raw: Mapping, env: Mapping[str, str] = os.environ,
                   *, need_account: bool = True) -> LiveLimits:
    """The ``[limits]`` table of a node file: inline settings, or ``path = "configs/live/limits.toml"``."""
    from backtests.config import resolve_project_path

    table = raw.get("limits")
    if not isinstance(table, dict):
        raise IfdError(f"{path}: [limits] is missing (inline limits or path = \"configs/live/limits.toml\")")
    if set(table) == {"path"}:
        limits_path = resolve_project_path(str(table["path"]))
        if not limits_path.exists():
            raise IfdError(f"{path}: [limits] path {table['path']} not found")
        return load_limits(limits_path, env, need_account=need_account)
    if "path" in table:
        raise IfdError(f"{path}: [limits] either path or inline limit settings, not both")
    return load_limits(path, env, need_account=need_account)


def load_limits(path: Path | str, env: Mapping[str, str] = os.environ, *, need_account: bool = True) -> LiveLimits:
    """Read ``[limits]`` from ``path`` and the data budget from the budget file; every refusal is an
    ``IfdError`` naming the file and setting.

    ``need_account=False`` (paper nodes, which rehearse the limits without a broker) lets the
    account variable be unset. The budget file is ``configs/budget.toml`` unless
    ``IFD_BUDGET_CONFIG`` in ``env`` names another (``adapters.databento.budget.load_budget``).
    """
    from adapters.databento.budget import load_budget  # it imports HARD_CAPS from here

    path = Path(path)
    raw = read_toml(path, f"{path}: no such limits file")
    table = raw.get("limits")
    if not isinstance(table, dict):
        raise IfdError(f"{path}: [limits] is missing")
    moved = sorted(set(table) & set(DATA_BUDGET_LIMITS))
    if moved:
        raise IfdError(f"{path}: [limits] {', '.join(moved)}: the data budget is set in configs/budget.toml "
                       "([budget] daily_usd, monthly_usd), shared with the downloads; remove it here")
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise IfdError(f"{path}: [limits] unknown setting(s) {', '.join(unknown)}")

    values: dict = {}
    for name in LIMIT_KEYS:
        if name not in table:
            raise IfdError(f"{path}: [limits] {name} is missing (hard cap {_fmt(HARD_CAPS[name])})")
        try:
            values[name] = check_limit(name, table[name])
        except ValueError as exc:
            raise IfdError(f"{path}: [limits] {exc}") from None
    budget = load_budget(None, env)
    values["data_budget_daily_usd"] = budget.daily_usd
    values["data_budget_monthly_usd"] = budget.monthly_usd

    account_env = table.get("account_env")
    if not isinstance(account_env, str) or not account_env.strip():
        raise IfdError(f"{path}: [limits] account_env is missing (the environment variable holding the account id)")
    account_id = (env.get(account_env) or "").strip()
    if not account_id and need_account:
        raise IfdError(f"{path}: [limits] account id not set: environment variable {account_env} is empty or unset")
    return LiveLimits(**values, account_env=account_env, account_id=account_id, source=str(path),
                      budget_source=budget.source)
