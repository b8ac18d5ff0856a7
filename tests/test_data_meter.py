"""Live streaming spend: records counted at their DBN sizes, priced at Databento's live unit prices,
written to the budget ledger, and the node shut off once the data budget is used up.

The actor runs in real BacktestNode replays of a generated session (it only listens on the message
bus, as on a live node); the unit prices come from the loopback historical gateway through the real
``databento.Historical`` client.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import msgspec
import pyarrow.parquet as pq
import pytest

from adapters.databento.budget import budget_report
from adapters.databento.budget import load_budget
from adapters.databento.downloads import historical_client
from adapters.databento.historical_gateway import HistoricalGateway
from adapters.databento.historical_gateway import HistoricalStore
from adapters.databento.ledger import Ledger
from adapters.databento.live_usage import LiveUsage
from adapters.databento.live_usage import live_unit_prices
from backtests.config import build_run_config
from backtests.config import load_backtest_spec
from backtests.runner import ProgressBacktestNode
from backtests.runner import ReplayProgress
from backtests.runner import catalog_rows
from ifd.errors import IfdError
from live.data_meter import DataMeter
from strategies.signals import MonitorAlarm
from strategies.signals import data_topic

PROJECT = Path(__file__).resolve().parents[1]


def test_usage_counts_dbn_bytes_and_prices_them_per_schema():
    usage = LiveUsage({"mbo": 2.0, "trades": 10.0, "definition": 5.0})
    usage.add_book_records(1_000)
    usage.add_trades(10)
    usage.add_definitions(3)
    taken = {schema: (records, size, round(cost, 12)) for schema, records, size, _, cost in usage.take()}
    assert taken == {
        "mbo": (1_000, 1_000 * 56 + 10 * 112, round((56_000 + 1_120) / 1e9 * 2.0, 12)),
        "trades": (10, 480, round(480 / 1e9 * 10.0, 12)),
        "definition": (3, 3 * 520, round(1_560 / 1e9 * 5.0, 12)),
    }
    assert usage.take() == []  # taken once
    with pytest.raises(IfdError, match="no price for schema 'trades'"):
        LiveUsage({"mbo": 1.0})


def test_live_unit_prices_come_from_databento(small_session_catalog, monkeypatch):
    with HistoricalGateway(HistoricalStore.from_paths([small_session_catalog.parent / "scenario"])) as gw:
        for name, value in gw.client_env().items():
            monkeypatch.setenv(name, value)
        gw.unit_prices = {"mbo": 7.5, "trades": 3.0}
        prices = live_unit_prices(historical_client({"DATABENTO_API_KEY": gw.api_key}, gw.url), "GLBX.MDP3")
    assert prices["mbo"] == 7.5 and prices["trades"] == 3.0


def _budget(tmp_path: Path, daily: float) -> Path:
    path = tmp_path / "budget.toml"
    path.write_text(f'[budget]\ndaily_usd = {daily}\nmonthly_usd = 200\nledger = "{tmp_path / "ledger.sqlite"}"\n'
                    f'alerts = "{tmp_path / "alerts.toml"}"\n')
    (tmp_path / "alerts.toml").write_text("[console]\nenabled = false\n[log_file]\nenabled = false\n"
                                          "[history]\nenabled = false\n")
    return path


def _replay(catalog: Path, tmp_path: Path, prices: dict, budget: Path):
    """The shadow v1 + v3 backtest with a DataMeter; returns (meter, alarms, shut-off calls, engine time)."""
    text = (PROJECT / "configs" / "backtests" / "shadow_v1_v3.toml").read_text() + (
        '\n[[actors]]\nactor_path = "live.data_meter:DataMeter"\nconfig_path = "live.data_meter:DataMeterConfig"\n'
        f'[actors.config]\nsymbols = ["NQ.FUT", "NQ.OPT"]\nbudget_config = "{budget}"\nflush_every_s = 60\n'
        f"unit_prices = {{ mbo = {prices['mbo']}, trades = {prices['trades']} }}\n"
    )
    (tmp_path / "run.toml").write_text(text)
    spec = load_backtest_spec(tmp_path / "run.toml", catalog_override=catalog)
    config = build_run_config(spec, {name: sorted(per) for name, per in catalog_rows(spec).items()})
    node = ProgressBacktestNode([msgspec.structs.replace(config, raise_exception=True)], ReplayProgress(total=0))
    try:
        node.build()
        engine = node.get_engine(config.id)
        [meter] = [a for a in engine.trader.actors() if isinstance(a, DataMeter)]
        alarms, calls = [], []
        engine.kernel.msgbus.subscribe(topic=data_topic(MonitorAlarm), handler=alarms.append)
        meter.on_exhausted = lambda reason: calls.append((engine.kernel.clock.timestamp_ns(), reason))
        node.run()
        return meter, alarms, calls
    finally:
        node.dispose()


def _catalog_rows(catalog: Path, kind: str) -> int:
    return sum(pq.ParquetFile(f).metadata.num_rows for f in (catalog / "data" / kind).rglob("*.parquet"))


def test_every_streamed_record_is_in_the_ledger_at_its_price(small_session_catalog, tmp_path):
    budget = _budget(tmp_path, daily=8.0)
    meter, alarms, calls = _replay(small_session_catalog, tmp_path, {"mbo": 1.0, "trades": 2.0}, budget)
    assert calls == [] and alarms == [] and meter.exhausted_reason is None
    with Ledger(tmp_path / "ledger.sqlite", readonly=True) as ledger:
        rows = ledger.rows()
    assert {r.window for r in rows} == {"live"} and {r.status for r in rows} == {"done"}
    per_schema: dict[str, list[int]] = {}
    for r in rows:
        per_schema.setdefault(r.schema, [0, 0])
        per_schema[r.schema][0] += r.records
        per_schema[r.schema][1] += r.received_bytes
    deltas = _catalog_rows(small_session_catalog, "order_book_deltas")
    trades = _catalog_rows(small_session_catalog, "trade_tick")
    assert deltas > 10_000 and trades > 100
    assert per_schema["mbo"] == [deltas, deltas * 56 + trades * 112]
    assert per_schema["trades"] == [trades, trades * 48]
    assert per_schema["definition"][0] == _catalog_rows(small_session_catalog, "option_contract") + \
        _catalog_rows(small_session_catalog, "futures_contract")
    cost = sum(r.actual_cost_usd for r in rows)
    # no definition price configured here: definitions count as bytes, at 0 USD
    assert cost == pytest.approx((deltas * 56 + trades * 112) / 1e9 + trades * 48 * 2.0 / 1e9)
    assert len({r.created_at[:16] for r in rows if r.schema == "mbo"}) >= 7  # a write each minute of the session
    report = budget_report(load_budget(budget), now=dt.datetime(2026, 11, 16, 23, tzinfo=dt.UTC))
    assert report["today"]["spent_usd"] == pytest.approx(cost, abs=1e-6)  # `ifd data budget` counts it


def test_the_node_is_shut_off_once_when_the_day_budget_is_used_up(small_session_catalog, tmp_path):
    budget = _budget(tmp_path, daily=8.0)
    # At 4,000 USD/GB the session's ~3 MB of MBO passes $8 a few minutes in.
    meter, alarms, calls = _replay(small_session_catalog, tmp_path, {"mbo": 4_000.0, "trades": 4_000.0}, budget)
    assert len(calls) == 1 and "daily Databento data budget is used up" in calls[0][1]
    assert [a.kind for a in alarms] == ["live_budget_exhausted"] and alarms[0].level == "critical"
    with Ledger(tmp_path / "ledger.sqlite", readonly=True) as ledger:
        rows = ledger.rows()
        shut_at = dt.datetime.fromtimestamp(calls[0][0] / 1e9, dt.UTC)
        before = sum(r.actual_cost_usd for r in rows if r.created_at < shut_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        at_shut_off = sum(r.actual_cost_usd for r in rows
                          if r.created_at <= shut_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        assert before < 8.0 <= at_shut_off  # shut off at the first write that reached the limit
        assert ledger.spend(shut_at).day_usd >= 8.0
    first = rows[0].created_at
    assert calls[0][0] > int(dt.datetime.strptime(first, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC).timestamp())


def test_a_node_starting_over_the_budget_is_shut_off_at_start(small_session_catalog, tmp_path):
    budget = _budget(tmp_path, daily=8.0)
    with Ledger(tmp_path / "ledger.sqlite") as ledger:  # a download spent the day already
        from adapters.databento.ledger import RequestKey

        day = dt.date(2026, 11, 16)  # the generated session's day (the node clock)
        ledger.record_live(RequestKey("GLBX.MDP3", "mbo", ("NQ.OPT",), "parent", day, "live"), records=1,
                           received_bytes=1, unit_price_usd_gb=1.0, cost_usd=8.0,
                           now=dt.datetime(2026, 11, 16, 1, tzinfo=dt.UTC))
    meter, alarms, calls = _replay(small_session_catalog, tmp_path, {"mbo": 1.0, "trades": 1.0}, budget)
    assert len(calls) == 1 and len(alarms) == 1
