"""20-day per-instrument baselines read straight from the catalog's TradeTick Parquet files."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from nautilus_trader.model.currencies import USD
from nautilus_trader.model.data import TradeTick
from nautilus_trader.model.enums import AggressorSide, AssetClass, OptionKind
from nautilus_trader.model.identifiers import InstrumentId, Symbol, TradeId
from nautilus_trader.model.instruments import FuturesContract, OptionContract
from nautilus_trader.model.objects import Price, Quantity
from nautilus_trader.persistence.catalog.parquet import ParquetDataCatalog

from catalogs.ingest import ingest
from ifd.detection.baselines import (
    Baselines,
    baseline_path,
    build_baselines,
    decode_fixed,
    read_trades,
)
from ifd.detection.types import InstrumentInfo
from ifd.errors import IfdError
from ifd.scenario import ScenarioConfig, generate_scenario

SEC = 1_000_000_000
MIN = 60 * SEC
EXPIRY = int(dt.datetime(2026, 12, 18, 14, 30, tzinfo=dt.UTC).timestamp()) * SEC


def _at(day: str, hh: int, mm: int, ss: float = 0.0) -> int:
    d = dt.date.fromisoformat(day)
    base = int(dt.datetime(d.year, d.month, d.day, hh, mm, tzinfo=dt.UTC).timestamp()) * SEC
    return base + round(ss * SEC)


# --- a hand-made catalog -----------------------------------------------------------------------


def _future() -> FuturesContract:
    return FuturesContract(
        instrument_id=InstrumentId.from_str("NQZ6.GLBX"),
        raw_symbol=Symbol("NQZ6"),
        asset_class=AssetClass.INDEX,
        currency=USD,
        price_precision=2,
        price_increment=Price.from_str("0.25"),
        multiplier=Quantity.from_int(20),
        lot_size=Quantity.from_int(1),
        underlying="NQ",
        activation_ns=EXPIRY - 400 * 86_400 * SEC,
        expiration_ns=EXPIRY,
        ts_event=0,
        ts_init=0,
    )


def _option(kind: str, strike: int) -> OptionContract:
    letter = "C" if kind == "CALL" else "P"
    return OptionContract(
        instrument_id=InstrumentId.from_str(f"NQZ6 {letter}{strike}.GLBX"),
        raw_symbol=Symbol(f"NQZ6 {letter}{strike}"),
        asset_class=AssetClass.INDEX,
        currency=USD,
        price_precision=2,
        price_increment=Price.from_str("0.05"),
        multiplier=Quantity.from_int(20),
        lot_size=Quantity.from_int(1),
        underlying="NQZ6",
        option_kind=OptionKind.CALL if kind == "CALL" else OptionKind.PUT,
        strike_price=Price.from_str(f"{strike}.00"),
        activation_ns=EXPIRY - 400 * 86_400 * SEC,
        expiration_ns=EXPIRY,
        ts_event=0,
        ts_init=0,
    )


SIDES = {"B": AggressorSide.BUYER, "S": AggressorSide.SELLER, "N": AggressorSide.NO_AGGRESSOR}
_trade_ids = iter(range(1, 10**6))


def _tick(iid: str, ts: int, side: str, size: int, price: str) -> TradeTick:
    return TradeTick(
        InstrumentId.from_str(iid),
        Price.from_str(price),
        Quantity.from_int(size),
        SIDES[side],
        TradeId(str(next(_trade_ids))),
        ts,
        ts,
    )


FUT, C21000, C21025, P21000 = "NQZ6.GLBX", "NQZ6 C21000.GLBX", "NQZ6 C21025.GLBX", "NQZ6 P21000.GLBX"

# Day A (Tue 10 Nov): session 14:30:00 - 14:32:59 -> 1-minute windows 14:30, 14:31, 14:32.
DAY_A = [
    (FUT, _at("2026-11-10", 14, 30, 0), "B", 1, "21000.00"),
    (FUT, _at("2026-11-10", 14, 32, 59), "S", 1, "21010.00"),
    (C21000, _at("2026-11-10", 14, 30, 10), "B", 2, "100.00"),
    (C21000, _at("2026-11-10", 14, 30, 20), "S", 1, "99.50"),
    (C21000, _at("2026-11-10", 14, 31, 30), "N", 4, "100.25"),
    (C21000, _at("2026-11-10", 14, 32, 5), "B", 3, "101.00"),
    (C21025, _at("2026-11-10", 14, 31, 0), "S", 5, "80.00"),
]
# Day B (Wed 11 Nov): session 14:30:00 - 14:31:59 -> windows 14:30, 14:31.
DAY_B = [
    (FUT, _at("2026-11-11", 14, 30, 0), "B", 1, "21050.00"),
    (FUT, _at("2026-11-11", 14, 31, 59), "S", 1, "21060.00"),
    (C21000, _at("2026-11-11", 14, 30, 30), "B", 10, "120.00"),
    (C21025, _at("2026-11-11", 14, 31, 10), "B", 1, "90.00"),
]
# Day C (Thu 12 Nov): a huge print that must stay out of the baseline *for* 12 Nov.
DAY_C = [
    (FUT, _at("2026-11-12", 14, 30, 0), "B", 1, "21000.00"),
    (C21000, _at("2026-11-12", 14, 30, 30), "B", 1000, "50.00"),
]
DAY_D = [
    (FUT, _at("2026-11-13", 14, 30, 0), "B", 1, "21000.00"),
    (P21000, _at("2026-11-13", 14, 30, 30), "S", 7, "60.00"),
]


def _write_day(catalog: ParquetDataCatalog, rows) -> None:
    by_id: dict[str, list[TradeTick]] = {}
    for row in rows:
        by_id.setdefault(row[0], []).append(_tick(*row))
    for ticks in by_id.values():  # one file per instrument and day, as an ingest writes them
        catalog.write_data(sorted(ticks, key=lambda t: t.ts_init))


@pytest.fixture()
def tiny(tmp_path):
    root = tmp_path / "catalog"
    catalog = ParquetDataCatalog(str(root))
    catalog.write_data([_future(), _option("CALL", 21000), _option("CALL", 21025), _option("PUT", 21000)])
    for day in (DAY_A, DAY_B, DAY_C):
        _write_day(catalog, day)
    return root, catalog


def _info(iid: str, kind: str, strike: float, expiration_ns: int = EXPIRY) -> InstrumentInfo:
    return InstrumentInfo(iid, kind, strike, expiration_ns, "NQZ6", 20.0, 0.05)


def test_hand_computed_statistics(tiny):
    root, _ = tiny
    result = build_baselines(root, date="2026-11-12", window_ns=MIN)
    assert result.days_used == ["2026-11-10", "2026-11-11"]
    assert result.path == str(root / "baselines" / "baseline_2026-11-12_20d_60s.parquet")
    base = Baselines.load(result.path)
    own = base.instrument(C21000)
    # volumes per window: A [3, 4, 3], B [10, 0]; day C (1000 lots) is the baseline's own day
    assert own.source == "instrument" and own.days == 2 and own.window_ns == MIN
    assert own.volume_mean == pytest.approx(4.0)
    assert own.volume_std == pytest.approx(math.sqrt(13.5))  # squared deviations 1+0+1+36+16 over n-1=4
    assert own.volume_p50 == pytest.approx(3.0)
    assert own.volume_p90 == pytest.approx(7.6)  # sorted 0 3 3 4 10: 4 + 0.6 * 6
    assert own.volume_p99 == pytest.approx(9.76)
    # pressure: windows with sided volume only: 2/3, 1 (A); 1 (B); the no-aggressor window is out
    assert own.pressure_mean == pytest.approx(8 / 9)
    assert own.pressure_std == pytest.approx(math.sqrt(1 / 27))
    # net premium (x20): A 2*100*20 - 1*99.5*20 = 2010, 0, 3*101*20 = 6060; B 24000, 0
    assert own.net_premium_mean == pytest.approx(6414.0)
    assert own.net_premium_std == pytest.approx(math.sqrt(411_066_720 / 4))
    assert own.net_premium_abs_p99 == pytest.approx(6060 + 0.96 * (24000 - 6060))

    other = base.instrument(C21025)  # A [0, 5, 0], B [0, 1]; pressure 0 then 1
    assert other.volume_mean == pytest.approx(6 / 5)
    assert other.pressure_mean == pytest.approx(0.5) and other.pressure_std == pytest.approx(math.sqrt(0.5))
    assert other.net_premium_mean == pytest.approx((-8000 + 1800) / 5)
    fut = base.instrument(FUT)  # future: A [1, 0, 1], B [1, 1]
    assert fut.volume_mean == pytest.approx(0.8) and fut.days == 2
    assert base.instrument(P21000) is None  # never traded before 12 Nov

    # the cached day holds n_windows, sums and the per-window values
    daily = (
        pq.read_table(root / "baselines" / "daily" / "2026-11-10.parquet")
        .to_pandas()
        .set_index("instrument_id")
    )
    assert daily.loc[C21000, "n_windows"] == 3
    assert daily.loc[C21000, "volume_sum"] == 10 and daily.loc[C21000, "volume_sumsq"] == 34
    assert list(daily.loc[C21000, "volumes"]) == [3, 4, 3]
    assert list(daily.loc[C21000, "premiums"]) == [2010, 0, 6060]
    assert daily.loc[C21000, "underlying_price"] == 21005.0 and daily.loc[C21000, "strike_step"] == 25.0


def test_moneyness_fallback(tiny):
    root, _ = tiny
    build_baselines(root, date="2026-11-12", window_ns=MIN)
    base = Baselines.for_date(root, "2026-11-12", lookback=20, window_ns=MIN)
    assert base.min_days == 5
    # Day A: underlying 21005 (median of the future's trades), step 25:
    #   C21000 -> distance 0, C21025 -> distance 1; day B (21055): C21000 -> -2, C21025 -> -1.
    # DTE from 10/11 Nov to 18 Dec is 37-38 days: bucket 5 (31-92 days).
    new_strike = _info("NQZ6 C21050.GLBX", "CALL", 21050.0)
    stats = base.get(new_strike, underlying_price=21050.0)
    assert stats.source == "moneyness" and stats.instrument_id == "NQZ6 C21050.GLBX"
    assert stats.days == 1  # only day A had a call at distance 0
    assert stats.volume_mean == pytest.approx(10 / 3) and stats.volume_std == pytest.approx(math.sqrt(1 / 3))
    one_up = base.get(_info("NQZ6 C21100.GLBX", "CALL", 21100.0), underlying_price=21075.0)
    assert one_up.source == "moneyness" and one_up.volume_mean == pytest.approx(5 / 3)  # C21025 on day A
    # without a price: the newest history day's last underlying trade (21060) -> distance 2: no bucket
    assert base.reference_prices["NQZ6"] == 21060.0
    assert base.get(_info("NQZ6 C21100.GLBX", "CALL", 21100.0)) is None
    assert base.get(_info("NQZ6 C21000.GLBX", "CALL", 21010.0)).source == "moneyness"  # 21010 -> 0
    # no puts in history, a far strike, a near expiry: no bucket
    assert base.get(_info(P21000, "PUT", 21000.0), underlying_price=21000.0) is None
    assert base.get(_info("NQZ6 C30000.GLBX", "CALL", 30000.0), underlying_price=21000.0) is None
    weekly_exp = _at("2026-11-13", 21, 0)
    assert base.get(_info("QN2X6 C21000.GLBX", "CALL", 21000.0, weekly_exp), underlying_price=21000.0) is None
    # enough own days -> own stats; C21000 has 2 days
    assert base.get(_info(C21000, "CALL", 21000.0), 21000.0).source == "moneyness"
    lenient = Baselines.load(base.path, min_days=2)
    own = lenient.get(_info(C21000, "CALL", 21000.0), 21000.0)
    assert own.source == "instrument" and own.volume_mean == pytest.approx(4.0)
    assert lenient.get(_info(FUT, "FUT", 0.0)).source == "instrument"
    assert base.get(_info(FUT, "FUT", 0.0)) is None  # futures have no moneyness bucket


def test_incremental_cache(tiny):
    root, catalog = tiny
    first = build_baselines(root, window_ns=MIN)  # latest day: 12 Nov
    assert first.date == "2026-11-12"
    assert first.days_computed == ["2026-11-10", "2026-11-11"] and first.days_reused == []
    again = build_baselines(root, window_ns=MIN)
    assert again.days_computed == [] and again.days_reused == ["2026-11-10", "2026-11-11"]
    _write_day(catalog, DAY_D)  # a new day: 12 Nov joins the history of 13 Nov
    third = build_baselines(root, window_ns=MIN)
    assert third.date == "2026-11-13" and third.days_used == ["2026-11-10", "2026-11-11", "2026-11-12"]
    assert third.days_computed == ["2026-11-12"]
    base = Baselines.load(third.path)
    assert base.instrument(C21000).volume_p99 > 900  # the 1000-lot day is history now
    # the catalog gains a file for 11 Nov: that day (only) is recomputed
    _write_day(catalog, [(C21025, _at("2026-11-11", 14, 31, 40), "B", 9, "91.00")])
    fourth = build_baselines(root, window_ns=MIN)
    assert fourth.days_computed == ["2026-11-11"]
    daily = (
        pq.read_table(root / "baselines" / "daily" / "2026-11-11.parquet")
        .to_pandas()
        .set_index("instrument_id")
    )
    assert list(daily.loc[C21025, "volumes"]) == [0, 10]
    # another window size shares the day files; the first one stays cached
    five = build_baselines(root, window_ns=2 * MIN)
    assert sorted(five.days_computed) == ["2026-11-10", "2026-11-11", "2026-11-12"]
    assert build_baselines(root, window_ns=MIN).days_computed == []
    assert Path(five.path).name == "baseline_2026-11-13_20d_120s.parquet"


def test_lookback_limits_days(tiny):
    root, catalog = tiny
    _write_day(catalog, DAY_D)
    result = build_baselines(root, lookback=2, window_ns=MIN)
    assert result.days_used == ["2026-11-11", "2026-11-12"]
    assert result.days_computed == ["2026-11-11", "2026-11-12"]  # 10 Nov is not needed
    after = build_baselines(root, date="2026-11-20", lookback=1, window_ns=MIN)  # a date past the data
    assert after.days_used == ["2026-11-13"]
    assert Baselines.load(after.path).instrument(P21000).volume_mean == pytest.approx(7.0)


def test_errors(tiny, tmp_path):
    root, _ = tiny
    not_catalog = tmp_path / "photos"
    not_catalog.mkdir()
    (not_catalog / "a.jpg").write_bytes(b"x")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    empty = tmp_path / "empty"
    (empty / "data").mkdir(parents=True)
    cases = [
        (lambda: build_baselines(not_catalog), "not a NautilusTrader catalog"),
        (lambda: build_baselines(a_file), "not a catalog"),
        (lambda: build_baselines(tmp_path / "missing"), "no such catalog"),
        (lambda: build_baselines(empty), "no TradeTick data"),
        (lambda: build_baselines(root, date="2026-11-10"), "no trading day before 2026-11-10"),
        (lambda: build_baselines(root, date="2026-01-01"), "no trading day before"),
        (lambda: build_baselines(root, lookback=0), "lookback must be"),
        (lambda: build_baselines(root, date="yesterday"), "bad date"),
        (lambda: build_baselines(root, window_ns=0), "window_ns must be"),
        (lambda: Baselines.for_date(root, "2026-11-12", 20, MIN), "no baseline for 2026-11-12"),
        (lambda: Baselines.load(a_file), "not an ifd baseline file"),
        (lambda: Baselines.load(tmp_path / "nope.parquet"), "no such baseline file"),
    ]
    for call, message in cases:
        with pytest.raises(IfdError, match=message) as info:
            call()
        assert "\n" not in str(info.value)
    assert not (root / "baselines" / "baseline_2026-11-10_20d_300s.parquet").exists()


def test_decode_edge_values(tmp_path):
    """Negative prices and sizes above 2**64 / 10**16 (high word in use) decode exactly."""
    catalog = ParquetDataCatalog(str(tmp_path / "c"))
    ts = _at("2026-11-10", 14, 30)
    prices = ["-12.25", "0.05", "21000.75", "123456789.99"]
    sizes = [1, 1_843, 1_000_000, 7]
    ticks = [
        TradeTick(
            InstrumentId.from_str("X.GLBX"),
            Price.from_str(p),
            Quantity.from_int(s),
            AggressorSide.BUYER,
            TradeId(str(i)),
            ts + i,
            ts + i,
        )
        for i, (p, s) in enumerate(zip(prices, sizes, strict=True))
    ]
    catalog.write_data(ticks)
    [path] = (tmp_path / "c" / "data" / "trade_tick" / "X.GLBX").glob("*.parquet")
    decoded = read_trades(path)
    assert decoded["price"].tolist() == [float(Decimal(p)) for p in prices]
    assert decoded["size"].tolist() == [float(s) for s in sizes]
    raw = pq.read_table(path).column("price")
    assert decode_fixed(raw, 2).tolist() == [float(t.price.as_decimal()) for t in catalog.query(TradeTick)]


# --- generated sessions ------------------------------------------------------------------------

SCENARIO = ScenarioConfig(seed=31, strikes=3, expiries=1, minutes=12, rate=100.0, days=4)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("generated")
    summary = generate_scenario(out / "scenario", SCENARIO)
    catalog = out / "catalog"
    for entry in summary["history"]:  # each day's definition + MBO, oldest first
        ingest([entry["files"]["definition"], entry["files"]["mbo"]], catalog)
    return out, summary, catalog


def test_decoded_trades_equal_nautilus_query(generated):
    _, _, root = generated
    catalog = ParquetDataCatalog(str(root))
    files = sorted((root / "data" / "trade_tick").glob("*/*.parquet"))
    assert len(files) > 10
    for path in files[:: max(1, len(files) // 6)]:
        decoded = read_trades(path)
        ticks = [
            t
            for t in catalog.query(TradeTick, identifiers=[decoded["instrument_id"]])
            if decoded["ts_event"].min() <= t.ts_event <= decoded["ts_event"].max()
        ]
        assert len(ticks) == len(decoded["price"]) > 0
        assert decoded["price"].tolist() == [float(t.price.as_decimal()) for t in ticks]
        assert decoded["size"].tolist() == [float(t.size) for t in ticks]
        assert decoded["aggressor_side"].tolist() == [int(t.aggressor_side) for t in ticks]
        assert decoded["ts_event"].tolist() == [t.ts_event for t in ticks]
        np.testing.assert_allclose(decoded["price"], [t.price.as_double() for t in ticks], rtol=0, atol=1e-9)


def test_file_names_parse_like_nautilus(generated):
    from catalogs.layout import file_interval
    from catalogs.listing import INSTRUMENT_FOLDERS as LISTED
    from ifd.detection.baselines import INSTRUMENT_FOLDERS, parse_interval

    _, _, root = generated
    files = sorted((root / "data").glob("*/*/*.parquet"))
    assert len(files) > 30
    for path in files:
        assert parse_interval(path.name) == file_interval(path) is not None
    assert parse_interval("part-0.parquet") is None
    assert set(LISTED) <= set(INSTRUMENT_FOLDERS)


def test_generated_history_baseline(generated):
    _, summary, root = generated
    dates = [h["date"] for h in summary["history"]]
    result = build_baselines(root)  # latest day in the catalog: the last history day
    assert result.date == dates[-1] and result.days_used == dates[:-1]
    assert result.days_computed == dates[:-1]
    assert build_baselines(root).days_computed == []
    # the main day arrives: exactly one more day is computed, and it is the previous latest
    ingest([summary["files"]["definition"], summary["files"]["mbo"]], root)
    main = build_baselines(root)
    assert main.date == "2026-11-16" and main.days_used == dates
    assert main.days_computed == [dates[-1]] and main.days_reused == dates[:-1]
    base = Baselines.for_date(root, "2026-11-16", 20, 300 * SEC)
    assert base.days_used == dates and len(base) == main.instruments
    # 12 minutes at 5-minute clock buckets: 3 windows a day (14:30, 14:35, 14:40)
    fut = base.instrument("NQZ6.GLBX")
    assert fut.days == 3 and fut.volume_mean > 0 and 0.3 < fut.pressure_mean < 0.7
    # every option of the main day gets stats, own or by moneyness (strikes re-centre daily)
    from nautilus_trader.adapters.databento.loaders import DatabentoDataLoader

    instruments = DatabentoDataLoader().from_dbn_file(summary["files"]["definition"], as_legacy_cython=True)
    sources = set()
    for inst in instruments:
        if not hasattr(inst, "option_kind"):
            continue
        info = InstrumentInfo(
            inst.id.value,
            "CALL" if int(inst.option_kind) == 1 else "PUT",
            float(inst.strike_price),
            inst.expiration_ns,
            str(inst.underlying),
            float(inst.multiplier),
            float(inst.price_increment),
        )
        stats = base.get(info, underlying_price=summary["underlying_start"])
        assert stats is not None and stats.volume_mean > 0 and stats.volume_p99 >= stats.volume_p50
        sources.add(stats.source)
        own = Baselines.load(base.path, min_days=1).get(info, summary["underlying_start"])
        assert own is not None
    assert sources == {"moneyness"}  # 3 days of history < min_days=5
    assert baseline_path(root, "2026-11-16", 20, 300 * SEC) == Path(main.path)


def test_group_stats_match_numpy():
    from ifd.detection.baselines import _group_stats

    rng = np.random.default_rng(5)
    group = rng.integers(0, 6, 400)
    group = group[group != 3]  # group 3 stays empty
    values = rng.normal(10, 4, len(group)).round(1)
    stats = _group_stats(group, values, 7, (0.5, 0.9, 0.99))
    for g in range(7):
        sel = values[group == g]
        if len(sel) == 0:
            assert stats["count"][g] == 0 and math.isnan(stats["q0.5"][g])
            continue
        assert stats["count"][g] == len(sel)
        assert stats["mean"][g] == pytest.approx(sel.mean())
        assert stats["std"][g] == pytest.approx(sel.std(ddof=1))
        for q in (0.5, 0.9, 0.99):
            assert stats[f"q{q}"][g] == pytest.approx(np.percentile(sel, q * 100))


def test_listed_instrument_without_trades_counts_zero_windows(tiny):
    """Book or quote data on a day makes an instrument present: its windows count as zero volume."""
    from nautilus_trader.model.data import QuoteTick

    root, catalog = tiny
    ts = _at("2026-11-11", 14, 30, 45)
    quote = QuoteTick(
        InstrumentId.from_str(P21000),
        Price.from_str("70.00"),
        Price.from_str("70.50"),
        Quantity.from_int(5),
        Quantity.from_int(5),
        ts,
        ts,
    )
    catalog.write_data([quote])
    base = Baselines.load(build_baselines(root, date="2026-11-12", window_ns=MIN).path, min_days=1)
    put = base.instrument(P21000)
    assert put.days == 1 and put.volume_mean == 0.0 and put.volume_p99 == 0.0
    assert math.isnan(put.pressure_mean) and put.net_premium_abs_p99 == 0.0
    daily = pq.read_table(root / "baselines" / "daily" / "2026-11-11.parquet").to_pandas().set_index("instrument_id")
    assert list(daily.loc[P21000, "volumes"]) == [0, 0] and daily.loc[P21000, "trades"] == 0
    # a put now exists in the history: the moneyness bucket (PUT, -2, 5) of 11 Nov (underlying 21055)
    stats = base.get(_info("NQZ6 P21100.GLBX", "PUT", 21100.0), underlying_price=21150.0)
    assert stats.source == "moneyness" and stats.volume_mean == 0.0
