"""Backtest TOML validation and the runner's behaviour on bad settings (no engine run needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nautilus_trader.common.config import InvalidConfiguration

from backtests.config import build_run_config
from backtests.config import load_backtest_spec
from backtests.runner import ProgressBacktestNode
from backtests.runner import ReplayProgress
from ifd.cli import main
from ifd.errors import IfdError

DEMO = Path("configs/backtests/demo.toml")


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bt.toml"
    path.write_text(text)
    return path


def demo_with(replace: str, by: str) -> str:
    text = DEMO.read_text()
    assert replace in text
    return text.replace(replace, by)


def test_demo_config_builds_an_l3_glbx_run_over_the_whole_chain(tmp_path):
    spec = load_backtest_spec(DEMO, catalog_override=tmp_path)
    ids = {"OrderBookDelta": ["NQZ6 C21000.GLBX", "NQZ6.GLBX"], "TradeTick": ["NQZ6 C21000.GLBX", "NQZ6.GLBX"]}
    run = build_run_config(spec, ids)
    [venue] = run.venues
    assert venue.name == "GLBX" and venue.book_type == "L3_MBO"
    assert venue.fill_model is not None and venue.latency_model is not None
    [book] = [d for d in run.data if d.data_cls.endswith("OrderBookDelta")]
    assert book.instrument_ids == sorted(ids["OrderBookDelta"])
    [trades] = [d for d in run.data if d.data_cls.endswith("TradeTick")]
    assert trades.instrument_ids == sorted(ids["TradeTick"])
    assert run.engine.risk_engine.max_order_submit_rate == "100/00:00:01"
    assert len(run.engine.strategies) == 1

    # NautilusTrader's own validation accepts it through our node (an L3 venue needs book data),
    # and still refuses a run whose book data is missing.
    ProgressBacktestNode([run], ReplayProgress(total=0))
    no_book = build_run_config(spec, {"TradeTick": ids["TradeTick"]})
    with pytest.raises(InvalidConfiguration, match="No order book data available for GLBX"):
        ProgressBacktestNode([no_book], ReplayProgress(total=0))


def test_several_strategies_side_by_side(tmp_path):
    text = DEMO.read_text() + (
        '\n[[strategies]]\nstrategy_path = "strategies.flow_counter:FlowCounter"\n'
        'config_path = "strategies.flow_counter:FlowCounterConfig"\n'
        '[strategies.config]\norder_id_tag = "002"\nsubscribe_book = false\n'
    )
    spec = load_backtest_spec(write_config(tmp_path, text), catalog_override=tmp_path)
    assert [s.config["order_id_tag"] for s in spec.strategies] == ["001", "002"]


@pytest.mark.parametrize(
    ("replace", "by", "message"),
    [
        ('book_type = "L3_MBO"', 'book_type = "L4_MAGIC"', "[venue] book_type 'L4_MAGIC' is not one of L1_MBP, L2_MBP, L3_MBO"),
        ('oms_type = "NETTING"', 'oms_type = "NETTED"', "[venue] oms_type 'NETTED' is not one of"),
        ('starting_balances = ["1_000_000 USD"]', 'starting_balances = "1_000_000 USD"', "[venue] Expected `array`"),
        ("prob_fill_on_limit = 0.5", 'prob_fill_on_limit = "often"', "[venue.fill_model]"),
        ("bypass = false", "bypass = false\nmax_orders = 3", "[risk_engine] Object contains unknown field `max_orders`"),
        ("chunk_size = 100_000", "chunk_size = -5", "[run] chunk_size must be a positive integer"),
        ('types = ["OrderBookDelta", "TradeTick"]', 'types = ["Bars"]', "[data] types"),
        ("[logging]", "[loging]", "unknown section(s) loging"),
        ('strategy_path = "strategies.flow_counter:FlowCounter"\n', "", "needs strategy_path"),
    ],
)
def test_bad_settings_name_the_file_and_the_setting(tmp_path, replace, by, message):
    path = write_config(tmp_path, demo_with(replace, by))
    with pytest.raises(IfdError) as err:
        load_backtest_spec(path, catalog_override=tmp_path)
    assert str(path) in str(err.value)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_cli_refuses_missing_config_catalog_and_invalid_toml(tmp_path, capsys):
    assert main(["backtest", "run", str(tmp_path / "nope.toml")]) == 2
    assert "no such backtest config" in capsys.readouterr().err

    broken = write_config(tmp_path, "[run\nname=")
    assert main(["backtest", "run", str(broken), "--catalog", str(tmp_path)]) == 2
    assert "invalid TOML" in capsys.readouterr().err

    assert main(["backtest", "run", str(DEMO), "--catalog", str(tmp_path / "missing")]) == 2
    assert "no such catalog" in capsys.readouterr().err

    empty = tmp_path / "empty_catalog"
    empty.mkdir()
    assert main(["backtest", "run", str(DEMO), "--catalog", str(empty), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "no OrderBookDelta / TradeTick data to replay" in err
    assert not (tmp_path / "run").exists()


def test_profile_errors_name_the_file(tmp_path):
    missing = write_config(tmp_path, DEMO.read_text().replace(
        'config_path = "strategies.flow_counter:FlowCounterConfig"',
        'config_path = "strategies.flow_counter:FlowCounterConfig"\nprofile = "configs/profiles/nope.toml"'))
    with pytest.raises(IfdError, match="profile configs/profiles/nope.toml not found"):
        load_backtest_spec(missing, catalog_override=tmp_path)
    bad = tmp_path / "bad_profile.toml"
    bad.write_text('data_mode = "paper"\n[detector]\n')
    config = write_config(tmp_path, DEMO.read_text().replace(
        'config_path = "strategies.flow_counter:FlowCounterConfig"',
        f'config_path = "strategies.flow_counter:FlowCounterConfig"\nprofile = "{bad}"'))
    with pytest.raises(IfdError, match="data_mode must be 'historical' or 'live'"):
        load_backtest_spec(config, catalog_override=tmp_path)


def test_profile_tables_fill_the_strategy_config(tmp_path):
    spec = load_backtest_spec(Path("configs/backtests/ab_v1_v3.toml"), catalog_override=tmp_path)
    v3, v1 = spec.strategies
    assert v3.config["mode"] == "trade" and v3.config["trading"]["max_position"] == 1
    assert v3.config["detector"]["window_ns"] == 300_000_000_000
    assert v3.config["data_mode"] == "historical" and v3.config["baselines_catalog"] == str(tmp_path)
    assert v1.config["mode"] == "fallback" and v1.config["fallback_for"] == "ifd_v3"


def test_actors_are_part_of_the_engine_config(tmp_path):
    text = DEMO.read_text() + (
        '\n[[actors]]\nactor_path = "strategies.noop:NoOp"\nconfig_path = "strategies.noop:NoOpConfig"\n'
        '[actors.config]\norder_id_tag = "A1"\n'
    )
    spec = load_backtest_spec(write_config(tmp_path, text), catalog_override=tmp_path)
    run = build_run_config(spec, {"OrderBookDelta": ["NQZ6.GLBX"]})
    [actor] = run.engine.actors
    assert actor.actor_path == "strategies.noop:NoOp" and actor.config == {"order_id_tag": "A1"}
    broken = write_config(tmp_path, DEMO.read_text() + '\n[[actors]]\nactor_path = "x:Y"\n')
    with pytest.raises(IfdError, match=r"\[\[actors\]\] #1 needs actor_path and config_path"):
        load_backtest_spec(broken, catalog_override=tmp_path)


def test_an_actor_profile_fills_its_config_and_wrong_keys_are_refused_at_load(tmp_path):
    (tmp_path / "alerts_actor.toml").write_text('config_path = "configs/alerts.toml"\nsignals = false\n')
    entry = (
        '\n[[actors]]\nactor_path = "ifd.alerts.actor:AlertsActor"\nconfig_path = "ifd.alerts.actor:AlertsActorConfig"\n'
        f'profile = "{tmp_path / "alerts_actor.toml"}"\n'
    )
    spec = load_backtest_spec(write_config(tmp_path, DEMO.read_text() + entry + '[actors.config]\nsource = "X"\n'),
                              catalog_override=tmp_path)
    assert spec.actors[0].config == {"config_path": "configs/alerts.toml", "signals": False, "source": "X"}
    broken = write_config(tmp_path, DEMO.read_text() + entry + '[actors.config]\nsignal = true\n')
    with pytest.raises(IfdError, match=r"\[\[actors\]\] #1 \(profile .*\): Object contains unknown field `signal`"):
        load_backtest_spec(broken, catalog_override=tmp_path)
    missing = write_config(tmp_path, DEMO.read_text() + entry.replace("alerts_actor.toml", "nope.toml"))
    with pytest.raises(IfdError, match=r"\[\[actors\]\] #1: profile .*nope.toml not found"):
        load_backtest_spec(missing, catalog_override=tmp_path)
