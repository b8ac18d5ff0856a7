"""``ifd evaluate`` end to end: a generated scenario, ingested, replayed by a BacktestNode, scored.

The IFD strategies are not in this test: the signals are written into the run folder by hand.
A small order-placing strategy (defined here) gives a run with real NautilusTrader positions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from nautilus_trader.config import StrategyConfig
from nautilus_trader.model.data import TradeTick
from nautilus_trader.model.enums import AggressorSide
from nautilus_trader.model.enums import OptionKind
from nautilus_trader.model.enums import OrderSide
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.model.instruments import OptionContract
from nautilus_trader.trading.strategy import Strategy

from backtests.runner import run_backtest
from catalogs.ingest import ingest
from catalogs.layout import open_catalog
from ifd.detection.types import BUY
from ifd.detection.types import SELL
from ifd.detection.types import bias_of
from ifd.evaluation.report import evaluate_run
from ifd.evaluation.report import write_evaluation
from ifd.scenario.generate import ScenarioConfig
from ifd.scenario.generate import generate_scenario

pytestmark = pytest.mark.slow

DEMO = Path(__file__).resolve().parents[1] / "configs" / "backtests" / "demo.toml"
SEC = 1_000_000_000


class RoundTripTraderConfig(StrategyConfig, frozen=True):
    instrument_id: str = "NQZ6.GLBX"
    every: int = 50  # trades between orders
    max_orders: int = 6


class RoundTripTrader(Strategy):
    """Buys one future, sells it back a few trades later; ``max_orders`` market orders in all."""

    def __init__(self, config: RoundTripTraderConfig) -> None:
        super().__init__(config)
        self._seen = 0
        self._sent = 0

    def on_start(self) -> None:
        self._id = InstrumentId.from_str(self.config.instrument_id)
        self._instrument = self.cache.instrument(self._id)
        self.subscribe_trade_ticks(self._id)

    def on_trade_tick(self, tick: TradeTick) -> None:
        self._seen += 1
        if self._seen % self.config.every or self._sent >= self.config.max_orders:
            return
        side = OrderSide.BUY if self._sent % 2 == 0 else OrderSide.SELL
        self.submit_order(self.order_factory.market(self._id, side, self._instrument.make_qty(1)))
        self._sent += 1

    def summary(self) -> dict:
        return {"orders_sent": self._sent}


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("evaluate_e2e")
    generate_scenario(root / "scenario", ScenarioConfig(seed=3, strikes=3, expiries=1, minutes=10))
    catalog = root / "catalog"
    ingest([root / "scenario" / "definition.dbn.zst", root / "scenario" / "mbo.dbn.zst"], catalog)
    return {"root": root, "catalog": catalog, "labels": root / "scenario" / "labels.parquet"}


def _signals_from_labels(labels: pd.DataFrame) -> pd.DataFrame:
    """One right-side signal 2 s into each institutional episode, one wrong-side signal into the
    first, one signal on every other episode: a known score."""
    rows = []
    for episode in labels.itertuples():
        instrument = episode.instrument_ids[0]
        kind = "CALL" if " C" in instrument else "PUT"
        side = episode.side if episode.kind == "institutional" else "BUY"
        rows.append((episode.start_ns + 2 * SEC, instrument, kind, side, "ifd_v1"))
    first = labels[labels["kind"] == "institutional"].iloc[0]
    wrong = "SELL" if first["side"] == "BUY" else "BUY"
    inst = first["instrument_ids"][0]
    rows.append((first["start_ns"] + 3 * SEC, inst, "CALL" if " C" in inst else "PUT", wrong, "ifd_v3"))
    return pd.DataFrame(
        {
            "ts_event": pd.array([r[0] for r in rows], dtype="int64"),
            "ts_signal": pd.array([r[0] + 1000 for r in rows], dtype="int64"),
            "algorithm": [r[4] for r in rows],
            "instrument_id": [r[1] for r in rows],
            "underlying": ["NQZ6"] * len(rows),
            "strike": [float(r[1].split(" ")[1][1:].removesuffix(".GLBX")) for r in rows],
            "option_kind": [r[2] for r in rows],
            "side": [r[3] for r in rows],
            "bias": [bias_of(r[2], BUY if r[3] == "BUY" else SELL) for r in rows],
            "confidence": [0.9] * len(rows),
            "notional_usd": [1e6] * len(rows),
            "window_start_ns": pd.array([r[0] - 60 * SEC for r in rows], dtype="int64"),
            "reasons": ["hand-made"] * len(rows),
            "strategy_id": ["Hand-001"] * len(rows),
            "mode": ["shadow"] * len(rows),
        },
    )


def _naive_oracle(catalog: Path) -> list[tuple[int, str, str]]:
    """The naive detector, trade by trade over NautilusTrader's own ``TradeTick`` objects."""
    cat = open_catalog(catalog)
    options = {i.id.value: i for i in cat.instruments() if isinstance(i, OptionContract)}
    out = []
    for iid, instrument in options.items():
        running: dict[int, float] = {}
        fired: set[int] = set()
        for tick in sorted(cat.query(TradeTick, identifiers=[iid]), key=lambda t: t.ts_event):
            bucket = tick.ts_event // (300 * SEC)
            sign = {AggressorSide.BUYER: 1, AggressorSide.SELLER: -1}.get(tick.aggressor_side, 0)
            running[bucket] = running.get(bucket, 0.0) + sign * float(tick.price) * float(
                instrument.multiplier
            ) * float(tick.size)
            if bucket not in fired and abs(running[bucket]) >= 1_000_000 - 1e-6:
                fired.add(bucket)
                out.append((tick.ts_event, iid, "BUY" if running[bucket] > 0 else "SELL"))
        assert instrument.option_kind in (OptionKind.CALL, OptionKind.PUT)
    return sorted(out)


def test_evaluate_a_replayed_scenario(scenario, tmp_path):
    run_dir = tmp_path / "run"
    run_backtest(DEMO, catalog=scenario["catalog"], out=run_dir)
    labels = pd.read_parquet(scenario["labels"])
    institutional = labels[labels["kind"] == "institutional"]
    others = len(labels) - len(institutional)
    assert len(institutional) >= 2
    signals = _signals_from_labels(labels)
    signals.to_parquet(run_dir / "signals.parquet", index=False)

    result = evaluate_run(run_dir, scenario["labels"])
    json_path, md_path = write_evaluation(run_dir, result)

    assert result["algorithms"] == ["ifd_v1", "ifd_v3", "naive_net_premium"]
    assert result["catalog"] == str(scenario["catalog"])  # from summary.json
    v1, v3 = result["ifd_v1"], result["ifd_v3"]
    for row in (v1, v3, result["naive_net_premium"]):
        for key in (
            "precision",
            "recall",
            "f1",
            "false_positives_by_cause",
            "median_detection_delay_s",
            "signals",
            "forward_accuracy",
        ):
            assert key in row
    assert (v1["signals"], v1["true_positive_signals"]) == (len(labels), len(institutional))
    assert v1["recall"] == 1.0
    assert v1["precision"] == round(len(institutional) / len(labels), 4)
    assert v1["median_detection_delay_s"] == 2.0
    # The signals on the other episodes are false positives (attributed to the earliest labeled
    # episode they fall on, which may be an overlapping institutional one: wrong side).
    assert v1["false_positives"] == sum(v1["false_positives_by_cause"].values()) == others
    assert (v3["signals"], v3["precision"], v3["false_positives_by_cause"]["institutional_wrong_side"]) == (1, 0.0, 1)

    # Forward accuracy: signals 2 s into episodes of a 10-minute session have a 5-minute move when
    # they start in the first 5 minutes; every count is accounted for.
    for row in (v1, result["naive_net_premium"]):
        for entry in row["forward_accuracy"].values():
            assert entry["count"] + entry["zero_move"] + entry["unavailable"] == row["signals"]
    assert v1["forward_accuracy"]["15m"]["count"] == 0  # the session is 10 minutes long

    naive = result["naive_net_premium"]
    oracle = _naive_oracle(scenario["catalog"])
    assert naive["signals"] == len(oracle) > 0
    assert naive["recall"] > 0  # institutional episodes are at least $3M of one-sided premium

    saved = json.loads(json_path.read_text())
    assert saved == result
    assert saved["matching_rule"].startswith("A signal is a hit for an institutional episode")
    assert saved["tolerance_s"] == 60.0
    md = md_path.read_text()
    assert md.count("| `ifd_v1` |") == 1 and "| `naive_net_premium` |" in md and "## Matching rule" in md
    assert "## Trading" not in md  # the FlowCounter places no orders


def test_naive_detector_matches_the_tick_by_tick_oracle(scenario):
    from ifd.evaluation.naive import naive_signals
    from ifd.evaluation.ticks import catalog_instruments
    from ifd.evaluation.ticks import read_trades

    signals = naive_signals(read_trades(scenario["catalog"]), catalog_instruments(scenario["catalog"]))
    got = sorted(zip(signals["ts_event"].tolist(), signals["instrument_id"], signals["side"], strict=True))
    assert got == _naive_oracle(scenario["catalog"])


def test_trading_results_from_a_real_positions_report(scenario, tmp_path):
    config = tmp_path / "trader.toml"
    config.write_text(
        DEMO.read_text()
        .replace('"strategies.flow_counter:FlowCounter"', '"tests.test_evaluate_e2e:RoundTripTrader"')
        .replace('"strategies.flow_counter:FlowCounterConfig"', '"tests.test_evaluate_e2e:RoundTripTraderConfig"'),
    )
    run_dir = tmp_path / "run"
    summary = run_backtest(config, catalog=scenario["catalog"], out=run_dir).summary
    assert summary["strategies"]["RoundTripTrader-001"]["orders"] == 6
    # The strategy's results name no algorithm: its signals do.
    labels = pd.read_parquet(scenario["labels"])
    signals = _signals_from_labels(labels[labels["kind"] == "institutional"]).iloc[:1]
    signals.assign(strategy_id="RoundTripTrader-001", mode="trade").to_parquet(run_dir / "signals.parquet")

    result = evaluate_run(run_dir, scenario["labels"])
    assert result["algorithms"] == ["ifd_v1", "naive_net_premium"]
    trading = result["ifd_v1"]["trading"]["RoundTripTrader-001"]
    positions = pd.read_csv(run_dir / "positions.csv")
    closed = positions[positions["side"] == "FLAT"]
    pnls = closed["realized_pnl"].str.removesuffix(" USD").astype(float)
    assert trading["orders"] == 6
    assert trading["positions"] == len(closed) == 3
    assert trading["total_realized_pnl_usd"] == round(pnls.sum(), 2)
    # The same numbers as NautilusTrader's own end-of-run statistics in summary.json.
    stats = summary["stats_pnls"]["USD"]
    assert trading["total_realized_pnl_usd"] == round(stats["PnL (total)"], 2)
    assert trading["win_rate"] == round(stats["Win Rate"], 4)
    if stats["Avg Winner"] is not None and stats["Avg Loser"] is not None:
        assert trading["win_loss_ratio"] == round(stats["Avg Winner"] / abs(stats["Avg Loser"]), 4)
    assert trading["expectancy_usd"] == round(stats["Expectancy"], 2)
    write_evaluation(run_dir, result)
    assert "| `RoundTripTrader-001` | ifd_v1 | 6 | 3 |" in (run_dir / "evaluation.md").read_text()
    assert np.isfinite(result["ifd_v1"]["precision"])
