"""History sessions for ``ScenarioConfig.days > 1``: ordinary days before the main session.

``generate_history(history_dir, config, main_specs)`` writes one session per weekday before
``config.date`` (Saturdays and Sundays skipped, exchange holidays not modelled), oldest first,
each in ``history_dir/<YYYY-MM-DD>/`` as ``definition.dbn.zst``, ``mbo.dbn.zst`` and
``labels.parquet``.  A history day is an ordinary market day:

* the same session length, start time, background rate and chain construction as the main day,
  for that date and that day's underlying: weeklies that expired are gone, the next ones are
  listed, strikes are centred on the day's opening price;
* no institutional episodes; market-maker / volatility-trader straddles (both legs bought or
  both sold: large one-sided premium per option, no direction) and volume noise (balanced
  two-sided bursts) are planted as configured and listed in that day's ``labels.parquet``;
* the underlying opens where a daily random walk, run backwards from the main day's
  ``underlying_price``, puts it: ``open(d) = open(next session) * exp(-N(0, annual_vol/sqrt(252)))``.
  The simulated session is a slice of the trading day, so one day's close and the next day's
  open differ by the part of the day's move that happened outside the slice (about one
  daily standard deviation minus the session's own; ~0.9 % at 16 % vol).

Randomness: each history day has its own streams, seeded from ``(config.seed, date)`` only, and
its opening price depends only on the gaps of the dates between it and the main day.  So a date's
files are the same whatever ``days`` is, and the main day never depends on its history.

Numeric instrument ids are stable per raw symbol across the generated days: a symbol that is
also in the main day's chain keeps the main day's id, other symbols (expired weeklies, strikes
away from the main day's money) get an id derived from the symbol (like real GLBX ids, which
stay with the instrument).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import math
import random
import zlib
from collections.abc import Callable
from pathlib import Path

from ifd.errors import IfdError
from ifd.scenario.chain import InstrumentSpec, build_chain

HISTORY_ID_BASE = 43_000_000  # ids of symbols that the main day does not list
HISTORY_ID_SPAN = 6_000_000
TRADING_DAYS_PER_YEAR = 252


def history_dates(main: dt.date, count: int) -> list[dt.date]:
    """The ``count`` weekdays before ``main``, oldest first."""
    out: list[dt.date] = []
    day = main
    while len(out) < count:
        day -= dt.timedelta(days=1)
        if day.weekday() < 5:
            out.append(day)
    return out[::-1]


def day_seed(seed: int, day: dt.date, stream: str) -> int:
    """A 64-bit seed for one random stream of one history day (independent of everything else)."""
    text = f"ifd-history:{seed}:{day.isoformat()}:{stream}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little")


def opening_prices(
    main_price: float, dates: list[dt.date], seed: int, annual_vol: float
) -> dict[dt.date, float]:
    """Opening underlying price per history date (a daily random walk run back from the main day)."""
    sigma = annual_vol / math.sqrt(TRADING_DAYS_PER_YEAR)
    price = float(main_price)
    out: dict[dt.date, float] = {}
    for day in sorted(dates, reverse=True):
        gap = random.Random(day_seed(seed, day, "open")).gauss(0.0, sigma)
        price *= math.exp(-gap)
        out[day] = round(price * 4) / 4  # NQ future tick 0.25
    return out


def _symbol_id(symbol: str, taken: set[int]) -> int:
    iid = HISTORY_ID_BASE + zlib.crc32(symbol.encode()) % HISTORY_ID_SPAN
    while iid in taken:  # a hash collision within one day: probe (rare)
        iid = HISTORY_ID_BASE + (iid - HISTORY_ID_BASE + 1) % HISTORY_ID_SPAN
    return iid


def stable_ids(
    specs: list[InstrumentSpec], main_ids: dict[str, int]
) -> list[InstrumentSpec]:
    """``specs`` with the main day's numeric id per raw symbol, or a symbol-derived one."""
    taken = {main_ids[s.raw_symbol] for s in specs if s.raw_symbol in main_ids}
    out = []
    for spec in specs:
        iid = main_ids.get(spec.raw_symbol)
        if iid is None:
            iid = _symbol_id(spec.raw_symbol, taken)
            taken.add(iid)
        out.append(dataclasses.replace(spec, instrument_id=iid))
    underlying_ids = {s.raw_symbol: s.instrument_id for s in out if s.is_future}
    return [
        dataclasses.replace(
            s, underlying_id=underlying_ids.get(s.underlying, s.underlying_id)
        )
        if not s.is_future
        else s
        for s in out
    ]


def generate_history(
    history_dir: Path,
    config,
    main_specs: list[InstrumentSpec],
    progress: Callable[[str], None] | None = None,
) -> list[dict]:
    """Write the ``config.days - 1`` history sessions; return one summary entry per day, oldest first."""
    from ifd.scenario.generate import SessionSeeds, _generate_session

    say = progress or (lambda _msg: None)
    main_day, _, _ = config.session_bounds()
    dates = history_dates(main_day, config.days - 1)
    opens = opening_prices(
        config.underlying_price, dates, config.seed, config.annual_vol
    )
    main_ids = {s.raw_symbol: s.instrument_id for s in main_specs}
    entries: list[dict] = []
    for day in dates:
        day_config = dataclasses.replace(
            config,
            date=day.isoformat(),
            underlying_price=opens[day],
            institutional=0,
            days=1,
        )
        try:
            specs = build_chain(
                day, opens[day], config.strikes, config.expiries, config.strike_step
            )
        except ValueError as exc:
            raise IfdError(f"scenario config: history day {day}: {exc}") from exc
        specs = stable_ids(specs, main_ids)
        say(
            f"history {day} ({len(entries) + 1}/{len(dates)}): underlying opens at {opens[day]:.2f}"
        )
        seeds = SessionSeeds(
            tape=[config.seed, 1, *divmod(day_seed(config.seed, day, "tape"), 2**32)],
            market=day_seed(config.seed, day, "market"),
            episodes=day_seed(config.seed, day, "episodes"),
        )
        summary = _generate_session(
            Path(history_dir) / day.isoformat(), day_config, specs, seeds, progress
        )
        entries.append(
            {
                "date": day.isoformat(),
                "records": summary["records"],
                "files": summary["files"],
                "instruments": summary["instruments"],
                "episodes": summary["episodes"],
                "underlying_start": summary["underlying_start"],
                "underlying_end": summary["underlying_end"],
                "seconds": summary["seconds"],
            }
        )
    return entries
