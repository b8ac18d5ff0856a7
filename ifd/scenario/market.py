"""The simulated market: a discrete-event loop over the NQ future and its option chain.

* The future's fair value follows a Gaussian random walk (plus the drift planted by informed
  episodes); option fair values are Black-76 on it with a smile, a per-option IV shift (used
  for volatility crush) and a decaying price-impact term.
* Every instrument has several market makers (``Quoter``): each quotes a ladder of price
  levels on each side around its *center* (the fair value at its last re-quote) with its own
  half spread and sizes.  A quoter re-centers (M records, queue priority lost) as soon as fair
  value moves more than 0.6 half spreads away, moving the side that would become crossed
  first, so at every record all bids < fair < all asks and the book is never crossed.
* Background activity: retail market orders (IOC, small size) and quote churn (fleeting
  orders A..C, cancel/replace, size modifies, re-centers), paced by a controller so the
  background averages ``rate`` records per second.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ifd.scenario.book import ASK, BID, SIDE_CODE, Book, Order, match_orders
from ifd.scenario.chain import InstrumentSpec
from ifd.scenario.pricing import (
    YEAR_NS,
    fut_ceil,
    fut_down,
    fut_floor,
    fut_up,
    norm_cdf,
    opt_ceil,
    opt_down,
    opt_floor,
    opt_up,
    smile_vol,
)
from ifd.scenario.tape import ACT_ADD, ACT_CANCEL, ACT_MODIFY, Tape

SEC = 1_000_000_000
CLOCK_BUCKET_NS = 300 * SEC  # fixed 5-minute clock buckets: floor(ts_event / 300 s)
TRIGGER = 0.9  # re-center when fair moves this many half spreads from the quote center
REPLACE_SHARE = (
    0.3  # share of re-quote price moves done as cancel + add instead of modify
)


@dataclass(frozen=True)
class MarketParams:
    """Market micro-structure knobs (all have sane defaults)."""

    annual_vol: float = 0.16  # realised vol of the future's random walk
    atm_iv: float = 0.19  # option implied vol at the money
    skew: float = -0.9  # d(IV)/d(log-moneyness)
    curvature: float = 3.0  # smile curvature in log-moneyness
    rate: float = 0.04  # discount rate for Black-76
    step_ms: int = 400  # interval of the future's random-walk steps
    option_makers: int = 3
    option_levels: int = 2
    future_makers: int = 4
    future_levels: int = 3
    retail_share: float = 0.22  # share of background actions that are retail trades
    retail_future_share: float = 0.25  # share of retail trades on the future
    impact_per_lot: float = (
        4e-5  # fair-value impact of an episode fill, fraction of premium per lot
    )
    impact_half_life_s: float = 90.0


class Inst:
    """Simulation state of one instrument."""

    __slots__ = (
        "book",
        "ceil",
        "down",
        "floor",
        "idx",
        "iid",
        "is_future",
        "quoters",
        "spec",
        "up",
    )

    def __init__(self, spec: InstrumentSpec) -> None:
        self.spec = spec
        self.idx = spec.index
        self.iid = spec.instrument_id
        self.book = Book(spec.instrument_id)
        self.quoters: list[Quoter] = []
        self.is_future = spec.is_future
        if self.is_future:
            self.floor, self.ceil, self.up, self.down = (
                fut_floor,
                fut_ceil,
                fut_up,
                fut_down,
            )
        else:
            self.floor, self.ceil, self.up, self.down = (
                opt_floor,
                opt_ceil,
                opt_up,
                opt_down,
            )


class Quoter:
    """One market maker's ladder on one instrument."""

    __slots__ = (
        "center",
        "flickers",
        "frac",
        "hs",
        "inst",
        "ladder",
        "levels",
        "min_hs",
        "pending",
        "size_hi",
        "size_lo",
    )

    def __init__(
        self,
        inst: Inst,
        frac: float,
        min_hs: float,
        levels: int,
        size_lo: int,
        size_hi: int,
    ) -> None:
        self.inst = inst
        self.frac = frac
        self.min_hs = min_hs
        self.hs = min_hs
        self.levels = levels
        self.size_lo = size_lo
        self.size_hi = size_hi
        self.center = 0.0
        self.ladder: list[list[Order]] = [[], []]
        self.flickers: list[Order] = []
        self.pending = [False, False]

    def half_spread(self, fair: float) -> float:
        return max(self.min_hs, self.frac * fair)

    def targets(self, side: int, center: float) -> list[int]:
        """Ladder prices for ``side`` around ``center`` (nearest first); bids stay >= 1 pu."""
        inst = self.inst
        if self.levels == 1:
            if side == BID:
                p = inst.floor(center - self.hs)
                return [p] if p >= 1 else []
            return [inst.ceil(center + self.hs)]
        out: list[int] = []
        if side == BID:
            p = inst.floor(center - self.hs)
            step = inst.down
            for _ in range(self.levels):
                if p < 1:
                    break
                out.append(p)
                p = step(p)
        else:
            p = inst.ceil(center + self.hs)
            step = inst.up
            for _ in range(self.levels):
                out.append(p)
                p = step(p)
        return out


class Market:
    """Owns the books, the clock (event heap), the tape and the fair values."""

    def __init__(
        self,
        specs: list[InstrumentSpec],
        params: MarketParams,
        tape: Tape,
        rnd: random.Random,
        start_ns: int,
        end_ns: int,
        underlying: float,
        strike_step: float,
    ) -> None:
        self.p = params
        self.tape = tape
        self._single = tape.single
        self.rnd = rnd
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.insts = [Inst(s) for s in specs]
        self.heap: list[tuple[int, int, Callable[[int, object], None], object]] = []
        self._n = 0
        self.oid = 7_219_340_118_000 + rnd.randrange(1_000_000)
        self.u = float(underlying)
        self.u0 = float(underlying)
        n = len(specs)
        self.strike = np.array([s.strike if not s.is_future else 1.0 for s in specs])
        self.is_call = np.array([s.kind == "CALL" for s in specs])
        self.exp_ns = np.array([s.expiration_ns for s in specs], dtype=np.float64)
        self.opt = np.array([not s.is_future for s in specs])
        self.iv_shift = np.zeros(n)
        self.impact = np.zeros(n)
        self.base = np.zeros(n)
        self.fair = np.zeros(n)
        self.trig_lo = np.full(n, -np.inf)
        self.trig_hi = np.full(n, np.inf)
        self.drifts: list[tuple[int, int, float]] = []  # (start, end, points per ns)
        self.episode_records = 0
        self.bg_actions = 0
        # per instrument: the current clock bucket and its net aggressor premium (buy - sell,
        # USD, every trade); episodes that stay below a per-bucket premium read it
        self.clock_bucket = [-1] * n
        self.clock_net = [0] * n
        self._step_sigma = (
            underlying
            * params.annual_vol
            * math.sqrt(params.step_ms * 1e6 / (252 * 23_400 * SEC))
        )
        self._decay = 0.5 ** (params.step_ms / 1000.0 / params.impact_half_life_s)
        self._lambda0 = 1.0
        self._rate = 0.0
        self._retail_cw = self._retail_weights(strike_step)
        self._churn_cw = np.cumsum([4.0] + [1.0] * (n - 1)).tolist()
        self._log_k = np.log(self.strike)
        years0 = np.maximum((self.exp_ns - start_ns) / YEAR_NS, 1e-4)
        self._atm_term = smile_vol(
            self.u, self.u * np.ones(n), years0, params.atm_iv, 0.0, 0.0
        )
        self._reprice(start_ns)
        self._make_quoters()

    # --- clock ---------------------------------------------------------------------------------

    def schedule(
        self, t: int, fn: Callable[[int, object], None], arg: object = None
    ) -> None:
        self._n += 1
        heapq.heappush(self.heap, (t, self._n, fn, arg))

    def run(self, progress: Callable[[str], None] | None = None) -> None:
        """Process events until the session end."""
        heap = self.heap
        pop = heapq.heappop
        end = self.end_ns
        next_report = self.start_ns + 60 * SEC
        while heap:
            t, _, fn, arg = pop(heap)
            if t >= end:
                break
            fn(t, arg)
            if progress is not None and t >= next_report:
                progress(
                    f"simulated {(t - self.start_ns) / 60e9:.0f} min, {self.tape.count:,} records"
                )
                next_report += 60 * SEC

    def next_oid(self) -> int:
        self.oid += 1 + (self.oid & 3)
        return self.oid

    # --- fair values ---------------------------------------------------------------------------

    def _reprice(self, t: int) -> None:
        """Black-76 fair values of all options at the current future price (fused numpy)."""
        u = self.u
        years = (self.exp_ns - t) * (1.0 / YEAR_NS)
        np.maximum(years, 1e-9, out=years)
        k = self._log_k - math.log(u)
        p = self.p
        vol = self._atm_term + p.skew * k + p.curvature * k * k + self.iv_shift
        np.maximum(vol, 0.05, out=vol)
        sd = vol * np.sqrt(years)
        d1 = (0.5 * sd * sd - k) / sd
        n = norm_cdf(np.concatenate((d1, d1 - sd)))
        m = len(d1)
        disc = np.exp(-p.rate * years)
        call = disc * (u * n[:m] - self.strike * n[m:])
        base = np.where(self.is_call, call, call - disc * (u - self.strike))
        base[0] = u
        self.base = base
        fair = base + self.impact
        np.maximum(fair, 0.01, out=fair)
        fair[0] = u
        self.fair = fair

    def clock_net_of(self, idx: int, t: int) -> int:
        """Net aggressor premium (USD, buy - sell) of one instrument in ``t``'s clock bucket."""
        return self.clock_net[idx] if self.clock_bucket[idx] == t // CLOCK_BUCKET_NS else 0

    def fair_of(self, idx: int) -> float:
        return float(self.fair[idx])

    def bump_impact(self, t: int, inst: Inst, points: float) -> None:
        """Shift one instrument's fair value (price impact) and re-quote if needed."""
        i = inst.idx
        self.impact[i] += points
        f = max(self.base[i] + self.impact[i], 0.01)
        self.fair[i] = f
        if f > self.trig_hi[i] or f < self.trig_lo[i]:
            self.recenter(t, inst, f)

    def step(self, t: int, _: object = None) -> None:
        """One random-walk step of the future; re-price options; forced re-quotes."""
        drift = 0.0
        dt = self.p.step_ms * 1_000_000
        for s, e, r in self.drifts:
            if s <= t < e:
                drift += r * dt
        self.u += self.rnd.gauss(0.0, self._step_sigma) + drift
        self.impact *= self._decay
        self._reprice(t)
        fair = self.fair
        hit = np.flatnonzero((fair > self.trig_hi) | (fair < self.trig_lo)).tolist()
        insts = self.insts
        for i in hit:
            self.recenter(t, insts[i], float(fair[i]))
        self.schedule(t + dt, self.step)

    # --- order primitives (each emits one record event) ------------------------------------------

    def add(
        self,
        t: int,
        inst: Inst,
        side: int,
        price: int,
        size: int,
        owner: object,
        flicker: bool = False,
    ) -> Order:
        self.oid = oid = self.oid + 1 + (self.oid & 3)
        o = Order(oid, side, price, size, owner, flicker)
        lv = inst.book.levels[side]
        lst = lv.get(price)
        if lst is None:
            lv[price] = [o]
        else:
            lst.append(o)
        self._single(t, inst.iid, o.oid, price, size, ACT_ADD, SIDE_CODE[side])
        return o

    def cancel(self, t: int, inst: Inst, o: Order) -> None:
        lv = inst.book.levels[o.side]
        lst = lv[o.price]
        lst.remove(o)
        if not lst:
            del lv[o.price]
        o.alive = False
        self._single(t, inst.iid, o.oid, o.price, o.size, ACT_CANCEL, SIDE_CODE[o.side])

    def modify(self, t: int, inst: Inst, o: Order, price: int, size: int) -> None:
        """Modify price and/or size; a price change or size increase loses queue priority."""
        if price != o.price or size > o.size:
            lv = inst.book.levels[o.side]
            lst = lv[o.price]
            lst.remove(o)
            if not lst:
                del lv[o.price]
            o.price = price
            o.size = size
            lst = lv.get(price)
            if lst is None:
                lv[price] = [o]
            else:
                lst.append(o)
        else:
            o.size = size
        self._single(t, inst.iid, o.oid, price, size, ACT_MODIFY, SIDE_CODE[o.side])

    # --- market makers -------------------------------------------------------------------------

    def _make_quoters(self) -> None:
        rnd = self.rnd
        p = self.p
        t = self.start_ns
        for inst in self.insts:
            if inst.is_future:
                specs = [
                    (0.0, hs, p.future_levels, 1, 12)
                    for hs in (0.1, 0.2, 0.4, 0.7, 1.0, 1.3)[: p.future_makers]
                ]
            else:
                specs = [
                    (
                        rnd.uniform(0.003, 0.006) * (1 + 1.2 * k),
                        0.10 + 0.05 * k,
                        1 if k == 0 else p.option_levels,
                        1 + k,
                        6 + 4 * k,
                    )
                    for k in range(p.option_makers)
                ]
            for frac, min_hs, levels, lo, hi in specs:
                inst.quoters.append(Quoter(inst, frac, min_hs, levels, lo, hi))
            fair = self.fair_of(inst.idx)
            for q in inst.quoters:
                q.hs = q.half_spread(fair)
                q.center = fair
                for side in (BID, ASK):
                    self.requote_side(t, q, side, fair)
            self._update_trigger(inst)
        self.schedule(t + self.p.step_ms * 1_000_000, self.step)

    def _update_trigger(self, inst: Inst) -> None:
        lo, hi = -math.inf, math.inf
        for q in inst.quoters:
            band = TRIGGER * q.hs
            lo = max(lo, q.center - band)
            hi = min(hi, q.center + band)
        self.trig_lo[inst.idx] = lo
        self.trig_hi[inst.idx] = hi

    def requote_side(self, t: int, q: Quoter, side: int, center: float) -> None:
        """Move one side of a quoter's ladder onto its targets (M moves, A adds, C extras)."""
        targets = q.targets(side, center)
        ladder = q.ladder[side]
        inst = q.inst
        if len(ladder) == len(targets):
            if len(targets) == 1:  # single-level maker: the common fast path
                o = ladder[0]
                p = targets[0]
                if o.alive:
                    if o.price != p:
                        if self.rnd.random() < REPLACE_SHARE:
                            self.cancel(t, inst, o)
                            ladder[0] = self.add(t, inst, side, p, o.size, q)
                        else:
                            self.modify(t, inst, o, p, o.size)
                    return
            else:
                prices = [o.price for o in ladder if o.alive]
                if len(prices) == len(targets):
                    if prices == targets:
                        return  # already on target
                    if min(targets) > max(prices) or max(targets) < min(prices):
                        # disjoint ladders (the usual re-center): move level k to target k
                        rnd = self.rnd
                        for k, p in enumerate(targets):
                            o = ladder[k]
                            if rnd.random() < REPLACE_SHARE:
                                self.cancel(t, inst, o)
                                ladder[k] = self.add(t, inst, side, p, o.size, q)
                            else:
                                self.modify(t, inst, o, p, o.size)
                        return
        tset = set(targets)
        by_price: dict[int, Order] = {}
        movers: list[Order] = []
        for o in ladder:
            if o.alive:
                if o.price in tset and o.price not in by_price:
                    by_price[o.price] = o
                else:
                    movers.append(o)
        free = [p for p in targets if p not in by_price]
        n = min(len(movers), len(free))
        rnd = self.rnd
        for k in range(n):
            o = movers[k]
            p = free[k]
            if rnd.random() < REPLACE_SHARE:  # cancel + new order instead of a modify
                self.cancel(t, inst, o)
                by_price[p] = self.add(t, inst, side, p, o.size, q)
            else:
                self.modify(t, inst, o, p, o.size)
                by_price[p] = o
        for o in movers[n:]:
            self.cancel(t, inst, o)
        if len(free) > n:
            span = q.size_hi - q.size_lo + 1
            for p in free[n:]:
                by_price[p] = self.add(
                    t, inst, side, p, q.size_lo + int(rnd.random() * span), q
                )
        q.ladder[side] = [by_price[p] for p in targets]

    def recenter(self, t: int, inst: Inst, fair: float) -> None:
        """Re-quote every maker whose center drifted too far from ``fair``; never crosses."""
        movers = [q for q in inst.quoters if abs(fair - q.center) > TRIGGER * q.hs]
        for q in movers:
            for o in q.flickers:
                if o.alive:
                    self.cancel(t, inst, o)
            q.flickers = []
            q.hs = q.half_spread(fair)
            self.requote_side(t, q, ASK if fair > q.center else BID, fair)
        for q in movers:
            self.requote_side(t, q, BID if fair > q.center else ASK, fair)
            q.center = fair
        self._update_trigger(inst)

    def refresh(self, t: int, arg: object) -> None:
        """A maker refills its ladder after being hit."""
        q, side = arg  # type: ignore[misc]
        q.pending[side] = False
        self.requote_side(t, q, side, q.center)

    def cancel_flicker(self, t: int, arg: object) -> None:
        inst, o = arg  # type: ignore[misc]
        if o.alive:
            self.cancel(t, inst, o)

    # --- trading -------------------------------------------------------------------------------

    def trade(
        self, t: int, inst: Inst, side: int, limit: int, qty: int
    ) -> tuple[int, int, list[tuple[int, int]]] | None:
        """An IOC aggressor order; returns ``(ts_event, aggressor_oid, fills)`` or None if nothing traded."""
        aoid = self.next_oid()
        match_recs, book_recs, fills, emptied = match_orders(
            inst.book, side, limit, qty, aoid
        )
        if not fills:
            return None
        ts = self.tape.trade(t, inst.iid, match_recs, book_recs)
        i = inst.idx
        b = ts // CLOCK_BUCKET_NS
        if self.clock_bucket[i] != b:
            self.clock_bucket[i] = b
            self.clock_net[i] = 0
        usd = sum(p * sz for p, sz in fills)  # price_pu x size is USD for NQ options
        self.clock_net[i] += usd if side == BID else -usd
        rnd = self.rnd
        for o in emptied:
            q = o.owner
            if o.flicker or q is None:
                continue
            if not q.pending[o.side]:  # type: ignore[attr-defined]
                q.pending[o.side] = True  # type: ignore[attr-defined]
                self.schedule(
                    t + int(rnd.uniform(2e6, 150e6)), self.refresh, (q, o.side)
                )
        return ts, aoid, fills

    # --- background activity -------------------------------------------------------------------

    def _retail_weights(self, strike_step: float) -> list[float]:
        w = []
        near = (
            min(
                s.expiration_ns for s in (i.spec for i in self.insts) if not s.is_future
            )
            if len(self.insts) > 1
            else 0
        )
        n_opt = len(self.insts) - 1
        for inst in self.insts:
            s = inst.spec
            if s.is_future:
                w.append(0.0)
                continue
            m = math.exp(-abs(s.strike - self.u) / (4.0 * strike_step))
            w.append(m * (1.6 if s.expiration_ns == near else 1.0))
        total = sum(w) or 1.0
        share = self.p.retail_future_share if n_opt else 1.0
        w = [x / total * (1.0 - share) for x in w]
        w[0] = share
        return np.cumsum(w).tolist()

    def start_background(self, rate: float) -> None:
        """Begin background activity averaging ``rate`` records per second."""
        self._rate = rate
        self._lambda0 = max(rate / 3.0, 0.1)
        self._mean_gap = SEC / self._lambda0
        self.schedule(self.start_ns + SEC // 10, self.background)

    def background(self, t: int, _: object = None) -> None:
        rnd = self.rnd
        self.bg_actions += 1
        if rnd.random() < self.p.retail_share:
            self.retail(t)
        else:
            self.churn(t)
        if self.bg_actions & 15 == 0:  # re-tune the pace every 16 actions
            elapsed = (t - self.start_ns) / SEC
            bg = self.tape.count - self.episode_records
            excess = (bg - self._rate * elapsed) / max(self._rate * 2.0, 1.0)
            self._mean_gap = SEC / (self._lambda0 * 2.0 ** max(-6.0, min(4.0, -excess)))
        self._n += 1
        heapq.heappush(
            self.heap,
            (
                t + int(rnd.expovariate(1.0) * self._mean_gap) + 1,
                self._n,
                self.background,
                None,
            ),
        )

    def retail(self, t: int) -> None:
        rnd = self.rnd
        idx = min(
            bisect.bisect(self._retail_cw, rnd.random() * self._retail_cw[-1]),
            len(self.insts) - 1,
        )
        inst = self.insts[idx]
        side = BID if rnd.random() < 0.5 else ASK
        best = inst.book.best(1 - side)
        if best is None:
            return
        qty = 1 + int(rnd.expovariate(0.6 if inst.is_future else 0.5))
        limit = best
        if rnd.random() < 0.08:
            limit = inst.book.nth_level(1 - side, 1) or best
        self.trade(t, inst, side, limit, qty)

    def churn(self, t: int) -> None:
        """Quote churn by one maker: fleeting order, cancel/replace, size change or re-center."""
        rnd = self.rnd
        rand = rnd.random
        inst = self.insts[
            min(
                bisect.bisect(self._churn_cw, rand() * self._churn_cw[-1]),
                len(self.insts) - 1,
            )
        ]
        quoters = inst.quoters
        q = quoters[int(rand() * len(quoters))]
        r = rand()
        if r < 0.38:  # fleeting order at or behind the quote
            side = BID if rand() < 0.5 else ASK
            targets = q.targets(side, q.center)
            if not targets:
                return
            price = targets[min(int(rand() * 3), len(targets) - 1)]
            if rand() < 0.3:
                price = inst.down(price) if side == BID else inst.up(price)
            if price < 1:
                return
            o = self.add(t, inst, side, price, 1 + int(rand() * 5), q, flicker=True)
            q.flickers.append(o)
            if len(q.flickers) > 8:
                q.flickers = [f for f in q.flickers if f.alive]
            self.schedule(
                t + int(rnd.expovariate(2.5) * SEC) + 1_000_000,
                self.cancel_flicker,
                (inst, o),
            )
            return
        ladder = q.ladder[0 if rand() < 0.5 else 1]
        if not ladder:
            return
        o = ladder[int(rand() * len(ladder))]
        if not o.alive:
            return
        span = q.size_hi - q.size_lo + 1
        if r < 0.62:  # cancel / replace: new order id, back of the queue
            self.cancel(t, inst, o)
            ladder[ladder.index(o)] = self.add(
                t, inst, o.side, o.price, q.size_lo + int(rand() * span), q
            )
        elif r < 0.86:  # size change
            size = q.size_lo + int(rand() * (span + 2))
            if size != o.size:
                self.modify(t, inst, o, o.price, size)
        else:  # re-center on fair value
            self._force_one(t, inst, q, self.fair_of(inst.idx))

    def _force_one(self, t: int, inst: Inst, q: Quoter, fair: float) -> None:
        """Re-center one maker on ``fair`` (away-from-cross side first)."""
        up = fair > q.center
        for o in q.flickers:
            if o.alive:
                self.cancel(t, inst, o)
        q.flickers = []
        q.hs = q.half_spread(fair)
        self.requote_side(t, q, ASK if up else BID, fair)
        self.requote_side(t, q, BID if up else ASK, fair)
        q.center = fair
        self._update_trigger(inst)
