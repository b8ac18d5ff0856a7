"""Planted, labeled episodes: institutional flow, market-maker straddles and volume noise.

* ``institutional``: one strike or 2-3 adjacent strikes (same right and expiry) bought at the
  ask or sold at the bid over 1-15 minutes in many child orders, some sweeping several price
  levels or all strikes of the cluster within a millisecond, until at least the target premium
  notional (>= $3M) traded.  Fills push the option's fair value (price impact) and the
  underlying drifts in the informed direction during and after the episode.
* ``mm_straddle``: the call and put of one strike traded together (within a millisecond) in
  balanced two-sided size inside a 5-minute window while that strike's IV is crushed, so both
  legs' quotes fall.  Not informed.
* ``volume_noise``: a burst of balanced two-sided trades on one to three options.

Trades of an episode are IOC aggressor orders through ``Market.trade``; their aggressor order
ids, sizes and notionals are collected for the labels.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from ifd.scenario.book import ASK, BID
from ifd.scenario.market import SEC, Inst, Market

MIN_INSTITUTIONAL_USD = 3_000_000.0
STRADDLE_WINDOW_NS = 5 * 60 * SEC


@dataclass(frozen=True)
class EpisodeParams:
    """Episode knobs (counts, sizes, informed drift, vol crush)."""

    institutional: int = 4
    mm_straddle: int = 3
    volume_noise: int = 4
    institutional_usd: tuple[float, float] = (3.3e6, 7.0e6)
    straddle_usd: tuple[float, float] = (2.0e6, 6.0e6)
    noise_usd: tuple[float, float] = (0.2e6, 1.2e6)
    informed_move_pct: float = (
        0.25  # underlying drift (% of price) over an informed window
    )
    informed_horizon_min: float = 10.0  # drift keeps going this long after the episode
    straddle_vol_crush: float = (
        0.02  # IV points (0.02 = 2 vol) removed from the straddle strike
    )
    sweep_share: float = (
        0.2  # share of institutional child orders that sweep levels / strikes
    )


@dataclass
class Episode:
    """One planted episode, its plan and what actually traded."""

    eid: int
    kind: str
    insts: list[Inst]
    side: int | None  # BID = buy, ASK = sell (institutional only)
    start: int
    planned_end: int
    target_usd: float
    times: list[int]
    crush: float = 0.0
    direction: int = 0  # +1 bullish / -1 bearish for institutional
    drift_points: float = 0.0
    aggressor_ids: list[int] = field(default_factory=list)
    notional: int = 0  # USD (price_pu * size is exactly USD for NQ options)
    first_ts: int = 0
    last_ts: int = 0
    n_trades: int = 0
    buy_size: int = 0
    sell_size: int = 0
    leg_net: dict[int, int] = field(default_factory=dict)  # inst idx -> bought - sold
    done: bool = False
    balance_tries: int = 0
    n_planned: int = 0
    # IV shift per leg when the episode started (a crush is relative to it)
    iv_base: dict[int, float] = field(default_factory=dict)


class EpisodeRunner:
    """Plans episodes on a market and executes their child orders as clock events."""

    def __init__(
        self,
        market: Market,
        params: EpisodeParams,
        rnd: random.Random,
        strike_step: float,
    ) -> None:
        self.m = market
        self.p = params
        self.rnd = rnd
        self.strike_step = strike_step
        self.episodes: list[Episode] = []
        self._busy: dict[int, list[tuple[int, int]]] = {}
        groups: dict[tuple[int, str], list[Inst]] = {}
        for inst in market.insts[1:]:
            groups.setdefault((inst.spec.expiration_ns, inst.spec.kind), []).append(
                inst
            )
        self.groups = {
            k: sorted(v, key=lambda i: i.spec.strike) for k, v in groups.items()
        }
        self.expiries = sorted({k[0] for k in groups})

    # --- planning ------------------------------------------------------------------------------

    def _free(self, insts: list[Inst], s: int, e: int) -> bool:
        pad = 30 * SEC
        for inst in insts:
            for bs, be in self._busy.get(inst.idx, []):
                if s < be + pad and bs < e + pad:
                    return False
        return True

    def _claim(self, insts: list[Inst], s: int, e: int) -> None:
        for inst in insts:
            self._busy.setdefault(inst.idx, []).append((s, e))

    def _atm_index(self, strikes: list[Inst]) -> int:
        u = self.m.u0
        return min(range(len(strikes)), key=lambda i: abs(strikes[i].spec.strike - u))

    def _window(
        self, dur_lo: float, dur_hi: float, tail: float
    ) -> tuple[int, int] | None:
        m = self.m
        session = (m.end_ns - m.start_ns) / SEC
        lead = min(60.0, session * 0.08)
        dur = self.rnd.uniform(dur_lo, dur_hi)
        dur = min(dur, session - lead - tail - 5.0)
        if dur < 15.0:
            return None
        s = m.start_ns + int(self.rnd.uniform(lead, session - tail - dur) * SEC)
        return s, s + int(dur * SEC)

    def plan(self) -> list[Episode]:
        """Plan all episodes (non-overlapping per instrument) and schedule their first child."""
        if len(self.m.insts) < 3:
            return []
        plans = [
            ("institutional", self.p.institutional),
            ("mm_straddle", self.p.mm_straddle),
            ("volume_noise", self.p.volume_noise),
        ]
        for kind, count in plans:
            for _ in range(count):
                for _attempt in range(300):
                    ep = getattr(self, f"_plan_{kind}")()
                    if ep is not None:
                        break
        self.episodes.sort(key=lambda e: (e.start, e.eid))
        for n, ep in enumerate(self.episodes):
            ep.eid = n
            ep.n_planned = len(ep.times)
            self.m.schedule(ep.times[0], self._child, (ep, 0))
        return self.episodes

    def _est_premium_pu(self, inst: Inst) -> float:
        return max(self.m.fair_of(inst.idx) * 20.0, 1.0)

    def _plan_institutional(self) -> Episode | None:
        rnd = self.rnd
        exp = rnd.choice(self.expiries)
        kind = rnd.choice(("CALL", "PUT"))
        strikes = self.groups[(exp, kind)]
        k = min(rnd.choices((1, 2, 3), weights=(0.55, 0.3, 0.15))[0], len(strikes))
        atm = self._atm_index(strikes)
        lo, hi = (atm - 1, atm + 3) if kind == "CALL" else (atm - 2 - k, atm + 1)
        lo, hi = max(0, lo), min(len(strikes) - k, hi)
        if hi < lo:
            lo, hi = 0, len(strikes) - k
        first = rnd.randint(lo, hi)
        insts = strikes[first : first + k]
        if (
            min(self._est_premium_pu(i) for i in insts) < 60
        ):  # skip near-worthless options
            return None
        session = (self.m.end_ns - self.m.start_ns) / SEC
        win = self._window(60.0, max(90.0, min(15 * 60.0, 0.3 * session)), 90.0)
        if win is None or not self._free(insts, win[0], win[1] + 60 * SEC):
            return None
        s, e = win
        side = rnd.choice((BID, ASK))
        target = rnd.uniform(*self.p.institutional_usd)
        per_lot = sum(self._est_premium_pu(i) for i in insts) / len(insts)
        child = rnd.uniform(8, 25)
        n = max(10, min(600, math.ceil(target / per_lot / child)))
        times = sorted(rnd.randrange(s, e) for _ in range(n))
        times[0], times[-1] = s, e
        bullish = (kind == "CALL") == (side == BID)
        ep = Episode(
            len(self.episodes), "institutional", insts, side, s, e, target, times
        )
        ep.direction = 1 if bullish else -1
        m = self.m
        drift_end = min(e + int(self.p.informed_horizon_min * 60 * SEC), m.end_ns)
        full = max(drift_end - s, 1)
        ep.drift_points = ep.direction * self.p.informed_move_pct / 100.0 * m.u0
        m.drifts.append((s, drift_end, ep.drift_points / full))
        self._claim(insts, s, e + 60 * SEC)
        self.episodes.append(ep)
        return ep

    def _plan_mm_straddle(self) -> Episode | None:
        rnd = self.rnd
        exp = rnd.choice(self.expiries)
        calls, puts = self.groups[(exp, "CALL")], self.groups[(exp, "PUT")]
        atm = self._atm_index(calls)
        j = max(0, min(len(calls) - 1, atm + rnd.randint(-2, 2)))
        insts = [calls[j], puts[j]]
        win = self._window(90.0, 270.0, 60.0)
        if win is None or not self._free(insts, win[0], win[1] + 20 * SEC):
            return None
        s, e = win
        target = rnd.uniform(*self.p.straddle_usd)
        per_pair = self._est_premium_pu(calls[j]) + self._est_premium_pu(puts[j])
        n = max(
            8, min(400, 2 * math.ceil(target / per_pair / 2 / 6.0))
        )  # ~6 lots a leg fill per pair
        times = sorted(rnd.randrange(s, e) for _ in range(n))
        times[0], times[-1] = s, e
        ep = Episode(
            len(self.episodes), "mm_straddle", insts, None, s, e, target, times
        )
        ep.crush = self.p.straddle_vol_crush * rnd.uniform(0.7, 1.3)
        self._claim(insts, s, e + 20 * SEC)
        self.episodes.append(ep)
        return ep

    def _plan_volume_noise(self) -> Episode | None:
        rnd = self.rnd
        opts = self.m.insts[1:]
        u = self.m.u0
        near = [
            i for i in opts if abs(i.spec.strike - u) <= 6 * self.strike_step
        ] or opts
        insts = sorted(
            rnd.sample(near, min(len(near), rnd.randint(1, 3))), key=lambda i: i.idx
        )
        if min(self._est_premium_pu(i) for i in insts) < 20:
            return None
        win = self._window(30.0, 180.0, 30.0)
        if win is None or not self._free(insts, win[0], win[1] + 20 * SEC):
            return None
        s, e = win
        target = rnd.uniform(*self.p.noise_usd)
        per_lot = sum(self._est_premium_pu(i) for i in insts) / len(insts)
        n = max(8, min(400, math.ceil(target / per_lot / 6.0)))
        times = sorted(rnd.randrange(s, e) for _ in range(n))
        times[0], times[-1] = s, e
        ep = Episode(
            len(self.episodes), "volume_noise", insts, None, s, e, target, times
        )
        self._claim(insts, s, e + 20 * SEC)
        self.episodes.append(ep)
        return ep

    # --- execution -----------------------------------------------------------------------------

    def _child(self, t: int, arg: object) -> None:
        ep, i = arg  # type: ignore[misc]
        c0 = self.m.tape.count
        if t >= self.m.end_ns - SEC:
            ep.done = True
        elif ep.kind == "institutional":
            self._institutional_child(t, ep, i)
        elif ep.kind == "mm_straddle":
            self._straddle_child(t, ep, i)
        else:
            self._noise_child(t, ep, i)
        self.m.episode_records += self.m.tape.count - c0

    def _next(self, t: int, ep: Episode, i: int) -> None:
        if i + 1 < len(ep.times):
            self.m.schedule(max(ep.times[i + 1], t + 1), self._child, (ep, i + 1))

    def _take(
        self,
        t: int,
        ep: Episode,
        inst: Inst,
        side: int,
        qty: int,
        sweep_levels: int = 0,
    ) -> int:
        """Aggress ``inst`` at the best price (or ``sweep_levels`` deeper); returns traded size."""
        book = inst.book
        opp = 1 - side
        best = book.best(opp)
        if best is None or qty <= 0:
            return 0
        if sweep_levels:
            limit = book.nth_level(opp, sweep_levels) or best
        else:
            limit = best
            qty = min(qty, book.depth_at(opp, best))
        res = self.m.trade(t, inst, side, limit, qty)
        if res is None:
            return 0
        ts, aoid, fills = res
        size = sum(sz for _, sz in fills)
        ep.aggressor_ids.append(aoid)
        ep.notional += sum(p * sz for p, sz in fills)
        ep.n_trades += len(fills)
        if not ep.first_ts:
            ep.first_ts = ts
        ep.last_ts = ts
        if side == BID:
            ep.buy_size += size
        else:
            ep.sell_size += size
        ep.leg_net[inst.idx] = ep.leg_net.get(inst.idx, 0) + (
            size if side == BID else -size
        )
        return size

    def _impact(self, t: int, inst: Inst, side: int, size: int) -> None:
        if size:
            fair = self.m.fair_of(inst.idx)
            sign = 1.0 if side == BID else -1.0
            self.m.bump_impact(t, inst, sign * self.m.p.impact_per_lot * size * fair)

    def _institutional_child(self, t: int, ep: Episode, i: int) -> None:
        rnd = self.rnd
        side = ep.side if ep.side is not None else BID
        per_lot = sum(self._est_premium_pu(x) for x in ep.insts) / len(ep.insts)
        remaining = ep.target_usd - ep.notional
        planned_left = max(1, len(ep.times) - i)
        want = max(
            1,
            math.ceil(
                max(remaining, per_lot) / per_lot / planned_left * rnd.uniform(0.6, 1.4)
            ),
        )
        if rnd.random() < self.p.sweep_share:
            if (
                len(ep.insts) > 1 and rnd.random() < 0.6
            ):  # strikes sweep within a millisecond
                tt = t
                for inst in ep.insts:
                    got = self._take(
                        tt,
                        ep,
                        inst,
                        side,
                        max(1, want // len(ep.insts)) + 5,
                        sweep_levels=1,
                    )
                    self._impact(tt, inst, side, got)
                    tt += rnd.randint(40_000, 400_000)
            else:  # one strike, several price levels
                inst = rnd.choice(ep.insts)
                got = self._take(
                    t, ep, inst, side, want + 10, sweep_levels=rnd.randint(1, 2)
                )
                self._impact(t, inst, side, got)
        else:
            inst = rnd.choice(ep.insts)
            got = self._take(t, ep, inst, side, want)
            self._impact(t, inst, side, got)
        if i + 1 < len(ep.times):
            self._next(t, ep, i)
        elif ep.notional < ep.target_usd and t < self.m.end_ns - 5 * SEC:
            ep.times.append(t + int(rnd.uniform(0.5, 3.0) * SEC))
            self._next(t, ep, i)
        else:
            ep.done = True

    def _straddle_child(self, t: int, ep: Episode, i: int) -> None:
        rnd = self.rnd
        progress = min(1.0, (t - ep.start) / max(ep.planned_end - ep.start, 1))
        for inst in ep.insts:  # crush relative to the IV shift at the episode's start
            base = ep.iv_base.setdefault(inst.idx, float(self.m.iv_shift[inst.idx]))
            self.m.iv_shift[inst.idx] = base - ep.crush * progress
        if i >= ep.n_planned - 1:
            self._balance(t, ep, i, STRADDLE_WINDOW_NS - 20 * SEC)
            return
        # buy or sell both legs together, leaning against the running imbalance
        net = sum(ep.leg_net.get(x.idx, 0) for x in ep.insts)
        side = (
            (ASK if net > 0 else BID) if rnd.random() < 0.75 else rnd.choice((BID, ASK))
        )
        want = rnd.randint(4, 20)
        levels = 1 if rnd.random() < 0.35 else 0
        tt = t
        for inst in ep.insts:
            self._take(tt, ep, inst, side, want, sweep_levels=levels)
            tt += rnd.randint(30_000, 600_000)
        self._next(t, ep, i)

    def _noise_child(self, t: int, ep: Episode, i: int) -> None:
        rnd = self.rnd
        if i >= ep.n_planned - 1:
            self._balance(t, ep, i, 4 * 60 * SEC)
            return
        inst = rnd.choice(ep.insts)
        net = ep.leg_net.get(inst.idx, 0)
        side = (
            (ASK if net > 0 else BID) if rnd.random() < 0.7 else rnd.choice((BID, ASK))
        )
        self._take(t, ep, inst, side, rnd.randint(1, 12))
        self._next(t, ep, i)

    def _balance(self, t: int, ep: Episode, i: int, max_len: int) -> None:
        """After the planned children, trade each leg's imbalance back to zero (a few tries)."""
        tt = t
        for inst in ep.insts:
            net = ep.leg_net.get(inst.idx, 0)
            if net:
                self._take(tt, ep, inst, ASK if net > 0 else BID, abs(net))
                tt += self.rnd.randint(30_000, 600_000)
        ep.balance_tries += 1
        unbalanced = any(ep.leg_net.get(x.idx, 0) for x in ep.insts)
        if (
            unbalanced
            and ep.balance_tries < 12
            and t + 2 * SEC < ep.start + max_len
            and t < self.m.end_ns - 3 * SEC
        ):
            ep.times.append(t + int(self.rnd.uniform(0.3, 1.5) * SEC))
            self._next(t, ep, i)
        else:
            ep.done = True
