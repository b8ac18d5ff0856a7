"""Generate a labeled synthetic NQ options session as real DBN files.

``generate_scenario(out_dir, ScenarioConfig(...))`` writes

* ``definition.dbn.zst`` - GLBX.MDP3 definitions: the NQ quarterly future and the option chain,
* ``mbo.dbn.zst`` - one MBO file for all instruments, ordered by ``ts_recv``,
* ``labels.parquet`` - one row per planted episode,

and returns a summary.  The same config (seed included) gives byte-identical files.

With ``days=N > 1`` it also writes ``N - 1`` history sessions, one per previous weekday, in
``history/<YYYY-MM-DD>/`` (same three files); see ``ifd.scenario.history``.  The main day's files
do not depend on ``days``.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import databento_dbn as dbn
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ifd.errors import IfdError
from ifd.scenario.chain import build_chain
from ifd.scenario.dbn_encode import MboFileWriter, build_metadata, write_definitions
from ifd.scenario.episodes import Episode, EpisodeParams, EpisodeRunner
from ifd.scenario.market import SEC, Market, MarketParams
from ifd.scenario.tape import Tape

DEFINITION_FILE = "definition.dbn.zst"
MBO_FILE = "mbo.dbn.zst"
LABELS_FILE = "labels.parquet"
KINDS = ("institutional", "mm_straddle", "volume_noise")
HISTORY_DIR = "history"
MAX_DAYS = 400


@dataclass(frozen=True)
class ScenarioConfig:
    """What session to generate.

    ``rate`` is the target mean number of *background* MBO records per second over the whole
    chain (market-maker quoting and re-quoting, fleeting orders, retail trades).  The market's
    forced re-quotes count towards it; the planted episodes add their own records on top (a few
    percent).  The defaults (20 strikes x 2 expiries = 80 options + the future, 30 minutes at
    220 records/s) give roughly 400k records; records scale linearly with ``rate x minutes``.
    """

    seed: int = 7
    strikes: int = 20  # strikes around the money per expiry (a call and a put each)
    expiries: int = 2
    minutes: float = 30.0
    rate: float = 220.0  # mean background MBO records per second over the chain
    date: str = "2026-11-16"  # session date (UTC)
    start_time: str = "14:30"  # session start, UTC (09:30 New York)
    underlying_price: float = 21000.0
    strike_step: float = 25.0
    institutional: int = 4
    mm_straddle: int = 3
    volume_noise: int = 4
    annual_vol: float = 0.16  # realised vol of the future
    atm_iv: float = 0.19
    informed_move_pct: float = (
        0.25  # underlying move (% of price) an informed episode implies
    )
    informed_horizon_min: float = 10.0
    straddle_vol_crush: float = (
        0.02  # IV removed from a straddle strike (0.02 = 2 vol points)
    )
    days: int = 1  # the main day plus days - 1 history weekdays before it

    def session_bounds(self) -> tuple[dt.date, int, int]:
        """Session date and start / end timestamps (ns since epoch, UTC)."""
        day = dt.date.fromisoformat(self.date)
        hh, mm = (int(x) for x in self.start_time.split(":"))
        start = (
            int(
                dt.datetime(
                    day.year, day.month, day.day, hh, mm, tzinfo=dt.UTC
                ).timestamp()
            )
            * SEC
        )
        return day, start, start + int(self.minutes * 60 * SEC)

    def validate(self) -> None:
        """Raise ``IfdError`` naming the first bad knob."""
        checks = [
            (self.strikes >= 1, "strikes must be >= 1"),
            (self.expiries >= 1, "expiries must be >= 1"),
            (self.minutes >= 1, "minutes must be >= 1"),
            (self.rate > 0, "rate must be > 0"),
            (self.underlying_price > 1000, "underlying_price must be > 1000"),
            (self.strike_step > 0, "strike_step must be > 0"),
            (
                min(self.institutional, self.mm_straddle, self.volume_noise) >= 0,
                "episode counts must be >= 0",
            ),
            (
                isinstance(self.days, int) and 1 <= self.days <= MAX_DAYS,
                f"days must be an integer from 1 to {MAX_DAYS}",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise IfdError(f"scenario config: {msg}")
        try:
            self.session_bounds()
        except ValueError as exc:
            raise IfdError(f"scenario config: bad date/start_time ({exc})") from exc


def _labels_table(episodes: list[Episode], underlying: str) -> pa.Table:
    rows = [e for e in episodes if e.aggressor_ids]
    side = {0: "BUY", 1: "SELL"}
    columns = {
        "episode_id": pa.array([e.eid for e in rows], pa.int64()),
        "kind": pa.array([e.kind for e in rows], pa.string()),
        "instrument_ids": pa.array(
            [[i.spec.nautilus_id for i in e.insts] for e in rows], pa.list_(pa.string())
        ),
        "side": pa.array(
            [
                side[e.side]
                if e.kind == "institutional" and e.side is not None
                else "NONE"
                for e in rows
            ],
            pa.string(),
        ),
        "start_ns": pa.array([e.first_ts for e in rows], pa.int64()),
        "end_ns": pa.array([e.last_ts for e in rows], pa.int64()),
        "notional_usd": pa.array([float(e.notional) for e in rows], pa.float64()),
        "aggressor_order_ids": pa.array(
            [e.aggressor_ids for e in rows], pa.list_(pa.uint64())
        ),
        "direction": pa.array(
            [
                "BULLISH"
                if e.direction > 0
                else "BEARISH"
                if e.direction < 0
                else "NONE"
                for e in rows
            ],
            pa.string(),
        ),
        "underlying": pa.array([underlying] * len(rows), pa.string()),
        "expiration_ns": pa.array(
            [e.insts[0].spec.expiration_ns for e in rows], pa.int64()
        ),
        "strikes": pa.array(
            [[i.spec.strike for i in e.insts] for e in rows], pa.list_(pa.float64())
        ),
        "option_kinds": pa.array(
            [[i.spec.kind for i in e.insts] for e in rows], pa.list_(pa.string())
        ),
        "n_trades": pa.array([e.n_trades for e in rows], pa.int64()),
        "buy_size": pa.array([e.buy_size for e in rows], pa.int64()),
        "sell_size": pa.array([e.sell_size for e in rows], pa.int64()),
        "target_usd": pa.array([round(e.target_usd, 2) for e in rows], pa.float64()),
        "drift_points": pa.array(
            [round(e.drift_points, 4) for e in rows], pa.float64()
        ),
        "vol_crush": pa.array([round(e.crush, 6) for e in rows], pa.float64()),
        # mm_straddle: both legs bought (BUY) or both sold (SELL); NONE for other kinds
        "straddle_side": pa.array(
            [
                side[e.side]
                if e.kind == "mm_straddle" and e.side is not None
                else "NONE"
                for e in rows
            ],
            pa.string(),
        ),
    }
    return pa.Table.from_arrays(list(columns.values()), names=list(columns))


def _write_labels(target: Path, table: pa.Table) -> Path:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd", write_statistics=False)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def generate_scenario(
    out_dir: Path, config: ScenarioConfig, progress: Callable[[str], None] | None = None
) -> dict:
    """Write definition.dbn.zst, mbo.dbn.zst, labels.parquet into out_dir; return a summary dict
    (records per action, instruments, episodes per kind, files, seconds).

    With ``config.days > 1`` the history sessions follow in ``out_dir/history/<date>/`` and the
    summary's ``history`` lists them (oldest first) as ``{date, records, files, ...}``.
    """
    config.validate()
    out_dir = Path(out_dir)
    day, _, _ = config.session_bounds()
    try:
        specs = build_chain(
            day,
            config.underlying_price,
            config.strikes,
            config.expiries,
            config.strike_step,
        )
    except ValueError as exc:
        raise IfdError(f"scenario config: {exc}") from exc
    summary = _generate_session(
        out_dir,
        config,
        specs,
        SessionSeeds(
            tape=[config.seed, 1],
            market=config.seed * 1_000_003 + 1,
            episodes=config.seed * 1_000_003 + 2,
        ),
        progress,
    )
    summary["history"] = []
    if config.days > 1:
        from ifd.scenario.history import generate_history

        summary["history"] = generate_history(
            out_dir / HISTORY_DIR, config, specs, progress
        )
    return summary


@dataclass(frozen=True)
class SessionSeeds:
    """Seeds of one session's three random streams (tape latencies, market, episodes)."""

    tape: list[int]
    market: int
    episodes: int


def _generate_session(
    out_dir: Path,
    config: ScenarioConfig,
    specs: list,
    seeds: SessionSeeds,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Simulate one session of ``config`` (its date, underlying and episode counts) on ``specs``."""
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    day, start_ns, end_ns = config.session_bounds()
    say = progress or (lambda _msg: None)
    def_path = write_definitions(
        out_dir / DEFINITION_FILE, specs, day, start_ns, end_ns, config.underlying_price
    )
    say(f"wrote {def_path.name}: {len(specs)} instruments")

    writer = MboFileWriter(
        out_dir / MBO_FILE, build_metadata(specs, dbn.Schema.MBO, day, start_ns, end_ns)
    )
    try:
        tape = Tape(np.random.default_rng(seeds.tape), writer.write_rows)
        mparams = MarketParams(annual_vol=config.annual_vol, atm_iv=config.atm_iv)
        market = Market(
            specs,
            mparams,
            tape,
            random.Random(seeds.market),
            start_ns,
            end_ns,
            config.underlying_price,
            config.strike_step,
        )
        eparams = EpisodeParams(
            institutional=config.institutional,
            mm_straddle=config.mm_straddle,
            volume_noise=config.volume_noise,
            informed_move_pct=config.informed_move_pct,
            informed_horizon_min=config.informed_horizon_min,
            straddle_vol_crush=config.straddle_vol_crush,
        )
        runner = EpisodeRunner(
            market,
            eparams,
            random.Random(seeds.episodes),
            config.strike_step,
        )
        episodes = runner.plan()
        market.start_background(config.rate)
        market.run(progress)
        tape.flush()
        mbo_path = writer.commit()
    except BaseException:
        writer.abort()
        raise
    say(f"wrote {mbo_path.name}: {writer.records:,} records")

    table = _labels_table(episodes, specs[0].raw_symbol)
    labels_path = _write_labels(out_dir / LABELS_FILE, table)
    seconds = time.perf_counter() - t0
    kinds = table.column("kind").to_pylist()
    return {
        "records": writer.records,
        "records_by_action": dict(sorted(writer.by_action.items())),
        "episode_records": market.episode_records,
        "instruments": len(specs),
        "options": len(specs) - 1,
        "future": specs[0].raw_symbol,
        "episodes": {k: kinds.count(k) for k in KINDS},
        "files": {
            "definition": str(def_path),
            "mbo": str(mbo_path),
            "labels": str(labels_path),
        },
        "session": {"start_ns": start_ns, "end_ns": end_ns, "date": config.date},
        "underlying_start": config.underlying_price,
        "underlying_end": round(market.u, 2),
        "seconds": round(seconds, 3),
        "records_per_second": round(writer.records / seconds, 1)
        if seconds > 0
        else 0.0,
    }
