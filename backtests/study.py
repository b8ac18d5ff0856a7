"""``ifd study``: detection quality over several seeds, through the real backtest path.

For each seed: generate a session (optionally with history days), ingest it, build the
baselines when there is history, replay it with IFD v1 and v3 side by side (shadow), and
score the run with ``ifd evaluate``; then pool the seeds into one table.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from dataclasses import replace
from pathlib import Path

import pandas as pd

from backtests.runner import run_backtest
from catalogs.ingest import ingest
from ifd.errors import IfdError
from ifd.evaluation.report import aggregate
from ifd.evaluation.report import evaluate_run
from ifd.evaluation.report import write_evaluation
from ifd.evaluation.report import write_study
from ifd.scenario.generate import ScenarioConfig
from ifd.scenario.generate import generate_scenario

STUDY_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "backtests" / "shadow_v1_v3.toml"
BASELINE_LOOKBACK = 20  # the strategies' default `baseline_lookback`; fewer history days use what exists


def parse_seeds(text: str) -> list[int]:
    """'1-5' or '1,3,7' or '1-3,8' -> seeds."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part:
                first, last = (int(x) for x in part.split("-", 1))
                seeds.extend(range(first, last + 1))
            elif part.strip():
                seeds.append(int(part))
    except ValueError:
        raise IfdError(f"seeds {text!r}: expected numbers and ranges like 1-5,8") from None
    if not seeds:
        raise IfdError(f"seeds {text!r}: no seed given")
    return seeds


def run_seed(
    seed: int,
    workdir: Path,
    scenario: ScenarioConfig,
    config: Path = STUDY_CONFIG,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Generate, ingest, (baselines,) backtest and evaluate one seed; returns the evaluation."""
    from ifd.detection.baselines import build_baselines

    say = progress or (lambda _msg: None)
    seed_dir = workdir / f"seed_{seed}"
    shutil.rmtree(seed_dir, ignore_errors=True)
    scenario_dir, catalog = seed_dir / "scenario", seed_dir / "catalog"
    say(f"seed {seed}: generating")
    summary = generate_scenario(scenario_dir, replace(scenario, seed=seed))
    for day in summary.get("history", []):
        files = day["files"]
        ingest([Path(files["definition"]), Path(files["mbo"])], catalog)
    ingest([scenario_dir / "definition.dbn.zst", scenario_dir / "mbo.dbn.zst"], catalog)
    if summary.get("history"):
        say(f"seed {seed}: building baselines over {len(summary['history'])} history days")
        build_baselines(catalog, date=scenario.date, lookback=BASELINE_LOOKBACK)
    say(f"seed {seed}: backtest")
    # The catalog holds the history days too: replay the episode day only.
    day = pd.Timestamp(scenario.date, tz="UTC")
    run = run_backtest(
        config, catalog=catalog, out=seed_dir / "run", start=day.value, end=(day + pd.Timedelta(days=1)).value - 1,
    )
    result = evaluate_run(run.run_dir, scenario_dir / "labels.parquet", catalog=catalog)
    write_evaluation(run.run_dir, result)
    result["seed"] = seed
    return result


def run_study(
    seeds: list[int],
    workdir: Path,
    scenario: ScenarioConfig | None = None,
    config: Path = STUDY_CONFIG,
    name: str = "study",
    progress: Callable[[str], None] | None = None,
) -> dict:
    """All seeds, pooled; writes ``<name>.json`` and ``<name>.md`` into ``workdir``."""
    started = time.perf_counter()
    scenario = scenario or ScenarioConfig()
    results = [run_seed(seed, workdir, scenario, config, progress) for seed in seeds]
    study = aggregate(results)
    study["seeds"] = seeds
    study["scenario"] = {k: v for k, v in asdict(scenario).items() if k != "seed"}
    study["seconds"] = round(time.perf_counter() - started, 1)
    write_study(workdir, study, stem=name)
    return study
