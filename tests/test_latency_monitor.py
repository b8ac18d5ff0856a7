"""The latency monitor: per-minute figures (``ifd.monitoring.latency``) and the ``LatencyMonitor`` actor
in real BacktestNode runs and paper TradingNodes on the replay client.

The paper nodes run in child processes (``tests.support.latency_node``; one node per process).
The overhead test prints records/s with and without the monitor (``pytest -s``); nothing is timed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from backtests.config import actor_configs
from backtests.config import build_run_config
from backtests.config import load_backtest_spec
from backtests.runner import ProgressBacktestNode
from backtests.runner import ReplayProgress
from backtests.runner import catalog_rows
from backtests.runner import run_backtest
from ifd.alerts import AlertHistory
from ifd.errors import IfdError
from ifd.monitoring.latency import NS_PER_MINUTE
from ifd.monitoring.latency import BreachTracker
from ifd.monitoring.latency import Figures
from ifd.monitoring.latency import LatencySeries
from ifd.monitoring.latency import MinuteLatency
from ifd.monitoring.latency import Threshold
from ifd.monitoring.latency_actor import LatencyConfig
from strategies.signals import MonitorAlarm
from strategies.signals import data_topic
from tests.support.configs import without_actors

PROJECT = Path(__file__).resolve().parents[1]
T0 = 1_794_839_400_000_000_000  # 2026-11-16 14:30:00 UTC, on a minute
MONITOR = """
[[actors]]
actor_path = "ifd.monitoring.latency_actor:LatencyMonitor"
config_path = "ifd.monitoring.latency_actor:LatencyConfig"
profile = "configs/monitors/latency.toml"
"""


def close(a, b) -> bool:
    return a == pytest.approx(b, rel=1e-12, abs=1e-6)


# -- engine-free figures ----------------------------------------------------------------------


def test_minute_percentiles_equal_numpy_on_known_samples():
    rng = np.random.default_rng(7)
    minutes = {0: rng.integers(1_000, 5_000_000, 500), 1: rng.integers(-2_000, 900, 37), 2: np.array([42])}
    agg = MinuteLatency(["feed"])
    for minute, values in minutes.items():
        offsets = np.sort(rng.integers(0, NS_PER_MINUTE, values.size))
        for offset, value in zip(offsets, values, strict=True):
            agg.add("feed", T0 + minute * NS_PER_MINUTE + int(offset), int(value))
    assert agg.flush() is not None
    assert [row.minute_ns for row in agg.rows] == [T0, T0 + NS_PER_MINUTE, T0 + 2 * NS_PER_MINUTE]
    for row, values in zip(agg.rows, minutes.values(), strict=True):
        fig = row.series["feed"]
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        assert fig.n == values.size and fig.exact
        assert close(fig.p50, p50) and close(fig.p90, p90) and close(fig.p99, p99)
        assert fig.min == values.min() and fig.max == values.max()
    assert agg.rows[2].series["feed"].p99 == 42.0  # one sample: every percentile is it


def test_minute_rollover_empty_minutes_and_current():
    agg = MinuteLatency(["feed", "processing"])
    assert agg.roll(T0) is None  # nothing open yet
    assert agg.add("feed", T0 + 5, 10) is None
    agg.add("feed", T0 + NS_PER_MINUTE - 1, 30)  # still minute 0
    assert agg.current().series["feed"].n == 2 and agg.current().series["feed"].max == 30
    assert agg.roll(T0 + NS_PER_MINUTE - 1) is None  # not past the minute
    row = agg.add("processing", T0 + 3 * NS_PER_MINUTE + 1, 7)  # minutes 1 and 2 had nothing
    assert row.minute_ns == T0 and row.series["feed"].n == 2
    assert row.series["processing"] == Figures()  # n 0, no percentiles
    assert agg.roll(T0 + 9 * NS_PER_MINUTE).minute_ns == T0 + 3 * NS_PER_MINUTE
    assert agg.roll(T0 + 10 * NS_PER_MINUTE) is None  # minute 9: no samples, no row
    assert agg.flush() is None
    assert [r.minute_ns // NS_PER_MINUTE - T0 // NS_PER_MINUTE for r in agg.rows] == [0, 3]
    assert agg.overall("feed").n == 2 and agg.overall("processing").n == 1
    assert agg.overall("processing").p50 == 7.0


def test_overall_figures_exact_then_from_the_histogram():
    rng = np.random.default_rng(11)
    values = np.concatenate([rng.lognormal(11, 1.2, 60_000).astype(np.int64), [-3_000, 0]])
    exact, capped = LatencySeries(), LatencySeries(max_exact_samples=10_000)
    for chunk in np.array_split(values, 7):  # seven "minutes"
        for series in (exact, capped):
            for value in chunk:
                series.append(int(value))
            series.close()
    want = np.percentile(values, [50, 90, 99])
    got = exact.overall()
    assert got.exact and got.n == values.size
    assert [close(g, w) for g, w in zip((got.p50, got.p90, got.p99), want, strict=True)] == [True] * 3
    approx = capped.overall()
    assert not approx.exact and approx.n == values.size
    assert approx.min == -3_000 and approx.max == values.max()  # exact whatever the mode
    for g, w in zip((approx.p50, approx.p90, approx.p99), want, strict=True):
        assert abs(g - w) / w < 0.01
    assert LatencySeries().overall() == Figures()


def test_breach_tracker_alarms_once_per_episode_and_on_escalation():
    ms = 1_000_000

    def minute(k: int, p99_ms: float, n: int = 5) -> tuple[int, Figures]:
        return T0 + k * NS_PER_MINUTE, Figures(n=n, p50=1.0, p90=1.0, p99=p99_ms * ms, min=1.0, max=p99_ms * ms)

    tracker = BreachTracker(Threshold(100 * ms, 1_000 * ms, min_samples=3))
    levels = [tracker.judge(*minute(k, p99, n)) for k, (p99, n) in enumerate([
        (50, 5), (150, 5), (200, 5), (5_000, 2),  # 3: too few samples: neutral
        (180, 5), (1_500, 9), (1_200, 9), (100, 9),  # 5: escalation; 7: at the limit ends it
        (101, 3), (99, 0),
    ])]
    assert levels == [None, "warning", None, None, None, "critical", None, None, "warning", None]
    assert tracker.episodes == 2 and tracker.in_episode  # a minute without samples ends nothing

    again = BreachTracker(Threshold(100 * ms, None, min_samples=1, realert_minutes=2))
    assert [again.judge(*minute(k, 500)) for k in range(5)] == ["warning", None, "warning", None, "warning"]


def test_config_refuses_bad_values_naming_the_field(tmp_path):
    for bad, field in [({"max_p99_processing_ms": 0}, "max_p99_processing_ms"),
                       ({"critical_p99_processing_ms": 50.0}, "critical_p99_processing_ms"),
                       ({"critical_p99_feed_ms": 5.0}, "critical_p99_feed_ms"),
                       ({"alarm_level": "loud"}, "alarm_level"),
                       ({"min_samples_per_minute": 0}, "min_samples_per_minute"),
                       ({"realert_after_minutes": -1}, "realert_after_minutes"),
                       ({"instrument_ids": ["NQ"]}, "instrument_ids")]:
        with pytest.raises(ValueError, match=f"LatencyConfig.{field}"):
            LatencyConfig(**bad)
    profile = tmp_path / "latency.toml"
    profile.write_text((PROJECT / "configs/monitors/latency.toml").read_text().replace(
        "min_samples_per_minute = 1", "min_samples_per_minute = 0"))
    entry = {"actor_path": "ifd.monitoring.latency_actor:LatencyMonitor",
             "config_path": "ifd.monitoring.latency_actor:LatencyConfig", "profile": str(profile)}
    with pytest.raises(IfdError, match=r"\[\[actors\]\] #1 .*LatencyConfig.min_samples_per_minute must be >= 1, got 0"):
        actor_configs(tmp_path / "run.toml", [entry])


def test_shipped_profile_is_every_field_commented():
    path = PROJECT / "configs/monitors/latency.toml"
    [actor] = actor_configs(path, [{"actor_path": "ifd.monitoring.latency_actor:LatencyMonitor",
                                    "config_path": "ifd.monitoring.latency_actor:LatencyConfig",
                                    "profile": "configs/monitors/latency.toml"}])
    fields = set(LatencyConfig.__struct_fields__) - {"component_id", "log_events", "log_commands", "instrument_ids"}
    assert set(actor.config) == fields
    assert LatencyConfig.parse(msgspec.json.encode(actor.config)) == LatencyConfig()  # the defaults
    lines = [line for line in path.read_text().splitlines() if "=" in line and not line.startswith("#")]
    assert len(lines) == len(fields) and all("#" in line for line in lines)


# -- in a BacktestNode ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def backtests(small_session_catalog, tmp_path_factory) -> dict[str, Path]:
    """ab_v1_v3 with and without the monitor: the two run folders."""
    root = tmp_path_factory.mktemp("latency_backtests")
    base = without_actors("ab_v1_v3.toml")
    runs = {}
    for name, text in (("with", base + MONITOR), ("without", base)):
        (root / f"{name}.toml").write_text(text)
        runs[name] = run_backtest(root / f"{name}.toml", catalog=small_session_catalog, out=root / name).run_dir
    return runs


def test_backtest_latency_json_matches_the_signals(backtests):
    report = json.loads((backtests["with"] / "latency.json").read_text())
    assert report["monitor"] == "latency" and report["clock"] == "simulated"
    assert report["timestamps"] == "recorded" and any("not a measurement" in n for n in report["notes"])
    signals = pq.read_table(backtests["with"] / "signals.parquet").to_pandas()
    assert len(signals) >= 5
    us = signals["latency_ns"].to_numpy() / 1_000.0
    proc = report["processing_latency_us"]
    assert proc["n"] == len(signals) and proc["exact"]
    for key, q in (("p50", 50), ("p90", 90), ("p99", 99)):
        assert proc[key] == pytest.approx(np.percentile(us, q), abs=0.002)
    assert proc["max"] == pytest.approx(us.max(), abs=0.001) and proc["min"] > 0

    # per minute of the (simulated) node clock = minute of each signal's time
    signals["minute"] = signals["ts_signal"] // NS_PER_MINUTE * NS_PER_MINUTE
    rows = {row["minute"]: row for row in report["per_minute"]}
    assert sum(row["proc_n"] for row in rows.values()) == len(signals)
    for minute, group in signals.groupby("minute"):
        row = rows[pd.Timestamp(minute, unit="ns", tz="UTC").isoformat()]
        values = group["latency_ns"].to_numpy() / 1_000.0
        assert row["proc_n"] == len(values)
        assert row["proc_p50_us"] == pytest.approx(np.percentile(values, 50), abs=0.002)
        assert row["proc_p99_us"] == pytest.approx(np.percentile(values, 99), abs=0.002)
        assert row["proc_max_us"] == pytest.approx(values.max(), abs=0.001)

    # feed: every delta (one per OrderBookDeltas in a backtest) and trade, 0 by construction
    summary = json.loads((backtests["with"] / "summary.json").read_text())
    feed = report["feed_latency_us"]
    assert feed["n"] == summary["records_processed"] and sum(r["feed_n"] for r in report["per_minute"]) == feed["n"]
    assert feed["min"] == feed["max"] == 0.0
    assert report["alarms"] == [] and summary["reports"]["latency"] == 1


def test_backtest_monitor_changes_no_signal(backtests):
    """managed=False: the strategies' books, and so their signals, are the same without the monitor."""
    def rows(run: Path) -> list[dict]:
        frame = pq.read_table(run / "signals.parquet").to_pandas().drop(columns=["latency_ns"])
        return frame.to_dict("records")

    assert rows(backtests["with"]) == rows(backtests["without"])


ALERTS_TOML = """
[alerts]
dedup_window_s = 300
[console]
enabled = false
[log_file]
path = "{tmp}/alerts.log"
[history]
path = "{tmp}/alerts.sqlite"
"""


def run_with_slow_signals(catalog: Path, tmp: Path, latency_ms: float, minutes: list[int]):
    """ab_v1_v3 + the monitor + the AlertsActor + a test actor publishing slow FlowSignals."""
    (tmp / "alerts.toml").write_text(ALERTS_TOML.format(tmp=tmp))
    text = without_actors("ab_v1_v3.toml") + MONITOR + (
        '\n[[actors]]\nactor_path = "tests.support.latency_node:SlowSignals"\n'
        'config_path = "tests.support.latency_node:SlowSignalsConfig"\n'
        f"[actors.config]\nlatency_ms = {latency_ms}\nminutes = {minutes}\nper_minute = 3\n"
        '\n[[actors]]\nactor_path = "ifd.alerts.actor:AlertsActor"\n'
        'config_path = "ifd.alerts.actor:AlertsActorConfig"\n'
        f'[actors.config]\nconfig_path = "{tmp / "alerts.toml"}"\nsignals = false\n'
    )
    (tmp / "run.toml").write_text(text)
    spec = load_backtest_spec(tmp / "run.toml", catalog_override=catalog)
    config = build_run_config(spec, {name: sorted(per) for name, per in catalog_rows(spec).items()})
    node = ProgressBacktestNode([config], ReplayProgress(total=0))
    try:
        node.build()
        engine = node.get_engine(config.id)
        alarms: list[MonitorAlarm] = []
        engine.kernel.msgbus.subscribe(topic=data_topic(MonitorAlarm), handler=alarms.append)
        node.run()
        monitor, slow, _ = engine.trader.actors()
        return alarms, monitor.run_report() | {"live": monitor.live_figures()}, slow.published
    finally:
        node.dispose()


@pytest.mark.parametrize(
    ("latency_ms", "minutes", "level"),
    [(150.0, [2, 3, 4], "warning"), (1_500.0, [2], "critical"), (90.0, [2, 3], None)],
    ids=["one-warning-for-a-3-minute-episode", "critical", "below-threshold"],
)
def test_slow_signals_raise_one_alarm_and_one_alert(small_session_catalog, tmp_path, latency_ms, minutes, level):
    alarms, report, published = run_with_slow_signals(small_session_catalog, tmp_path, latency_ms, minutes)
    assert len(published) == 3 * len(minutes)
    history = AlertHistory(tmp_path / "alerts.sqlite", readonly=True).query(kind="monitor.latency", limit=100)
    if level is None:
        assert alarms == [] and report["alarms"] == [] and history == []
        return
    [alarm] = alarms
    assert (alarm.monitor, alarm.kind, alarm.level) == ("latency", "p99_processing_latency", level)
    first_slow = published[0][0] // NS_PER_MINUTE * NS_PER_MINUTE
    minute = pd.Timestamp(first_slow, unit="ns", tz="UTC").isoformat()
    assert f"minute={minute}" in alarm.fields and alarm.ts_event >= first_slow + NS_PER_MINUTE
    assert report["live"]["alarms"] == 1 and report["live"]["clock"] == "simulated"
    [entry] = report["alarms"]
    assert entry["level"] == level and entry["minute"] == minute and entry["p99_ms"] >= latency_ms * 0.99
    [alert] = history
    assert alert["level"] == level and alert["ts_ns"] == alarm.ts_event
    assert alert["title"].startswith("p99 processing latency") and "check" in alert["fields"]


# -- in a paper TradingNode on the replay client ------------------------------------------------


def run_node(tmp: Path, catalog: Path, *, monitor: bool, stamped: bool, speed: float) -> dict:
    tmp.mkdir(parents=True, exist_ok=True)
    spec = tmp / "spec.json"
    spec.write_text(json.dumps({"catalog": str(catalog), "speed": speed, "monitor": monitor,
                                "stamped": stamped, "out": str(tmp / "result.json")}))
    env = {k: v for k, v in os.environ.items() if k != "DATABENTO_API_KEY"}
    proc = subprocess.run([sys.executable, "-m", "tests.support.latency_node", "child", str(spec)],
                          cwd=PROJECT, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    result = json.loads((tmp / "result.json").read_text())
    assert result["stopped_by"] == "stop condition"
    return result


@pytest.fixture(scope="module")
def replays(small_session_catalog, tmp_path_factory) -> dict[str, tuple[dict, Path]]:
    root = tmp_path_factory.mktemp("latency_replays")
    out = {}
    for name, kwargs in (("recorded", {"monitor": True, "stamped": False, "speed": 0}),
                         ("stamped", {"monitor": True, "stamped": True, "speed": 60}),
                         ("without", {"monitor": False, "stamped": False, "speed": 0})):
        out[name] = (run_node(root / name, small_session_catalog, **kwargs), root / name / "session")
    return out


def test_replayed_recording_measures_processing_from_dispatch(replays):
    """Stock replay client: recorded timestamps on a live clock. The recording's age is no wait, so the
    strategies count none: latency_ns is the handler's own time, and the monitor's figures are those."""
    result, session = replays["recorded"]
    report = json.loads((session / "latency.json").read_text())
    assert report["clock"] == "live" and report["timestamps"] == "recorded"
    signals = pq.read_table(session / "signals.parquet").to_pandas()
    assert len(signals) >= 5 and (signals["latency_ns"] < 10**9).all()  # not the recording's age
    proc = report["processing_latency_us"]
    assert proc["n"] == len(signals)
    assert 0 < proc["min"] <= proc["p50"] <= proc["p99"] <= proc["max"] < 1_000_000  # real, under 1 s
    us = signals["latency_ns"].to_numpy() / 1_000.0
    assert proc["p50"] == pytest.approx(float(np.percentile(us, 50)), rel=1e-6)
    feed = report["feed_latency_us"]
    published = result["published"]
    assert published["trade_ticks"] < feed["n"] <= published["order_book_deltas"] + published["trade_ticks"]
    assert feed["min"] == feed["max"] == 0.0  # ts_init = ts_event = ts_recv in the recording
    live = result["live_figures"]
    assert live["clock"] == "live" and live["current_minute"]["feed_n"] > 0


def test_live_stamped_replay_shows_real_feed_and_processing_latency(replays):
    """Records stamped as the live Databento client stamps them: feed latency is the replay's real
    delivery delay, processing latency the strategies' own latency_ns (queueing included)."""
    _, session = replays["stamped"]
    report = json.loads((session / "latency.json").read_text())
    assert report["clock"] == "live" and report["timestamps"] == "arrival"
    feed = report["feed_latency_us"]
    assert feed["n"] > 1000 and feed["p50"] > 0 and feed["p99"] > feed["p50"]
    signals = pq.read_table(session / "signals.parquet").to_pandas()
    assert len(signals) >= 1
    us = signals["latency_ns"].to_numpy() / 1_000.0
    proc = report["processing_latency_us"]
    assert proc["n"] == len(signals) and proc["min"] > 0
    assert proc["p50"] == pytest.approx(np.percentile(us, 50), abs=0.002)
    assert proc["max"] == pytest.approx(us.max(), abs=0.001)
    assert sum(row["proc_n"] for row in report["per_minute"]) == len(signals)


def test_overhead_on_a_replay(replays):
    """Records/s of the same max-speed replay with and without the monitor (printed, not asserted)."""
    figures = {}
    for name in ("without", "recorded"):
        result = replays[name][0]
        records = result["published"]["order_book_deltas"] + result["published"]["trade_ticks"]
        wall, cpu = result["replay_seconds"], result["replay_cpu_seconds"]
        figures[name] = {"records": records, "wall_s": round(wall, 3), "records_per_s": round(records / wall),
                         "cpu_s": round(cpu, 3), "records_per_cpu_s": round(records / cpu)}
    assert figures["without"]["records"] == figures["recorded"]["records"]
    ratio = figures["recorded"]["records_per_cpu_s"] / figures["without"]["records_per_cpu_s"]
    print(f"\nlatency monitor on a max-speed replay (without, with): {json.dumps(figures)}; "
          f"records per CPU second with/without {ratio:.2f}")
