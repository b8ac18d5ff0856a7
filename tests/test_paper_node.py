"""The paper TradingNode end to end: Databento live client -> our replay gateway on 127.0.0.1.

NautilusTrader's live client has the gateway host built in (glbx-mdp3.lsg.databento.com:13000), so
the node runs in a child process inside a private mount namespace whose /etc/hosts (bind-mounted)
maps that host to 127.0.0.1; the child also runs the gateway on 127.0.0.1:13000. It writes the
strategies' counts and the gateway's sessions to a JSON file this test reads.

Run by hand: ``python -m tests.test_paper_node child CONFIG MBO DEFINITION OUT TIMEOUT``
(inside such a namespace).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ifd.errors import IfdError
from tests.support.live_harness import KEY
from tests.support.live_harness import run_paper_child
from tests.support.live_harness import sent_counts

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CHILD_TIMEOUT_S = 120.0

TEST_CONFIG = """
[node]
trader_id = "IFD-PAPERTEST"
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
book_type = "L3_MBO"

[logging]
log_level = "INFO"

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
"""


# ---------------------------------------------------------------------------------------- tests


def test_paper_spec_from_the_shipped_config():
    from live.paper import load_paper_spec, node_config

    spec = load_paper_spec("configs/live/paper.toml")
    assert spec.dataset == "GLBX.MDP3"
    assert spec.parent_symbols == ("NQ.OPT", "NQ.FUT")
    assert spec.databento.use_exchange_as_venue is False
    assert {i.value for i in spec.databento.instrument_ids} == {"NQ.OPT.GLBX", "NQ.FUT.GLBX"}
    assert spec.databento.api_key is None  # read from the environment by the adapter
    assert spec.sandbox.venue == "GLBX" and spec.sandbox.book_type == "L3_MBO"
    modes = {s.strategy_path: s.config["mode"] for s in spec.strategies}
    assert modes == {"strategies.ifd_v3:IfdV3Strategy": "shadow", "strategies.ifd_v1:IfdV1Strategy": "shadow"}
    assert all(s.config["data_mode"] == "live" for s in spec.strategies)
    assert "min_net_premium_usd" in spec.strategies[0].config["detector"]
    config = node_config(spec)
    assert set(config.data_clients) == {"DATABENTO"} and set(config.exec_clients) == {"SANDBOX"}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('mode = "shadow"', 'mode = "yolo"'), "mode must be one of"),
        (('parent_symbols = ["NQ.OPT", "NQ.FUT"]', 'parent_symbols = ["NQ"]'), "must end with .FUT or .OPT"),
        (('book_type = "L3_MBO"', 'book_type = "L4"'), "book_type 'L4'"),
        (("[logging]", "[bogus]\n[logging]"), "unknown section(s) bogus"),
    ],
)
def test_paper_spec_errors_name_the_setting(tmp_path, edit, message):
    from live.paper import load_paper_spec

    path = tmp_path / "paper.toml"
    path.write_text(TEST_CONFIG.replace(*edit))
    with pytest.raises(IfdError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_paper_spec(path)


def test_build_needs_the_api_key(tmp_path):
    from live.paper import build_paper_node

    path = tmp_path / "paper.toml"
    path.write_text(TEST_CONFIG)
    with pytest.raises(IfdError, match="DATABENTO_API_KEY is not set"):
        build_paper_node(path, env={})


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    from ifd.scenario.generate import ScenarioConfig, generate_scenario

    root = tmp_path_factory.mktemp("paper")
    generate_scenario(root / "scenario", ScenarioConfig(seed=3, strikes=4, expiries=1, minutes=10, rate=100))
    return root / "scenario" / "mbo.dbn.zst", root / "scenario" / "definition.dbn.zst"


def test_paper_node_receives_the_live_feed(tmp_path, session):

    mbo, definition = session
    sent_deltas, sent_trades = sent_counts(mbo)
    result, log = run_paper_child(tmp_path, TEST_CONFIG, mbo, definition, timeout_s=CHILD_TIMEOUT_S)
    assert KEY not in log  # the API key is never logged
    assert result["stopped_by"] == "stop condition", log[-4000:]

    sessions = result["gateway_sessions"]
    assert all(s["error"] is None for s in sessions)
    assert any(s["schemas"] == ["mbo"] and s["snapshot"] for s in sessions)  # one MBO session
    assert any("trades" in s["schemas"] for s in sessions)  # the separate trades subscription
    assert any("parent" in s["stype_in"] for s in sessions)  # definitions by parent symbol

    counter = result["strategies"]["FlowCounter-COUNT"]
    assert counter["instruments_seen"] == 9  # 8 options + the future
    assert counter["order_book_deltas"] == sent_deltas
    assert counter["trade_ticks"] == sent_trades > 0
    v3 = result["strategies"]["IfdV3Strategy-V3"]
    assert v3["mode"] == "shadow" and v3["data_mode"] == "live"
    assert v3["instruments"] == 9
    assert v3["trades_seen"] == sent_trades
    assert v3["signals_acted"] == 0 and v3["entries"] == 0

    # The streamed data is metered into the budget ledger at the gateway's live unit prices (1 USD/GB).
    live = result["ledger_live_rows"]
    assert live and {r["window"] for r in live} == {"live"}
    metered = {schema: sum(r["records"] for r in live if r["schema"] == schema) for schema in ("mbo", "trades")}
    assert metered == {"mbo": sent_deltas, "trades": sent_trades}
    mbo_bytes = sum(r["bytes"] for r in live if r["schema"] == "mbo")
    assert mbo_bytes == sent_deltas * 56 + sent_trades * 112
    assert sum(r["cost_usd"] for r in live) == pytest.approx(sum(r["bytes"] for r in live) / 1e9, rel=1e-9)
