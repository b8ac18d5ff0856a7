"""Planted, labeled episodes: institutional flow, market-maker straddles and volume noise.

* ``institutional``: one strike bought at the ask or sold at the bid over 1-15 minutes in many
  child orders, some sweeping several price levels, until at least the target premium notional
  (>= $3M) traded.  In ``cluster_share`` of the episodes the flow is spread over 2-3 adjacent
  strikes (same right and expiry, same side), some child orders sweeping all strikes of the
  cluster within a millisecond, and no strike takes more than ``cluster_strike_cap_usd`` of the
  episode's premium in any 5-minute clock bucket (``CLOCK_BUCKET_NS``) while the episode total
  still reaches >= $3M: a per-instrument net-premium detector does not see it.  Fills push the
  option's fair value (price impact) and the underlying drifts in the informed direction during
  and after the episode.
* ``mm_straddle``: a volatility trader / market maker trading the straddle of one strike: the
  call AND the put of that strike (same expiry) taken aggressively in the SAME direction - both
  legs sold at the bid (``straddle_sell_share`` of the episodes: the common case; the strike's
  IV is crushed meanwhile, so both legs' quotes fall) or both bought at the ask - in balanced
  size (call contracts = put contracts) within a 5-minute window, $1.5-4M premium a leg, with
  at least ``straddle_min_bucket_usd`` of each leg inside one 5-minute clock bucket.  Each child
  order hits both legs, the second one within milliseconds (``straddle_fast_share``) or up to a
  few seconds after the first.  Large one-sided premium per instrument, but no direction: not
  informed, no drift in the underlying.
* ``volume_noise``: a burst of balanced two-sided trades on one to three options.

Trades of an episode are IOC aggressor orders through ``Market.trade``; their aggressor order
ids, sizes and notionals are collected for the labels.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from ifd.scenario.book import ASK, BID
from ifd.scenario.market import CLOCK_BUCKET_NS, SEC, Inst, Market

MIN_INSTITUTIONAL_USD = 3_000_000.0
STRADDLE_WINDOW_NS = 5 * 60 * SEC


@dataclass(frozen=True)
class EpisodeParams:
    """Episode knobs (counts, sizes, informed drift, vol crush)."""

    institutional: int = 4
    mm_straddle: int = 3
    volume_noise: int = 4
    institutional_usd: tuple[float, float] = (3.3e6, 7.0e6)
    straddle_leg_usd: tuple[float, float] = (1.5e6, 4.0e6)  # premium per straddle leg
    straddle_min_bucket_usd: float = 1.3e6  # planned premium of each leg in its busiest clock bucket
    straddle_sell_share: float = 0.7  # share of straddles sold (vol crush); the rest are bought
    straddle_fast_share: float = 0.75  # share of straddle children with both legs within 5 ms
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
    cluster_share: float = 0.4  # share of institutional episodes spread over 2-3 adjacent strikes
    cluster_usd: tuple[float, float] = (3.2e6, 4.5e6)  # total premium of a cluster episode
    # net premium cap per strike and 5-minute clock bucket (the strike's whole tape)
    cluster_strike_cap_usd: float = 0.75e6


@dataclass
class Episode:
    """One planted episode, its plan and what actually traded."""

    eid: int
    kind: str
    insts: list[Inst]
    side: int | None  # BID = buy, ASK = sell (institutional and mm_straddle)
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
    cap_usd: float = 0.0  # > 0: premium cap per strike and clock bucket (cluster episodes)
    bucket_usd: dict[tuple[int, int], int] = field(default_factory=dict)  # (inst idx, bucket) -> USD
    leg_size: dict[int, int] = field(default_factory=dict)  # inst idx -> contracts traded
    leg_usd: dict[int, int] = field(default_factory=dict)  # inst idx -> premium traded (USD)


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
        # the other right of the same strike and expiry (a straddle's other leg)
        by_strike = {(i.spec.expiration_ns, i.spec.kind, i.spec.strike): i for i in market.insts[1:]}
        self.partner = {
            i.idx: by_strike.get((i.spec.expiration_ns, "PUT" if i.spec.kind == "CALL" else "CALL", i.spec.strike))
            for i in market.insts[1:]
        }

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
                # cluster or not is decided once per institutional episode (a cluster that
                # finds no room in 200 attempts becomes a single-strike episode)
                cluster = kind == "institutional" and self.rnd.random() < self.p.cluster_share
                for attempt in range(300):
                    if kind == "institutional":
                        ep = self._plan_institutional(cluster and attempt < 200)
                    else:
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

    def _bucket_share(self, s: int, e: int) -> float:
        """Largest share of the window ``[s, e]`` inside one 5-minute clock bucket."""
        span = max(e - s, 1)
        best = 0
        b = s // CLOCK_BUCKET_NS
        while b * CLOCK_BUCKET_NS <= e:
            lo = max(s, b * CLOCK_BUCKET_NS)
            hi = min(e, (b + 1) * CLOCK_BUCKET_NS)
            best = max(best, hi - lo)
            b += 1
        return best / span

    def _plan_institutional(self, cluster: bool = False) -> Episode | None:
        rnd = self.rnd
        p = self.p
        exp = rnd.choice(self.expiries)
        kind = rnd.choice(("CALL", "PUT"))
        strikes = self.groups[(exp, kind)]
        # a cluster takes at most a third of the right's strikes (small test chains: none)
        k_max = len(strikes) // 3
        cluster = cluster and k_max >= 2
        k = min(rnd.choices((2, 3), weights=(0.4, 0.6))[0], k_max) if cluster else 1
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
        if cluster:
            # long enough that, paced evenly, no strike needs more than ~85% of its cap in any
            # clock bucket
            target = rnd.uniform(*p.cluster_usd)
            for _ in range(20):
                win = self._window(6 * 60.0, max(6 * 60.0, min(14 * 60.0, 0.6 * session)), 90.0)
                if win is None:
                    return None
                if target * self._bucket_share(*win) / k <= 0.85 * p.cluster_strike_cap_usd:
                    break
            else:
                return None
        else:
            win = self._window(60.0, max(90.0, min(15 * 60.0, 0.3 * session)), 90.0)
            if win is None:
                return None
            target = rnd.uniform(*p.institutional_usd)
        pad = (120 if cluster else 60) * SEC
        # the other right of the episode's strikes is reserved too: no straddle and no other
        # institution on the same strikes meanwhile (call and put bought together on one
        # strike would be a straddle, whoever trades them)
        reserved = insts + [x for x in (self.partner[i.idx] for i in insts) if x is not None]
        if not self._free(reserved, win[0], win[1] + pad):
            return None
        s, e = win
        side = rnd.choice((BID, ASK))
        per_lot = sum(self._est_premium_pu(i) for i in insts) / len(insts)
        # lots per child order; a cluster algo slices finer (it must stay under its caps, so
        # it cannot catch up at the end)
        child = rnd.uniform(3, 6) if cluster else rnd.uniform(8, 25)
        n = max(10, min(600, math.ceil(target / per_lot / child)))
        times = sorted(rnd.randrange(s, e) for _ in range(n))
        times[0], times[-1] = s, e
        bullish = (kind == "CALL") == (side == BID)
        ep = Episode(
            len(self.episodes), "institutional", insts, side, s, e, target, times
        )
        if cluster:
            ep.cap_usd = p.cluster_strike_cap_usd
        ep.direction = 1 if bullish else -1
        m = self.m
        drift_end = min(e + int(self.p.informed_horizon_min * 60 * SEC), m.end_ns)
        full = max(drift_end - s, 1)
        ep.drift_points = ep.direction * self.p.informed_move_pct / 100.0 * m.u0
        m.drifts.append((s, drift_end, ep.drift_points / full))
        self._claim(reserved, s, e + pad)
        self.episodes.append(ep)
        return ep

    def _plan_mm_straddle(self) -> Episode | None:
        rnd = self.rnd
        p = self.p
        exp = rnd.choice(self.expiries)
        calls, puts = self.groups[(exp, "CALL")], self.groups[(exp, "PUT")]
        atm = self._atm_index(calls)
        j = max(0, min(len(calls) - 1, atm + rnd.randint(-2, 2)))
        insts = [calls[j], puts[j]]
        per_lot = min(self._est_premium_pu(i) for i in insts)
        if per_lot < 60:
            return None
        win = self._window(60.0, 240.0, 60.0)
        if win is None:
            return None
        s, e = win
        target = rnd.uniform(*p.straddle_leg_usd)  # premium of the cheaper leg
        if target * self._bucket_share(s, e) < p.straddle_min_bucket_usd:
            return None
        if not self._free(insts, s, s + STRADDLE_WINDOW_NS):
            return None
        side = ASK if rnd.random() < p.straddle_sell_share else BID
        lots = target / per_lot
        n = max(8, min(400, math.ceil(lots / rnd.uniform(6.0, 14.0))))
        times = sorted(rnd.randrange(s, e) for _ in range(n))
        times[0], times[-1] = s, e
        ep = Episode(
            len(self.episodes), "mm_straddle", insts, side, s, e, target, times
        )
        # sold straddles come with (and push) a falling implied vol
        ep.crush = self.p.straddle_vol_crush * rnd.uniform(0.7, 1.3) if side == ASK else 0.0
        self._claim(insts, s, s + STRADDLE_WINDOW_NS)
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
        usd = sum(p * sz for p, sz in fills)
        ep.leg_size[inst.idx] = ep.leg_size.get(inst.idx, 0) + size
        ep.leg_usd[inst.idx] = ep.leg_usd.get(inst.idx, 0) + usd
        key = (inst.idx, ts // CLOCK_BUCKET_NS)
        ep.bucket_usd[key] = ep.bucket_usd.get(key, 0) + usd
        return size

    def _impact(self, t: int, inst: Inst, side: int, size: int) -> None:
        if size:
            fair = self.m.fair_of(inst.idx)
            sign = 1.0 if side == BID else -1.0
            self.m.bump_impact(t, inst, sign * self.m.p.impact_per_lot * size * fair)

    def _room(self, ep: Episode, inst: Inst, t: int) -> int:
        """Contracts ``inst`` may still trade in this clock bucket (cluster episodes; else a lot):
        the strike's net premium in the episode's direction - everybody's, as on the tape - and
        the episode's own premium there both stay below the cap."""
        if not ep.cap_usd:
            return 1 << 30
        net = self.m.clock_net_of(inst.idx, t)
        used = max(
            net if ep.side == BID else -net,
            ep.bucket_usd.get((inst.idx, t // CLOCK_BUCKET_NS), 0),
        )
        # 10% margin: the fill price is at or beyond the quote, the quote off fair value
        return max(0, int((ep.cap_usd - used) / (self._est_premium_pu(inst) * 1.1)))

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
        room = {x.idx: self._room(ep, x, t) for x in ep.insts}
        open_insts = [x for x in ep.insts if room[x.idx] >= 1]
        if not open_insts:
            pass  # every strike of the cluster is at its cap in this clock bucket: wait
        elif rnd.random() < self.p.sweep_share:
            if (
                len(open_insts) > 1 and rnd.random() < 0.6
            ):  # strikes sweep within a millisecond
                tt = t
                for inst in open_insts:
                    qty = min(max(1, want // len(open_insts)) + 5, room[inst.idx])
                    got = self._take(tt, ep, inst, side, qty, sweep_levels=1)
                    self._impact(tt, inst, side, got)
                    tt += rnd.randint(40_000, 400_000)
            else:  # one strike, several price levels
                inst = rnd.choice(open_insts)
                got = self._take(
                    t,
                    ep,
                    inst,
                    side,
                    min(want + 10, room[inst.idx]),
                    sweep_levels=rnd.randint(1, 2),
                )
                self._impact(t, inst, side, got)
        else:
            inst = rnd.choice(open_insts)
            got = self._take(t, ep, inst, side, min(want, room[inst.idx]))
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
        side = ep.side if ep.side is not None else ASK
        legs_usd = min(ep.leg_usd.get(x.idx, 0) for x in ep.insts)
        remaining = ep.target_usd - legs_usd
        in_window = t + 2 * SEC < ep.start + STRADDLE_WINDOW_NS - 20 * SEC
        if i >= ep.n_planned - 1 and (remaining <= 0 or not in_window):
            self._straddle_close(t, ep, i, in_window)
            return
        # both legs of the straddle in one child order: the second leg catches up to the first
        per_lot = min(self._est_premium_pu(x) for x in ep.insts)
        planned_left = max(1, ep.n_planned - i)
        want = max(
            1,
            math.ceil(max(remaining, per_lot) / per_lot / planned_left * rnd.uniform(0.6, 1.4)),
        )
        first, second = ep.insts if rnd.random() < 0.5 else ep.insts[::-1]
        got = self._take(t, ep, first, side, want, sweep_levels=1 if rnd.random() < 0.3 else 0)
        self._impact(t, first, side, got)
        if rnd.random() < self.p.straddle_fast_share:
            delay = rnd.randint(40_000, 5_000_000)  # one spread order: microseconds to ms
        else:
            delay = int(rnd.uniform(0.3, 4.0) * SEC)  # legged by hand: seconds
        if delay < 600_000:
            self._catch_up(t + delay, ep, second)
        else:
            self.m.schedule(t + delay, self._leg_event, (ep, second))
        if i + 1 < len(ep.times):
            self._next(t, ep, i)
        else:  # planned children done but the legs are short of the target: a few more
            ep.times.append(t + int(rnd.uniform(0.3, 1.5) * SEC))
            self._next(t, ep, i)

    def _catch_up(self, t: int, ep: Episode, inst: Inst) -> None:
        """Trade ``inst`` (same side) up to the other leg's contracts."""
        other = ep.insts[1] if inst is ep.insts[0] else ep.insts[0]
        need = ep.leg_size.get(other.idx, 0) - ep.leg_size.get(inst.idx, 0)
        if need > 0 and t < self.m.end_ns - SEC:
            side = ep.side if ep.side is not None else ASK
            got = self._take(t, ep, inst, side, need, sweep_levels=2)
            self._impact(t, inst, side, got)

    def _leg_event(self, t: int, arg: object) -> None:
        ep, inst = arg  # type: ignore[misc]
        c0 = self.m.tape.count
        self._catch_up(t, ep, inst)
        self.m.episode_records += self.m.tape.count - c0

    def _straddle_close(self, t: int, ep: Episode, i: int, in_window: bool) -> None:
        """Bring the two legs to the same number of contracts (a few tries), then stop."""
        a, b = ep.insts
        sa, sb = ep.leg_size.get(a.idx, 0), ep.leg_size.get(b.idx, 0)
        if sa != sb:
            self._catch_up(t, ep, a if sa < sb else b)
        ep.balance_tries += 1
        balanced = ep.leg_size.get(a.idx, 0) == ep.leg_size.get(b.idx, 0)
        if not balanced and ep.balance_tries < 12 and in_window and t < self.m.end_ns - 3 * SEC:
            ep.times.append(t + int(self.rnd.uniform(0.3, 1.5) * SEC))
            self._next(t, ep, i)
        else:
            ep.done = True

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
