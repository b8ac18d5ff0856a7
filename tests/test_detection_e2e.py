"""End to end on a small generated session: DBN -> TradeEvents -> v3 (and v1) -> scored against
the planted labels."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ifd.detection.tuning import naive_signals
from ifd.detection.tuning import run_detector
from ifd.detection.v1 import V1Detector
from ifd.detection.v1 import V1Params
from ifd.detection.v3 import V3Detector
from ifd.detection.v3 import V3Params
from ifd.evaluation.matching import match_signals
from ifd.evaluation.matching import score
from ifd.scenario.generate import ScenarioConfig
from ifd.scenario.generate import generate_scenario
from tests.support.trade_events import load_session

PRECISION_FLOOR = 0.7


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory):
    out: Path = tmp_path_factory.mktemp("small_session")
    config = ScenarioConfig(
        seed=3, strikes=8, expiries=1, minutes=15, rate=60.0, institutional=2, mm_straddle=1, volume_noise=1
    )
    generate_scenario(out, config)
    instruments, events = load_session(out)
    return instruments, events, pd.read_parquet(out / "labels.parquet")


def test_trade_events_carry_the_book_before_the_trade(session) -> None:
    instruments, events, _ = session
    assert events and all(e.instrument_id in instruments for e in events)
    assert all(e.ts_init >= e.ts_event for e in events)
    with_book = [e for e in events if e.best_bid == e.best_bid and e.best_ask == e.best_ask]
    assert len(with_book) > 0.95 * len(events)
    # generator trades hit the book: a buy at or above the ask, a sell at or below the bid
    assert all((e.price >= e.best_ask) if e.feed_side == 1 else (e.price <= e.best_bid) for e in with_book)


def test_v3_finds_institutional_flow_on_the_right_side(session) -> None:
    instruments, events, labels = session
    detector = V3Detector(V3Params(), instruments)
    signals, _ = run_detector(detector, events)
    result = score(signals, labels)
    assert result["episodes_detected"] >= 1
    assert result["precision"] >= PRECISION_FLOOR
    hits = match_signals(signals, labels)
    hits = hits[hits["episode_id"] >= 0]
    episode_side = labels.set_index("episode_id")["side"]
    assert (hits["side"].to_numpy() == episode_side.loc[hits["episode_id"]].to_numpy()).all()
    futures = {i for i, info in instruments.items() if info.kind == "FUT"}
    assert not set(signals["instrument_id"]) & futures
    q = detector.quality()
    assert q["trades_seen"] == len(events)
    assert q["agreement_rate"] == 1.0  # the generator's aggressor side always matches its book
    assert q["baseline_sources"] == {"intraday": q["baseline_sources"]["intraday"]}


def test_v1_and_naive_run_on_the_same_stream(session) -> None:
    instruments, events, labels = session
    signals, _ = run_detector(V1Detector(V1Params(), instruments), events)
    futures = {i for i, info in instruments.items() if info.kind == "FUT"}
    assert not set(signals["instrument_id"]) & futures
    score(signals, labels)  # well-formed for the scorer
    naive = naive_signals(events, instruments)
    assert set(naive.columns) == {"ts_event", "instrument_id", "side"}
