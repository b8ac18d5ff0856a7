"""Backtest / paper parity: the same DBN session, replayed by a BacktestNode and by the paper node.

(a) ``backtests.runner.run_backtest`` (IFD v3 + v1 in shadow) over the ingested catalog;
(b) the paper ``TradingNode`` (same strategies and profiles, shadow) fed by our loopback Databento
    gateway replaying the same ``mbo.dbn.zst`` / ``definition.dbn.zst`` as fast as possible, with
    ``run_paper(session_dir=...)`` writing a session folder (``live.session_report``).

Signals are compared as the multiset of (algorithm, instrument_id, side) and, per key, the sorted
``ts_event`` values (the exchange time of the triggering trade) within ``TS_TOLERANCE_NS`` = 0.

What we found (seed 3, 6 strikes x 1 expiry x 15 min, rate 120; backtest v3 8 / v1 11 signals):

- The live client gets trades through a separate ``trades`` subscription (NautilusTrader 1.231
  forwards only book deltas from the MBO stream). That session opens at connect; the MBO session
  opens ``mbo_subscriptions_delay`` (6 s) later. Replayed as fast as possible, every trade reaches
  the strategies before the first book delta: all trades are seen against an empty book.
- IFD v1 does not read the book: its 11 signals equal the backtest's exactly (ts_event, confidence).
- IFD v3 reads the book at each trade (book-side initiation, agreement): with the empty book it
  finds 4 signals instead of 8 (``book_side_known`` 0). A backtest of the same data with trades
  only (no book: ``TradeTick`` data, L1 venue) gives exactly those 4 v3 signals and the same 11 v1
  signals: the paper node matches the backtest of the information it had, with tolerance 0 (both
  see the same trade records, so the triggering trade's ts_event is identical).
  With a real-time feed both sessions stream concurrently and the book is current to within the
  transport skew; this replay test cannot reproduce that ordering.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pandas as pd
import pytest

from tests.support.live_harness import KEY, run_paper_child, sent_counts

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TS_TOLERANCE_NS = 0  # same trade records on both paths: the triggering trade's ts_event is equal

PAPER_CONFIG = """
[node]
trader_id = "IFD-PARITY"
timeout_connection = 30.0
timeout_disconnection = 5.0
timeout_post_stop = 1.0

[databento]
dataset = "GLBX.MDP3"
parent_symbols = ["NQ.OPT", "NQ.FUT"]
use_exchange_as_venue = false
timeout_initial_load = 20.0
mbo_subscriptions_delay = 6.0

[sandbox]
venue = "GLBX"
starting_balances = ["1_000_000 USD"]
base_currency = "USD"
oms_type = "NETTING"
account_type = "MARGIN"
book_type = "L3_MBO"

[logging]
log_level = "WARNING"

[[strategies]]
strategy_path = "strategies.flow_counter:FlowCounter"
config_path = "strategies.flow_counter:FlowCounterConfig"

[strategies.config]
order_id_tag = "COUNT"

[[strategies]]
strategy_path = "strategies.ifd_v3:IfdV3Strategy"
config_path = "strategies.ifd_v3:IfdV3Config"
profile = "configs/profiles/ifd_v3.toml"

[strategies.config]
order_id_tag = "V3"
mode = "shadow"

[[strategies]]
strategy_path = "strategies.ifd_v1:IfdV1Strategy"
config_path = "strategies.ifd_v1:IfdV1Config"
profile = "configs/profiles/ifd_v1.toml"

[strategies.config]
order_id_tag = "V1"
mode = "shadow"
"""


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> dict:
    from catalogs.ingest import ingest
    from ifd.scenario.generate import ScenarioConfig, generate_scenario

    root = tmp_path_factory.mktemp("parity")
    # seed 3: v3 finds 8 signals, v1 11 (backtest)
    generate_scenario(root / "scenario", ScenarioConfig(seed=3, strikes=6, expiries=1, minutes=15, rate=120))
    mbo, definition = root / "scenario" / "mbo.dbn.zst", root / "scenario" / "definition.dbn.zst"
    catalog = root / "catalog"
    ingest([definition, mbo], catalog)
    return {"root": root, "mbo": mbo, "definition": definition, "catalog": catalog,
            "labels": root / "scenario" / "labels.parquet"}


def _backtest(scenario, name: str, trades_only: bool) -> Path:
    from backtests.runner import run_backtest

    text = (PROJECT_ROOT / "configs" / "backtests" / "shadow_v1_v3.toml").read_text()
    text = text.replace('catalog = "data/demo/catalog"', f'catalog = "{scenario["catalog"]}"')
    text = text.replace("baselines = true", "baselines = false")  # the paper node has none either
    if trades_only:  # what the paper strategies saw: trades, no book (see the module docstring)
        text = text.replace('types = ["OrderBookDelta", "TradeTick"]', 'types = ["TradeTick"]')
        text = text.replace('book_type = "L3_MBO"', 'book_type = "L1_MBP"')
    config = scenario["root"] / f"{name}.toml"
    config.write_text(text)
    return run_backtest(config, out=scenario["root"] / name).run_dir


@pytest.fixture(scope="module")
def backtest_run(scenario) -> Path:
    return _backtest(scenario, "backtest_mbo", trades_only=False)


@pytest.fixture(scope="module")
def backtest_trades_run(scenario) -> Path:
    return _backtest(scenario, "backtest_trades", trades_only=True)


@pytest.fixture(scope="module")
def paper_session(scenario, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("paper_parity")
    session_dir = work / "session"
    result, log = run_paper_child(
        work, PAPER_CONFIG, scenario["mbo"], scenario["definition"], timeout_s=150.0, session_dir=session_dir,
    )
    return {"result": result, "log": log, "session_dir": session_dir}


def _by_key(frame: pd.DataFrame) -> dict[tuple[str, str, str], list[int]]:
    out = collections.defaultdict(list)
    for row in frame.itertuples():
        out[(row.algorithm, row.instrument_id, row.side)].append(int(row.ts_event))
    return {k: sorted(v) for k, v in out.items()}


def _assert_same_signals(expected: pd.DataFrame, actual: pd.DataFrame) -> None:
    want, got = _by_key(expected), _by_key(actual)
    assert set(want) == set(got)
    for key in want:
        assert len(want[key]) == len(got[key]), key
        worst = max(abs(a - b) for a, b in zip(want[key], got[key], strict=True))
        assert worst <= TS_TOLERANCE_NS, (key, worst)
    conf = lambda f: sorted(zip(f["algorithm"], f["instrument_id"], f["ts_event"], f["confidence"].round(6)))
    assert conf(expected) == conf(actual)


def test_paper_session_matches_the_backtest(scenario, backtest_run, backtest_trades_run, paper_session):
    result, log = paper_session["result"], paper_session["log"]
    assert result["stopped_by"] == "stop condition", log[-4000:]
    assert KEY not in log

    # The paper node received the whole replay: every book delta and every trade ...
    sent_deltas, sent_trades = sent_counts(scenario["mbo"])
    counter = result["strategies"]["FlowCounter-COUNT"]
    assert counter["order_book_deltas"] == sent_deltas
    assert counter["trade_ticks"] == sent_trades > 0
    # ... trades on their own session, opened before the (delayed) MBO session.
    sessions = result["gateway_sessions"]
    trades_session = next(s for s in sessions if "trades" in s["schemas"])
    mbo_session = next(s for s in sessions if s["schemas"] == ["mbo"])
    assert trades_session["session_id"] < mbo_session["session_id"]

    full = pd.read_parquet(backtest_run / "signals.parquet")
    trades_only = pd.read_parquet(backtest_trades_run / "signals.parquet")
    paper = pd.read_parquet(paper_session["session_dir"] / "signals.parquet")
    assert paper["mode"].eq("shadow").all() and not paper["acted"].any()
    assert (full["algorithm"] == "ifd_v3").sum() >= 5  # several v3 signals with the book
    assert (paper["algorithm"] == "ifd_v3").sum() >= 3 and (paper["algorithm"] == "ifd_v1").sum() >= 5

    # v1 (no book): identical to the full MBO backtest.
    v1 = lambda f: f[f["algorithm"] == "ifd_v1"]
    _assert_same_signals(v1(full), v1(paper))
    # v3 and v1: identical to the backtest of what the paper node had at each trade (no book).
    _assert_same_signals(trades_only, paper)

    # Why v3 differs from the full backtest: the paper v3 never saw a book side at a trade.
    full_summary = json.loads((backtest_run / "summary.json").read_text())["strategies"]
    paper_v3 = result["strategies"]["IfdV3Strategy-V3"]
    assert paper_v3["quality"]["book_side_known"] == 0
    assert full_summary["IfdV3Strategy-V3"]["results"]["quality"]["book_side_known"] > 0
    for sid in ("IfdV3Strategy-V3", "IfdV1Strategy-V1"):
        assert result["strategies"][sid]["trades_seen"] == full_summary[sid]["results"]["trades_seen"]


def test_session_folder_is_a_run_folder(scenario, backtest_trades_run, paper_session):
    from ifd.evaluation.report import evaluate_run

    session_dir = paper_session["session_dir"]
    names = {p.name for p in session_dir.iterdir()}
    assert names == {"summary.json", "signals.parquet", "orders.csv", "fills.csv", "positions.csv", "account.csv"}
    assert not any(p.name.startswith(".") for p in session_dir.parent.iterdir())  # staging moved away
    for path in session_dir.iterdir():
        assert KEY.encode() not in path.read_bytes()  # no secret in any file
    summary = json.loads((session_dir / "summary.json").read_text())
    assert summary["trader_id"] == "IFD-PARITY"
    assert summary["session_start"] < summary["session_end"]
    assert summary["stopped_by"] == "stop condition"
    assert {row["strategy_id"] for row in summary["comparison"]} == {"IfdV3Strategy-V3", "IfdV1Strategy-V1"}
    assert summary["strategies"]["IfdV3Strategy-V3"]["results"]["mode"] == "shadow"
    assert summary["reports"]["orders"] == 0 and summary["reports"]["signals"] > 0
    assert summary["limit_events"] == {}  # no risk guard in this node

    report = evaluate_run(session_dir, scenario["labels"], catalog=scenario["catalog"])
    assert {"ifd_v3", "ifd_v1"} <= set(report["algorithms"])
    # Scored like the backtest of the same data (same signals: same matches and accuracy).
    reference = evaluate_run(backtest_trades_run, scenario["labels"], catalog=scenario["catalog"])
    for algorithm in ("ifd_v3", "ifd_v1"):
        ours = {k: v for k, v in report[algorithm].items() if k != "trading"}
        theirs = {k: v for k, v in reference[algorithm].items() if k != "trading"}
        assert ours == theirs, algorithm


DROP_AFTER = 50_000  # records into the MBO session (the definition/trades sessions send fewer)


def test_mbo_session_dropped_midstream_is_reconnected(scenario, tmp_path):
    """NautilusTrader 1.231's Databento live client reconnects a dropped MBO session by itself.

    The gateway closes the MBO session after ``DROP_AFTER`` records. The client opens a new
    session with the same subscription (mbo, raw_symbol, snapshot=1: it resubscribes), which our
    gateway serves from the start of the file (a real gateway would send a fresh book snapshot):
    the strategies get all book deltas again on top of the partial first pass, stay healthy (the
    trades session was not dropped, so there is no feed gap) and find the same signals.
    """
    deltas, trades = sent_counts(scenario["mbo"])
    result, log = run_paper_child(
        tmp_path, PAPER_CONFIG, scenario["mbo"], scenario["definition"], timeout_s=120.0,
        session_dir=tmp_path / "session", drop_after_records=DROP_AFTER, drop_sessions=3, after_drop_s=25.0,
    )
    assert "dropping connection after" in log
    mbo_sessions = [s for s in result["gateway_sessions"] if s["schemas"] == ["mbo"]]
    assert len(mbo_sessions) == 2, result["gateway_sessions"]
    dropped, resumed = mbo_sessions
    assert dropped["dropped"] and dropped["records_sent"] == DROP_AFTER
    assert not resumed["dropped"] and resumed["heartbeats_sent"] > 0  # replayed to the end
    assert resumed["stype_in"] == dropped["stype_in"] and resumed["snapshot"]  # resubscribed as before
    assert next(s for s in result["gateway_sessions"] if "trades" in s["schemas"])["dropped"] is False
    assert result["stopped_by"] == "stop condition"

    counter = result["strategies"]["FlowCounter-COUNT"]
    assert deltas < counter["order_book_deltas"] < 2 * deltas  # partial first pass + full second
    assert counter["trade_ticks"] == trades
    for sid in ("IfdV3Strategy-V3", "IfdV1Strategy-V1"):
        summary = result["strategies"][sid]
        assert summary["healthy_at_end"] and summary["status_events"] == []
    signals = pd.read_parquet(tmp_path / "session" / "signals.parquet")
    assert signals.groupby("algorithm").size().to_dict() == {"ifd_v1": 11, "ifd_v3": 4}
