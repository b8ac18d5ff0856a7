"""The Databento data budget: configs/budget.toml, the SQLite ledger, ``ifd data budget``, DBN scans,
and the live nodes that refuse to start on the live feed once the budget is spent.

No test here connects anywhere: the live-node tests patch ``socket`` to fail on any connection.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
from pathlib import Path

import databento as db
import pytest
import zstandard

from adapters.databento.budget import (
    BudgetConfig,
    budget_report,
    budget_status,
    check_live_budget,
    format_budget_report,
    load_budget,
    refusal,
)
from adapters.databento.dbn_scan import scan_dbn
from adapters.databento.ledger import Ledger, RequestKey
from ifd.cli import main
from ifd.errors import IfdError
from ifd.scenario import ScenarioConfig, generate_scenario
from live.limited import build_limited_node
from live.paper import build_paper_node, load_paper_spec, with_replay
from tests.support.real_samples import ESH4_MBO_20231225

PROJECT_ROOT = Path(__file__).resolve().parents[1]
KEY = "db-BUDGETsecretKEYbudget12345678"
NOV21 = dt.datetime(2026, 11, 21, 15, 0, tzinfo=dt.UTC)
MBO = RequestKey("GLBX.MDP3", "mbo", ("NQ.FUT", "NQ.OPT"), "parent", dt.date(2026, 11, 16))


def _budget(tmp_path: Path, daily: float = 8, monthly: float = 200, extra: str = "") -> Path:
    path = tmp_path / "budget.toml"
    path.write_text(f'[budget]\ndaily_usd = {daily}\nmonthly_usd = {monthly}\nledger = "{tmp_path / "ledger.sqlite"}"\n'
                    + extra)
    return path


def _spend(ledger_path: Path, usd: float, when: dt.datetime, key: RequestKey = MBO) -> int:
    """A finished request of ``usd`` made at ``when`` (what a download records)."""
    with Ledger(ledger_path) as ledger:
        row_id, _ = ledger.reserve(key, usd, 1_000, lambda spend, cost: None, unit_price_usd_gb=usd * 1e6, now=when)
        ledger.finish(row_id, "done", received_bytes=1_000, records=10, actual_cost_usd=usd, path="x", now=when)
    return row_id


# -- configs/budget.toml -----------------------------------------------------------------------


def test_shipped_budget_file_is_within_the_hard_caps(monkeypatch):
    monkeypatch.delenv("IFD_BUDGET_CONFIG", raising=False)
    config = load_budget()
    assert (config.daily_usd, config.monthly_usd, config.alert_at) == (8.0, 200.0, 0.8)
    assert config.ledger == Path("data/databento_ledger.sqlite")
    assert Path(config.source).resolve() == PROJECT_ROOT / "configs" / "budget.toml"


@pytest.mark.parametrize(("extra", "needle"), [
    ("alert_at = 1.5\n", "[budget] alert_at must be a fraction between 0 and 1"),
    ("alert_at = true\n", "[budget] alert_at must be a fraction"),
    ("surprise = 1\n", "unknown setting(s) surprise"),
    ('ledger = ""\n', "[budget] ledger must be a file path"),
])
def test_budget_file_refusals(tmp_path, extra, needle):
    text = _budget(tmp_path).read_text().replace(f'ledger = "{tmp_path / "ledger.sqlite"}"\n', "")
    path = tmp_path / "b.toml"
    path.write_text(text + extra)
    with pytest.raises(IfdError) as info:
        load_budget(path)
    assert str(info.value).startswith(f"{path}: ") and needle in str(info.value)


def test_budget_file_from_the_environment(tmp_path):
    path = _budget(tmp_path, daily=2, monthly=30)
    config = load_budget(None, {"IFD_BUDGET_CONFIG": str(path)})
    assert (config.daily_usd, config.monthly_usd, config.source) == (2.0, 30.0, str(path))
    with pytest.raises(IfdError, match="no such budget file"):
        load_budget(None, {"IFD_BUDGET_CONFIG": str(tmp_path / "nope.toml")})


# -- the ledger ----------------------------------------------------------------------------------


def test_spend_counts_by_utc_day_and_month_of_the_request(tmp_path):
    ledger_path = tmp_path / "ledger.sqlite"
    _spend(ledger_path, 3.0, NOV21)
    _spend(ledger_path, 2.0, NOV21.replace(day=2))
    _spend(ledger_path, 50.0, NOV21.replace(month=10))  # last month: not this month's
    with Ledger(ledger_path) as ledger:
        ledger.refuse([(MBO, 99.0, 5)], "refused: too much", now=NOV21)  # refusals spend nothing
        row_id, _ = ledger.reserve(MBO, 1.5, 10, lambda spend, cost: None, now=NOV21)  # in flight: its estimate
        spend = ledger.spend(NOV21)
        assert (spend.day, spend.month, spend.day_usd, spend.month_usd) == ("2026-11-21", "2026-11", 4.5, 6.5)
        # Failed with part of the data received: what arrived is what it cost.
        ledger.finish(row_id, "failed", received_bytes=5, records=1, actual_cost_usd=0.25, reason="cut off")
        assert ledger.spend(NOV21).day_usd == 3.25
        assert [r.status for r in ledger.rows()] == ["done", "done", "done", "refused", "failed"]


def test_reserve_is_atomic_across_connections(tmp_path):
    """Two downloaders reserving the last dollars at once: exactly one of them gets them."""
    config = BudgetConfig(8.0, 200.0, ledger=tmp_path / "ledger.sqlite", source="test")
    _spend(config.ledger, 5.0, NOV21)
    barrier = threading.Barrier(2)
    results = []

    def reserve() -> None:
        with Ledger(config.ledger) as ledger:
            barrier.wait()
            results.append(ledger.reserve(MBO, 2.0, 10, lambda spend, cost: refusal(config, spend, cost, "x"),
                                          now=NOV21))

    threads = [threading.Thread(target=reserve) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reasons = sorted(reason is None for _, reason in results)
    assert reasons == [False, True]
    refused = next(reason for _, reason in results if reason)
    assert "would cost $2.0000: refused" in refused and "remaining today $1.0000 of $8.00" in refused
    with Ledger(config.ledger, readonly=True) as ledger:
        assert sorted(r.status for r in ledger.rows()) == ["done", "refused", "started"]
        assert ledger.spend(NOV21).day_usd == 7.0


def test_stale_requests_are_recovered_with_what_reached_their_temp_file(tmp_path):
    ledger_path = tmp_path / "ledger.sqlite"
    temp = tmp_path / "x.part"
    with Ledger(ledger_path) as ledger:
        row_id, _ = ledger.reserve(MBO, 1.0, 56_000, lambda s, c: None, unit_price_usd_gb=10_000.0, temp_path=temp)
        ledger.reserve(MBO, 1.0, 56_000, lambda s, c: None)  # a live process's request stays as it is
        temp.write_bytes(b"")  # the killed process had opened its file
        recovered = ledger.recover_stale(lambda pid: False if pid == 0 else True, lambda p: (10, 560))
        assert recovered == []  # every row's pid is this (alive) process
        ledger._db.execute("UPDATE requests SET pid = 0 WHERE id = ?", (row_id,))
        recovered = ledger.recover_stale(lambda pid: pid != 0, lambda p: (10, 560) if p == str(temp) else None)
        assert [r.id for r in recovered] == [row_id]
        row = ledger.rows()[0]
        assert (row.status, row.records, row.received_bytes) == ("failed", 10, 560)
        assert row.actual_cost_usd == pytest.approx(560 / 1e9 * 10_000.0)
        assert row.reason.startswith("interrupted")
        assert [r.status for r in ledger.rows()] == ["failed", "started"]


# -- ifd data budget -----------------------------------------------------------------------------


def test_budget_report_per_day_and_month(tmp_path, capsys):
    path = _budget(tmp_path)
    config = load_budget(path)
    now = dt.datetime.now(dt.UTC)
    assert budget_report(config, now)["days"] == []  # no ledger yet: nothing spent, no file made
    assert not config.ledger.exists()
    _spend(config.ledger, 6.5, now)
    with Ledger(config.ledger) as ledger:
        ledger.refuse([(MBO, 4.0, 5)], "refused", now=now)
    report = budget_report(config, now)
    assert report["today"] == {"day": now.strftime("%Y-%m-%d"), "spent_usd": 6.5, "limit_usd": 8.0,
                               "used_pct": 81.25, "remaining_usd": 1.5}
    assert report["this_month"]["used_pct"] == pytest.approx(3.25)
    assert report["state"] == "ok"  # 80% of the day is no alert: the alert is about the month
    (day,) = report["days"]
    assert (day["done"], day["refused"], day["refused_usd"], day["received_bytes"]) == (1, 1, 4.0, 1_000)
    text = format_budget_report(report)
    assert f"today {now:%Y-%m-%d}: $6.5000 of $8.00 (81.2%), $1.5000 left" in text

    assert main(["data", "budget", "--budget", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["today"]["spent_usd"] == 6.5


# -- live nodes ----------------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        pytest.fail(f"a connection was attempted: {args[1:] if len(args) > 1 else args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


PAPER = """
[node]
trader_id = "IFD-BUDGET"

[databento]
dataset = "GLBX.MDP3"
parent_symbols = ["NQ.OPT", "NQ.FUT"]

[sandbox]
venue = "GLBX"
starting_balances = ["1_000_000 USD"]

[[strategies]]
strategy_path = "strategies.flow_counter:FlowCounter"
config_path = "strategies.flow_counter:FlowCounterConfig"

[strategies.config]
order_id_tag = "COUNT"
"""


def test_a_spent_budget_refuses_the_live_nodes_before_they_connect(tmp_path, no_network):
    budget = _budget(tmp_path, daily=4, monthly=100)
    env = {"DATABENTO_API_KEY": KEY, "IFD_BUDGET_CONFIG": str(budget), "IB_ACCOUNT_ID": "DU7654321",
           "IB_HOST": "127.0.0.1", "IB_PORT": "4002", "IB_CLIENT_ID": "17"}
    paper = tmp_path / "paper.toml"
    paper.write_text(PAPER)
    _spend(tmp_path / "ledger.sqlite", 4.0, dt.datetime.now(dt.UTC))  # today's $4: 100% of the day

    with pytest.raises(IfdError) as info:
        build_paper_node(paper, env)
    message = str(info.value)
    assert message.startswith("paper node IFD-BUDGET on the live Databento feed: the daily Databento data budget "
                              "is used up (remaining today $0.0000 of $4.00")
    assert f"live streaming is refused until the next UTC day (limits in {budget})" in message
    assert KEY not in message and "\n" not in message

    # The limited node refuses the same way, before its Redis or broker checks connect anywhere.
    with pytest.raises(IfdError, match=r"^limited node IFD-LIMITED on the live Databento feed: the daily"):
        build_limited_node(PROJECT_ROOT / "configs" / "live" / "limited.toml", env)


def test_a_spent_month_refuses_and_a_new_month_does_not(tmp_path):
    budget = _budget(tmp_path, daily=8, monthly=20)
    env = {"IFD_BUDGET_CONFIG": str(budget)}
    _spend(tmp_path / "ledger.sqlite", 20.0, NOV21.replace(day=3))
    with pytest.raises(IfdError, match=r"monthly Databento data budget is used up .* until next month"):
        check_live_budget(env, what="node", now=NOV21)
    status = check_live_budget(env, what="node", now=dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    assert (status.spend.month_usd, status.exhausted) == (0.0, False)
    assert budget_status(load_budget(budget), NOV21).month_spent


def test_a_replayed_node_spends_nothing_and_is_not_refused(tmp_path, small_session_catalog, no_network):
    budget = _budget(tmp_path, daily=4, monthly=100)
    _spend(tmp_path / "ledger.sqlite", 100.0, dt.datetime.now(dt.UTC))
    paper = tmp_path / "paper.toml"
    paper.write_text(PAPER)
    env = {"IFD_BUDGET_CONFIG": str(budget)}  # no Databento key either: a replay needs none
    spec = with_replay(load_paper_spec(paper, env), catalog=small_session_catalog, speed=0)
    node = build_paper_node(spec, env)
    try:
        assert node.is_built()
    finally:
        node.dispose()


# -- DBN scans -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scan_session")
    generate_scenario(out, ScenarioConfig(seed=2, strikes=1, expiries=1, minutes=2, rate=40.0,
                                          institutional=0, mm_straddle=0, volume_noise=0))
    return out


def test_scan_counts_what_the_decoders_see_and_finds_cuts(session, tmp_path):
    path = session / "mbo.dbn.zst"
    expected = db.DBNStore.from_file(path).to_ndarray()
    scan = scan_dbn(path)
    assert (scan.dataset, scan.schema, scan.version, scan.complete) == ("GLBX.MDP3", "mbo", 3, True)
    assert (scan.records, scan.record_bytes) == (len(expected), expected.nbytes)

    plain = zstandard.ZstdDecompressor().stream_reader(path.read_bytes()).read()
    cut = tmp_path / "cut.dbn"
    cut.write_bytes(plain[:-10])  # the last record loses 10 bytes
    with pytest.raises(IfdError, match="cut record at the end"):
        scan_dbn(cut)
    partial = scan_dbn(cut, partial=True)
    assert (partial.records, partial.complete) == (len(expected) - 1, False)

    garbled = bytearray(plain)
    header = len(plain) - expected.nbytes
    garbled[header + 56 * 7] = 3  # record #7 claims 12 bytes
    bad = tmp_path / "bad.dbn"
    bad.write_bytes(bytes(garbled))
    with pytest.raises(IfdError, match="corrupt DBN record #7"):
        scan_dbn(bad)

    truncated = tmp_path / "cut.dbn.zst"
    truncated.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(IfdError, match=r"truncated zstd data \(frame \d+ is incomplete\)"):
        scan_dbn(truncated)


@pytest.mark.real_data
def test_scan_reads_real_dbn_files_of_every_version(real_file, shared_data):
    """DBN v1 and v3, every schema of the samples, several zstd frames: counts equal the decoder's."""
    versions = set()
    for path in sorted(shared_data.rglob("*.dbn.zst")):
        if path.name.startswith("LIVE_"):
            with pytest.raises(IfdError, match="mixed-schema DBN data"):  # live data is not a download
                scan_dbn(path)
            continue
        scan = scan_dbn(path)
        assert scan.complete and scan.records == len(db.DBNStore.from_file(path).to_ndarray()), path
        versions.add(scan.version)
    assert versions == {1, 3}
    esh4 = scan_dbn(real_file(ESH4_MBO_20231225))
    assert (esh4.records, esh4.record_bytes) == (68_792, 68_792 * 56)
