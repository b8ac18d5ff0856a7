"""The TradeEvent stream a strategy sees, rebuilt from a generated (or real) session's DBN files.

Every ``T`` record, in ``ts_recv`` (file) order, becomes one ``TradeEvent`` carrying the best
bid / ask of its instrument just before the T's own packet. The book is the independent L3
reconstruction of ``tests.support.book_reference.ReferenceBook`` with records applied in file
order; T and F records do not change it (CME sends the book change of a match in the C/M
records of the next packet), so the book seen at a T is the book before its match event.

Instruments come from the definition file through NautilusTrader's ``DatabentoDataLoader``
(the same instruments a strategy finds in its cache), turned into ``InstrumentInfo``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ifd.detection.types import BUY
from ifd.detection.types import SELL
from ifd.detection.types import UNKNOWN
from ifd.detection.types import InstrumentInfo
from ifd.detection.types import TradeEvent
from tests.support.book_reference import ReferenceBook
from tests.support.book_reference import load_mbo_records

PRICE_SCALE = 1e9  # DBN fixed point; divide (exact for these integers) so ties compare equal
_FEED_SIDE = {"B": BUY, "A": SELL}


def load_instruments(definition_path: Path | str) -> tuple[dict[str, InstrumentInfo], dict[int, str]]:
    """``InstrumentInfo`` by NautilusTrader id, and the DBN instrument_id -> NautilusTrader id map."""
    import databento as db
    from nautilus_trader.adapters.databento import DatabentoDataLoader
    from nautilus_trader.model.instruments import FuturesContract
    from nautilus_trader.model.instruments import OptionContract

    loaded = DatabentoDataLoader().from_dbn_file(str(definition_path), as_legacy_cython=True)
    infos: dict[str, InstrumentInfo] = {}
    for inst in loaded:
        iid = inst.id.value
        if isinstance(inst, OptionContract):
            kind = "CALL" if int(inst.option_kind) == 1 else "PUT"
            infos[iid] = InstrumentInfo(
                instrument_id=iid,
                kind=kind,
                strike=float(inst.strike_price),
                expiration_ns=int(inst.expiration_ns),
                underlying=str(inst.underlying),
                multiplier=float(inst.multiplier),
                price_increment=float(inst.price_increment),
            )
        elif isinstance(inst, FuturesContract):
            infos[iid] = InstrumentInfo(
                instrument_id=iid,
                kind="FUT",
                strike=0.0,
                expiration_ns=int(inst.expiration_ns),
                underlying="",
                multiplier=float(inst.multiplier),
                price_increment=float(inst.price_increment),
            )
    store = db.DBNStore.from_bytes(Path(definition_path).read_bytes())
    defs = store.to_ndarray()
    by_raw = {info.instrument_id.rsplit(".", 1)[0]: info.instrument_id for info in infos.values()}
    id_map: dict[int, str] = {}
    for raw, dbn_id in zip(defs["raw_symbol"].tolist(), defs["instrument_id"].tolist(), strict=True):
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        name = name.rstrip("\x00")
        if name in by_raw:
            id_map[int(dbn_id)] = by_raw[name]
    return infos, id_map


def _top(book: ReferenceBook) -> tuple[float, int, float, int]:
    """(best bid, its size, best ask, its size); NaN / 0 for an empty side."""
    nan = float("nan")
    bids, asks = book.bids, book.asks
    if bids:
        bb = max(bids)
        best_bid, bid_size = bb / PRICE_SCALE, bids[bb][0]
    else:
        best_bid, bid_size = nan, 0
    if asks:
        ba = min(asks)
        best_ask, ask_size = ba / PRICE_SCALE, asks[ba][0]
    else:
        best_ask, ask_size = nan, 0
    return best_bid, int(bid_size), best_ask, int(ask_size)


def trade_events_from_records(records: np.ndarray, id_map: dict[int, str]) -> list[TradeEvent]:
    """One ``TradeEvent`` per T record (file order) with its instrument's book before the T's
    packet (records sharing ``ts_recv`` and ``sequence``): when that packet changed the book
    before the T, the top saved at the packet's start is used."""
    books: dict[int, ReferenceBook] = {}
    instruments = records["instrument_id"].tolist()
    actions = records["action"].tolist()
    sides = records["side"].tolist()
    prices = records["price"].tolist()
    sizes = records["size"].tolist()
    order_ids = records["order_id"].tolist()
    ts_events = records["ts_event"].tolist()
    ts_recvs = records["ts_recv"].tolist()
    sequences = records["sequence"].tolist()
    events: list[TradeEvent] = []
    packet: tuple[int, int] | None = None
    packet_start_top: dict[int, tuple[float, int, float, int]] = {}  # instruments changed in this packet
    for i, action in enumerate(actions):
        key = (ts_recvs[i], sequences[i])
        if key != packet:
            packet = key
            packet_start_top.clear()
        inst = instruments[i]
        book = books.get(inst)
        if book is None:
            book = books[inst] = ReferenceBook()
        if action == b"T":
            name = id_map.get(inst)
            if name is None:
                continue
            top = packet_start_top.get(inst)
            best_bid, bid_size, best_ask, ask_size = top if top is not None else _top(book)
            events.append(
                TradeEvent(
                    instrument_id=name,
                    ts_event=int(ts_events[i]),
                    ts_init=int(ts_recvs[i]),
                    price=prices[i] / PRICE_SCALE,
                    size=int(sizes[i]),
                    feed_side=_FEED_SIDE.get(sides[i].decode(), UNKNOWN),
                    best_bid=best_bid,
                    best_ask=best_ask,
                    bid_size=bid_size,
                    ask_size=ask_size,
                )
            )
        elif action != b"F" and action != b"N":
            if inst not in packet_start_top:
                packet_start_top[inst] = _top(book)
            book.apply(action.decode(), sides[i].decode(), prices[i], sizes[i], order_ids[i])
    return events


def load_session(session_dir: Path | str) -> tuple[dict[str, InstrumentInfo], list[TradeEvent]]:
    """Instruments and the trade-event stream of a session folder (definition + mbo DBN files)."""
    session_dir = Path(session_dir)
    infos, id_map = load_instruments(session_dir / "definition.dbn.zst")
    records = load_mbo_records(session_dir / "mbo.dbn.zst")
    return infos, trade_events_from_records(records, id_map)


# --- hand-made streams for unit tests -------------------------------------------------------------

SEC = 1_000_000_000
NQ_EXPIRY_NS = 1_795_813_200_000_000_000


def option_info(kind: str, strike: float, expiry_ns: int = NQ_EXPIRY_NS, root: str = "QN4X6") -> InstrumentInfo:
    """An NQ option ``InstrumentInfo`` (multiplier 20) named like the generator's."""
    letter = "C" if kind == "CALL" else "P"
    return InstrumentInfo(
        instrument_id=f"{root} {letter}{strike:.0f}.GLBX",
        kind=kind,
        strike=float(strike),
        expiration_ns=expiry_ns,
        underlying="NQZ6",
        multiplier=20.0,
        price_increment=0.05,
    )


def future_info() -> InstrumentInfo:
    return InstrumentInfo("NQZ6.GLBX", "FUT", 0.0, 1_797_604_200_000_000_000, "", 20.0, 0.25)


def small_chain(strikes: tuple[float, ...] = (20950.0, 20975.0, 21000.0, 21025.0, 21050.0)) -> dict[str, InstrumentInfo]:
    """The future plus a call and a put per strike of one expiry, by instrument id."""
    infos = [future_info()] + [option_info(k, s) for s in strikes for k in ("CALL", "PUT")]
    return {i.instrument_id: i for i in infos}


def trade(
    instrument_id: str,
    ts: int,
    price: float,
    size: int,
    side: int,
    spread: float = 1.0,
    bid: float | None = None,
    ask: float | None = None,
) -> TradeEvent:
    """A trade with a consistent book: a buy lifts the ask (book ask = price), a sell hits the bid."""
    if bid is None or ask is None:
        if side == BUY:
            ask, bid = price, price - spread
        elif side == SELL:
            bid, ask = price, price + spread
        else:
            bid, ask = price - spread / 2, price + spread / 2
    return TradeEvent(instrument_id, ts, ts + 100_000, price, size, side, bid, ask, 10, 10)


def background(
    instruments: dict[str, InstrumentInfo],
    start_ns: int,
    end_ns: int,
    every_ns: int = 2 * SEC,
    seed: int = 1,
    price: float = 250.0,
) -> list[TradeEvent]:
    """Small two-sided retail-like trades on random options (and the future) every ``every_ns``."""
    import random

    rnd = random.Random(seed)
    options = sorted(i for i, info in instruments.items() if info.kind != "FUT")
    futures = sorted(i for i, info in instruments.items() if info.kind == "FUT")
    out: list[TradeEvent] = []
    t = start_ns
    while t < end_ns:
        side = rnd.choice((BUY, SELL))
        if futures and rnd.random() < 0.25:
            px = 21000.0 + rnd.choice((-0.25, 0.0, 0.25))
            out.append(trade(futures[0], t, px, rnd.randint(1, 3), side, spread=0.25))
        else:
            px = round(price + rnd.uniform(-50, 50), 1)
            out.append(trade(rnd.choice(options), t, px, rnd.randint(1, 4), side))
        t += every_ns + rnd.randint(0, 1_000_000)
    return out


def child_orders(
    instrument_id: str,
    start_ns: int,
    end_ns: int,
    side: int,
    size: int = 15,
    price: float = 300.0,
    every_ns: int = 5 * SEC,
    sweep_every: int = 4,
) -> list[TradeEvent]:
    """An institution's child orders on one option; every ``sweep_every``-th sweeps 3 levels
    (three T records with one ts_event)."""
    out: list[TradeEvent] = []
    t = start_ns + 7  # off the round second, like real events
    k = 0
    step = 0.25 if side == BUY else -0.25
    while t < end_ns:
        if sweep_every and k % sweep_every == sweep_every - 1:
            book_px = price
            for level in range(3):
                out.append(trade(instrument_id, t, price + level * step, size // 3 + 1, side,
                                 bid=book_px - 1.0 if side == BUY else book_px,
                                 ask=book_px if side == BUY else book_px + 1.0))
        else:
            out.append(trade(instrument_id, t, price, size, side))
        t += every_ns
        k += 1
    return out


def merged(*streams: list[TradeEvent]) -> list[TradeEvent]:
    """Streams merged in time order (stable)."""
    out = [e for s in streams for e in s]
    out.sort(key=lambda e: e.ts_event)
    return out
