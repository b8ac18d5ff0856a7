"""``ifd report``: the figure builders on small frames, the error messages, and the page of a
generated-scenario run rendered in headless Chromium (no console errors, every chart drawn)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

from ifd.cli import main
from ifd.detection.pressure import pressure_ratio
from ifd.errors import IfdError
from ifd.report import figures
from ifd.report import tables
from ifd.report.build import write_report
from ifd.report.market_data import MarketData
from ifd.report.pressure_grid import busiest_strikes
from ifd.report.pressure_grid import pressure_grid
from ifd.report.pressure_grid import signed_imbalance
from ifd.report.run_folder import read_run_folder
from ifd.report.screenshot import RENDERED_JS
from ifd.report.tearsheet import build_tearsheet
from ifd.report.tearsheet import share_plotlyjs
from strategies.signals import write_signals
from tests.support.browser import chromium
from tests.support.browser import console_errors
from tests.support.browser import wait_for

AB_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "backtests" / "ab_v1_v3.toml"
SEC = 1_000_000_000
MIN = 60 * SEC
T0 = 1_794_839_400 * SEC  # 2026-11-16 14:30:00 UTC


# -- small inputs -----------------------------------------------------------------------------


def _signal(ts: int, algorithm: str, instrument: str, side: str = "BUY", confidence: float = 0.7, **extra) -> dict:
    kind = "CALL" if " C" in instrument else "PUT"
    row = {
        "ts_event": ts, "ts_signal": ts, "algorithm": algorithm, "instrument_id": instrument, "underlying": "NQZ6",
        "strike": float(instrument.split(" ")[1][1:].removesuffix(".GLBX")), "option_kind": kind, "side": side,
        "bias": "BULLISH" if (kind == "CALL") == (side == "BUY") else "BEARISH", "confidence": confidence,
        "notional_usd": 3.2e6, "window_start_ns": ts - MIN, "reasons": "premium $3.2M burst", "latency_ns": 80_000,
        "strategy_id": "IfdV3Strategy-V3" if algorithm == "ifd_v3" else "IfdV1Strategy-V1", "mode": "shadow",
        "acted": False,
    }
    row.update(extra)
    return row


SIGNALS = [
    _signal(T0 + 90 * SEC, "ifd_v3", "NQZ6 C21000.GLBX", confidence=0.9, acted=True, reasons="z<4 & <b>bold</b>"),
    _signal(T0 + 100 * SEC, "ifd_v1", "NQZ6 C21000.GLBX", confidence=0.5),
    _signal(T0 + 200 * SEC, "ifd_v1", "NQZ6 P20950.GLBX", side="SELL", confidence=0.6),
    _signal(T0 + 250 * SEC, "ifd_v3", "NQZ6 P20950.GLBX", side="SELL", confidence=0.4),
    _signal(T0 + 260 * SEC, "ifd_v3", "NQZ6 C21025.GLBX", confidence=0.8),
]

POSITIONS_HEADER = "position_id,strategy_id,instrument_id,side,ts_closed,realized_pnl,is_snapshot"
POSITIONS = [
    "P1,IfdV3Strategy-V3,NQZ6 C21000.GLBX,FLAT,2026-11-16 14:33:00+00:00,250.00 USD,True",
    "P1,IfdV3Strategy-V3,NQZ6 C21000.GLBX,FLAT,2026-11-16 14:36:00+00:00,-100.00 USD,False",
    "P2,IfdV3Strategy-V3,NQZ6 P20950.GLBX,LONG,,0.00 USD,False",
    "P3,IfdV3Strategy-V3,NQZ6 P20950.GLBX,FLAT,2026-11-16 14:37:00+00:00,40.00 EUR,False",
]

COMPARISON = [
    {"strategy_id": "IfdV3Strategy-V3", "algorithm": "ifd_v3", "mode": "trade", "signals": 3, "signals_acted": 1,
     "orders": 3, "positions": 2, "realized_pnl_usd": 150.0, "healthy_at_end": True, "fallback": [],
     "decision_latency_us_p99": 130.5},
    {"strategy_id": "IfdV1Strategy-V1", "algorithm": "ifd_v1", "mode": "fallback", "signals": 2, "signals_acted": 0,
     "orders": 0, "positions": 0, "realized_pnl_usd": 0.0, "healthy_at_end": True, "fallback": [],
     "decision_latency_us_p99": 70.1},
]


def _minute(i: int, start_ns: int = T0) -> str:
    return pd.Timestamp(start_ns - start_ns % MIN + i * MIN, unit="ns", tz="UTC").isoformat()


def quality_fixture(start_ns: int = T0, minutes: int = 6) -> dict:
    """A data-quality monitor's quality.json, as the monitors' brief describes it."""
    return {
        "monitor": "data_quality", "records": 52_000, "trades": 2_400, "instruments_seen": 9,
        "instruments_expected": 9, "completeness": 1.0, "sequence_gaps": 3,
        "sequence_gaps_by_instrument": {"NQZ6 C21000.GLBX": 2, "NQZ6.GLBX": 1},
        "flags": {"maybe_bad_book": 0, "bad_ts_recv": 1}, "crossed_books": 1, "locked_books": 4,
        "stale_periods": [{"start": _minute(2, start_ns), "end": _minute(3, start_ns), "seconds": 60.0},
                          {"start": _minute(minutes - 1, start_ns), "end": None, "seconds": 30.0}],
        "agreement_rate": 0.9995, "agreement_checked": 2_390,
        "alarms": [{"ts": _minute(2, start_ns), "kind": "sequence_gap", "level": "warning", "text": "gap of 3 <seq>"}],
        "per_minute": [
            {"minute": _minute(i, start_ns), "records": 8_000 + 100 * i, "trades": 400 + i, "gaps": int(i == 2),
             "flagged": 0, "crossed": int(i == 4), "locked": i % 2}
            for i in range(minutes)
        ],
        "healthy_at_end": True,
    }


def latency_fixture(start_ns: int = T0, minutes: int = 6) -> dict:
    """A latency monitor's latency.json, as the monitors' brief describes it."""
    return {
        "monitor": "latency", "clock": "simulated",
        "feed_latency_us": {"n": 52_000, "p50": 410.0, "p90": 900.0, "p99": 2_100.0, "max": 9_000.0},
        "processing_latency_us": {"n": 52_000, "p50": 12.0, "p90": 30.0, "p99": 95.0, "max": 2_400.0},
        "per_minute": [
            {"minute": _minute(i, start_ns), "feed_n": 8_000, "feed_p50_us": 400.0 + i, "feed_p99_us": 2_000.0 + i,
             "proc_n": 8_000, "proc_p50_us": 12.0, "proc_p99_us": 90.0 + i, "proc_max_us": 2_000.0}
            for i in range(minutes)
        ],
        "alarms": [], "notes": ["feed latency is ts_recv - ts_event from the DBN records"],
    }


def _trades(rows: list[tuple]) -> pd.DataFrame:
    """Option trades: (ts_event, strike, kind, size, aggressor_side)."""
    return pd.DataFrame(
        {
            "instrument_id": [f"NQZ6 {k[0]}{int(s)}.GLBX" for _, s, k, _, _ in rows],
            "ts_event": np.array([r[0] for r in rows], dtype=np.int64),
            "price": 100.0,
            "size": np.array([r[3] for r in rows], dtype=np.float64),
            "aggressor_side": np.array([r[4] for r in rows], dtype=np.int8),
            "kind": [r[2] for r in rows],
            "strike": np.array([r[1] for r in rows], dtype=np.float64),
            "multiplier": 20.0,
        },
    )


def _market(with_price: bool = True) -> MarketData:
    if not with_price:
        return MarketData(available=False, note="catalog /gone is not there any more")
    ts = T0 + np.arange(0, 300 * SEC, 10 * SEC, dtype=np.int64)
    future = pd.DataFrame({"instrument_id": "NQZ6.GLBX", "ts_event": ts, "price": 21_000 + np.arange(ts.size) * 0.25,
                           "size": 1.0, "aggressor_side": np.int8(1)})
    return MarketData(available=True, underlying="NQZ6.GLBX", underlying_trades=future)


def _signals_frame() -> pd.DataFrame:
    return pd.DataFrame(SIGNALS)


def make_run_folder(root: Path, catalog: str | None = "/no/such/catalog", signals: list[dict] | None = None) -> Path:
    """A hand-made run folder: summary.json, signals.parquet, positions.csv (no market data)."""
    root.mkdir(parents=True, exist_ok=True)
    summary = {"name": "hand", "config": "configs/backtests/ab_v1_v3.toml", "catalog": catalog,
               "backtest_start": str(T0), "backtest_end": str(T0 + 300 * SEC), "records_processed": 1000,
               "wall_seconds": 0.5, "total_positions": 3, "comparison": COMPARISON,
               "stats_pnls": {"USD": {"PnL (total)": 150.0}}, "stats_returns": {"Average (Return)": 0.01}}
    (root / "summary.json").write_text(json.dumps(summary))
    write_signals(SIGNALS if signals is None else signals, root / "signals.parquet")
    (root / "positions.csv").write_text("\n".join([POSITIONS_HEADER, *POSITIONS]) + "\n")
    return root


# -- pressure grid ----------------------------------------------------------------------------


def test_pressure_grid_counts_buy_and_sell_contracts_per_strike_and_minute():
    trades = _trades([
        (T0 + 5 * SEC, 21000, "CALL", 10, 1),
        (T0 + 50 * SEC, 21000, "CALL", 30, 2),
        (T0 + 61 * SEC, 21000, "CALL", 4, 1),
        (T0 + 62 * SEC, 20950, "PUT", 7, 2),
        (T0 + 63 * SEC, 20950, "PUT", 3, 0),  # no aggressor: counted in neither direction
        (T0 + 10 * MIN, 20950, "PUT", 99, 1),  # after the range: left out
    ])
    grid = pressure_grid(trades, MIN, T0 + 1, T0 + 2 * MIN + 5)
    assert grid.bucket_starts_ns.tolist() == [T0, T0 + MIN, T0 + 2 * MIN]  # aligned to whole minutes
    assert grid.strikes.tolist() == [20950.0, 21000.0]
    assert grid.buy["CALL"].tolist() == [[0, 0, 0], [10, 4, 0]]
    assert grid.sell["CALL"].tolist() == [[0, 0, 0], [30, 0, 0]]
    assert grid.sell["PUT"].tolist() == [[0, 7, 0], [0, 0, 0]]
    imbalance = grid.imbalance["CALL"]
    assert imbalance[1, 0] == pytest.approx((10 - 30) / 40) and imbalance[1, 1] == 1.0
    assert math.isnan(imbalance[0, 0]) and math.isnan(imbalance[1, 2])  # no volume: blank, not neutral
    assert grid.imbalance["PUT"][0, 1] == -1.0
    assert grid.trades == 5 and grid.no_side == 1


def test_signed_imbalance_is_the_detectors_pressure_ratio_rescaled():
    buy = np.array([0.0, 3.0, 10.0, 7.0])
    sell = np.array([5.0, 3.0, 0.0, 1.0])
    expected = [2 * pressure_ratio(b, s) - 1 for b, s in zip(buy, sell, strict=True)]
    assert signed_imbalance(buy, sell).tolist() == pytest.approx(expected)
    assert math.isnan(signed_imbalance(np.array([0.0]), np.array([0.0]))[0])


def test_pressure_grid_of_no_trades_is_empty():
    assert pressure_grid(_trades([]), MIN).empty


def test_busiest_strikes_keeps_the_most_traded_in_strike_order():
    trades = _trades([(T0, 20900, "CALL", 5, 1), (T0, 20950, "PUT", 50, 2), (T0, 21000, "CALL", 1, 1),
                      (T0, 21050, "CALL", 20, 2)])
    cut, left_out = busiest_strikes(pressure_grid(trades, MIN), 2)
    assert cut.strikes.tolist() == [20950.0, 21050.0] and left_out == 2
    assert cut.sell["PUT"][:, 0].tolist() == [50, 0] and cut.imbalance["CALL"][1, 0] == -1.0
    assert busiest_strikes(cut, 5) == (cut, 0)


# -- figures ----------------------------------------------------------------------------------


def test_price_signals_figure_has_a_trace_per_algorithm_sized_by_confidence():
    fig = figures.price_signals_figure(_market(), _signals_frame())
    by_role = {(t.meta or {}).get("role"): t for t in fig.data if (t.meta or {}).get("role") != "signals"}
    assert len(by_role["price"].x) == 30
    signals = {t.meta["algorithm"]: t for t in fig.data if t.meta["role"] == "signals"}
    assert list(signals) == ["ifd_v1", "ifd_v3"]
    v1, v3 = signals["ifd_v1"], signals["ifd_v3"]
    assert (len(v1.x), len(v3.x)) == (2, 3)
    assert (v1.marker.symbol, v3.marker.symbol) == ("circle", "diamond") and v1.marker.color != v3.marker.color
    assert list(v3.marker.size) == pytest.approx([8 + 22 * 0.9, 8 + 22 * 0.4, 8 + 22 * 0.8])
    assert list(v3.marker.line.color) == ["#000000", "#ffffff", "#ffffff"]  # the first one entered a trade
    # y: the underlying's last trade price at the signal (21_000 + 0.25 per 10 s)
    assert v3.y[0] == pytest.approx(21_000 + 9 * 0.25)
    hover = v3.hovertext[0]
    assert "z&lt;4 &amp; &lt;b&gt;bold&lt;/b&gt;" in hover and "NQZ6 C21000.GLBX" in hover
    assert "confidence 0.90" in hover and "premium $3,200,000" in hover and "entered a trade" in hover


def test_price_signals_figure_without_market_data_places_signals_at_their_strike():
    fig = figures.price_signals_figure(_market(with_price=False), _signals_frame())
    assert [t.meta["role"] for t in fig.data] == ["signals", "signals"]
    assert list(fig.data[0].y) == [21000.0, 20950.0]
    assert "no price data" in fig.layout.yaxis.title.text


def test_downsample_keeps_the_last_price_per_bucket():
    ts = np.arange(1000, dtype=np.int64) * SEC
    x, y, width = figures.downsample_last(ts, ts.astype(float), 100)
    assert 9 * SEC < width <= 10 * SEC and len(x) == 100 and y[0] == 9 * SEC and y[-1] == 999 * SEC
    assert figures.downsample_last(ts[:5], ts[:5].astype(float), 100)[2] == 0


def test_pressure_figure_has_a_heatmap_per_right_and_the_signals_on_their_strike():
    trades = _trades([(T0 + 5 * SEC, 21000, "CALL", 10, 1), (T0 + 70 * SEC, 20950, "PUT", 5, 2)])
    fig = figures.pressure_figure(pressure_grid(trades, MIN), _signals_frame())
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert [t.meta["kind"] for t in heatmaps] == ["CALL", "PUT"]
    assert np.asarray(heatmaps[0].z).shape == (2, 2) and (heatmaps[0].zmin, heatmaps[0].zmax) == (-1, 1)
    assert len(heatmaps[0].x) == 3  # cell edges
    marks = {(t.meta["algorithm"], t.meta["kind"]): len(t.x) for t in fig.data if t.meta["role"] == "pressure_signals"}
    assert marks == {("ifd_v1", "CALL"): 1, ("ifd_v1", "PUT"): 1, ("ifd_v3", "CALL"): 2, ("ifd_v3", "PUT"): 1}


def test_equity_curves_step_through_closed_usd_positions_per_strategy():
    positions = pd.read_csv(pd.io.common.StringIO("\n".join([POSITIONS_HEADER, *POSITIONS])))
    steps = figures.realized_pnl_steps(positions)
    assert steps["pnl_usd"].tolist() == [250.0, -100.0]  # the open one and the EUR one are left out
    fig = figures.equity_figure(steps, {"IfdV3Strategy-V3": "ifd_v3", "IfdV1Strategy-V1": "ifd_v1"},
                                T0, T0 + 10 * MIN)
    v3, v1 = fig.data
    assert v3.line.shape == "hv" and list(v3.y) == [0.0, 250.0, 150.0, 150.0]
    assert v3.meta["closed"] == 2 and "+150.00 USD" in v3.name
    assert list(v1.y) == [0.0, 0.0] and v1.meta["algorithm"] == "ifd_v1"


def test_quality_and_latency_figures_from_the_monitor_files():
    quality = figures.quality_figure(quality_fixture())
    series = {t.meta["series"]: list(t.y) for t in quality.data}
    assert series["records"][:2] == [8000, 8100] and series["gaps"] == [0, 0, 1, 0, 0, 0]
    assert len(quality.layout.shapes) == 4  # two stale periods (the last one open), shaded in both panels
    latency = figures.latency_figure(latency_fixture())
    assert {t.meta["series"] for t in latency.data} == {"feed_p50_us", "feed_p99_us", "proc_p50_us", "proc_p99_us",
                                                       "proc_max_us"}
    assert "simulated clock" in latency.layout.yaxis.title.text and latency.layout.yaxis.type == "log"
    backtest = latency_fixture()
    for row in backtest["per_minute"]:
        row.update(feed_p50_us=0.0, feed_p99_us=0.0)  # a backtest's feed latency is 0 by construction
    assert figures.latency_figure(backtest).layout.yaxis.type == "linear"
    assert figures.quality_figure({"per_minute": []}) is None and figures.latency_figure({}) is None


def test_signal_latency_figure_in_microseconds_per_algorithm():
    fig = figures.signal_latency_figure(_signals_frame())
    assert [t.meta["algorithm"] for t in fig.data] == ["ifd_v1", "ifd_v3"]
    assert list(fig.data[0].y) == [80.0, 80.0]
    assert figures.signal_latency_figure(_signals_frame().assign(latency_ns=np.nan)) is None


def test_tables_escape_and_label_units():
    rows = [dict(COMPARISON[0], strategy_id="<script>x</script>")]
    out = tables.ab_table(rows)
    assert "&lt;script&gt;" in out and "<script>" not in out and "realized P&amp;L (USD)" in out
    percentiles = tables.percentile_table({"feed latency": latency_fixture()["feed_latency_us"]}, "µs")
    assert "p99 (µs)" in percentiles and "2,100.0" in percentiles


# -- tearsheet --------------------------------------------------------------------------------


def test_tearsheet_uses_the_pages_plotlyjs_and_notes_a_run_without_trades(tmp_path):
    run_dir = make_run_folder(tmp_path / "run")
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["total_positions"] = 0
    (run_dir / "summary.json").write_text(json.dumps(summary))
    (run_dir / "positions.csv").write_text("\n")
    sheet = build_tearsheet(read_run_folder(run_dir))
    assert sheet.document is not None and get_plotlyjs() not in sheet.document
    assert "ifd-plotlyjs" in sheet.document
    assert sheet.notes[0].startswith("no trades in this run")
    assert any("no portfolio.json" in n for n in sheet.notes)
    unchanged, shared = share_plotlyjs("<html>no bundle</html>")
    assert not shared and unchanged == "<html>no bundle</html>"


# -- the page without a browser, and the errors ------------------------------------------------


def test_report_of_a_run_whose_catalog_is_gone(tmp_path, capsys):
    run_dir = make_run_folder(tmp_path / "run")
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr()
    report = run_dir / "report.html"
    assert out.out.strip() == str(report) and "MB in" in out.err
    page = report.read_text()
    assert page.count(get_plotlyjs()) == 1  # plotly.js once, inline
    rest = page.replace(get_plotlyjs(), "")
    assert "cdn.plot.ly" not in rest and "src=" not in rest.replace("srcdoc=", "")
    assert "catalog /no/such/catalog is not there any more: the signals are drawn at their option&#x27;s strike" in page
    assert "data quality not recorded in this run" in page and "latency not recorded in this run" in page
    assert "no labels for this run" in page
    assert "1 position(s) still open" in page and "1 closed position(s) without a USD P&amp;L" in page
    assert not list(run_dir.glob(".report.html.*"))


def test_report_shows_the_monitor_files_and_evaluation_json(tmp_path):
    run_dir = make_run_folder(tmp_path / "run")
    (run_dir / "quality.json").write_text(json.dumps(quality_fixture()))
    (run_dir / "latency.json").write_text(json.dumps(latency_fixture()))
    evaluation = {"algorithms": ["ifd_v1", "ifd_v3"], "forward_minutes": [5], "tolerance_s": 60.0,
                  "episodes": {"institutional": 2}, "ifd_v3": {"precision": 0.75, "recall": 1.0, "f1": 0.857,
                                                               "signals": 4, "episodes": 2, "episodes_detected": 2}}
    (run_dir / "evaluation.json").write_text(json.dumps(evaluation))
    out = tmp_path / "elsewhere.html"
    result = write_report(run_dir, out=out, bucket_s=30)
    page = out.read_text()
    assert result.path == out and result.size_bytes == out.stat().st_size and result.signals == {"ifd_v1": 2,
                                                                                                  "ifd_v3": 3}
    for div in ("fig-signals", "fig-equity", "fig-quality", "fig-latency", "fig-signal-latency"):
        assert f'id="{div}"' in page
    assert "simulated clock" in page and "gap of 3 &lt;seq&gt;" in page and "99.95%" in page
    assert "From the run&#x27;s evaluation.json" in page and "0.857" in page


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda d: shutil.rmtree(d), "{run}: no such run folder"),
        (lambda d: (d / "summary.json").unlink(), "{run}: not a run folder (no summary.json)"),
        (lambda d: (d / "summary.json").write_text("{oops"), "{run}/summary.json: not a run summary (bad JSON"),
        (lambda d: (d / "signals.parquet").write_bytes(b"not parquet"),
         "{run}/signals.parquet: not a signals table (unreadable as Parquet"),
        (lambda d: (d / "quality.json").write_text("[1, 2]"),
         "{run}/quality.json: not a data-quality report (expected a JSON object)"),
        (lambda d: (d / "latency.json").write_text("{"), "{run}/latency.json: not a latency report (bad JSON"),
        (lambda d: (d / "returns.parquet").write_text("x"), "{run}/returns.parquet: not a returns table"),
    ],
)
def test_a_broken_run_folder_is_one_line_naming_the_file(tmp_path, capsys, setup, expected):
    run_dir = make_run_folder(tmp_path / "run")
    setup(run_dir)
    assert main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ifd: error: " + expected.format(run=run_dir))
    assert not (run_dir / "report.html").exists()


def test_report_errors_for_outputs_and_labels(tmp_path):
    run_dir = make_run_folder(tmp_path / "run")
    with pytest.raises(IfdError, match=r"no_dir: no such folder for the report"):
        write_report(run_dir, out=tmp_path / "no_dir" / "r.html")
    with pytest.raises(IfdError, match=r"is a folder"):
        write_report(run_dir, out=tmp_path)
    with pytest.raises(IfdError, match=r"missing.parquet: no such labels file"):
        write_report(run_dir, labels=tmp_path / "missing.parquet")
    with pytest.raises(IfdError, match=r"--bucket 0"):
        write_report(run_dir, bucket_s=0)


# -- a generated-scenario run in headless Chromium --------------------------------------------

PAGE_STATE_JS = """
// gd._fullData: the traces as plotly.js drew them (base64 arrays decoded)
const count = (a) => (a && a.length !== undefined) ? a.length : 0;
const finite = (z) => Array.from(z || []).reduce((n, row) =>
  n + Array.from(row).filter(v => v !== null && Number.isFinite(v)).length, 0);
const plots = (doc) => Array.from(doc.querySelectorAll('.js-plotly-plot')).map(gd => ({
  id: gd.id,
  drawn: !!gd.querySelector('.main-svg'),
  traces: (gd._fullData || []).map(t => ({
    type: t.type, meta: t.meta || {}, n: Math.max(count(t.x), count(t.y)), z: t.type === 'heatmap' ? finite(t.z) : 0,
  })),
}));
const frame = document.getElementById('tearsheet-frame');
const http = performance.getEntriesByType('resource').filter(e => /^https?:/.test(e.name)).map(e => e.name);
return {
  plots: plots(document),
  tearsheet: frame ? plots(frame.contentDocument) : [],
  frameHasOwnPlotly: !!frame && typeof frame.contentWindow.Plotly === 'object'
    && frame.contentWindow.Plotly !== window.Plotly,
  evaluation: (document.querySelector('#evaluation table') || {}).innerText || '',
  ab: (document.querySelector('#ab table') || {}).innerText || '',
  http: http,
};
"""
@pytest.fixture(scope="module")
def scenario_report(small_session_catalog, tmp_path_factory) -> dict:
    """The A/B backtest of the small generated session, the monitors' files beside it, and its report
    (with the labels, and the documented ``--screenshot``)."""
    from backtests.runner import run_backtest

    root = tmp_path_factory.mktemp("report")
    result = run_backtest(AB_CONFIG, catalog=small_session_catalog, out=root / "run")
    run_dir = result.run_dir
    start = int(json.loads((run_dir / "portfolio.json").read_text())["run"]["backtest_start_ns"])
    (run_dir / "quality.json").write_text(json.dumps(quality_fixture(start, minutes=8)))
    (run_dir / "latency.json").write_text(json.dumps(latency_fixture(start, minutes=8)))
    labels = small_session_catalog.parent / "scenario" / "labels.parquet"
    png = root / "report.png"
    assert main(["report", str(run_dir), "--labels", str(labels), "--screenshot", str(png)]) == 0
    return {"run_dir": run_dir, "report": run_dir / "report.html", "png": png, "summary": result.summary}


@pytest.mark.slow
def test_run_folder_keeps_what_the_tearsheet_needs(scenario_report):
    run_dir = scenario_report["run_dir"]
    portfolio = json.loads((run_dir / "portfolio.json").read_text())
    assert set(portfolio) >= {"stats_pnls", "stats_returns", "stats_general", "run", "account", "returns_basis"}
    assert portfolio["account"]["balances"]["USD"]["starting"] == 1_000_000.0
    assert portfolio["run"]["total_orders"] == scenario_report["summary"]["total_orders"]
    assert portfolio["stats_pnls"].keys() == scenario_report["summary"]["stats_pnls"].keys()
    returns = pd.read_parquet(run_dir / "returns.parquet")
    assert list(returns.columns) == ["ts_ns", "return"] and len(returns) == portfolio["returns_count"]
    assert scenario_report["summary"]["reports"]["portfolio"] == 1


@pytest.mark.slow
def test_scenario_report_renders_in_chromium_without_console_errors(scenario_report):
    signals = pd.read_parquet(scenario_report["run_dir"] / "signals.parquet")
    expected = signals["algorithm"].value_counts().to_dict()
    assert set(expected) == {"ifd_v1", "ifd_v3"}  # the scenario gives both algorithms' signals

    with chromium() as driver:
        driver.get(scenario_report["report"].resolve().as_uri())
        wait_for(driver, RENDERED_JS, timeout=60)
        state = driver.execute_script(PAGE_STATE_JS)
        errors = console_errors(driver)
    assert errors == []
    assert state["http"] == []  # nothing fetched from the network

    plots = {p["id"]: p for p in state["plots"]}
    assert set(plots) == {"fig-signals", "fig-pressure", "fig-equity", "fig-quality", "fig-latency",
                          "fig-signal-latency"}
    assert all(p["drawn"] and p["traces"] for p in plots.values())

    traces = plots["fig-signals"]["traces"]
    price = [t for t in traces if t["meta"].get("role") == "price"]
    assert len(price) == 1 and price[0]["n"] > 100
    markers = {t["meta"]["algorithm"]: t["n"] for t in traces if t["meta"].get("role") == "signals"}
    assert markers == expected

    heatmaps = [t for t in plots["fig-pressure"]["traces"] if t["type"] == "heatmap"]
    assert [t["meta"]["kind"] for t in heatmaps] == ["CALL", "PUT"] and all(t["z"] > 0 for t in heatmaps)

    equity = {t["meta"]["algorithm"] for t in plots["fig-equity"]["traces"] if t["meta"].get("role") == "equity"}
    assert equity == {"ifd_v1", "ifd_v3"}
    assert "IfdV3Strategy-V3" in state["ab"] and "IfdV1Strategy-V1" in state["ab"]
    assert "ifd_v3" in state["evaluation"] and "naive_net_premium" in state["evaluation"]
    assert {t["meta"]["series"] for t in plots["fig-quality"]["traces"]} >= {"records", "gaps"}
    assert len(plots["fig-latency"]["traces"]) == 5

    # NautilusTrader's tearsheet, drawn in its frame by its own instance of the page's plotly.js
    assert state["frameHasOwnPlotly"]
    assert len(state["tearsheet"]) == 1 and state["tearsheet"][0]["drawn"]
    assert any(t["type"] == "table" for t in state["tearsheet"][0]["traces"])


@pytest.mark.slow
def test_screenshot_is_a_full_page_png(scenario_report):
    data = scenario_report["png"].read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width == 1400 and height > 3000  # the whole page, not the 1000 px window
