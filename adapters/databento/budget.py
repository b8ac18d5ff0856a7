"""The Databento data budget: ``configs/budget.toml``, spend from the ledger, refusals and alerts.

``configs/budget.toml`` is the one place for the daily and monthly data budget; downloads
(``adapters.databento.downloads``), ``ifd data budget`` and the live nodes (``live.paper``,
``live.limited``, ``live.limits``) all read it. Its values may only be tighter than the hard caps
(``live.limits.HARD_CAPS``: ``data_budget_daily_usd`` 8, ``data_budget_monthly_usd`` 200).
Another file is chosen with ``IFD_BUDGET_CONFIG`` (or ``--budget`` on the ``ifd data`` commands).

Periods are UTC: the day's spend is what requests made that UTC day cost, the month's what
requests made that UTC calendar month cost (``adapters.databento.ledger``). A request is refused
when its estimate is more than what is left of either; once either budget is used up (100%)
every download and the start of every node on the live Databento feed is refused until the
next UTC day or month. At ``alert_at`` (80%) of the monthly budget a warning alert goes out through
``ifd.alerts``, at 100% of the month or the day a critical one; each once per period.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from adapters.databento.ledger import Ledger, Spend, iso, utc_now
from ifd.errors import IfdError
from ifd.toml_files import read_toml
from live.limits import HARD_CAPS, check_limit

if TYPE_CHECKING:
    from ifd.alerts import Alert, AlertDispatcher

BUDGET_ENV = "IFD_BUDGET_CONFIG"
DEFAULT_BUDGET = Path("configs/budget.toml")
DEFAULT_LEDGER = Path("data/databento_ledger.sqlite")
DEFAULT_ALERTS = Path("configs/alerts.toml")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
KEYS = ("daily_usd", "monthly_usd", "alert_at", "ledger", "alerts")
_CAP_NAMES = {"daily_usd": "data_budget_daily_usd", "monthly_usd": "data_budget_monthly_usd"}
EPSILON_USD = 1e-9  # float sums of many small costs


class BudgetRefused(IfdError):
    """A download refused by the budget: nothing was requested (exit code 3)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=3)


@dataclass(frozen=True)
class BudgetConfig:
    """The validated data budget (USD) and where the ledger and the alerts config are."""

    daily_usd: float
    monthly_usd: float
    alert_at: float = 0.8
    ledger: Path = DEFAULT_LEDGER
    alerts: Path = DEFAULT_ALERTS
    source: str = ""


def budget_path(env: Mapping[str, str] = os.environ, explicit: str | Path | None = None) -> Path:
    """``explicit``, else ``$IFD_BUDGET_CONFIG``, else ``configs/budget.toml`` (of the project when not in the cwd)."""
    value = explicit or (env.get(BUDGET_ENV) or "").strip() or DEFAULT_BUDGET
    path = Path(value).expanduser()
    if path.is_absolute() or path.exists():
        return path
    candidate = PROJECT_ROOT / path
    return candidate if candidate.exists() else path


def load_budget(path: Path | str | None = None, env: Mapping[str, str] = os.environ) -> BudgetConfig:
    """Read ``[budget]``; every refusal is an ``IfdError`` naming the file and the setting."""
    path = budget_path(env, path)
    raw = read_toml(path, f"{path}: no such budget file (the Databento data budget; see configs/budget.toml)")
    table = raw.get("budget")
    if not isinstance(table, dict):
        raise IfdError(f"{path}: [budget] is missing")
    unknown = sorted(set(raw) - {"budget"}) + sorted(set(table) - set(KEYS))
    if unknown:
        raise IfdError(f"{path}: unknown setting(s) {', '.join(unknown)} (known: [budget] {', '.join(KEYS)})")
    values: dict[str, float] = {}
    for key, cap_name in _CAP_NAMES.items():
        if key not in table:
            raise IfdError(f"{path}: [budget] {key} is missing (hard cap {HARD_CAPS[cap_name]:g} USD)")
        try:
            values[key] = float(check_limit(cap_name, table[key], label=key))
        except ValueError as exc:
            raise IfdError(f"{path}: [budget] {exc}") from None
    if values["daily_usd"] > values["monthly_usd"]:
        raise IfdError(
            f"{path}: [budget] daily_usd {values['daily_usd']:g} exceeds monthly_usd {values['monthly_usd']:g}",
        )
    alert_at = table.get("alert_at", 0.8)
    if isinstance(alert_at, bool) or not isinstance(alert_at, (int, float)) or not 0 < alert_at < 1:
        raise IfdError(f"{path}: [budget] alert_at must be a fraction between 0 and 1 (0.8 = 80%), got {alert_at!r}")
    paths = {}
    for key, default in (("ledger", DEFAULT_LEDGER), ("alerts", DEFAULT_ALERTS)):
        value = table.get(key, str(default))
        if not isinstance(value, str) or not value.strip():
            raise IfdError(f"{path}: [budget] {key} must be a file path, got {value!r}")
        paths[key] = Path(value).expanduser()
    return BudgetConfig(**values, alert_at=float(alert_at), **paths, source=str(path))


# -- status and refusals -------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetStatus:
    """Spend against the limits for one UTC day and its month."""

    config: BudgetConfig
    spend: Spend

    @property
    def remaining_day(self) -> float:
        return max(0.0, self.config.daily_usd - self.spend.day_usd)

    @property
    def remaining_month(self) -> float:
        return max(0.0, self.config.monthly_usd - self.spend.month_usd)

    @property
    def remaining(self) -> float:
        return min(self.remaining_day, self.remaining_month)

    @property
    def day_spent(self) -> bool:
        return self.spend.day_usd >= self.config.daily_usd - EPSILON_USD

    @property
    def month_spent(self) -> bool:
        return self.spend.month_usd >= self.config.monthly_usd - EPSILON_USD

    @property
    def exhausted(self) -> bool:
        """100% of the daily or the monthly budget is used."""
        return self.day_spent or self.month_spent

    @property
    def used_up(self) -> str | None:
        """Which budget is used up: "daily" (checked first), "monthly", or None."""
        return "daily" if self.day_spent else "monthly" if self.month_spent else None

    def describe(self) -> str:
        """``remaining today $7.50 of $8.00, this month $150.00 of $200.00``."""
        c = self.config
        return (f"remaining today ${self.remaining_day:,.4f} of ${c.daily_usd:,.2f} ({self.spend.day}), "
                f"this month ${self.remaining_month:,.4f} of ${c.monthly_usd:,.2f} ({self.spend.month})")


def budget_status(config: BudgetConfig, now: dt.datetime | None = None, ledger: Ledger | None = None) -> BudgetStatus:
    """Spend of ``now``'s UTC day and month; a ledger that does not exist yet means nothing spent."""
    now = now or utc_now()
    if ledger is not None:
        return BudgetStatus(config, ledger.spend(now))
    reader = Ledger.open_if_exists(config.ledger)
    if reader is None:
        stamp = iso(now)
        return BudgetStatus(config, Spend(stamp[:10], stamp[:7], 0.0, 0.0))
    with reader:
        return BudgetStatus(config, reader.spend(now))


def refusal(config: BudgetConfig, spend: Spend, cost_usd: float, what: str) -> str | None:
    """Why ``what`` (costing ``cost_usd``) may not be requested now, or None when the budget allows it."""
    status = BudgetStatus(config, spend)
    if status.exhausted:
        return (f"{what}: refused, the {status.used_up} Databento budget is used up ({status.describe()}; "
                f"limits in {config.source})")
    if cost_usd > status.remaining + EPSILON_USD:
        return (f"{what} would cost ${cost_usd:,.4f}: refused, more than the budget left ({status.describe()}; "
                f"limits in {config.source})")
    return None


def check_live_budget(
    env: Mapping[str, str] = os.environ, *, what: str, now: dt.datetime | None = None,
) -> BudgetStatus:
    """Refuse (``IfdError``) to start ``what`` on the live Databento feed once the daily or monthly budget is spent.

    Live streaming is billed too, so a node reads the same ledger and limits as the downloads. It
    is called before anything connects; a replayed (offline) node spends nothing and never calls it.
    """
    config = load_budget(None, env)
    status = budget_status(config, now)
    if status.exhausted:
        until = "the next UTC day" if status.used_up == "daily" else "next month (UTC)"
        raise IfdError(
            f"{what}: the {status.used_up} Databento data budget is used up ({status.describe()}, ledger {config.ledger}); "
            f"live streaming is refused until {until} (limits in {config.source})",
        )
    return status


# -- report (ifd data budget) --------------------------------------------------------------------


def _pct(spent: float, limit: float) -> float:
    return round(100.0 * spent / limit, 2) if limit > 0 else math.inf


def budget_report(config: BudgetConfig, now: dt.datetime | None = None) -> dict:
    """Spend per UTC day and month against the limits, from the ledger (empty when there is none yet)."""
    now = now or utc_now()
    ledger = Ledger.open_if_exists(config.ledger)
    if ledger is None:
        days, months = [], []
        status = budget_status(config, now)
    else:
        with ledger:
            days, months = ledger.periods(10), ledger.periods(7)
            status = budget_status(config, now, ledger)

    def rows(periods: list[dict], limit: float) -> list[dict]:
        out = []
        for p in periods:
            spent = round(float(p["spent_usd"] or 0.0), 6)
            out.append({
                "period": p["period"], "spent_usd": spent, "limit_usd": limit, "used_pct": _pct(spent, limit),
                "estimated_usd": round(float(p["estimated_usd"] or 0.0), 6),
                "refused_usd": round(float(p["refused_usd"] or 0.0), 6),
                "received_bytes": int(p["received_bytes"] or 0),
                "done": int(p["done"] or 0), "failed": int(p["failed"] or 0),
                "refused": int(p["refused"] or 0), "started": int(p["started"] or 0),
            })
        return out

    spend = status.spend
    state = "exhausted" if status.exhausted else ("alert" if spend.month_usd >= config.alert_at * config.monthly_usd
                                                   else "ok")
    return {
        "config": config.source,
        "ledger": str(config.ledger),
        "limits": {"daily_usd": config.daily_usd, "monthly_usd": config.monthly_usd, "alert_at": config.alert_at},
        "today": {"day": spend.day, "spent_usd": round(spend.day_usd, 6), "limit_usd": config.daily_usd,
                  "used_pct": _pct(spend.day_usd, config.daily_usd), "remaining_usd": round(status.remaining_day, 6)},
        "this_month": {"month": spend.month, "spent_usd": round(spend.month_usd, 6), "limit_usd": config.monthly_usd,
                       "used_pct": _pct(spend.month_usd, config.monthly_usd),
                       "remaining_usd": round(status.remaining_month, 6)},
        "state": state,
        "days": rows(days, config.daily_usd),
        "months": rows(months, config.monthly_usd),
    }


def format_budget_report(report: dict) -> str:
    """The report as text tables (``ifd data budget``)."""
    limits = report["limits"]
    today, month = report["today"], report["this_month"]
    lines = [
        f"Databento data budget: {report['config']}  (ledger {report['ledger']})",
        f"today {today['day']}: ${today['spent_usd']:,.4f} of ${limits['daily_usd']:,.2f} "
        f"({today['used_pct']:.1f}%), ${today['remaining_usd']:,.4f} left",
        f"month {month['month']}: ${month['spent_usd']:,.4f} of ${limits['monthly_usd']:,.2f} "
        f"({month['used_pct']:.1f}%), ${month['remaining_usd']:,.4f} left",
        f"state: {report['state']} (alert at {limits['alert_at']:.0%} of the month; downloads and live "
        "streaming refused at 100% of the day or the month)",
    ]
    for title, key in (("per day (UTC, when requested)", "days"), ("per month", "months")):
        lines += ["", title]
        header = (f"  {'period':<10}  {'spent USD':>11}  {'limit USD':>9}  {'used':>6}  {'estimated':>11}  "
                  f"{'refused USD':>11}  {'MB received':>11}  done  failed  refused")
        lines.append(header)
        if not report[key]:
            lines.append("  (no requests yet)")
        for r in report[key]:
            lines.append(
                f"  {r['period']:<10}  {r['spent_usd']:>11,.4f}  {r['limit_usd']:>9,.2f}  {r['used_pct']:>5.1f}%  "
                f"{r['estimated_usd']:>11,.4f}  {r['refused_usd']:>11,.4f}  {r['received_bytes'] / 1e6:>11,.3f}  "
                f"{r['done']:>4}  {r['failed']:>6}  {r['refused']:>7}"
                + (f"  ({r['started']} in progress)" if r["started"] else ""),
            )
    return "\n".join(lines)


# -- alerts --------------------------------------------------------------------------------------


def budget_alerts(
    config: BudgetConfig, ledger: Ledger, dispatcher: AlertDispatcher | None, now: dt.datetime | None = None,
) -> list[Alert]:
    """Send the budget alerts now due, each once per period: ``alert_at`` of the month (warning),
    100% of the month or of the day (critical). ``dispatcher``: an ``ifd.alerts.AlertDispatcher``
    or None. Returns the alerts sent."""
    from ifd.alerts import Alert, Level

    if dispatcher is None:
        return []
    status = budget_status(config, now, ledger)
    spend = status.spend
    due = []
    if status.month_spent:
        due.append((spend.month, "month-100%", Level.CRITICAL, f"Databento monthly budget used up ({spend.month})"))
    elif spend.month_usd >= config.alert_at * config.monthly_usd - EPSILON_USD:
        due.append((spend.month, f"month-{config.alert_at:.0%}", Level.WARNING,
                    f"Databento monthly budget {config.alert_at:.0%} used ({spend.month})"))
    if status.day_spent:
        due.append((spend.day, "day-100%", Level.CRITICAL, f"Databento daily budget used up ({spend.day})"))
    sent = []
    for period, threshold, level, title in due:
        if not ledger.mark_alert(period, threshold, now):
            continue
        alert = Alert.create(
            level, "data_budget", title,
            "downloads and live streaming are refused until the budget resets" if level == Level.CRITICAL
            else "downloads continue; they are refused at 100%",
            key=f"data_budget:{period}:{threshold}",
            fields={"month_spent_usd": f"{spend.month_usd:.4f}", "monthly_usd": f"{config.monthly_usd:.2f}",
                    "day_spent_usd": f"{spend.day_usd:.4f}", "daily_usd": f"{config.daily_usd:.2f}",
                    "config": config.source},
            source="ifd data",
        )
        dispatcher.dispatch(alert)
        sent.append(alert)
    return sent
