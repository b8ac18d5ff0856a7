"""The command line around the detectors: baselines build, evaluate, and a one-seed study with history."""

from __future__ import annotations

import json

import pytest

from backtests.study import parse_seeds
from ifd.cli import main
from ifd.errors import IfdError

TINY = ["--strikes", "4", "--expiries", "1", "--minutes", "12", "--rate", "120"]


def test_seed_ranges():
    assert parse_seeds("1-5") == [1, 2, 3, 4, 5]
    assert parse_seeds("1,3,6-7") == [1, 3, 6, 7]
    with pytest.raises(IfdError, match="expected numbers"):
        parse_seeds("one")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One seed with 3 history days: generate, ingest all days, build baselines, A/B shadow run, evaluate."""
    workdir = tmp_path_factory.mktemp("study")
    code = main(["study", "--seeds", "2", "--days", "4", "--workdir", str(workdir), "--json", *TINY])
    assert code == 0
    return workdir


def test_study_uses_history_baselines_in_the_backtest(study):
    seed = study / "seed_2"
    baselines = list((seed / "catalog" / "baselines").glob("baseline_*.parquet"))
    assert len(baselines) == 1
    summary = json.loads((seed / "run" / "summary.json").read_text())
    # Only the episode day is replayed, and the runner counted exactly its rows in advance.
    assert summary["records_processed"] == summary["records_total"] > 0
    assert summary["backtest_start"].startswith("2026-11-16")
    v3 = summary["strategies"]["IfdV3Strategy-V3"]["results"]
    assert v3["baselines"].startswith("20-day history")
    sources = v3["quality"]["baseline_sources"]
    assert sources.get("instrument", 0) + sources.get("moneyness", 0) > 0
    pooled = json.loads((study / "study.json").read_text())
    assert pooled["seeds"] == [2]
    for name in ("ifd_v1", "ifd_v3", "naive_net_premium"):
        assert {"precision", "recall", "f1"} <= set(pooled[name])
    assert (study / "study.md").read_text().count("ifd_v3") >= 1


def test_cli_evaluate_and_baselines_build(study, capsys):
    seed = study / "seed_2"
    code = main(["evaluate", str(seed / "run"), "--labels", str(seed / "scenario" / "labels.parquet"), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert {"ifd_v1", "ifd_v3", "naive_net_premium"} <= set(result)
    assert result["ifd_v3"]["episodes"] >= 1

    # Incremental: every history day is cached already, nothing is recomputed.
    code = main(["baselines", "build", "--catalog", str(seed / "catalog"), "--date", "2026-11-16", "--json"])
    assert code == 0
    built = json.loads(capsys.readouterr().out)
    assert built["days_computed"] == [] and len(built["days_reused"]) == 3

    code = main(["evaluate", str(seed / "missing-run"), "--labels", str(seed / "scenario" / "labels.parquet")])
    assert code == 2
    assert "missing-run" in capsys.readouterr().err


def test_naive_reference_counts_each_trade_once_in_a_multi_day_catalog(study, tmp_path):
    """History days add a definition per instrument and day; the naive detector must not double count."""
    from catalogs.ingest import ingest
    from ifd.evaluation.report import evaluate_run
    from ifd.evaluation.ticks import catalog_instruments

    seed = study / "seed_2"
    assert catalog_instruments(seed / "catalog")["instrument_id"].is_unique
    main_day_only = tmp_path / "catalog"
    ingest([seed / "scenario" / "definition.dbn.zst", seed / "scenario" / "mbo.dbn.zst"], main_day_only)
    labels = seed / "scenario" / "labels.parquet"
    multi = evaluate_run(seed / "run", labels)["naive_net_premium"]
    single = evaluate_run(seed / "run", labels, catalog=main_day_only)["naive_net_premium"]
    assert multi["signals"] == single["signals"]
    assert multi["false_positives_by_cause"] == single["false_positives_by_cause"]
