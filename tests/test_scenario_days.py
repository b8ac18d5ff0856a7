"""``ScenarioConfig.days``: ordinary history sessions on the weekdays before the main day."""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import itertools
from dataclasses import replace
from pathlib import Path

import databento as db
import pyarrow.parquet as pq
import pytest

from ifd.errors import IfdError
from ifd.scenario import ScenarioConfig, generate_scenario
from ifd.scenario.history import history_dates

FILES = ("definition.dbn.zst", "mbo.dbn.zst", "labels.parquet")
# Monday 2026-11-16: the three weekdays before it are Wed 11th, Thu 12th, Fri 13th.
BASE = ScenarioConfig(seed=23, strikes=3, expiries=2, minutes=10, rate=100.0)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): _sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def four_days(tmp_path_factory):
    out = tmp_path_factory.mktemp("days4")
    summary = generate_scenario(out, replace(BASE, days=4))
    return out, summary


def test_history_dates_skip_weekends():
    assert history_dates(dt.date(2026, 11, 16), 3) == [
        dt.date(2026, 11, 11),
        dt.date(2026, 11, 12),
        dt.date(2026, 11, 13),
    ]
    assert history_dates(dt.date(2026, 11, 18), 4) == [
        dt.date(2026, 11, 12),
        dt.date(2026, 11, 13),
        dt.date(2026, 11, 16),
        dt.date(2026, 11, 17),
    ]
    assert history_dates(dt.date(2026, 11, 18), 0) == []


def test_history_folders_summary_and_files(four_days):
    out, summary = four_days
    dates = ["2026-11-11", "2026-11-12", "2026-11-13"]
    assert [h["date"] for h in summary["history"]] == dates
    assert sorted(p.name for p in (out / "history").iterdir()) == dates
    for entry in summary["history"]:
        folder = out / "history" / entry["date"]
        assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)
        assert entry["files"] == {
            "definition": str(folder / "definition.dbn.zst"),
            "mbo": str(folder / "mbo.dbn.zst"),
            "labels": str(folder / "labels.parquet"),
        }
        assert entry["records"] > 20_000
    # the main day is where it always was
    assert summary["files"]["mbo"] == str(out / "mbo.dbn.zst")
    assert summary["session"]["date"] == "2026-11-16"


def test_history_days_load_with_databento_and_nautilus(four_days):
    from nautilus_trader.adapters.databento.loaders import DatabentoDataLoader

    out, summary = four_days
    for entry in summary["history"]:
        folder = out / "history" / entry["date"]
        day = dt.date.fromisoformat(entry["date"])
        lo = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * 10**9
        defs = db.DBNStore.from_file(folder / "definition.dbn.zst").to_ndarray()
        mbo = db.DBNStore.from_file(folder / "mbo.dbn.zst")
        arr = mbo.to_ndarray()
        assert len(arr) == entry["records"]
        assert lo <= int(arr["ts_event"].min()) and int(arr["ts_event"].max()) < lo + 86_400 * 10**9
        assert set(arr["instrument_id"].tolist()) == set(defs["instrument_id"].tolist())
        assert set(mbo.metadata.symbols) == {r["raw_symbol"].decode() for r in defs}
        # no listed option has expired by the session
        opts = defs[defs["instrument_class"] != b"F"]
        assert (opts["expiration"].astype("int64") > int(arr["ts_event"].max())).all()

        loader = DatabentoDataLoader()
        instruments = loader.from_dbn_file(folder / "definition.dbn.zst", as_legacy_cython=True)
        assert len(instruments) == len(defs) == entry["instruments"] == 1 + 2 * 2 * 3
        data = loader.from_dbn_file(folder / "mbo.dbn.zst", as_legacy_cython=True, include_trades=True)
        kinds = collections.Counter(type(d).__name__ for d in data)
        actions = collections.Counter(arr["action"].tolist())
        assert kinds["TradeTick"] == actions[b"T"] > 0
        assert kinds["OrderBookDelta"] == actions[b"A"] + actions[b"C"] + actions[b"M"]


def test_no_institutional_episodes_in_history(four_days):
    out, summary = four_days
    assert summary["episodes"]["institutional"] == BASE.institutional > 0
    for entry in summary["history"]:
        labels = pq.read_table(out / "history" / entry["date"] / "labels.parquet").to_pylist()
        kinds = collections.Counter(row["kind"] for row in labels)
        assert kinds["institutional"] == 0 == entry["episodes"]["institutional"]
        assert kinds["mm_straddle"] + kinds["volume_noise"] > 0  # normal activity is still there
        assert all(row["side"] == "NONE" for row in labels)
        # straddles are traded one way (both legs bought or both sold), without direction
        assert all(row["straddle_side"] in ("BUY", "SELL") for row in labels if row["kind"] == "mm_straddle")
        assert all(row["direction"] == "NONE" for row in labels)


def test_chain_rolls_and_recentres(four_days):
    out, _ = four_days

    def symbols(folder: Path) -> set[str]:
        defs = db.DBNStore.from_file(folder / "definition.dbn.zst").to_ndarray()
        return {r["raw_symbol"].decode() for r in defs}

    main = symbols(out)
    wed = symbols(out / "history" / "2026-11-11")
    fri = symbols(out / "history" / "2026-11-13")
    # the Friday weekly of week 2 (QN2X6, 13 Nov) is listed on Wednesday, gone by Monday
    assert any(s.startswith("QN2X6") for s in wed)
    assert not any(s.startswith("QN2X6") for s in fri | main)
    assert any(s.startswith("QN4X6") for s in fri) and any(s.startswith("QN4X6") for s in main)
    # ids stay with the symbol across days
    ids: dict[str, set[int]] = collections.defaultdict(set)
    for folder in [out, *(out / "history").iterdir()]:
        defs = db.DBNStore.from_file(folder / "definition.dbn.zst").to_ndarray()
        for r in defs:
            ids[r["raw_symbol"].decode()].add(int(r["instrument_id"]))
    assert all(len(v) == 1 for v in ids.values())
    assert len({next(iter(v)) for v in ids.values()}) == len(ids)


def test_underlying_continues_across_days(four_days):
    _, summary = four_days
    sessions = [*summary["history"], summary]
    for prev, nxt in itertools.pairwise(sessions):
        gap = abs(nxt["underlying_start"] - prev["underlying_end"]) / prev["underlying_end"]
        assert gap < 0.04, (prev.get("date"), gap)
    assert summary["underlying_start"] == BASE.underlying_price
    starts = {h["underlying_start"] for h in summary["history"]}
    assert len(starts) == 3 and BASE.underlying_price not in starts  # a walk, not a copy


def test_main_day_identical_to_single_day_run(four_days, tmp_path):
    out, summary = four_days
    single = generate_scenario(tmp_path, BASE)
    for name in FILES:
        assert _sha(out / name) == _sha(tmp_path / name), name
    assert single["history"] == [] and not (tmp_path / "history").exists()
    assert single["records"] == summary["records"]


def test_days_are_deterministic_and_independent_of_count(four_days, tmp_path):
    out, _ = four_days
    again = tmp_path / "again"
    generate_scenario(again, replace(BASE, days=4))
    assert _hashes(again) == _hashes(out)
    fewer = tmp_path / "fewer"
    generate_scenario(fewer, replace(BASE, days=2))
    assert sorted(p.name for p in (fewer / "history").iterdir()) == ["2026-11-13"]
    assert _hashes(fewer / "history") == {
        k: v for k, v in _hashes(out / "history").items() if k.startswith("2026-11-13/")
    }
    other = tmp_path / "other"
    generate_scenario(other, replace(BASE, days=2, seed=BASE.seed + 1))
    assert _sha(other / "history/2026-11-13/mbo.dbn.zst") != _sha(out / "history/2026-11-13/mbo.dbn.zst")


@pytest.mark.parametrize("days", [0, -1, 1000])
def test_bad_days(tmp_path, days):
    with pytest.raises(IfdError, match="days must be"):
        generate_scenario(tmp_path, replace(BASE, days=days))
