"""The scenario generator writes real, loadable, realistic and correctly labeled DBN sessions."""

from __future__ import annotations

import collections
import hashlib
import itertools
from dataclasses import replace
from pathlib import Path

import databento as db
import databento_dbn as dbn
import numpy as np
import pyarrow.parquet as pq
import pytest

from ifd.errors import IfdError
from ifd.scenario import ScenarioConfig, generate_scenario
from ifd.scenario.dbn_encode import COLUMNS, MBO_DTYPE, compact_to_mbo
from ifd.scenario.pricing import (
    black76,
    opt_ceil,
    opt_down,
    opt_floor,
    opt_on_grid,
    opt_up,
)
from tests.support.scenario_checks import (
    TradeInfo,
    event_patterns,
    nq_price_ok,
    replay_mbo,
)

FILES = ("definition.dbn.zst", "mbo.dbn.zst", "labels.parquet")
SMALL = ScenarioConfig(seed=11, strikes=4, expiries=1, minutes=15, rate=150.0)
ESH4 = "nautilus_trader/esh4-glbx-mdp3-20231225.mbo.dbn.zst"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """One small session, its decoded definitions / MBO / labels and a full replay."""
    out = tmp_path_factory.mktemp("scenario")
    messages: list[str] = []
    summary = generate_scenario(out, SMALL, messages.append)
    defs = db.DBNStore.from_file(out / "definition.dbn.zst")
    mbo = db.DBNStore.from_file(out / "mbo.dbn.zst")
    darr = defs.to_ndarray()
    arr = mbo.to_ndarray()
    fut_ids = {int(r["instrument_id"]) for r in darr if r["instrument_class"] == b"F"}
    replay = replay_mbo(
        arr,
        price_ok=lambda iid, px: nq_price_ok(px, iid in fut_ids),
        watch=[int(x) for x in darr["instrument_id"]],
    )
    labels = pq.read_table(out / "labels.parquet").to_pylist()
    return {
        "dir": out,
        "summary": summary,
        "messages": messages,
        "defs": defs,
        "darr": darr,
        "mbo": mbo,
        "arr": arr,
        "replay": replay,
        "labels": labels,
        "fut_ids": fut_ids,
    }


def _by_symbol(darr: np.ndarray) -> dict[str, np.void]:
    return {r["raw_symbol"].decode(): r for r in darr}


# --- encoding ------------------------------------------------------------------------------------


def test_numpy_mbo_records_are_byte_identical_to_databento_dbn():
    rows = [
        (
            42000003,
            1794839400123456789,
            7219340118123,
            6125,
            17,
            0,
            ord("T"),
            ord("B"),
            1794839400123556789,
            15300,
            1001,
        ),
        (
            42000003,
            1794839400123456789,
            7219340118000,
            6125,
            17,
            130,
            ord("C"),
            ord("A"),
            1794839400123600000,
            13000,
            1002,
        ),
        (
            294973,
            1794839400200000000,
            2**40 + 5,
            420000,
            1,
            130,
            ord("M"),
            ord("B"),
            1794839400200100000,
            21999,
            2**32 - 1,
        ),
        (1, 0, 1, 1, 4_294_967_295, 0, ord("F"), ord("N"), 1, -5, 0),
        (7, 1, 2, 3, 4, 130, ord("A"), ord("A"), 2, 0, 3),
    ]
    recs = compact_to_mbo(np.array(rows, dtype=np.int64))
    assert recs.dtype.itemsize == 56 and len(COLUMNS) == 11
    for rec, row in zip(recs, rows, strict=True):
        iid, ts, oid, pu, size, flags, act, side, recv, delta, seq = row
        msg = dbn.MBOMsg(
            publisher_id=1,
            instrument_id=iid,
            ts_event=ts,
            order_id=oid,
            price=pu * 50_000_000,
            size=size,
            action=dbn.Action(chr(act)),
            side=dbn.Side(chr(side)),
            ts_recv=recv,
            flags=flags,
            channel_id=0,
            ts_in_delta=delta,
            sequence=seq,
        )
        assert rec.tobytes() == bytes(msg)
    # and the layout is the one the databento decoder uses for MBO ndarrays
    assert [n for n in MBO_DTYPE.names] == [
        n for n, *_ in dbn.MBOMsg._dtypes if n != "ts_out"
    ]


def test_option_tick_grid_helpers():
    assert opt_floor(5.12) == 100 and opt_ceil(5.01) == 105  # 5.00 / 5.25
    assert opt_floor(4.99) == 99 and opt_ceil(4.96) == 100
    assert opt_up(100) == 105 and opt_down(105) == 100 and opt_down(100) == 99
    assert all(opt_on_grid(p) for p in (1, 57, 100, 105, 6000)) and not any(
        opt_on_grid(p) for p in (0, 101, 104, 6001)
    )
    c = black76(
        21000.0, np.array([21000.0]), np.array([0.1]), np.array([0.2]), np.array([True])
    )[0]
    p = black76(
        21000.0,
        np.array([21000.0]),
        np.array([0.1]),
        np.array([0.2]),
        np.array([False]),
    )[0]
    assert c == pytest.approx(p) and c == pytest.approx(
        0.3989 * 21000 * 0.2 * 0.1**0.5, rel=0.01
    )


# --- definitions ----------------------------------------------------------------------------------


def test_definition_file_follows_glbx_conventions(scenario):
    defs, darr = scenario["defs"], scenario["darr"]
    meta = defs.metadata
    assert meta.dataset == "GLBX.MDP3" and meta.schema == "definition"
    assert meta.stype_in == "raw_symbol" and meta.stype_out == "instrument_id"
    assert len(darr) == 1 + 2 * SMALL.strikes * SMALL.expiries
    assert set(meta.symbols) == {r["raw_symbol"].decode() for r in darr}
    for r in darr:
        interval = meta.mappings[r["raw_symbol"].decode()][0]
        assert (
            interval["symbol"] == str(r["instrument_id"])
            and str(interval["start_date"]) == SMALL.date
        )
    assert set(darr["publisher_id"]) == {1}
    sym = _by_symbol(darr)
    fut = sym["NQZ6"]
    assert (
        fut["instrument_class"] == b"F"
        and fut["security_type"] == b"FUT"
        and fut["asset"] == b"NQ"
    )
    assert (
        fut["min_price_increment"] == 250_000_000
        and fut["unit_of_measure_qty"] == 20 * 10**9
    )
    assert fut["currency"] == b"USD" and fut["exchange"] == b"XCME"
    assert fut["activation"] < fut["expiration"]
    call = sym["NQZ6 C21000"]
    put = sym["NQZ6 P20975"]
    assert call["instrument_class"] == b"C" and put["instrument_class"] == b"P"
    for opt in (call, put):
        assert opt["security_type"] == b"OOF" and opt["underlying"] == b"NQZ6"
        assert (
            opt["underlying_id"] == fut["instrument_id"]
            and opt["strike_price_currency"] == b"USD"
        )
        assert (
            opt["min_price_increment"] == 50_000_000
            and opt["unit_of_measure_qty"] == 20 * 10**9
        )
    assert (
        call["strike_price"] == 21000 * 10**9 and put["strike_price"] == 20975 * 10**9
    )


def test_weekly_option_symbols(tmp_path):
    cfg = replace(
        SMALL,
        strikes=2,
        expiries=3,
        minutes=2,
        rate=20.0,
        institutional=0,
        mm_straddle=0,
        volume_noise=0,
    )
    generate_scenario(tmp_path, cfg)
    symbols = {
        r["raw_symbol"].decode()
        for r in db.DBNStore.from_file(tmp_path / "definition.dbn.zst").to_ndarray()
    }
    assert {"NQZ6 C21000", "QN4X6 C21000", "QN1Z6 P20975"} <= symbols


def test_nautilus_builds_the_instruments(scenario):
    from nautilus_trader.adapters.databento.loaders import DatabentoDataLoader
    from nautilus_trader.model.enums import OptionKind
    from nautilus_trader.model.instruments import FuturesContract, OptionContract

    insts = DatabentoDataLoader().from_dbn_file(
        scenario["dir"] / "definition.dbn.zst", as_legacy_cython=True
    )
    futs = [i for i in insts if isinstance(i, FuturesContract)]
    opts = [i for i in insts if isinstance(i, OptionContract)]
    assert len(futs) == 1 and len(opts) == 2 * SMALL.strikes * SMALL.expiries
    fut = futs[0]
    assert (
        str(fut.id) == "NQZ6.GLBX"
        and int(fut.multiplier) == 20
        and float(fut.price_increment) == 0.25
    )
    by_id = {str(o.id): o for o in opts}
    c = by_id["NQZ6 C21000.GLBX"]
    assert (
        c.option_kind == OptionKind.CALL
        and float(c.strike_price) == 21000.0
        and c.underlying == "NQZ6"
    )
    assert by_id["NQZ6 P20950.GLBX"].option_kind == OptionKind.PUT
    sym = _by_symbol(scenario["darr"])
    for o in opts:
        assert (
            int(o.multiplier) == 20
            and o.price_precision == 2
            and float(o.price_increment) == 0.05
        )
        assert o.expiration_ns == int(sym[o.raw_symbol.value]["expiration"])


# --- MBO: loaders ---------------------------------------------------------------------------------


def _nautilus_counts(
    def_path: Path | None, mbo_path: Path, price_precision: int | None = None
) -> collections.Counter:
    from nautilus_trader.adapters.databento.loaders import DatabentoDataLoader

    loader = DatabentoDataLoader()
    if def_path is not None:
        loader.from_dbn_file(def_path, as_legacy_cython=True)
    data = loader.from_dbn_file(
        mbo_path,
        as_legacy_cython=True,
        include_trades=True,
        price_precision=price_precision,
    )
    counts = collections.Counter(type(d).__name__ for d in data)
    counts.update(
        f"aggressor:{d.aggressor_side.name}"
        for d in data
        if type(d).__name__ == "TradeTick"
    )
    counts.update(f"iid:{d.instrument_id}" for d in data)
    return counts


@pytest.mark.real_data
def test_nautilus_delta_and_trade_counts_on_real_esh4(real_file):
    """The truth our counts test relies on: one delta per A/C/M/R, one TradeTick per T, none for F."""
    path = real_file(ESH4)
    actions = collections.Counter(
        db.DBNStore.from_file(path).to_ndarray()["action"].tolist()
    )
    counts = _nautilus_counts(None, path, price_precision=2)
    assert (
        counts["OrderBookDelta"]
        == actions[b"A"] + actions[b"C"] + actions[b"M"] + actions[b"R"]
    )
    assert counts["TradeTick"] == actions[b"T"] and actions[b"F"] > 0


def test_nautilus_loads_the_scenario_mbo(scenario):
    actions = scenario["summary"]["records_by_action"]
    arr = scenario["arr"]
    counts = _nautilus_counts(
        scenario["dir"] / "definition.dbn.zst", scenario["dir"] / "mbo.dbn.zst"
    )
    assert counts["OrderBookDelta"] == actions["A"] + actions["C"] + actions["M"]
    assert counts["TradeTick"] == actions["T"] > 0
    t_sides = collections.Counter(arr["side"][arr["action"] == b"T"].tolist())
    assert (
        counts["aggressor:BUYER"] == t_sides[b"B"] > 0
        and counts["aggressor:SELLER"] == t_sides[b"A"] > 0
    )
    ids = {f"iid:{r['raw_symbol'].decode()}.GLBX" for r in scenario["darr"]}
    assert {
        k for k in counts if k.startswith("iid:")
    } == ids  # every instrument has data


def test_mbo_metadata_and_counts(scenario):
    meta, arr, summary = scenario["mbo"].metadata, scenario["arr"], scenario["summary"]
    assert (
        meta.dataset == "GLBX.MDP3"
        and meta.schema == "mbo"
        and meta.stype_in == "raw_symbol"
    )
    assert set(meta.symbols) == {r["raw_symbol"].decode() for r in scenario["darr"]}
    assert set(meta.mappings) == set(meta.symbols)
    assert len(arr) == summary["records"] > 50_000
    assert set(summary["records_by_action"]) == {"A", "C", "M", "T", "F"}
    assert set(arr["instrument_id"].tolist()) == set(
        scenario["darr"]["instrument_id"].tolist()
    )
    start, end = summary["session"]["start_ns"], summary["session"]["end_ns"]
    assert start <= int(arr["ts_event"][0]) and int(arr["ts_event"][-1]) < end + 10**9
    lat = arr["ts_recv"].astype(np.int64) - arr["ts_event"].astype(np.int64)
    assert lat.min() > 0 and 80_000 < np.median(lat) < 1_000_000
    assert 12_000 <= arr["ts_in_delta"].min() and arr["ts_in_delta"].max() <= 22_000
    assert any("records" in m for m in scenario["messages"])


# --- MBO: record patterns ---------------------------------------------------------------------------


@pytest.mark.real_data
def test_pattern_checks_hold_on_the_real_feed(real_file):
    """The structural checks below are true on real GLBX data (after the opening auction)."""
    arr = db.DBNStore.from_file(real_file(ESH4)).to_ndarray()
    arr = arr[arr["flags"] & 32 == 0]
    ts = arr["ts_event"]
    k = int(np.flatnonzero(arr["action"] == b"T")[0])
    while ts[k] == ts[int(np.flatnonzero(arr["action"] == b"T")[0])]:
        k += 1
    stats = event_patterns(arr[k:])
    assert (
        stats["trades"] > 2000
        and stats["update_in_later_packet"] > 0.9 * stats["trades"]
    )


def test_scenario_record_patterns_match_the_real_feed(scenario):
    arr = scenario["arr"]
    stats = event_patterns(arr)
    assert stats["trades"] == scenario["summary"]["records_by_action"]["T"]
    assert set(np.unique(arr["flags"]).tolist()) == {0, 130}
    # full replay (fixture): live orders only, F sums, C/M after fills, no crossed book, tick grid
    replay = scenario["replay"]
    assert len(replay.trades) == stats["trades"] and replay.max_orders > 50
    events_with_many_levels = collections.Counter(
        (t.index, t.order_id) for t in replay.trades
    )
    sweeps = collections.Counter(t.order_id for t in replay.trades)
    assert max(sweeps.values()) >= 2, "no aggressor swept several price levels"
    assert events_with_many_levels


def test_variable_option_tick_is_exercised(tmp_path):
    """Cheap far-from-the-money options trade below 5.00 on the 0.05 grid."""
    cfg = replace(
        SMALL,
        strikes=30,
        expiries=2,
        minutes=3,
        rate=150.0,
        strike_step=100.0,
        institutional=0,
        mm_straddle=0,
        volume_noise=0,
    )
    generate_scenario(tmp_path, cfg)
    darr = db.DBNStore.from_file(tmp_path / "definition.dbn.zst").to_ndarray()
    fut = {int(r["instrument_id"]) for r in darr if r["instrument_class"] == b"F"}
    arr = db.DBNStore.from_file(tmp_path / "mbo.dbn.zst").to_ndarray()
    replay_mbo(arr, price_ok=lambda iid, px: nq_price_ok(px, iid in fut))
    opt = arr[~np.isin(arr["instrument_id"], list(fut))]
    px = opt["price"].astype(np.int64)
    assert (px <= 5 * 10**9).any() and (px % 250_000_000 != 0).any()
    assert ((px > 5 * 10**9) & (px % 250_000_000 != 0)).sum() == 0


# --- determinism ----------------------------------------------------------------------------------


def test_same_seed_gives_identical_files_and_other_seed_differs(scenario, tmp_path):
    same = tmp_path / "same"
    other = tmp_path / "other"
    generate_scenario(same, SMALL)
    generate_scenario(other, replace(SMALL, seed=SMALL.seed + 1))
    for name in FILES:
        assert _sha(same / name) == _sha(scenario["dir"] / name), name
    assert _sha(other / "mbo.dbn.zst") != _sha(same / "mbo.dbn.zst")
    assert _sha(other / "labels.parquet") != _sha(same / "labels.parquet")
    assert not [
        p for p in scenario["dir"].iterdir() if p.name not in FILES
    ]  # no temp files left


def test_bad_config_is_a_user_error(tmp_path):
    with pytest.raises(IfdError, match="strikes"):
        generate_scenario(tmp_path, replace(SMALL, strikes=0))
    with pytest.raises(IfdError, match="expiries"):
        generate_scenario(tmp_path, replace(SMALL, expiries=50))
    assert not (tmp_path / "mbo.dbn.zst").exists()


# --- labels ---------------------------------------------------------------------------------------


def _episode_trades(scenario, label):
    ids = set(label["aggressor_order_ids"])
    return [t for t in scenario["replay"].trades if t.order_id in ids]


def _iid_of(scenario):
    return {
        f"{r['raw_symbol'].decode()}.GLBX": int(r["instrument_id"])
        for r in scenario["darr"]
    }


def test_labels_schema_and_references(scenario):
    table = pq.read_table(scenario["dir"] / "labels.parquet")
    types = {f.name: str(f.type) for f in table.schema}
    assert (
        types["episode_id"] == "int64"
        and types["kind"] == "string"
        and types["side"] == "string"
    )
    assert (
        types["instrument_ids"] == "list<element: string>"
        and types["aggressor_order_ids"] == "list<element: uint64>"
    )
    assert (
        types["start_ns"] == types["end_ns"] == "int64"
        and types["notional_usd"] == "double"
    )
    assert types["straddle_side"] == "string"
    labels = scenario["labels"]
    kinds = collections.Counter(r["kind"] for r in labels)
    assert (
        kinds["institutional"] >= 2
        and kinds["mm_straddle"] >= 1
        and kinds["volume_noise"] >= 1
    )
    assert kinds == collections.Counter(
        {k: v for k, v in scenario["summary"]["episodes"].items() if v}
    )
    known = set(_iid_of(scenario))
    for r in labels:
        assert set(r["instrument_ids"]) <= known and r["instrument_ids"]
        assert r["start_ns"] <= r["end_ns"] and r["aggressor_order_ids"]
        assert r["side"] in (
            ("BUY", "SELL") if r["kind"] == "institutional" else ("NONE",)
        )
    # no two episodes overlap in time on the same instrument
    for a in labels:
        for b in labels:
            if a["episode_id"] < b["episode_id"] and set(a["instrument_ids"]) & set(
                b["instrument_ids"]
            ):
                assert a["end_ns"] < b["start_ns"] or b["end_ns"] < a["start_ns"]


BUCKET_NS = 300 * 10**9  # 5-minute clock buckets, as the naive reference detector uses


def _premium_by_leg_and_bucket(trades, iid_of, label) -> dict[tuple[str, int], float]:
    """USD premium of a label's trades per (instrument, 5-minute clock bucket)."""
    name = {iid_of[i]: i for i in label["instrument_ids"]}
    out: dict[tuple[str, int], float] = collections.defaultdict(float)
    for t in trades:
        out[(name[t.instrument_id], t.ts_event // BUCKET_NS)] += t.price * t.size * 20 / 1e9
    return out


def test_institutional_episodes_are_in_the_mbo(scenario):
    iid_of = _iid_of(scenario)
    sym = _by_symbol(scenario["darr"])
    inst = [r for r in scenario["labels"] if r["kind"] == "institutional"]
    swept = clusters = 0
    for r in inst:
        trades = _episode_trades(scenario, r)
        assert len(trades) >= 10
        want_side = "B" if r["side"] == "BUY" else "A"
        assert {t.side for t in trades} == {want_side}
        assert all(
            t.price == t.best_opposite for t in trades
        )  # at the then-best ask (bid)
        assert {t.instrument_id for t in trades} <= {
            iid_of[i] for i in r["instrument_ids"]
        }
        notional = sum(t.price * t.size for t in trades) * 20 / 1e9
        assert (
            notional == pytest.approx(r["notional_usd"], abs=1e-6)
            and r["notional_usd"] >= 3e6
        )
        assert (
            min(t.ts_event for t in trades) == r["start_ns"]
            and max(t.ts_event for t in trades) == r["end_ns"]
        )
        assert 60e9 * 0.5 <= r["end_ns"] - r["start_ns"] <= 16 * 60e9
        assert (r["direction"] == "BULLISH") == (
            (r["option_kinds"][0] == "CALL") == (r["side"] == "BUY")
        )
        if len(r["instrument_ids"]) > 1:
            _check_cluster(r, trades, iid_of, sym)
            clusters += 1
        per_oid = collections.Counter(t.order_id for t in trades)
        swept += sum(1 for n in per_oid.values() if n > 1)
        swept += sum(
            1
            for a, b in itertools.pairwise(trades)
            if b.instrument_id != a.instrument_id
            and b.ts_event - a.ts_event < 1_000_000
        )
    assert swept > 0, "no level or strike sweep in any institutional episode"
    # a cluster takes at most a third of a right's strikes: none in this 4-strike chain
    assert clusters == 0


def _check_cluster(r, trades, iid_of, sym) -> None:
    """A cluster episode: 2-3 adjacent strikes, one right and expiry, all of them traded; no
    strike with $1M of the episode's premium in any 5-minute clock bucket, >= $3M in total."""
    specs = [sym[i.removesuffix(".GLBX")] for i in r["instrument_ids"]]
    assert 2 <= len(specs) <= 3
    assert len({s["instrument_class"] for s in specs}) == 1
    assert len({int(s["expiration"]) for s in specs}) == 1
    strikes = sorted(int(s["strike_price"]) for s in specs)
    assert all(b - a == 25 * 10**9 for a, b in itertools.pairwise(strikes))  # adjacent
    assert {t.instrument_id for t in trades} == {iid_of[i] for i in r["instrument_ids"]}
    per_bucket = _premium_by_leg_and_bucket(trades, iid_of, r)
    assert max(per_bucket.values()) < 1e6, per_bucket
    assert sum(per_bucket.values()) == pytest.approx(r["notional_usd"]) and r["notional_usd"] >= 3e6


def _check_straddle(r, trades, iid_of, sym) -> None:
    """Both legs of one strike and expiry, the same aggressor side on both, balanced contracts,
    within 5 minutes, > $1M of each leg's premium inside one 5-minute clock bucket, the legs of
    each child order close together; not directional."""
    call, put = (sym[i.removesuffix(".GLBX")] for i in r["instrument_ids"])
    assert call["instrument_class"] == b"C" and put["instrument_class"] == b"P"
    assert (
        call["strike_price"] == put["strike_price"]
        and call["expiration"] == put["expiration"]
    )
    assert r["side"] == "NONE" and r["direction"] == "NONE" and r["drift_points"] == 0.0
    assert r["straddle_side"] in ("BUY", "SELL")
    assert r["end_ns"] - r["start_ns"] <= 5 * 60 * 10**9
    want = "B" if r["straddle_side"] == "BUY" else "A"
    assert {t.side for t in trades} == {want}  # both legs bought, or both sold
    sizes = {
        leg: sum(t.size for t in trades if t.instrument_id == iid_of[leg])
        for leg in r["instrument_ids"]
    }
    c, p = sizes.values()
    assert c > 0 and abs(c - p) <= max(2, 0.02 * max(c, p)), sizes
    assert (r["buy_size"] if want == "B" else r["sell_size"]) == c + p
    per_bucket = _premium_by_leg_and_bucket(trades, iid_of, r)
    for leg in r["instrument_ids"]:
        assert max(v for (i, _), v in per_bucket.items() if i == leg) > 1e6, per_bucket
    assert sum(per_bucket.values()) == pytest.approx(r["notional_usd"])
    # child orders hit both legs: mostly within milliseconds, always within seconds
    first_ts: dict[int, tuple[int, int]] = {}
    for t in trades:
        first_ts.setdefault(t.order_id, (t.instrument_id, t.ts_event))
    a, b = (
        np.array(sorted(ts for i, ts in first_ts.values() if i == iid_of[leg]))
        for leg in r["instrument_ids"]
    )
    gaps = np.array([np.abs(b - x).min() for x in a])
    assert (gaps <= 5_000_000).mean() >= 0.5 and (gaps <= 5 * 10**9).mean() >= 0.95
    if r["straddle_side"] == "BUY":
        assert r["vol_crush"] == 0.0


def test_mm_straddle_episodes_trade_both_legs_the_same_way_and_crush_vol_when_sold(
    scenario,
):
    iid_of = _iid_of(scenario)
    sym = _by_symbol(scenario["darr"])
    replay = scenario["replay"]
    straddles = [r for r in scenario["labels"] if r["kind"] == "mm_straddle"]
    assert straddles
    assert all(r["straddle_side"] == "NONE" for r in scenario["labels"] if r["kind"] != "mm_straddle")
    sold = 0
    for r in straddles:
        _check_straddle(r, _episode_trades(scenario, r), iid_of, sym)
        if r["straddle_side"] != "SELL":
            continue
        sold += 1

        def straddle_mid(ts: int, r: dict = r) -> float:
            total = 0.0
            for leg in r["instrument_ids"]:
                bid, ask = replay.quote_at(iid_of[leg], ts)
                total += (bid + ask) / 2e9  # index points
            return total

        # ATM vega of both legs x the crush; gamma/theta over a few minutes are far smaller
        years = (r["expiration_ns"] - r["start_ns"]) / (365 * 86_400e9)
        expected = 2 * 0.3989 * SMALL.underlying_price * years**0.5 * r["vol_crush"]
        drop = straddle_mid(r["start_ns"] - 1) - straddle_mid(r["end_ns"])
        assert r["vol_crush"] > 0.01 and drop > 0.3 * expected, (
            f"no vol crush: {drop:.2f} vs {expected:.2f}"
        )
    assert sold > 0


@pytest.mark.parametrize("seed", [8, 16])
def test_bought_straddles_and_clusters_in_a_wider_chain(tmp_path, seed):
    """9 strikes, 20 minutes: bought and sold straddles and cluster episodes, the same rules."""
    generate_scenario(tmp_path, replace(SMALL, seed=seed, strikes=9, minutes=20, rate=80.0))
    darr = db.DBNStore.from_file(tmp_path / "definition.dbn.zst").to_ndarray()
    arr = db.DBNStore.from_file(tmp_path / "mbo.dbn.zst").to_ndarray()
    arr = arr[arr["action"] == b"T"]
    trades_by_oid = collections.defaultdict(list)
    for rec in arr:
        trades_by_oid[int(rec["order_id"])].append(
            TradeInfo(0, int(rec["instrument_id"]), int(rec["order_id"]), int(rec["ts_event"]),
                      int(rec["price"]), int(rec["size"]), rec["side"].decode(), int(rec["price"]))
        )
    iid_of = {f"{r['raw_symbol'].decode()}.GLBX": int(r["instrument_id"]) for r in darr}
    sym = _by_symbol(darr)
    labels = pq.read_table(tmp_path / "labels.parquet").to_pylist()
    seen = collections.Counter()
    for r in labels:
        trades = [t for oid in r["aggressor_order_ids"] for t in trades_by_oid[oid]]
        assert sum(t.price * t.size for t in trades) * 20 / 1e9 == pytest.approx(r["notional_usd"])
        if r["kind"] == "mm_straddle":
            _check_straddle(r, trades, iid_of, sym)
            seen[r["straddle_side"]] += 1
        elif r["kind"] == "institutional" and len(r["instrument_ids"]) > 1:
            _check_cluster(r, trades, iid_of, sym)
            seen["cluster"] += 1
    assert seen["BUY"] and seen["SELL"] and seen["cluster"]


def test_volume_noise_is_balanced(scenario):
    noise = [r for r in scenario["labels"] if r["kind"] == "volume_noise"]
    assert noise
    for r in noise:
        trades = _episode_trades(scenario, r)
        buy = sum(t.size for t in trades if t.side == "B")
        sell = sum(t.size for t in trades if t.side == "A")
        assert buy > 0 and abs(buy - sell) <= 0.1 * (buy + sell)


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_informed_flow_moves_the_underlying(tmp_path, seed):
    """With a strong informed drift, the future moves in the institutional episode's direction."""
    cfg = replace(
        SMALL,
        seed=seed,
        strikes=2,
        minutes=10,
        rate=60.0,
        institutional=1,
        mm_straddle=0,
        volume_noise=0,
        informed_move_pct=1.0,
        informed_horizon_min=4.0,
        annual_vol=0.08,
    )
    generate_scenario(tmp_path, cfg)
    arr = db.DBNStore.from_file(tmp_path / "mbo.dbn.zst").to_ndarray()
    fut_id = int(
        next(
            r["instrument_id"]
            for r in db.DBNStore.from_file(tmp_path / "definition.dbn.zst").to_ndarray()
            if r["instrument_class"] == b"F"
        )
    )
    ft = arr[(arr["instrument_id"] == fut_id) & (arr["action"] == b"T")]
    ts, px = ft["ts_event"].astype(np.int64), ft["price"].astype(np.int64) / 1e9
    labels = pq.read_table(tmp_path / "labels.parquet").to_pylist()
    assert len(labels) == 1
    for r in labels:
        before = px[ts <= r["start_ns"]][-5:].mean()
        after = px[ts <= r["end_ns"] + 4 * 60 * 10**9][-5:].mean()
        move = after - before
        assert np.sign(move) == (1 if r["direction"] == "BULLISH" else -1), (
            r["direction"],
            move,
        )
