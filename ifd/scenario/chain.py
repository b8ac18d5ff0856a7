"""The synthetic CME NQ instrument set: the front quarterly future and an option chain on it.

Symbols follow CME Globex conventions as Databento shows them in GLBX.MDP3 raw symbols:
quarterly / serial-monthly options share the root ``NQ`` (``NQZ6 C21000``), Friday weeklies use
``QN<week>`` (``QN4X6 C21000``), Monday / Wednesday weeklies ``Q<week>A`` / ``Q<week>C``.
All options here are on the quarterly future that expires on or after them (``NQZ6``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

MONTH_CODES = "FGHJKMNQUVXZ"
VENUE = "GLBX"
MULTIPLIER = 20
FUTURE_INSTRUMENT_ID = 294_973
OPTION_INSTRUMENT_ID_BASE = 42_000_000
_NS = 1_000_000_000


@dataclass(frozen=True)
class InstrumentSpec:
    """One instrument of the scenario (future or option)."""

    index: int  # position in the chain (0 = the future)
    instrument_id: int
    raw_symbol: str
    kind: str  # "FUT" | "CALL" | "PUT"
    expiration_ns: int
    activation_ns: int
    strike: float = 0.0  # index points (options)
    product: str = "NQ"  # CME product / asset code (NQ, QN4, Q1A, ...)
    underlying: str = ""  # raw symbol of the underlying future (options)
    underlying_id: int = 0

    @property
    def is_future(self) -> bool:
        return self.kind == "FUT"

    @property
    def nautilus_id(self) -> str:
        """NautilusTrader instrument id string, e.g. ``NQZ6 C21000.GLBX``."""
        return f"{self.raw_symbol}.{VENUE}"


@dataclass(frozen=True)
class Expiry:
    """One option expiry of the chain."""

    date: dt.date
    product: str  # NQ (quarterly / serial monthly) or a weekly code
    month_code: str  # e.g. "X6"
    expiration_ns: int
    activation_ns: int


def _utc_ns(day: dt.date, hour: int, minute: int = 0) -> int:
    stamp = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC)
    return int(stamp.timestamp()) * _NS


def _third_friday(year: int, month: int) -> dt.date:
    first = dt.date(year, month, 1)
    offset = (4 - first.weekday()) % 7
    return first + dt.timedelta(days=offset + 14)


def front_quarterly(session: dt.date) -> tuple[str, dt.date]:
    """Raw symbol and last trade date of the NQ quarterly future front at ``session``."""
    year, month = session.year, session.month
    while True:
        if month in (3, 6, 9, 12):
            expiry = _third_friday(year, month)
            if expiry > session:
                return f"NQ{MONTH_CODES[month - 1]}{year % 10}", expiry
        month += 1
        if month > 12:
            month, year = 1, year + 1


def _month_code(day: dt.date) -> str:
    return f"{MONTH_CODES[day.month - 1]}{day.year % 10}"


def _week_of_month(day: dt.date) -> int:
    return (day.day - 1) // 7 + 1


def candidate_expiries(session: dt.date, last: dt.date) -> list[Expiry]:
    """Option expiries after ``session`` up to ``last`` in chain order.

    Order: the quarterly first, then Friday weeklies by date, then serial monthlies, then
    Monday / Wednesday weeklies by date.  Quarterly options are AM-settled (09:30 New York,
    14:30 UTC in winter); the others close at 16:00 New York.  Times assume EST (UTC-5).
    """
    quarterly: list[Expiry] = []
    fridays: list[Expiry] = []
    monthlies: list[Expiry] = []
    others: list[Expiry] = []
    day = session + dt.timedelta(days=1)
    while day <= last:
        wd = day.weekday()
        code = _month_code(day)
        week = _week_of_month(day)
        if wd == 4:
            third = _third_friday(day.year, day.month)
            if day == third and day.month in (3, 6, 9, 12):
                quarterly.append(
                    Expiry(
                        day,
                        "NQ",
                        code,
                        _utc_ns(day, 14, 30),
                        _utc_ns(day, 14, 30) - 400 * 86_400 * _NS,
                    )
                )
            elif day == third:
                monthlies.append(
                    Expiry(
                        day,
                        "NQ",
                        code,
                        _utc_ns(day, 21),
                        _utc_ns(day, 21) - 120 * 86_400 * _NS,
                    )
                )
            else:
                fridays.append(
                    Expiry(
                        day,
                        f"QN{week}",
                        code,
                        _utc_ns(day, 21),
                        _utc_ns(day, 21) - 35 * 86_400 * _NS,
                    )
                )
        elif wd in (0, 2):
            letter = "A" if wd == 0 else "C"
            others.append(
                Expiry(
                    day,
                    f"Q{week}{letter}",
                    code,
                    _utc_ns(day, 21),
                    _utc_ns(day, 21) - 35 * 86_400 * _NS,
                )
            )
        day += dt.timedelta(days=1)
    return quarterly + fridays + monthlies + others


def build_chain(
    session: dt.date,
    underlying_price: float,
    strikes: int,
    expiries: int,
    strike_step: float,
) -> list[InstrumentSpec]:
    """The future (index 0) then, per expiry, calls and puts of ``strikes`` strikes around the money."""
    fut_symbol, fut_last = front_quarterly(session)
    fut_exp = _utc_ns(fut_last, 14, 30)
    future = InstrumentSpec(
        index=0,
        instrument_id=FUTURE_INSTRUMENT_ID,
        raw_symbol=fut_symbol,
        kind="FUT",
        expiration_ns=fut_exp,
        activation_ns=fut_exp - 456 * 86_400 * _NS,
    )
    chosen = candidate_expiries(session, fut_last)[:expiries]
    if len(chosen) < expiries:
        raise ValueError(
            f"only {len(chosen)} NQ option expiries exist on {fut_symbol} after {session}"
        )
    chosen.sort(key=lambda e: e.date)
    atm = round(underlying_price / strike_step) * strike_step
    first = atm - (strikes // 2) * strike_step
    ks = [first + i * strike_step for i in range(strikes)]
    specs = [future]
    for exp in chosen:
        for kind, letter in (("CALL", "C"), ("PUT", "P")):
            for k in ks:
                strike_txt = f"{k:.0f}" if float(k).is_integer() else f"{k:g}"
                specs.append(
                    InstrumentSpec(
                        index=len(specs),
                        instrument_id=OPTION_INSTRUMENT_ID_BASE + len(specs),
                        raw_symbol=f"{exp.product}{exp.month_code} {letter}{strike_txt}",
                        kind=kind,
                        expiration_ns=exp.expiration_ns,
                        activation_ns=exp.activation_ns,
                        strike=float(k),
                        product=exp.product,
                        underlying=fut_symbol,
                        underlying_id=FUTURE_INSTRUMENT_ID,
                    )
                )
    return specs
