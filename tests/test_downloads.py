"""Cost-checked downloads (adapters/databento/downloads.py) with the real ``databento.Historical`` client.

Every request goes over HTTPS to our historical gateway on 127.0.0.1
(``adapters.databento.historical_gateway``) serving a generated two-day NQ session (2026-11-13 and
2026-11-16; the weekend between resolves no symbol, as at Databento) or the real samples. Nothing
reaches the internet: the client's gateway is the loopback one, its certificate the only one trusted.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import databento as db
import numpy as np
import pytest

from adapters.databento.budget import BudgetConfig, BudgetRefused
from adapters.databento.dbn_files import open_dbn
from adapters.databento.downloads import DownloadRequest, Downloader, historical_client, raw_file
from adapters.databento.historical_gateway import HistoricalGateway, HistoricalStore, build_query, dbn_chunks
from adapters.databento.ledger import Ledger, RequestKey
from catalogs.listing import describe_catalog
from ifd.alerts import AlertHistory, build_dispatcher, load_alerts_config
from ifd.cli import main
from ifd.errors import IfdError
from ifd.scenario import ScenarioConfig, generate_scenario
from tests.support.real_samples import ESM4_MBO

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATASET = "GLBX.MDP3"
SCENARIO = ScenarioConfig(
    seed=3, strikes=2, expiries=1, minutes=3, rate=50.0, days=2,
    institutional=1, mm_straddle=0, volume_noise=0,
)  # fmt: skip
DAYS = ("2026-11-13", "2026-11-16")  # the history day and the session; 14 and 15 are a weekend
MBO_PRICE = 50.0  # USD per GB
SYMBOLS = "NQ.OPT,NQ.FUT"
WRONG_KEY = "db-ThisIsNotTheKeyTheGatewayWants"


def _day_range(first: str, end: str) -> DownloadRequest:
    return DownloadRequest.parse(DATASET, "mbo", SYMBOLS, "parent", first, end)


@pytest.fixture(scope="module")
def scenario_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("download_scenario")
    generate_scenario(out, SCENARIO)
    return out


@pytest.fixture(scope="module")
def gateway(scenario_dir):
    with HistoricalGateway(HistoricalStore.from_paths([scenario_dir])) as gw:
        yield gw


@pytest.fixture
def gw(gateway, monkeypatch, tmp_path):
    """The gateway, reset; the environment of a client of it (its key for the CLI), cwd in tmp (no .env)."""
    gateway.reset()
    gateway.unit_prices = {"mbo": MBO_PRICE}
    for name, value in gateway.client_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATABENTO_API_KEY", gateway.api_key)
    for name in ("DATABENTO_GATEWAY", "IFD_BUDGET_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    yield gateway
    gateway.reset()


class Setup:
    """A budget file, ledger, alert history, raw folder and catalog, all under one tmp folder."""

    def __init__(self, root: Path, daily: float = 8.0, monthly: float = 200.0) -> None:
        self.root = root
        self.raw = root / "raw"
        self.catalog = root / "catalog"
        self.ledger_path = root / "ledger.sqlite"
        self.history = root / "alerts.sqlite"
        self.alerts_file = root / "alerts.toml"
        self.alerts_file.write_text(
            "[console]\nenabled = false\n[log_file]\nenabled = false\n"
            f'[history]\nenabled = true\nmin_level = "info"\npath = "{self.history}"\n',
        )
        self.budget_file = root / "budget.toml"
        self.budget_file.write_text(
            f'[budget]\ndaily_usd = {daily}\nmonthly_usd = {monthly}\nalert_at = 0.8\n'
            f'ledger = "{self.ledger_path}"\nalerts = "{self.alerts_file}"\n',
        )
        self.budget = BudgetConfig(daily, monthly, 0.8, self.ledger_path, self.alerts_file, str(self.budget_file))

    def downloader(self, gw: HistoricalGateway, key: str | None = None, **kwargs) -> Downloader:
        env = {"DATABENTO_API_KEY": key or gw.api_key}
        kwargs.setdefault("catalog", self.catalog)
        return Downloader(self.budget, raw_root=self.raw, client_factory=lambda: historical_client(env, gw.url),
                          **kwargs)

    def rows(self) -> list:
        if not self.ledger_path.exists():
            return []
        with Ledger(self.ledger_path, readonly=True) as ledger:
            return ledger.rows()

    def files(self) -> list[Path]:
        """Every file anywhere under the tmp folder's raw tree, except the lock file."""
        return sorted(p for p in self.raw.rglob("*") if p.is_file() and p.name != ".lock") if self.raw.exists() else []

    def cli(self, gw: HistoricalGateway, *args: str) -> list[str]:
        return ["data", "download", "--dataset", DATASET, "--symbols", SYMBOLS, "--stype", "parent",
                "--raw", str(self.raw), "--catalog", str(self.catalog), "--budget", str(self.budget_file),
                "--gateway", gw.url, *args]


def _source(path: Path) -> np.ndarray:
    return db.DBNStore.from_file(path).to_ndarray()


def _scenario_day(scenario_dir: Path, day: str) -> Path:
    return scenario_dir if day == DAYS[1] else scenario_dir / "history" / day


def _catalog_rows(catalog: Path) -> dict[str, int]:
    return {name: t["rows"] for name, t in describe_catalog(catalog)["data_types"].items()}


def _set_total_cost(gw: HistoricalGateway, usd: float, days: tuple[str, ...]) -> None:
    """Price mbo so that downloading ``days`` (definitions at 0) costs ``usd``."""
    size = sum(gw.quote(dataset=DATASET, start=d, symbols=SYMBOLS, stype_in="parent", schema="mbo").billable_size
               for d in days)
    gw.unit_prices = {"mbo": usd / size * 1e9, "definition": 0.0}


# -- success and skip --------------------------------------------------------------------------


def test_download_verifies_moves_ingests_and_a_second_run_makes_no_api_call(gw, scenario_dir, tmp_path):
    s = Setup(tmp_path)
    report = s.downloader(gw).run(_day_range("2026-11-13", "2026-11-17"))

    statuses = {(r["day"], r["schema"]): r["status"] for r in report.requests}
    for day in ("2026-11-14", "2026-11-15"):
        assert statuses[(day, "definition")] == statuses[(day, "mbo")] == "no data"
    assert gw.count("timeseries.get_range") == 4 and gw.count("metadata.list_unit_prices") == 1
    # Each of the four days priced before anything was downloaded; the weekend answered 422.
    assert gw.count("metadata.get_cost") == 8
    assert [r.params["schema"] for r in gw.requests if r.endpoint == "timeseries.get_range"] == \
        ["definition", "mbo", "definition", "mbo"]

    total_received = deltas = trades = definitions = 0
    symbols: set[str] = set()
    for day in DAYS:
        source = _scenario_day(scenario_dir, day)
        source_defs = _source(source / "definition.dbn.zst")
        nq = source_defs["instrument_id"][source_defs["asset"] == b"NQ"]
        key = RequestKey(DATASET, "definition", ("NQ.FUT", "NQ.OPT"), "parent", dt.date.fromisoformat(day))
        defs_path = raw_file(s.raw, key)
        assert defs_path == s.raw / DATASET / "definition" / day / "parent-NQ.FUT+NQ.OPT.dbn.zst"
        defs = open_dbn(defs_path)  # the project's validation decodes it
        assert sorted(defs.records["instrument_id"].tolist()) == sorted(nq.tolist())
        mbo = open_dbn(raw_file(s.raw, RequestKey(DATASET, "mbo", key.symbols, "parent", key.day)))
        expected = _source(source / "mbo.dbn.zst")
        expected = expected[np.isin(expected["instrument_id"], nq)]
        assert len(expected) > 1_000 and mbo.records.tobytes() == expected.tobytes()
        total_received += mbo.records.nbytes + defs.records.nbytes  # DBN v3 records, as billed
        definitions += len(defs.records)
        symbols |= {r.decode() for r in defs.records["raw_symbol"]}
        actions = mbo.records["action"]
        deltas += int(np.isin(actions, [b"A", b"C", b"M", b"R"]).sum())
        trades += int((actions == b"T").sum())
    # Only finished files in the raw folder: nothing partial left anywhere.
    assert len(s.files()) == 4 and not list(tmp_path.rglob("*.part"))

    rows = s.rows()
    done = [r for r in rows if r.path]
    assert len(rows) == 8 and {r.status for r in rows} == {"done"}
    assert all(r.ingested_at for r in done) and len(done) == 4
    assert sum(r.received_bytes for r in done) == total_received
    for r in done:  # what arrived is what was priced: the actual cost equals the estimate
        assert r.received_bytes == r.billable_bytes
        assert r.actual_cost_usd == pytest.approx(r.estimated_cost_usd, rel=1e-9)
    assert report.actual_usd == pytest.approx(sum(r.actual_cost_usd for r in done)) and report.actual_usd > 0

    # The catalog has every book delta and trade of both days, and the chain's instruments.
    rows_by_type = _catalog_rows(s.catalog)
    assert rows_by_type == {"order_book_deltas": deltas, "trade_tick": trades}
    assert report.catalog_rows == deltas + trades + definitions  # plus one instrument row per definition
    assert {i["raw_symbol"] for i in describe_catalog(s.catalog)["instruments"]} == symbols

    # Second run: everything is on disk and in the ledger: not one API call, nothing spent.
    gw.reset()
    again = s.downloader(gw, key=WRONG_KEY).run(_day_range("2026-11-13", "2026-11-17"))
    assert gw.counts() == {}
    assert {r["status"] for r in again.requests} == {"skipped"} and again.actual_usd == 0
    assert len(s.rows()) == 8 and _catalog_rows(s.catalog) == rows_by_type


def test_budget_command_shows_the_spend(gw, tmp_path, capsys):
    s = Setup(tmp_path)
    _set_total_cost(gw, 2.0, (DAYS[1],))
    assert main(s.cli(gw, "--start", DAYS[1], "--no-ingest")) == 0
    assert "2 downloaded" in capsys.readouterr().out
    assert not s.catalog.exists()

    assert main(["data", "budget", "--budget", str(s.budget_file), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["today"]["spent_usd"] == pytest.approx(2.0, rel=1e-6)
    assert report["today"]["used_pct"] == pytest.approx(25.0, rel=1e-4)
    assert report["this_month"]["used_pct"] == pytest.approx(1.0, rel=1e-4)
    assert report["days"][0]["done"] == 2 and report["state"] == "ok"
    assert main(["data", "budget", "--budget", str(s.budget_file)]) == 0
    text = capsys.readouterr().out
    assert "(25.0%)" in text and "per month" in text


# -- errors ----------------------------------------------------------------------------------


def test_wrong_key_is_a_one_line_401_and_the_key_never_shows(gw, tmp_path, capsys, monkeypatch):
    s = Setup(tmp_path)
    monkeypatch.setenv("DATABENTO_API_KEY", WRONG_KEY)
    assert main(s.cli(gw, "--start", DAYS[1])) == 2
    out, err = capsys.readouterr()
    line = err.strip().splitlines()[-1]
    assert line.startswith("ifd: error: pricing GLBX.MDP3 definition NQ.FUT,NQ.OPT (parent) 2026-11-16: ")
    assert "Databento answered 401 auth_authentication_failed" in line and "check DATABENTO_API_KEY" in line
    assert WRONG_KEY not in out + err
    assert gw.count("timeseries.get_range") == 0 and s.rows() == [] and s.files() == []

    monkeypatch.delenv("DATABENTO_API_KEY")
    assert main(s.cli(gw, "--start", DAYS[1])) == 2
    assert capsys.readouterr().err.strip() == (
        "ifd: error: DATABENTO_API_KEY is not set (the Databento API key, from the environment or .env; "
        "it is never logged)"
    )


def test_bad_symbol_is_a_one_line_422_and_nothing_is_recorded(gw, tmp_path):
    s = Setup(tmp_path)
    request = DownloadRequest.parse(DATASET, "mbo", "ZZ.OPT", "parent", DAYS[1])
    with pytest.raises(IfdError) as info:
        s.downloader(gw).run(request)
    message = str(info.value)
    assert "Databento answered 422 symbology_invalid_request: None of the symbols could be resolved" in message
    assert gw.count("timeseries.get_range") == 0 and s.rows() == [] and s.files() == []


def test_a_dropped_connection_keeps_nothing_and_the_next_run_resumes(gw, tmp_path):
    s = Setup(tmp_path)
    definitions = DownloadRequest.parse(DATASET, "definition", SYMBOLS, "parent", DAYS[1])
    s.downloader(gw).run(definitions)  # the day's definitions are already here
    params = {"dataset": DATASET, "start": DAYS[1], "symbols": SYMBOLS, "stype_in": "parent", "schema": "mbo"}
    size = gw.quote(**params).billable_size
    compressed = sum(len(c) for c in dbn_chunks(gw.store.select(build_query(gw.store, params)), "zstd"))
    gw.reset()
    gw.drop_after(compressed // 2)  # half the body (zstd blocks of 128 KiB: some complete), then no more

    with pytest.raises(IfdError) as info:
        s.downloader(gw).run(_day_range(DAYS[1], "2026-11-17"))
    message = str(info.value)
    assert "downloading GLBX.MDP3 mbo NQ.FUT,NQ.OPT (parent) 2026-11-16: the transfer was cut off" in message
    assert "run the command again to resume" in message
    assert [r.dropped for r in gw.requests if r.endpoint == "timeseries.get_range"] == [True]
    assert not list(tmp_path.rglob("*.part"))  # no partial file anywhere
    assert [p.parent.parent.name for p in s.files()] == ["definition"]
    failed = [r for r in s.rows() if r.status == "failed"]
    assert len(failed) == 1 and failed[0].schema == "mbo" and "cut off" in failed[0].reason
    # What did arrive is accounted for: complete records, less than the whole day.
    assert 0 < failed[0].received_bytes < size and failed[0].records * 56 == failed[0].received_bytes
    assert 0 < failed[0].actual_cost_usd < failed[0].estimated_cost_usd
    assert set(_catalog_rows(s.catalog)) == set()  # definitions only: no data rows yet

    gw.reset()
    report = s.downloader(gw).run(_day_range(DAYS[1], "2026-11-17"))
    assert gw.count("timeseries.get_range") == 1  # the mbo only; the definitions were kept
    assert [(r["schema"], r["status"]) for r in report.requests] == [("definition", "skipped"), ("mbo", "downloaded")]
    statuses = [(r.schema, r.status) for r in s.rows()]
    assert statuses == [("definition", "done"), ("mbo", "failed"), ("mbo", "done")]
    assert open_dbn(Path(s.rows()[-1].path)).record_count * 56 == size
    assert _catalog_rows(s.catalog)["order_book_deltas"] > 0


def test_a_killed_download_is_recovered_at_the_next_start(gw, tmp_path):
    """SIGKILL while the request is in flight: the next run records it failed and downloads the day."""
    s = Setup(tmp_path)
    gw.delay(30.0, "timeseries.get_range", times=1)
    child = (
        "import sys; from ifd.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    env = {**os.environ, "DATABENTO_API_KEY": gw.api_key, "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", child, *s.cli(gw, "--start", DAYS[1], "--schema", "definition")],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while gw.count("timeseries.get_range") == 0 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert gw.count("timeseries.get_range") == 1, proc.stderr.read().decode() if proc.poll() is not None else ""
        assert [r.status for r in s.rows()] == ["started"]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    gw.clear_faults()

    report = s.downloader(gw).run(DownloadRequest.parse(DATASET, "definition", SYMBOLS, "parent", DAYS[1]))
    assert [r["status"] for r in report.requests] == ["downloaded"]
    first, second = s.rows()
    assert first.status == "failed" and first.reason.startswith("interrupted")
    assert first.actual_cost_usd is None  # nothing reached a file: the estimate stands as its cost
    assert second.status == "done" and not list(tmp_path.rglob("*.part"))


# -- budget ------------------------------------------------------------------------------------


def test_a_cost_above_the_budget_is_refused_before_any_download(gw, tmp_path, capsys):
    s = Setup(tmp_path)
    _set_total_cost(gw, 10.0, DAYS)  # over the $8 left today, under the $200 of the month
    assert main(s.cli(gw, "--start", DAYS[0], "--end", "2026-11-17")) == 3
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("ifd: error: 4 request(s) for GLBX.MDP3 definition+mbo")
    assert "would cost $10.0000: refused, more than the budget left" in err
    assert "remaining today $8.0000 of $8.00" in err and "this month $200.0000 of $200.00" in err
    assert f"limits in {s.budget_file}" in err

    assert gw.count("timeseries.get_range") == 0 and gw.count("metadata.list_unit_prices") == 0
    assert set(gw.counts()) == {"metadata.get_cost", "metadata.get_billable_size"}
    assert s.files() == [] and not s.catalog.exists()
    rows = s.rows()
    assert [r.status for r in rows] == ["refused"] * 4  # the refusal is all the ledger holds
    assert sum(r.estimated_cost_usd for r in rows) == pytest.approx(10.0, rel=1e-6)
    with Ledger(s.ledger_path, readonly=True) as ledger:
        assert ledger.spend().day_usd == 0.0
    alerts = AlertHistory(s.history, readonly=True).query()
    assert [(a["level"], a["title"]) for a in alerts] == [("warning", "Databento download refused by the budget")]


def test_alert_at_80_percent_then_refusal_at_100_percent(gw, tmp_path):
    s = Setup(tmp_path, daily=1.0, monthly=1.0)
    _set_total_cost(gw, 0.85, (DAYS[1],))
    dispatcher = build_dispatcher(load_alerts_config(s.alerts_file))
    try:
        report = s.downloader(gw, alerts=dispatcher, catalog=None).run(_day_range(DAYS[1], "2026-11-17"))
        month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
        assert report.alerts == [f"Databento monthly budget 80% used ({month})"]
        # Another process spends the rest (the ledger is shared): 100% of the day and the month.
        with Ledger(s.ledger_path) as ledger:
            key = RequestKey(DATASET, "trades", ("NQ.FUT",), "parent", dt.date(2026, 11, 16))
            row_id, reason = ledger.reserve(key, 0.15, 1, lambda spend, cost: None, unit_price_usd_gb=0.15e9)
            ledger.finish(row_id, "done", received_bytes=1, records=1, actual_cost_usd=0.15, path="elsewhere")
        gw.reset()
        with pytest.raises(BudgetRefused) as info:
            s.downloader(gw, alerts=dispatcher, catalog=None).run(_day_range(DAYS[0], "2026-11-14"))
    finally:
        dispatcher.close()
    assert info.value.exit_code == 3
    assert "refused, the daily Databento budget is used up" in str(info.value)
    assert gw.count("timeseries.get_range") == 0
    levels = [(a["level"], a["title"].split(" (")[0]) for a in AlertHistory(s.history, readonly=True).query()]
    assert levels == [
        ("warning", "Databento monthly budget 80% used"),
        ("warning", "Databento download refused by the budget"),
        ("critical", "Databento monthly budget used up"),
        ("critical", "Databento daily budget used up"),
    ]
    # Each threshold alerts once per period: a further refusal adds only its own warning.
    with Ledger(s.ledger_path) as ledger:
        marks = ledger._db.execute("SELECT threshold FROM budget_alerts ORDER BY threshold").fetchall()
    assert [m[0] for m in marks] == ["day-100%", "month-100%", "month-80%"]


# -- real samples ------------------------------------------------------------------------------


@pytest.mark.real_data
def test_real_esm4_session_downloads_and_ingests(real_file, shared_data, monkeypatch, tmp_path):
    """The real ESM4 MBO (with its snapshot) through the whole path: bytes as published, into the catalog."""
    with HistoricalGateway(HistoricalStore.from_paths([shared_data])) as real_gw:
        for name, value in real_gw.client_env().items():
            monkeypatch.setenv(name, value)
        s = Setup(tmp_path)
        request = DownloadRequest.parse(DATASET, "mbo", "ESM4", "raw_symbol", "2024-05-08")
        report = s.downloader(real_gw).run(request)
    assert [(r["schema"], r["status"]) for r in report.requests] == [("definition", "downloaded"),
                                                                     ("mbo", "downloaded")]
    path = s.raw / DATASET / "mbo" / "2024-05-08" / "raw_symbol-ESM4.dbn.zst"
    assert _source(path).tobytes() == _source(real_file(ESM4_MBO)).tobytes()
    source = _source(real_file(ESM4_MBO))
    rows = _catalog_rows(s.catalog)
    assert rows["order_book_deltas"] == int(np.isin(source["action"], [b"A", b"C", b"M", b"R"]).sum())
    assert all(r.status == "done" and r.ingested_at for r in s.rows())


def test_ledger_file_is_wal_with_a_schema_version(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    assert ledger.schema_version == 2 and ledger.journal_mode == "wal"
    ledger.close()
    (tmp_path / "other.sqlite").write_bytes(b"")
    sqlite3.connect(tmp_path / "other.sqlite").execute("CREATE TABLE x (a)").connection.commit()
    with pytest.raises(IfdError, match="not an ifd budget ledger"):
        Ledger(tmp_path / "other.sqlite")


def test_a_version_1_ledger_is_upgraded_in_place_keeping_its_rows_and_spend(tmp_path):
    from adapters.databento import ledger as ledger_module
    from adapters.databento.ledger import RequestKey

    path = tmp_path / "old.sqlite"
    v1_schema = re.sub(r"TEXT,(\s+--[^\n]*)\n\s+window [^\n]*", r"TEXT\1", ledger_module._SCHEMA)
    assert "window" not in v1_schema.split("CREATE INDEX")[0]
    db = sqlite3.connect(path)
    db.executescript(v1_schema + "PRAGMA user_version = 1;")
    db.execute("INSERT INTO requests (dataset, schema, symbols, stype_in, day, status, estimated_cost_usd,"
               " actual_cost_usd, reason, pid, created_at, updated_at) VALUES ('GLBX.MDP3', 'mbo', 'NQ.OPT',"
               " 'parent', '2026-11-16', 'done', 1.5, 1.25, '', 1, '2026-11-17T01:00:00.000000Z',"
               " '2026-11-17T01:00:00.000000Z')")
    db.commit()
    db.close()
    with pytest.raises(IfdError, match="older than this ifd's"):
        Ledger(path, readonly=True)
    now = dt.datetime(2026, 11, 17, 12, tzinfo=dt.UTC)
    with Ledger(path) as ledger:
        assert ledger.schema_version == 2
        [row] = ledger.rows()
        assert row.window == "" and row.actual_cost_usd == 1.25
        assert ledger.spend(now).day_usd == 1.25
        whole_day = RequestKey("GLBX.MDP3", "mbo", ("NQ.OPT",), "parent", dt.date(2026, 11, 16))
        assert ledger.completed(whole_day).id == row.id
        assert ledger.completed(RequestKey(*whole_day.__dict__.values())) is not None
        window = RequestKey("GLBX.MDP3", "mbo", ("NQ.OPT",), "parent", dt.date(2026, 11, 16), "14:00-14:15")
        assert ledger.completed(window) is None  # a window is its own request
    with Ledger(path, readonly=True) as ledger:  # upgraded: readable by the live nodes' read-only check
        assert ledger.schema_version == 2
