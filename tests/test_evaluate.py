"""``ifd evaluate`` on hand-built inputs with known answers: a small catalog written with
NautilusTrader's ``ParquetDataCatalog``, hand-made signals and labels, a positions report."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from nautilus_trader.model.currencies import USD
from nautilus_trader.model.data import TradeTick
from nautilus_trader.model.enums import AggressorSide
from nautilus_trader.model.enums import AssetClass
from nautilus_trader.model.enums import OptionKind
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.model.identifiers import Symbol
from nautilus_trader.model.identifiers import TradeId
from nautilus_trader.model.instruments import FuturesContract
from nautilus_trader.model.instruments import OptionContract
from nautilus_trader.model.objects import Price
from nautilus_trader.model.objects import Quantity
from nautilus_trader.persistence.catalog.parquet import ParquetDataCatalog

from ifd.errors import IfdError
from ifd.evaluation.forward import forward_accuracy
from ifd.evaluation.forward import future_prices
from ifd.evaluation.naive import naive_signals
from ifd.evaluation.report import aggregate
from ifd.evaluation.report import evaluate_run
from ifd.evaluation.report import render_aggregate_markdown
from ifd.evaluation.report import write_evaluation
from ifd.evaluation.report import write_study
from ifd.evaluation.ticks import catalog_instruments
from ifd.evaluation.ticks import decode_fixed_point
from ifd.evaluation.ticks import read_trades

SEC = 1_000_000_000
MIN = 60 * SEC
T0 = 1_794_839_400 * SEC  # 2026-11-16 14:30:00 UTC, a 5-minute boundary
FUT = "NQZ6.GLBX"
C21000 = "NQZ6 C21000.GLBX"
P21000 = "NQZ6 P21000.GLBX"
C21050 = "NQZ6 C21050.GLBX"
P21050 = "NQZ6 P21050.GLBX"
BUYER, SELLER, NONE = AggressorSide.BUYER, AggressorSide.SELLER, AggressorSide.NO_AGGRESSOR


def future_price(minute: int) -> float:
    """The future's path: up 1 point a minute to minute 10, flat to 20, down 1 a minute to 30."""
    if minute <= 10:
        return 21000.25 + minute
    if minute <= 20:
        return 21010.25
    return 21010.25 - (minute - 20)


# (instrument, seconds after T0, price, size, aggressor)
OPTION_TRADES = [
    # C21000 at 100.00 ($2,000 premium per contract). Bucket 0: +400k, -200k, +600k, +200k
    # reaches exactly $1M at T0+40s -> BUY; later trades in the bucket add no signal.
    (C21000, 10, "100.00", 200, BUYER),
    (C21000, 20, "100.00", 100, SELLER),
    (C21000, 30, "100.00", 300, BUYER),
    (C21000, 40, "100.00", 100, BUYER),
    (C21000, 50, "100.00", 500, BUYER),
    # Bucket 1: -600k, a trade without aggressor (ignored), -500k -> -1.1M at T0+330s: SELL.
    (C21000, 310, "100.00", 300, SELLER),
    (C21000, 320, "100.00", 1000, NONE),
    (C21000, 330, "100.00", 250, SELLER),
    # P21000 at 12.35 ($247 per contract): +617,500 at the end of bucket 0 and again at the
    # start of bucket 1: the buckets reset, no signal. Bucket 2: +1,000,103 at T0+610s: BUY.
    (P21000, 290, "12.35", 2500, BUYER),
    (P21000, 301, "12.35", 2500, BUYER),
    (P21000, 302, "12.35", 10000, NONE),
    (P21000, 610, "12.35", 4049, BUYER),
    # C21050 bucket 3: +1M at T0+910s (BUY), then -2M: once per bucket, no second signal.
    (C21050, 910, "100.00", 500, BUYER),
    (C21050, 920, "100.00", 1500, SELLER),
]
NAIVE_EXPECTED = [
    (T0 + 40 * SEC, C21000, "BUY", 1_000_000.0),
    (T0 + 330 * SEC, C21000, "SELL", 1_100_000.0),
    (T0 + 610 * SEC, P21000, "BUY", 1_000_103.0),
    (T0 + 910 * SEC, C21050, "BUY", 1_000_000.0),
]

LABELS = pd.DataFrame(
    {
        "episode_id": [10, 11, 12, 13],
        "kind": ["institutional", "institutional", "mm_straddle", "volume_noise"],
        "instrument_ids": [[C21000], [P21000], [C21050, P21050], [C21000]],
        "side": ["BUY", "SELL", "NONE", "NONE"],
        "start_ns": [T0 + 5 * SEC, T0 + 1000 * SEC, T0 + 1200 * SEC, T0 + 300 * SEC],
        "end_ns": [T0 + 60 * SEC, T0 + 1100 * SEC, T0 + 1300 * SEC, T0 + 400 * SEC],
        "notional_usd": [3e6, 3e6, 2e6, 5e5],
    },
)

# ifd_v1 signals: (seconds after T0, instrument, option kind, side, strategy, mode) and what
# each is under a 60 s tolerance.
V1_SIGNALS = [
    (30, C21000, "CALL", "BUY", "IfdV1-001", "shadow"),  # hit episode 10 (delay 25 s)
    (100, C21000, "CALL", "BUY", "IfdV1-001", "shadow"),  # hit 10: after its end, inside the tolerance
    (121, C21000, "CALL", "BUY", "IfdV1-001", "shadow"),  # 1 s past end + tolerance: unlabeled
    (50, C21000, "CALL", "SELL", "IfdV1-001", "shadow"),  # episode 10, wrong side
    (1250, P21050, "PUT", "SELL", "IfdV1-001", "shadow"),  # on the mm straddle
    (350, C21000, "CALL", "BUY", "IfdV1-001", "shadow"),  # on the volume noise
    (1050, P21000, "PUT", "SELL", "IfdV1-001", "shadow"),  # hit episode 11 (delay 50 s)
    (30, C21000, "CALL", "BUY", "IfdV1-002", "trade"),  # the first again, from a second strategy
]

POSITIONS_HEADER = (
    "position_id,trader_id,strategy_id,instrument_id,account_id,opening_order_id,closing_order_id,entry,side,"
    "quantity,peak_qty,ts_init,ts_opened,ts_last,ts_closed,duration_ns,avg_px_open,avg_px_close,commissions,"
    "realized_return,realized_pnl,is_snapshot"
)


def _position(pid: str, strategy: str, side: str, pnl: str, snapshot: bool, closed: bool = True) -> str:
    ts_closed = "2026-11-16 14:30:22.012269983+00:00" if closed else ""
    closing = "O-2" if closed else ""
    return (
        f"{pid},IFD-BACKTEST,{strategy},{FUT},GLBX-001,O-1,{closing},BUY,{side},0,1,1794839411070738926,"
        f"2026-11-16 14:30:11.070738926+00:00,1794839422012269983,{ts_closed},10941531057,21000.25,21006.75,"
        f"['0.00 USD'],0.00031,{pnl},{snapshot}"
    )


def _instruments() -> list:
    common = {
        "asset_class": AssetClass.INDEX,
        "currency": USD,
        "price_precision": 2,
        "multiplier": Quantity.from_int(20),
        "lot_size": Quantity.from_int(1),
        "activation_ns": 0,
        "expiration_ns": T0 + 30 * 24 * 3600 * SEC,
        "ts_event": 0,
        "ts_init": 0,
    }
    out = [
        FuturesContract(
            instrument_id=InstrumentId.from_str(FUT),
            raw_symbol=Symbol("NQZ6"),
            price_increment=Price.from_str("0.25"),
            underlying="NQ",
            **common,
        ),
    ]
    for iid in (C21000, P21000, C21050, P21050):
        symbol = iid.removesuffix(".GLBX")
        out.append(
            OptionContract(
                instrument_id=InstrumentId.from_str(iid),
                raw_symbol=Symbol(symbol),
                price_increment=Price.from_str("0.05"),
                underlying="NQZ6",
                option_kind=OptionKind.CALL if " C" in iid else OptionKind.PUT,
                strike_price=Price.from_str(symbol.split(" ")[1][1:] + ".00"),
                **common,
            ),
        )
    return out


def _tick(iid: str, ts: int, price: str, size: int, side: AggressorSide, n: int) -> TradeTick:
    return TradeTick(
        InstrumentId.from_str(iid),
        Price.from_str(price),
        Quantity.from_int(size),
        side,
        TradeId(f"T-{n}"),
        ts,
        ts,
    )


def build_catalog(root: Path) -> Path:
    """The hand-built catalog: the future (one buyer-initiated trade a minute on the path
    above; in premium terms far above $1M per bucket, so a naive detector that counted futures
    would fire) and the option trades above."""
    catalog = ParquetDataCatalog(str(root))
    catalog.write_data(_instruments())
    n = 0
    by_instrument: dict[str, list[TradeTick]] = {}
    for minute in range(31):
        n += 1
        by_instrument.setdefault(FUT, []).append(
            _tick(FUT, T0 + minute * MIN, f"{future_price(minute):.2f}", 1, BUYER, n)
        )
    for iid, seconds, price, size, side in OPTION_TRADES:
        n += 1
        by_instrument.setdefault(iid, []).append(_tick(iid, T0 + seconds * SEC, price, size, side, n))
    for ticks in by_instrument.values():
        catalog.write_data(ticks)
    return root


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    return build_catalog(tmp_path_factory.mktemp("hand") / "catalog")


def _signals_frame(rows: list[tuple], algorithm: str = "ifd_v1") -> pd.DataFrame:
    from ifd.detection.types import BUY, SELL, bias_of

    return pd.DataFrame(
        {
            "ts_event": pd.array([T0 + s * SEC for s, *_ in rows], dtype="int64"),
            "ts_signal": pd.array([T0 + s * SEC + 1000 for s, *_ in rows], dtype="int64"),
            "algorithm": [algorithm] * len(rows),
            "instrument_id": [r[1] for r in rows],
            "underlying": ["NQZ6"] * len(rows),
            "strike": [float(r[1].split(" ")[1][1:6]) for r in rows],
            "option_kind": [r[2] for r in rows],
            "side": [r[3] for r in rows],
            "bias": [bias_of(r[2], BUY if r[3] == "BUY" else SELL) for r in rows],
            "confidence": [0.8] * len(rows),
            "notional_usd": [1e6] * len(rows),
            "window_start_ns": pd.array([T0] * len(rows), dtype="int64"),
            "reasons": ["test"] * len(rows),
            "strategy_id": [r[4] for r in rows],
            "mode": [r[5] for r in rows],
        },
    )


def make_run(
    folder: Path,
    catalog: Path | str,
    signals: pd.DataFrame | None,
    positions: list[str] | None = None,
    strategies: dict | None = None,
) -> Path:
    folder.mkdir(parents=True)
    summary = {
        "name": "hand",
        "catalog": str(catalog),
        "strategies": strategies
        if strategies is not None
        else {
            "IfdV1-001": {"class": "X", "orders": 0, "results": {"algorithm": "ifd_v1"}},
            "IfdV1-002": {"class": "X", "orders": 0, "results": {"algorithm": "ifd_v1"}},
            "IfdV3-001": {"class": "X", "orders": 6, "results": {"algorithm": "ifd_v3"}},
            "Other-001": {"class": "X", "orders": 2, "results": {}},
        },
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    if signals is not None:
        signals.to_parquet(folder / "signals.parquet", index=False)
    (folder / "positions.csv").write_text("\n".join([POSITIONS_HEADER, *positions]) + "\n" if positions else "\n")
    for name in ("orders", "fills", "account"):
        (folder / f"{name}.csv").write_text("\n")
    return folder


POSITIONS = [
    _position("P-1", "IfdV3-001", "FLAT", "130.00 USD", True),
    _position("P-2", "IfdV3-001", "FLAT", "25.00 USD", True),
    _position("P-3", "IfdV3-001", "FLAT", "-75.00 USD", True),
    _position("P-4", "IfdV3-001", "LONG", "0.00 USD", False, closed=False),
    _position("P-5", "Other-001", "FLAT", "-10.00 USD", False),
]


@pytest.fixture
def labels_path(tmp_path) -> Path:
    path = tmp_path / "labels.parquet"
    LABELS.to_parquet(path, index=False)
    return path


# -- decoding ---------------------------------------------------------------------------------


def test_fixed_point_decoding_equals_nautilus_query(catalog):
    mine = read_trades(catalog)
    ticks = ParquetDataCatalog(str(catalog)).query(TradeTick)
    theirs = pd.DataFrame(
        {
            "instrument_id": [t.instrument_id.value for t in ticks],
            "ts_event": [t.ts_event for t in ticks],
            "price": [t.price.as_double() for t in ticks],
            "size": [t.size.as_double() for t in ticks],
            "aggressor_side": [int(t.aggressor_side) for t in ticks],
        },
    )
    key = ["instrument_id", "ts_event"]
    mine = mine.sort_values(key, kind="stable", ignore_index=True)
    theirs = theirs.sort_values(key, kind="stable", ignore_index=True)
    assert len(mine) == len(theirs) == 31 + len(OPTION_TRADES)
    assert mine["instrument_id"].tolist() == theirs["instrument_id"].tolist()
    assert mine["ts_event"].tolist() == theirs["ts_event"].tolist()
    assert mine["price"].tolist() == theirs["price"].tolist()  # exact, 21,000-point prices use the high word
    assert mine["size"].tolist() == theirs["size"].tolist()
    assert mine["aggressor_side"].tolist() == theirs["aggressor_side"].tolist()
    assert float(mine.loc[mine["instrument_id"] == P21000, "price"].iloc[0]) == 12.35


def test_fixed_point_decoding_negative_offsets_and_64_bit():
    values = [-1.5, 0.0, 21000.25, 3.0e5]
    raw16 = b"".join(int(Decimal(str(v)) * 10**16).to_bytes(16, "little", signed=True) for v in values)
    array = pa.Array.from_buffers(pa.binary(16), len(values), [None, pa.py_buffer(raw16)])
    assert decode_fixed_point(array, 2).tolist() == values
    assert decode_fixed_point(array.slice(2), 2).tolist() == values[2:]  # an offset into the buffer
    raw8 = b"".join(int(Decimal(str(v)) * 10**9).to_bytes(8, "little", signed=True) for v in values)
    array8 = pa.Array.from_buffers(pa.binary(8), len(values), [None, pa.py_buffer(raw8)])
    assert decode_fixed_point(array8, 2).tolist() == values
    with pytest.raises(ValueError):
        decode_fixed_point(pa.array([1, 2]))


# -- the naive detector -----------------------------------------------------------------------


def test_naive_detector_buckets_and_crossings(catalog):
    signals = naive_signals(read_trades(catalog), catalog_instruments(catalog))
    got = list(
        zip(
            signals["ts_event"],
            signals["instrument_id"],
            signals["side"],
            signals["notional_usd"].round(6),
            strict=True,
        )
    )
    assert got == NAIVE_EXPECTED
    assert signals["bias"].tolist() == ["BULLISH", "BEARISH", "BEARISH", "BULLISH"]
    assert signals["window_start_ns"].tolist() == [T0, T0 + 300 * SEC, T0 + 600 * SEC, T0 + 900 * SEC]
    assert set(signals["underlying"]) == {"NQZ6"}


def test_naive_detector_threshold_is_reached_not_exceeded(catalog):
    # Just above the first crossing's running sum, C21000 bucket 0 fires one trade later.
    signals = naive_signals(read_trades(catalog), catalog_instruments(catalog), threshold_usd=1_000_000.01)
    first = signals[signals["instrument_id"] == C21000].iloc[0]
    assert (first["ts_event"], first["notional_usd"]) == (T0 + 50 * SEC, 2_000_000.0)


# -- forward moves ----------------------------------------------------------------------------


def test_forward_accuracy_on_a_known_path(catalog):
    prices = future_prices(read_trades(catalog, [FUT]), catalog_instruments(catalog))
    signals = pd.DataFrame(
        {
            "ts_event": [
                T0 + MIN + SEC,
                T0 + 2 * MIN + SEC,
                T0 + 12 * MIN + SEC,
                T0 + 21 * MIN + SEC,
                T0 - 10 * SEC,
                T0 + 5 * MIN,
            ],
            "underlying": ["NQZ6"] * 5 + ["NQH7"],  # the last one's future is not in the catalog
            "bias": ["BULLISH", "BEARISH", "BULLISH", "BEARISH", "BULLISH", "BULLISH"],
        },
    )
    out = forward_accuracy(signals, prices, (5, 15))
    # 5 min: up (right), up (wrong), flat (zero move), down (right); before the first trade; no future.
    assert out["5m"] == {"minutes": 5, "accuracy": 0.6667, "count": 3, "correct": 2, "zero_move": 1, "unavailable": 2}
    # 15 min: up (right), up (wrong), down (wrong); past the last trade; before the first; no future.
    assert out["15m"] == {"minutes": 15, "accuracy": 0.3333, "count": 3, "correct": 1, "zero_move": 0, "unavailable": 3}


def test_forward_price_is_last_trade_at_or_before(catalog):
    prices = future_prices(read_trades(catalog, [FUT]), catalog_instruments(catalog))
    # Exactly on a trade, that trade is the price: T0+10min (21010.25) -> T0+20min (21010.25) is
    # no move (the trades just before, at minutes 9 and 19, would give a move up).
    signals = pd.DataFrame({"ts_event": [T0 + 10 * MIN], "underlying": [FUT], "bias": ["BULLISH"]})
    assert forward_accuracy(signals, prices, (10,))["10m"] == {
        "minutes": 10,
        "accuracy": None,
        "count": 0,
        "correct": 0,
        "zero_move": 1,
        "unavailable": 0,
    }
    # The horizon ending exactly on the last trade still has a price; 1 ns later it has none.
    signals = pd.DataFrame(
        {"ts_event": [T0 + 20 * MIN, T0 + 20 * MIN + 1], "underlying": ["NQZ6"] * 2, "bias": ["BEARISH"] * 2}
    )
    assert forward_accuracy(signals, prices, (10,))["10m"] == {
        "minutes": 10,
        "accuracy": 1.0,
        "count": 1,
        "correct": 1,
        "zero_move": 0,
        "unavailable": 1,
    }


# -- scoring a run ----------------------------------------------------------------------------


def test_evaluate_run_known_scores(catalog, labels_path, tmp_path):
    run = make_run(tmp_path / "run", catalog, _signals_frame(V1_SIGNALS), POSITIONS)
    result = evaluate_run(run, labels_path)

    assert result["algorithms"] == ["ifd_v1", "ifd_v3", "naive_net_premium"]
    assert result["tolerance_s"] == 60.0
    assert "ts_event lies between the episode's start and its end plus a tolerance" in result["matching_rule"]
    assert result["episodes"] == {"institutional": 2, "mm_straddle": 1, "volume_noise": 1}

    v1 = result["ifd_v1"]
    assert (v1["signals"], v1["true_positive_signals"], v1["episodes_detected"], v1["episodes"]) == (7, 3, 2, 2)
    assert (v1["precision"], v1["recall"], v1["f1"]) == (0.4286, 1.0, 0.6)
    assert v1["false_positives_by_cause"] == {
        "mm_straddle": 1,
        "volume_noise": 1,
        "institutional_wrong_side": 1,
        "unlabeled": 1,
    }
    assert v1["median_detection_delay_s"] == 37.5
    assert v1["detection_delays_s"] == [25.0, 50.0]
    assert (v1["signals_raw"], v1["duplicate_signals"]) == (8, 1)
    assert v1["signals_by_mode"] == {"shadow": 7, "trade": 1}
    assert v1["signals_by_strategy"] == {"IfdV1-001": 7, "IfdV1-002": 1}
    assert set(v1["forward_accuracy"]) == {"5m", "15m"}
    assert v1["trading"] == {}  # its strategies placed no orders

    v3 = result["ifd_v3"]  # named by a strategy, no signals
    assert (v3["signals"], v3["precision"], v3["recall"], v3["f1"]) == (0, 0.0, 0.0, 0.0)
    assert v3["median_detection_delay_s"] is None

    naive = result["naive_net_premium"]
    assert (naive["signals"], naive["true_positive_signals"], naive["episodes_detected"]) == (4, 1, 1)
    assert (naive["precision"], naive["recall"], naive["f1"]) == (0.25, 0.5, 0.3333)
    assert naive["false_positives_by_cause"] == {
        "mm_straddle": 0,
        "volume_noise": 1,
        "institutional_wrong_side": 0,
        "unlabeled": 2,
    }
    assert naive["detection_delays_s"] == [35.0]
    # Naive biases, 5 / 15 min ahead: BULLISH at 0:40 (up: right / up: right), BEARISH at 5:30
    # (up: wrong / up: wrong), BEARISH at 10:10 (flat: zero / down: right), BULLISH at 15:10
    # (flat: zero / 30:10 is past the future's last trade: unavailable).
    assert naive["forward_accuracy"]["5m"] == {
        "minutes": 5,
        "accuracy": 0.5,
        "count": 2,
        "correct": 1,
        "zero_move": 2,
        "unavailable": 0,
    }
    assert naive["forward_accuracy"]["15m"] == {
        "minutes": 15,
        "accuracy": 0.6667,
        "count": 3,
        "correct": 2,
        "zero_move": 0,
        "unavailable": 1,
    }

    trading = v3["trading"]["IfdV3-001"]
    assert trading["orders"] == 6
    assert (trading["positions"], trading["open_positions"]) == (3, 1)
    assert trading["win_rate"] == 0.6667
    assert trading["win_loss_ratio"] == round(77.5 / 75.0, 4)
    assert (trading["avg_winner_usd"], trading["avg_loser_usd"]) == (77.5, -75.0)
    assert trading["total_realized_pnl_usd"] == 80.0
    assert trading["expectancy_usd"] == 26.67
    assert trading["profit_factor"] == round(155 / 75, 4)
    # A strategy with no algorithm stays in the run-wide table only.
    assert set(result["trading"]) == {"IfdV3-001", "Other-001"}
    assert result["trading"]["Other-001"]["total_realized_pnl_usd"] == -10.0
    assert result["trading"]["Other-001"]["win_rate"] == 0.0


def test_tolerance_changes_the_matches(catalog, labels_path, tmp_path):
    run = make_run(tmp_path / "run", catalog, _signals_frame(V1_SIGNALS))
    v1 = evaluate_run(run, labels_path, tolerance_s=0)["ifd_v1"]
    # The signal 40 s after episode 10's end is no longer a hit, and no longer on the episode.
    assert (v1["true_positive_signals"], v1["precision"]) == (2, 0.2857)
    assert v1["false_positives_by_cause"]["unlabeled"] == 2
    assert v1["tolerance_s"] == 0.0


def test_written_evaluation_files(catalog, labels_path, tmp_path):
    run = make_run(tmp_path / "run", catalog, _signals_frame(V1_SIGNALS), POSITIONS)
    result = evaluate_run(run, labels_path)
    json_path, md_path = write_evaluation(run, result)
    assert (json_path, md_path) == (run / "evaluation.json", run / "evaluation.md")
    assert json.loads(json_path.read_text()) == result
    md = md_path.read_text()
    assert "| `ifd_v1` | 0.429 | 1.000 | 0.600 | 7 | 2 / 2 | 1 | 1 | 1 | 1 | 37.5 |" in md
    assert "| `ifd_v3` | 0.000 | 0.000 | 0.000 | 0 | 0 / 2 |" in md
    assert (
        "| `naive_net_premium` | 0.250 | 0.500 | 0.333 | 4 | 1 / 2 | 0 | 1 | 0 | 2 | 35.0 | 0.500 (2) | 0.667 (3) |"
        in md
    )
    assert "## Matching rule" in md and result["matching_rule"] in md
    assert "| `IfdV3-001` | ifd_v3 | 6 | 3 | 0.667 | 1.033 | 77.50 | -75.00 | 2.067 | 80.00 |" in md
    assert not list(run.glob(".*.tmp"))


def test_zero_signals_is_valid(catalog, labels_path, tmp_path):
    empty = _signals_frame(V1_SIGNALS).iloc[0:0]
    run = make_run(
        tmp_path / "run", catalog, empty, strategies={"IfdV1-001": {"orders": 0, "results": {"algorithm": "ifd_v1"}}}
    )
    result = evaluate_run(run, labels_path)
    assert result["algorithms"] == ["ifd_v1", "naive_net_premium"]
    assert (result["ifd_v1"]["signals"], result["ifd_v1"]["precision"], result["ifd_v1"]["recall"]) == (0, 0.0, 0.0)
    assert result["ifd_v1"]["forward_accuracy"]["5m"]["accuracy"] is None
    assert result["trading"] == {}
    write_evaluation(run, result)
    assert "## Trading" not in (run / "evaluation.md").read_text()


def test_catalog_override_and_relative_catalog(catalog, labels_path, tmp_path, monkeypatch):
    run = make_run(tmp_path / "run", "no/such/catalog", _signals_frame(V1_SIGNALS))
    assert evaluate_run(run, labels_path, catalog=catalog)["catalog"] == str(catalog)
    monkeypatch.chdir(catalog.parent)
    run2 = make_run(tmp_path / "run2", catalog.name, _signals_frame(V1_SIGNALS))
    assert evaluate_run(run2, labels_path)["naive_net_premium"]["signals"] == 4


# -- multi-seed study -------------------------------------------------------------------------


def test_aggregate_pools_counts(catalog, labels_path, tmp_path):
    one = evaluate_run(make_run(tmp_path / "a", catalog, _signals_frame(V1_SIGNALS), POSITIONS), labels_path)
    # A second run: only the two first hits and the unlabeled signal.
    two = evaluate_run(make_run(tmp_path / "b", catalog, _signals_frame(V1_SIGNALS[:3]), POSITIONS), labels_path)
    assert (two["ifd_v1"]["precision"], two["ifd_v1"]["recall"]) == (0.6667, 0.5)
    one["seed"], two["seed"] = 1, 2
    study = aggregate([one, two])

    v1 = study["ifd_v1"]
    assert (v1["signals"], v1["true_positive_signals"], v1["episodes"], v1["episodes_detected"]) == (10, 5, 4, 3)
    assert (v1["precision"], v1["recall"]) == (0.5, 0.75)
    assert v1["f1"] == 0.6
    assert v1["false_positives_by_cause"]["unlabeled"] == 2
    assert v1["detection_delays_s"] == [25.0, 50.0, 25.0]
    assert v1["median_detection_delay_s"] == 25.0
    assert v1["forward_accuracy"]["5m"]["count"] == (
        one["ifd_v1"]["forward_accuracy"]["5m"]["count"] + two["ifd_v1"]["forward_accuracy"]["5m"]["count"]
    )
    assert v1["f1_per_run_mean"] == round((0.6 + two["ifd_v1"]["f1"]) / 2, 4)
    assert study["naive_net_premium"]["signals"] == 8
    assert study["ifd_v3"]["trading"]["positions"] == 6
    assert study["ifd_v3"]["trading"]["win_rate"] == 0.6667
    assert study["ifd_v3"]["trading"]["total_realized_pnl_usd"] == 160.0
    assert [row["seed"] for row in study["per_run"]] == [1, 2]
    assert study["per_run"][1]["ifd_v1"]["precision"] == 0.6667

    md = render_aggregate_markdown(study)
    assert "| `ifd_v1` | 0.500 | 0.750 | 0.600 | 10 | 3 / 4 |" in md
    assert "| seed 2 | 0.667 / 0.500 / 0.571 |" in md
    assert "| `ifd_v3` | 6 | 0.667 | 1.033 | 77.50 | -75.00 | 2.067 | 160.00 |" in md
    json_path, md_path = write_study(tmp_path / "study", study)
    assert json.loads(json_path.read_text()) == study and md_path.read_text() == md

    with pytest.raises(IfdError, match="different tolerances"):
        aggregate([one, {**two, "tolerance_s": 30.0}])
    with pytest.raises(IfdError, match="no evaluation results"):
        aggregate([])


# -- errors -----------------------------------------------------------------------------------


def _error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_missing_run_folder(labels_path, tmp_path):
    with pytest.raises(IfdError) as excinfo:
        evaluate_run(tmp_path / "nope", labels_path)
    assert _error(excinfo) == f"{tmp_path / 'nope'}: no such run folder"


def test_missing_summary(labels_path, tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(IfdError) as excinfo:
        evaluate_run(tmp_path / "run", labels_path)
    assert _error(excinfo) == f"{tmp_path / 'run'}: not a run folder (no summary.json)"


def test_missing_signals(catalog, labels_path, tmp_path):
    run = make_run(tmp_path / "run", catalog, None)
    with pytest.raises(IfdError) as excinfo:
        evaluate_run(run, labels_path)
    assert _error(excinfo).startswith(f"{run / 'signals.parquet'}: no signals file")


def test_signals_not_parquet_or_wrong_columns(catalog, labels_path, tmp_path):
    run = make_run(tmp_path / "run", catalog, None)
    (run / "signals.parquet").write_bytes(b"")
    with pytest.raises(IfdError) as excinfo:
        evaluate_run(run, labels_path)
    assert _error(excinfo).startswith(f"{run / 'signals.parquet'}: not a signals table")
    pd.DataFrame({"ts_event": [1], "side": ["BUY"]}).to_parquet(run / "signals.parquet")
    with pytest.raises(IfdError) as excinfo:
        evaluate_run(run, labels_path)
    assert (
        _error(excinfo) == f"{run / 'signals.parquet'}: not a signals table (missing columns: algorithm, instrument_id)"
    )
    pd.DataFrame(
        {"ts_event": [1.0, None], "algorithm": ["ifd_v1"] * 2, "instrument_id": [C21000] * 2, "side": ["BUY"] * 2}
    ).to_parquet(
        run / "signals.parquet",
    )
    with pytest.raises(IfdError) as excinfo:
        evaluate_run(run, labels_path)
    assert _error(excinfo).startswith(
        f"{run / 'signals.parquet'}: not a signals table (ts_event must be integer nanoseconds"
    )


def test_labels_errors(catalog, tmp_path):
    run = make_run(tmp_path / "run", catalog, _signals_frame(V1_SIGNALS))
    with pytest.raises(IfdError) as excinfo:
        evaluate_run(run, tmp_path / "labels.parquet")
    assert _error(excinfo) == f"{tmp_path / 'labels.parquet'}: no such labels file"
    # The signals table is Parquet but not a labels table.
    with pytest.raises(IfdError) as excinfo:
        evaluate_run(run, run / "signals.parquet")
    assert _error(excinfo).startswith(
        f"{run / 'signals.parquet'}: not a labels table (missing columns: episode_id, kind"
    )
    (tmp_path / "text.parquet").write_text("episode_id,kind\n")
    with pytest.raises(IfdError) as excinfo:
        evaluate_run(run, tmp_path / "text.parquet")
    assert _error(excinfo).startswith(f"{tmp_path / 'text.parquet'}: not a labels table (unreadable as Parquet")


def test_missing_catalog(labels_path, tmp_path):
    run = make_run(tmp_path / "run", tmp_path / "gone", _signals_frame(V1_SIGNALS))
    with pytest.raises(IfdError) as excinfo:
        evaluate_run(run, labels_path)
    assert _error(excinfo).startswith(f"{tmp_path / 'gone'}: no such catalog")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IfdError) as excinfo:
        evaluate_run(run, labels_path, catalog=tmp_path / "empty")
    assert _error(excinfo) == f"{tmp_path / 'empty'}: not a NautilusTrader catalog (no 'data' folder)"
    not_catalog = tmp_path / "photos"
    not_catalog.mkdir()
    (not_catalog / "a.jpg").write_bytes(b"x")
    with pytest.raises(IfdError) as excinfo:
        evaluate_run(run, labels_path, catalog=not_catalog)
    assert _error(excinfo).startswith(f"{not_catalog}: not a NautilusTrader catalog")


def test_bad_positions_report(catalog, labels_path, tmp_path):
    run = make_run(tmp_path / "run", catalog, _signals_frame(V1_SIGNALS))
    (run / "positions.csv").write_text("a,b\n1,2\n")
    with pytest.raises(IfdError) as excinfo:
        evaluate_run(run, labels_path)
    assert _error(excinfo).startswith(f"{run / 'positions.csv'}: not a positions report (missing columns")


def test_numpy_free_json(catalog, labels_path, tmp_path):
    run = make_run(tmp_path / "run", catalog, _signals_frame(V1_SIGNALS), POSITIONS)
    result = evaluate_run(run, labels_path)

    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        else:
            assert value is None or type(value) in (str, int, float, bool), type(value)

    walk(result)
    assert not any(isinstance(v, np.generic) for v in result["ifd_v1"].values())
