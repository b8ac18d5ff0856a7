"""The limited-live node (live/limited.py): every refusal before connecting, the node config, no secrets.

Nothing here connects anywhere but to the node's own Redis (state, ``[cache]``) where a test
builds a node: every test runs with ``socket.socket.connect`` (and ``socket.create_connection``)
patched to fail the test if called with any other address.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from nautilus_trader.adapters.interactive_brokers.config import (
    InteractiveBrokersExecClientConfig,
)
from nautilus_trader.config import TradingNodeConfig

from ifd.errors import IfdError
from live import limited
from live.limited import build_limited_node, load_limited_spec, node_config
from live.risk_guard import RiskGuard

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG = PROJECT_ROOT / "configs" / "live" / "limited.toml"
KEY = "db-LIMITEDsecretKEYlimited123456"  # 32 characters, like a real key
ACCOUNT = "DU7654321"
ENV = {
    "DATABENTO_API_KEY": KEY,
    "IB_ACCOUNT_ID": ACCOUNT,
    "IB_HOST": "127.0.0.1",
    "IB_PORT": "4002",
    "IB_CLIENT_ID": "17",
}
INLINE_LIMITS = """[limits]
max_position_contracts = 1
max_daily_loss_usd = 50
max_total_risk_usd = 200
max_consecutive_losses = 3
max_drawdown_usd = 40
account_env = "IB_ACCOUNT_ID"
"""


@pytest.fixture(autouse=True)
def no_network(monkeypatch, request):
    allowed = {tuple(request.getfixturevalue("redis_server"))} if "redis_server" in request.fixturenames else set()
    originals = {"connect": socket.socket.connect, "connect_ex": socket.socket.connect_ex,
                 "create_connection": socket.create_connection}

    def guard(name: str, address_at: int):
        def refuse(*args, **kwargs):
            if len(args) > address_at and tuple(args[address_at]) in allowed:
                return originals[name](*args, **kwargs)
            pytest.fail(f"a connection was attempted: {args[address_at] if len(args) > address_at else args}")
        return refuse

    monkeypatch.setattr(socket.socket, "connect", guard("connect", 1))
    monkeypatch.setattr(socket.socket, "connect_ex", guard("connect_ex", 1))
    monkeypatch.setattr(socket, "create_connection", guard("create_connection", 0))


def _with_redis(tmp_path: Path, redis: tuple[str, int]) -> Path:
    return _config(tmp_path, ('host = "127.0.0.1"\nport = 6379', f'host = "{redis[0]}"\nport = {redis[1]}'))


def _config(tmp_path: Path, *replacements: tuple[str, str], text: str | None = None) -> Path:
    text = CONFIG.read_text() if text is None else text
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "limited.toml"
    path.write_text(text)
    return path


def _profile(tmp_path: Path, **trading) -> str:
    text = (PROJECT_ROOT / "configs" / "profiles" / "ifd_v3.toml").read_text()
    for key, value in trading.items():
        line = next(ln for ln in text.splitlines() if ln.startswith(f"{key} = "))
        text = text.replace(line, f"{key} = {value}")
    path = tmp_path / "ifd_v3_profile.toml"
    path.write_text(text)
    return str(path)


def _refused(path: Path, env: dict, *needles: str) -> str:
    with pytest.raises(IfdError) as info:
        load_limited_spec(path, env)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    for needle in needles:
        assert needle in message, message
    assert KEY not in message and ACCOUNT not in message
    return message


# -- refusals ---------------------------------------------------------------------------------

LIMITS_PATH = ('[limits]                                # the hard limits (live/limits.py), or inline [limits] settings\n'
               'path = "configs/live/limits.toml"\n')


@pytest.mark.parametrize(("old", "new", "needles"), [
    ("max_daily_loss_usd = 50", "max_daily_loss_usd = 60", ("max_daily_loss_usd 60 exceeds the hard cap 50",)),
    ("max_position_contracts = 1", "max_position_contracts = 2", ("max_position_contracts 2 exceeds the hard cap 1",)),
    ("max_drawdown_usd = 40\n", "", ("max_drawdown_usd is missing",)),
    ("max_consecutive_losses = 3", "max_consecutive_losses = 0", ("max_consecutive_losses must be a positive",)),
])
def test_refuses_limits_missing_or_looser_than_the_caps(tmp_path, old, new, needles):
    path = _config(tmp_path, (LIMITS_PATH, INLINE_LIMITS.replace(old, new)))
    _refused(path, ENV, "[limits]", *needles)


def test_refuses_a_missing_limits_table_or_file(tmp_path):
    _refused(_config(tmp_path, (LIMITS_PATH, "")), ENV, "[limits] is missing")
    path = _config(tmp_path, ('path = "configs/live/limits.toml"', 'path = "configs/live/nope.toml"'))
    _refused(path, ENV, "[limits] path configs/live/nope.toml not found")


def test_refuses_an_unset_account(tmp_path):
    env = {k: v for k, v in ENV.items() if k != "IB_ACCOUNT_ID"}
    with pytest.raises(IfdError, match="IB_ACCOUNT_ID is empty or unset"):
        load_limited_spec(CONFIG, env)
    _refused(_config(tmp_path, (LIMITS_PATH, INLINE_LIMITS)), {**ENV, "IB_ACCOUNT_ID": "  "}, "IB_ACCOUNT_ID")


@pytest.mark.parametrize(("trading", "needle"), [
    ({"max_position": 2, "quantity": 2}, "[trading] max_position 2 exceeds the limits' max_position_contracts 1"),
    ({"quantity": 2}, "[trading] quantity 2 exceeds the limits' max_position_contracts 1"),
])
def test_refuses_a_profile_allowing_more_than_one_contract(tmp_path, trading, needle):
    profile = _profile(tmp_path, **trading)
    path = _config(tmp_path, ('profile = "configs/profiles/ifd_v3.toml"', f'profile = "{profile}"'))
    _refused(path, ENV, "[[strategies]] #1", needle)


def test_refuses_a_strategy_config_overriding_the_position(tmp_path):
    path = _config(tmp_path, ('order_id_tag = "V1"\n', 'order_id_tag = "V1"\ntrading = { max_position = 3 }\n'))
    _refused(path, ENV, "[[strategies]] #2", "max_position 3")


@pytest.mark.parametrize(("env", "needles"), [
    ({"IB_HOST": ""}, ("[ib] host_env", "IB_HOST is empty or unset")),
    ({"IB_HOST": "bad host;rm"}, ("[ib] host_env", "IB_HOST is not a host name")),
    ({"IB_PORT": None}, ("[ib] port_env", "IB_PORT is empty or unset")),
    ({"IB_PORT": "99999"}, ("[ib] port (IB_PORT) must be a whole number 1-65535",)),
    ({"IB_PORT": "40o2"}, ("[ib] port (IB_PORT)",)),
    ({"IB_CLIENT_ID": None}, ("[ib] client_id_env", "IB_CLIENT_ID is empty or unset")),
    ({"IB_CLIENT_ID": "-1"}, ("[ib] client id (IB_CLIENT_ID) must be a whole number",)),
    ({"IB_CLIENT_ID": "1.5"}, ("[ib] client id (IB_CLIENT_ID)",)),
])
def test_refuses_missing_or_invalid_ib_settings(env, needles):
    merged = {k: v for k, v in {**ENV, **env}.items() if v is not None}
    _refused(CONFIG, merged, *needles)


def test_refuses_a_missing_ib_section_or_env_name(tmp_path):
    _refused(_config(tmp_path, ('host_env = "IB_HOST"', '')), ENV, "[ib] host_env is missing")
    text = CONFIG.read_text()
    start, end = text.index("\n[ib]"), text.index("\n[limits]")
    _refused(_config(tmp_path, text=text[:start] + text[end:]), ENV, "[ib] is missing")
    _refused(_config(tmp_path, ('venue = "GLBX"', 'password = "x"')), ENV, "[ib] unknown key(s) password")


def test_refuses_a_missing_databento_key():
    env = {k: v for k, v in ENV.items() if k != "DATABENTO_API_KEY"}
    _refused(CONFIG, env, "DATABENTO_API_KEY is not set")


def test_refuses_a_bypassed_risk_engine_and_a_sandbox(tmp_path):
    _refused(_config(tmp_path, ("bypass = false", "bypass = true")), ENV, "[risk_engine] bypass")
    _refused(_config(tmp_path, ("[logging]", '[sandbox]\nvenue = "GLBX"\n\n[logging]')), ENV, "[sandbox]")


def test_cli_refuses_with_a_nonzero_exit(monkeypatch, capsys):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("IB_PORT", "0")
    assert limited.main([str(CONFIG), "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "[ib] port (IB_PORT)" in err and ACCOUNT not in err


# -- the valid config ---------------------------------------------------------------------------


def test_valid_config_node_config(tmp_path):
    path = _config(tmp_path, ("instrument_ids = []", 'instrument_ids = ["NQZ6 C21000.GLBX"]'),
                   ("trading_classes = []", 'trading_classes = ["Q1A"]'))
    spec = load_limited_spec(path, ENV)
    config = node_config(spec)
    assert isinstance(config, TradingNodeConfig)
    assert config.trader_id.value == "IFD-LIMITED"

    ib = config.exec_clients["INTERACTIVE_BROKERS"]
    assert isinstance(ib, InteractiveBrokersExecClientConfig)
    assert (ib.account_id, ib.ibg_host, ib.ibg_port, ib.ibg_client_id) == (ACCOUNT, "127.0.0.1", 4002, 17)
    provider = ib.instrument_provider
    contracts = {(c.secType, c.exchange, c.symbol, c.tradingClass) for c in provider.load_contracts}
    assert contracts == {("CONTFUT", "CME", "NQ", ""), ("FOP", "CME", "NQ", "Q1A")}
    assert all(c.build_options_chain for c in provider.load_contracts if c.secType == "CONTFUT")
    assert provider.symbol_to_mic_venue == {"NQ": "GLBX", "Q1A": "GLBX"}
    # msgspec validation of the IB client config, without connecting
    assert ib.validate()
    decoded = msgspec.json.decode(ib.json(), type=InteractiveBrokersExecClientConfig)
    assert (decoded.ibg_port, decoded.ibg_client_id, decoded.account_id) == (4002, 17, ACCOUNT)
    assert decoded.instrument_provider.load_contracts == provider.load_contracts

    assert "DATABENTO" in config.data_clients
    strategies = config.strategies
    assert [s.config["mode"] for s in strategies] == ["trade", "fallback"]
    assert all(s.config["trading"]["max_position"] == 1 and s.config["trading"]["quantity"] == 1 for s in strategies)
    assert all(s.config["data_mode"] == "live" for s in strategies)

    risk = config.risk_engine
    assert risk.bypass is False
    assert risk.max_order_submit_rate == "10/00:00:01"
    assert risk.max_order_modify_rate == "10/00:00:01"
    assert risk.max_notional_per_order == {"NQZ6 C21000.GLBX": 200}

    guards = [a for a in config.actors if a.actor_path == "live.risk_guard:RiskGuard"]
    assert len(guards) == 1
    assert guards[0].config == {"max_position_contracts": 1, "max_daily_loss_usd": 50.0, "max_total_risk_usd": 200.0,
                                "max_consecutive_losses": 3, "max_drawdown_usd": 40.0}


def test_node_config_has_no_secrets():
    spec = load_limited_spec(CONFIG, ENV)
    config = node_config(spec)
    for text in (repr(config), str(config), repr(spec), repr(spec.limits),
                 repr(config.exec_clients["INTERACTIVE_BROKERS"])):
        assert KEY not in text and ACCOUNT not in text
    assert "account_id='***'" in repr(config)


def test_build_limited_node_attaches_the_guard_without_connecting(capfd, tmp_path, redis_server):
    node = build_limited_node(_with_redis(tmp_path, redis_server), ENV)
    try:
        assert not node.is_built()  # building the IB client would connect: left to run_limited
        guards = [a for a in node.trader.actors() if isinstance(a, RiskGuard)]
        assert len(guards) == 1
        guard = guards[0]
        assert guard._risk is node.kernel.risk_engine
        assert (guard.config.max_position_contracts, guard.config.max_drawdown_usd) == (1, 40.0)
        assert len(node.trader.strategies()) == 2
    finally:
        node.dispose()
    out, err = capfd.readouterr()
    assert KEY not in out + err and ACCOUNT not in out + err


CHILD = """
import os, socket, sys
redis = ("127.0.0.1", int(sys.argv[2]))
connect, create = socket.socket.connect, socket.create_connection
def refuse(original, address_at):
    def call(*args, **kwargs):
        if len(args) > address_at and tuple(args[address_at]) == redis:
            return original(*args, **kwargs)  # the node's state store only
        print("CONNECT ATTEMPTED", flush=True)
        os._exit(97)
    return call
socket.socket.connect = refuse(connect, 1)
socket.create_connection = refuse(create, 0)
from live.limited import build_limited_node, risk_guard
node = build_limited_node(sys.argv[1])
assert risk_guard(node)._risk is node.kernel.risk_engine
node.dispose()
print("BUILT-OK", flush=True)
"""


def test_node_logs_have_no_secrets(tmp_path, redis_server):
    # A fresh process, so the node's logger is set up here and everything it writes is captured.
    env = {**os.environ, **ENV, "PYTHONPATH": str(PROJECT_ROOT)}
    config = _with_redis(tmp_path, redis_server)
    run = subprocess.run([sys.executable, "-c", CHILD, str(config), str(redis_server[1])],
                         capture_output=True, text=True, check=False,
                         env=env, cwd=PROJECT_ROOT, timeout=120)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-2000:]
    assert "BUILT-OK" in output and "CONNECT ATTEMPTED" not in output
    assert "RiskGuard" in output  # the node did log its setup ...
    assert KEY not in output and ACCOUNT not in output  # ... without the secrets
