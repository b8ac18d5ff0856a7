"""IFD v1/v3 strategies in real BacktestNode runs: signals, trade mode, limits, fallback."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from backtests.runner import run_backtest
from catalogs.ingest import ingest
from ifd.detection.types import BUY
from ifd.detection.types import SELL
from ifd.detection.types import bias_of
from ifd.evaluation.report import evaluate_run
from ifd.scenario.generate import ScenarioConfig
from ifd.scenario.generate import generate_scenario

CONFIGS = Path("configs/backtests")
SCENARIO = ScenarioConfig(seed=3, strikes=6, expiries=1, minutes=20, rate=150.0)
SIGNAL_COLUMNS = {
    "ts_event": "int64",
    "ts_signal": "int64",
    "algorithm": "string",
    "instrument_id": "string",
    "underlying": "string",
    "strike": "double",
    "option_kind": "string",
    "side": "string",
    "bias": "string",
    "confidence": "double",
    "notional_usd": "double",
    "window_start_ns": "int64",
    "reasons": "string",
}


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ifd")
    generate_scenario(root / "scenario", SCENARIO)
    ingest([root / "scenario" / "definition.dbn.zst", root / "scenario" / "mbo.dbn.zst"], root / "catalog")
    return root / "scenario", root / "catalog"


def config_with(tmp_path: Path, base: str, replacements: dict[str, str], append: str = "") -> Path:
    text = (CONFIGS / base).read_text()
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / base
    path.write_text(text + append)
    return path


def running_exposure(run_dir: Path, strategy_id: str) -> int:
    """Largest absolute net position the strategy ever held, from its filled orders in time order."""
    fills = pd.read_csv(run_dir / "fills.csv")
    fills = fills[fills["strategy_id"] == strategy_id].sort_values("ts_last")
    signed = fills["filled_qty"].astype(float) * fills["side"].map({"BUY": 1, "SELL": -1})
    net = signed.cumsum()
    return int(net.abs().max()) if len(net) else 0


def test_shadow_run_signals_parquet_schema_and_evaluation(session, tmp_path):
    scenario, catalog = session
    run = run_backtest(CONFIGS / "shadow_v1_v3.toml", catalog=catalog, out=tmp_path / "run")
    table = pq.read_table(run.run_dir / "signals.parquet")
    for name, dtype in SIGNAL_COLUMNS.items():
        assert str(table.schema.field(name).type) == dtype, name
    signals = table.to_pandas()
    assert set(signals["algorithm"]) == {"ifd_v1", "ifd_v3"}
    assert signals["option_kind"].isin(["CALL", "PUT"]).all()
    assert signals["side"].isin(["BUY", "SELL"]).all()
    expected_bias = [
        bias_of(kind, BUY if side == "BUY" else SELL) for kind, side in zip(signals["option_kind"], signals["side"])
    ]
    assert signals["bias"].tolist() == expected_bias
    assert signals["confidence"].between(0, 1).all()
    assert (signals["notional_usd"] > 0).all()
    assert (signals["window_start_ns"] <= signals["ts_event"]).all()
    assert (signals["ts_signal"] >= signals["ts_event"]).all()
    assert (signals["reasons"].str.len() > 0).all()
    assert (signals["underlying"] == "NQZ6").all()
    assert not signals["acted"].any()  # shadow: signals only

    summary = json.loads((run.run_dir / "summary.json").read_text())
    assert summary["total_orders"] == 0
    rows = {row["algorithm"]: row for row in summary["comparison"]}
    assert set(rows) == {"ifd_v1", "ifd_v3"}
    assert all(row["mode"] == "shadow" for row in rows.values())
    for sid, entry in summary["strategies"].items():
        latency = entry["results"]["decision_latency_us"]
        assert latency["n"] == entry["results"]["trades_seen"] > 0

    result = evaluate_run(run.run_dir, scenario / "labels.parquet")
    for algorithm in ("ifd_v1", "ifd_v3", "naive_net_premium"):
        assert {"precision", "recall", "f1"} <= set(result[algorithm])
    assert result["ifd_v3"]["episodes_detected"] >= 1


def test_trade_mode_places_brackets_and_never_exceeds_the_position_limit(session, tmp_path):
    _, catalog = session
    # Act on every v3 signal, no re-entry pause, quick time exits: the limit is what holds it back.
    config = config_with(
        tmp_path,
        "ab_v1_v3.toml",
        {'mode = "fallback"\nfallback_for = "ifd_v3"': 'mode = "shadow"'},
    )
    profile = tmp_path / "v3_eager.toml"
    profile.write_text(
        Path("configs/profiles/ifd_v3.toml").read_text()
        .replace("threshold = 0.6 ", "threshold = 0.0 ")
        .replace("reentry_cooldown_minutes = 10.0", "reentry_cooldown_minutes = 0.0")
        .replace("time_exit_minutes = 15.0", "time_exit_minutes = 2.0"),
    )
    config.write_text(config.read_text().replace('profile = "configs/profiles/ifd_v3.toml"', f'profile = "{profile}"'))
    run = run_backtest(config, catalog=catalog, out=tmp_path / "run")
    summary = json.loads((run.run_dir / "summary.json").read_text())
    v3 = summary["strategies"]["IfdV3Strategy-V3"]
    assert v3["results"]["entries"] >= 1
    assert v3["results"]["signals_acted"] == v3["results"]["entries"]

    orders = pd.read_csv(run.run_dir / "orders.csv")
    mine = orders[orders["strategy_id"] == "IfdV3Strategy-V3"]
    entries = mine[mine["contingency_type"] == "OTO"]
    assert len(entries) == v3["results"]["entries"]
    for _, entry in entries.iterrows():
        children = mine[mine["parent_order_id"] == entry["client_order_id"]]
        assert sorted(children["type"]) == ["LIMIT", "STOP_MARKET"]  # take profit and stop loss
        assert (children["side"] != entry["side"]).all()
        assert (children["contingency_type"] == "OUO").all()
    assert running_exposure(run.run_dir, "IfdV3Strategy-V3") <= 1
    assert summary["strategies"]["IfdV1Strategy-V1"]["orders"] == 0  # shadow

    # The trades report: every entry as planned against its fill and its position's P&L.
    trades = pd.read_csv(run.run_dir / "trades.csv")
    assert sorted(trades["client_order_id"]) == sorted(entries["client_order_id"])
    filled = trades.merge(entries[["client_order_id", "avg_px", "side"]], on="client_order_id", suffixes=("", "_o"))
    filled = filled[filled["status"] == "FILLED"]
    assert len(filled) >= 1
    sign = filled["side"].map({"BUY": 1.0, "SELL": -1.0})
    assert (filled["fill_price"] == filled["avg_px"]).all()
    assert ((filled["slippage_points"] - sign * (filled["fill_price"] - filled["reference_price"])).abs() < 1e-9).all()
    assert (filled["predicted_pnl_at_target_usd"] > 0).all() and (filled["predicted_pnl_at_stop_usd"] < 0).all()
    positions = pd.read_csv(run.run_dir / "positions.csv")
    closed = filled.dropna(subset=["exit_price"])
    assert len(closed) >= 2  # several cycles of one NETTING position id: each gets its own P&L
    for _, trade in closed.iterrows():
        [position] = positions[positions["opening_order_id"] == trade["client_order_id"]].itertuples()
        assert float(str(position.realized_pnl).split()[0]) == trade["realized_pnl_usd"]


def test_failing_v3_hands_trading_to_v1(session, tmp_path):
    _, catalog = session
    config = config_with(
        tmp_path,
        "ab_v1_v3.toml",
        {
            'strategy_path = "strategies.ifd_v3:IfdV3Strategy"': 'strategy_path = "tests.support.failing_v3:FailingV3Strategy"',
            'config_path = "strategies.ifd_v3:IfdV3Config"': 'config_path = "tests.support.failing_v3:FailingV3Config"',
            '# strategy id IfdV3Strategy-V3\nmode = "trade"': '# strategy id IfdV3Strategy-V3\nmode = "trade"\nfail_after_trades = 3000',
        },
    )
    eager_v1 = tmp_path / "v1_eager.toml"
    eager_v1.write_text(Path("configs/profiles/ifd_v1.toml").read_text().replace("threshold = 0.85 ", "threshold = 0.0 "))
    config.write_text(config.read_text().replace('profile = "configs/profiles/ifd_v1.toml"', f'profile = "{eager_v1}"'))
    run = run_backtest(config, catalog=catalog, out=tmp_path / "run")
    summary = json.loads((run.run_dir / "summary.json").read_text())

    v3 = summary["strategies"]["FailingV3Strategy-V3"]["results"]
    v1 = summary["strategies"]["IfdV1Strategy-V1"]["results"]
    assert v3["failed"] and not v3["healthy_at_end"]
    [failure] = v3["status_events"]
    assert not failure["healthy"] and "injected detector failure" in failure["reason"]
    [takeover] = v1["takeover_events"]
    assert takeover["trading"] and takeover["ts"] == failure["ts"]
    rows = {row["algorithm"]: row for row in summary["comparison"]}
    assert rows["ifd_v1"]["fallback"][0]["trading"] is True

    signals = pd.read_parquet(run.run_dir / "signals.parquet")
    v1_signals = signals[signals["algorithm"] == "ifd_v1"]
    assert not v1_signals.loc[v1_signals["ts_signal"] < takeover["ts"], "acted"].any()
    assert v1_signals.loc[v1_signals["ts_signal"] >= takeover["ts"], "acted"].any()
    assert not signals.loc[(signals["algorithm"] == "ifd_v3") & (signals["ts_signal"] > failure["ts"])].size
    orders = pd.read_csv(run.run_dir / "orders.csv")
    v1_orders = orders[orders["strategy_id"] == "IfdV1Strategy-V1"]
    assert len(v1_orders) > 0 and (v1_orders["ts_init"] >= takeover["ts"]).all()


def test_quality_breach_marks_v3_unhealthy_and_fallback_trades(session, tmp_path):
    """An agreement floor no feed can meet: v3 reports itself unhealthy, v1 takes over."""
    _, catalog = session
    strict = tmp_path / "v3_strict.toml"
    strict.write_text(
        Path("configs/profiles/ifd_v3.toml").read_text().replace("min_agreement_rate = 0.90", "min_agreement_rate = 1.01"),
    )
    config = config_with(tmp_path, "ab_v1_v3.toml", {'profile = "configs/profiles/ifd_v3.toml"': f'profile = "{strict}"'})
    run = run_backtest(config, catalog=catalog, out=tmp_path / "run")
    summary = json.loads((run.run_dir / "summary.json").read_text())
    v3 = summary["strategies"]["IfdV3Strategy-V3"]["results"]
    v1 = summary["strategies"]["IfdV1Strategy-V1"]["results"]
    assert not v3["failed"] and not v3["healthy_at_end"]
    assert "aggressor agreement" in v3["status_events"][0]["reason"]
    assert v1["takeover_events"][0]["trading"] is True
    unhealthy_from = v3["status_events"][0]["ts"]
    signals = pd.read_parquet(run.run_dir / "signals.parquet")
    late_v3 = signals[(signals["algorithm"] == "ifd_v3") & (signals["ts_signal"] >= unhealthy_from)]
    assert not late_v3["acted"].any()  # an unhealthy v3 keeps signalling but no longer trades


@pytest.mark.real_data
def test_real_esh4_shadow_run_reports_aggressor_agreement(tmp_path, real_file):
    from tests.support.real_samples import write_esh4_definition

    definition = write_esh4_definition(tmp_path / "esh4.definition.dbn.zst")
    catalog = tmp_path / "catalog"
    ingest([definition, real_file("nautilus_trader/esh4-glbx-mdp3-20231225.mbo.dbn.zst")], catalog)
    run = run_backtest(CONFIGS / "shadow_v1_v3.toml", catalog=catalog, out=tmp_path / "run")
    summary = json.loads((run.run_dir / "summary.json").read_text())
    v3 = summary["strategies"]["IfdV3Strategy-V3"]["results"]
    assert v3["trades_seen"] == 2_973
    quality = v3["quality"]
    assert quality["agreement_checked"] > 2_000  # one T record has no aggressor side
    assert 0.9 <= quality["agreement_rate"] <= 1.0
    assert v3["signals"] == 0  # a future only: the detectors never signal on it
    assert summary["strategies"]["IfdV1Strategy-V1"]["results"]["trades_seen"] == 2_973
