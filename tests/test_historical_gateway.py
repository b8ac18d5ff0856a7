"""The historical Databento API of ours on 127.0.0.1, driven by the real ``databento.Historical``.

Every request goes through the official client (HTTPS, basic auth, form parameters, DBN
decoding) except where a test needs a request the client cannot make (no key, no compression).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

import databento as db
import numpy as np
import pytest
import requests
from databento.common.error import (
    BentoClientError,
    BentoError,
    BentoServerError,
    BentoWarning,
)

from adapters.databento.historical_gateway import (
    DEFAULT_API_KEY,
    HistoricalGateway,
    HistoricalStore,
    Quote,
    iso_ns,
)
from ifd.scenario import ScenarioConfig, generate_scenario
from tests.support.real_samples import ESH4_MBO_20231225, ESM4_MBO

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATASET = "GLBX.MDP3"
SCENARIO = ScenarioConfig(
    seed=3, strikes=2, expiries=2, minutes=3, rate=100.0, days=2,
    institutional=1, mm_straddle=0, volume_noise=0,
)  # fmt: skip
DAY = "2026-11-16"  # the scenario's session; its history day is 2026-11-13
MBO_PRICE = 50.0  # USD per GB for mbo in the scenario gateway
NQ_OPT_MBO = {
    "dataset": DATASET, "start": DAY, "symbols": "NQ.OPT", "stype_in": "parent", "schema": "mbo",
}  # fmt: skip
OPTIONS_DEFINITION = "nautilus_trader/options_definition.dbn.zst"
OPTIONS_MBP1 = "nautilus_trader/options_mbp-1_2024-05-09T10h00_2024-05-09T10h05.dbn.zst"


def _ns(text: str) -> int:
    return int(np.datetime64(text.replace("Z", ""), "ns").astype(np.int64))


def _source(path: Path) -> np.ndarray:
    return db.DBNStore.from_file(path).to_ndarray()


def _v3_bytes(store: db.DBNStore) -> list[bytes]:
    """Records as DBN v3 bytes (DBNStore iteration upgrades older versions)."""
    return [bytes(r) for r in store]


def _window(arr: np.ndarray, start: str, end: str) -> np.ndarray:
    ts = arr["ts_recv"]
    return arr[(ts >= _ns(start)) & (ts < _ns(end))]


def _client(gw: HistoricalGateway, monkeypatch: pytest.MonkeyPatch, key: str | None = None):
    for name, value in gw.client_env().items():
        monkeypatch.setenv(name, value)
    return db.Historical(key or gw.api_key, gateway=gw.url)


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scenario_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("historical_scenario")
    generate_scenario(out, SCENARIO)
    return out


@pytest.fixture(scope="module")
def scenario_gateway(scenario_dir):
    store = HistoricalStore.from_paths([scenario_dir])
    with HistoricalGateway(store, unit_prices={"mbo": MBO_PRICE}) as gw:
        yield gw


@pytest.fixture(scope="module")
def real_gateway(shared_data):
    with HistoricalGateway(HistoricalStore.from_paths([shared_data])) as gw:
        yield gw


@pytest.fixture
def sgw(scenario_gateway):
    scenario_gateway.reset()
    scenario_gateway.unit_prices = {"mbo": MBO_PRICE}
    yield scenario_gateway
    scenario_gateway.reset()


@pytest.fixture
def rgw(real_gateway):
    real_gateway.reset()
    yield real_gateway
    real_gateway.reset()


@pytest.fixture(scope="module")
def scenario_defs(scenario_dir) -> np.ndarray:
    return _source(scenario_dir / "definition.dbn.zst")


@pytest.fixture(scope="module")
def scenario_mbo(scenario_dir) -> np.ndarray:
    return _source(scenario_dir / "mbo.dbn.zst")


def _ids(defs: np.ndarray, asset: str, security_type: str) -> set[int]:
    keep = (defs["asset"] == asset.encode()) & (defs["security_type"] == security_type.encode())
    return set(defs["instrument_id"][keep].tolist())


# -- real samples ----------------------------------------------------------------------------


@pytest.mark.real_data
def test_real_mbo_window_equals_the_source_file(rgw, real_file, monkeypatch, tmp_path):
    client = _client(rgw, monkeypatch)
    start, end = "2023-12-25T23:00:00", "2023-12-25T23:30:00"  # the Globex reopen
    target = tmp_path / "esh4.mbo.dbn.zst"

    got = client.timeseries.get_range(
        DATASET, start=start, end=end, symbols="ESH4", schema="mbo", path=target
    )

    expected = _window(_source(real_file(ESH4_MBO_20231225)), start, end)
    assert len(expected) > 1_000
    arr = got.to_ndarray()
    assert arr.tobytes() == expected.tobytes()
    meta = got.metadata
    assert (meta.version, meta.dataset, str(meta.schema)) == (3, DATASET, "mbo")
    assert (meta.start, meta.end) == (_ns(start), _ns(end))
    assert (str(meta.stype_in), str(meta.stype_out), meta.symbols) == (
        "raw_symbol", "instrument_id", ["ESH4"],
    )  # fmt: skip
    assert meta.mappings["ESH4"][0]["symbol"] == "17077"
    assert str(meta.mappings["ESH4"][0]["start_date"]) == "2023-12-25"
    # The file the client wrote decodes on its own and maps the instrument back to ESH4.
    saved = db.DBNStore.from_file(target)
    assert saved.to_ndarray().tobytes() == expected.tobytes()
    assert set(saved.to_df()["symbol"]) == {"ESH4"}
    count = client.metadata.get_record_count(
        DATASET, start=start, end=end, symbols="ESH4", schema="mbo"
    )
    assert count == len(expected)
    assert rgw.counts() == {"timeseries.get_range": 1, "metadata.get_record_count": 1}


@pytest.mark.real_data
def test_real_snapshot_session_whole_and_uncompressed(rgw, real_file, monkeypatch):
    client = _client(rgw, monkeypatch)
    source = _source(real_file(ESM4_MBO))
    params = {"start": "2024-05-08T00:00:00", "end": "2024-05-08T00:00:02", "symbols": "ESM4"}

    got = client.timeseries.get_range(DATASET, schema="mbo", **params).to_ndarray()
    assert got.tobytes() == source.tobytes()
    assert got["action"][0] == b"R" and len(got) == 13_796

    # compression=none (the client always asks for zstd): plain DBN, the same records.
    form = {"dataset": DATASET, "schema": "mbo", "compression": "none", **params}
    with requests.post(
        f"{rgw.url}/v0/timeseries.get_range", data=form, auth=(rgw.api_key, ""), timeout=30
    ) as response:
        assert response.status_code == 200
        body = response.content
    assert body[:3] == b"DBN"
    assert db.DBNStore.from_bytes(body).to_ndarray().tobytes() == source.tobytes()
    assert [path.name for path, _ in rgw.store.skipped] == ["LIVE_test_data.live.dbn.zst"]


@pytest.mark.real_data
def test_real_definitions_options_and_parent_symbols(rgw, real_file, monkeypatch):
    client = _client(rgw, monkeypatch)

    # ES.OPT resolves through the definitions' asset; v1 records come back upgraded to v3.
    defs = client.timeseries.get_range(
        DATASET, start="2024-05-09", symbols="ES.OPT", stype_in="parent", schema="definition"
    )
    source = db.DBNStore.from_file(real_file(OPTIONS_DEFINITION))
    assert sorted(_v3_bytes(defs)) == sorted(_v3_bytes(source))
    assert set(defs.metadata.mappings) == {"ESM4 P5230", "ESM4 P5250"}

    # Two options by raw symbol over five minutes of MBP-1.
    start, end = "2024-05-09T10:00:00", "2024-05-09T10:05:00"
    mbp = client.timeseries.get_range(
        DATASET, start=start, end=end, symbols=["ESM4 P5230", "ESM4 P5250"], schema="mbp-1"
    )
    expected = _window(_source(real_file(OPTIONS_MBP1)), start, end)
    assert mbp.to_ndarray().tobytes() == expected.tobytes()

    # ESH4 has no definition here: ES.FUT finds it by its symbol's root.
    count = client.metadata.get_record_count(
        DATASET, start="2023-12-25", symbols="ES.FUT", stype_in="parent", schema="mbo"
    )
    assert count == 68_792


# -- generated scenario ----------------------------------------------------------------------


def test_parent_symbols_split_the_chain_as_databento_does(
    sgw, scenario_defs, scenario_mbo, monkeypatch
):
    client = _client(sgw, monkeypatch)
    groups = {
        "NQ.OPT": _ids(scenario_defs, "NQ", "OOF"),  # quarterly options: root NQ
        "QN4.OPT": _ids(scenario_defs, "QN4", "OOF"),  # Friday weeklies have their own root
        "NQ.FUT": _ids(scenario_defs, "NQ", "FUT"),
    }
    assert all(groups.values()) and sum(map(len, groups.values())) == len(scenario_defs)

    for parent, ids in groups.items():
        defs = client.timeseries.get_range(
            DATASET, start=DAY, symbols=parent, stype_in="parent", schema="definition"
        )
        assert set(defs.to_ndarray()["instrument_id"].tolist()) == ids
        assert defs.metadata.symbols == [parent]
        chosen = np.isin(scenario_defs["instrument_id"], list(ids))
        assert set(defs.metadata.mappings) == {
            r.decode() for r in scenario_defs["raw_symbol"][chosen]
        }

        mbo = client.timeseries.get_range(
            DATASET, start=DAY, symbols=parent, stype_in="parent", schema="mbo"
        ).to_ndarray()
        expected = scenario_mbo[np.isin(scenario_mbo["instrument_id"], list(ids))]
        assert mbo.tobytes() == expected.tobytes()

    everything = client.timeseries.get_range(DATASET, start=DAY, schema="mbo", symbols=None)
    assert everything.to_ndarray().tobytes() == scenario_mbo.tobytes()
    assert everything.metadata.symbols == ["ALL_SYMBOLS"]


def test_days_of_several_files_are_merged_in_time_order(sgw, scenario_dir, monkeypatch):
    client = _client(sgw, monkeypatch)
    history = _source(next((scenario_dir / "history").glob("*/mbo.dbn.zst")))
    session = _source(scenario_dir / "mbo.dbn.zst")

    got = client.timeseries.get_range(
        DATASET, start="2026-11-13", end="2026-11-17", symbols="NQZ6", schema="mbo"
    )

    future = 294_973
    expected = np.concatenate([history, session])
    expected = expected[expected["instrument_id"] == future]
    assert got.to_ndarray().tobytes() == expected.tobytes()
    days = [(str(m["start_date"]), str(m["end_date"])) for m in got.metadata.mappings["NQZ6"]]
    assert days == [("2026-11-13", "2026-11-14"), ("2026-11-16", "2026-11-17")]


@pytest.mark.parametrize(
    ("schema", "symbols", "stype_in", "limit"),
    [
        ("mbo", ["NQZ6"], "raw_symbol", None),
        ("mbo", ["NQ.OPT", "QN4.OPT"], "parent", None),
        ("mbo", None, "raw_symbol", 500),
        ("definition", ["42000001", "294973"], "instrument_id", None),
    ],
)
def test_cost_size_and_count_agree_with_get_range(
    sgw, monkeypatch, schema, symbols, stype_in, limit
):
    client = _client(sgw, monkeypatch)
    request = {
        "dataset": DATASET,
        "start": DAY,
        "symbols": symbols,
        "schema": schema,
        "stype_in": stype_in,
        "limit": limit,
    }

    records = client.timeseries.get_range(**request).to_ndarray()
    count = client.metadata.get_record_count(**request)
    size = client.metadata.get_billable_size(**request)
    cost = client.metadata.get_cost(**request)

    assert count == len(records) > 0
    if limit:
        assert count == limit
    assert size == count * records.dtype.itemsize
    assert cost == pytest.approx(size / 1e9 * sgw.unit_price(schema))
    assert sgw.quote(**request) == Quote(count, size, pytest.approx(cost))
    # A price set while the gateway runs makes the same request expensive.
    sgw.unit_prices[schema] = 1e9
    assert client.metadata.get_cost(**request) == pytest.approx(size)


def test_wrong_or_missing_key_is_401_and_nothing_is_written(sgw, monkeypatch, tmp_path):
    wrong_key = "db-NotTheRightKeyNotTheRightKey0"
    client = _client(sgw, monkeypatch, key=wrong_key)
    target = tmp_path / "never.dbn.zst"

    with pytest.raises(BentoClientError) as caught:
        client.timeseries.get_range(DATASET, start=DAY, symbols="NQZ6", schema="mbo", path=target)
    with pytest.raises(BentoClientError) as cost_error:
        client.metadata.get_cost(DATASET, start=DAY, symbols="NQZ6", schema="mbo")

    for exc in (caught.value, cost_error.value):
        assert exc.http_status == 401
        assert exc.json_body["detail"]["case"] == "auth_authentication_failed"
        assert "Authentication failed." in str(exc) and exc.request_id
    assert not target.exists()
    assert wrong_key not in json.dumps([r.params for r in sgw.requests])  # keys are not logged

    response = requests.get(f"{sgw.url}/v0/metadata.list_datasets", timeout=30)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert response.json()["detail"]["status_code"] == 401
    assert sgw.counts() == {
        "timeseries.get_range": 1, "metadata.get_cost": 1, "metadata.list_datasets": 1,
    }  # fmt: skip


def test_unknown_symbol_is_422_and_partly_known_symbols_warn(sgw, monkeypatch):
    client = _client(sgw, monkeypatch)
    unknown = {"dataset": DATASET, "start": DAY, "symbols": ["NQZ9 C99999"], "schema": "mbo"}

    calls = (
        client.timeseries.get_range, client.metadata.get_cost, client.metadata.get_record_count,
    )  # fmt: skip
    for call in calls:
        with pytest.raises(BentoClientError) as caught:
            call(**unknown)
        assert caught.value.http_status == 422
        assert caught.value.json_body["detail"]["case"] == "symbology_invalid_request"
        assert "None of the symbols could be resolved" in str(caught.value)

    with pytest.warns(BentoWarning, match="NQZ9 C99999"):
        got = client.timeseries.get_range(
            DATASET, start=DAY, symbols=["NQZ6", "NQZ9 C99999"], schema="mbo"
        )
    assert got.metadata.not_found == ["NQZ9 C99999"]
    assert set(got.to_ndarray()["instrument_id"].tolist()) == {294_973}


@pytest.mark.parametrize(
    ("start", "end", "schema", "dataset", "case"),
    [
        (f"{DAY}T15:00", f"{DAY}T14:00", "mbo", DATASET, "data_time_range_start_on_or_after_end"),
        (f"{DAY}T15:00", f"{DAY}T15:00", "mbo", DATASET, "data_time_range_start_on_or_after_end"),
        (DAY, "2026-11-18", "mbo", DATASET, "data_end_after_available_end"),
        ("2026-11-12", DAY, "mbo", DATASET, "data_start_before_available_start"),
        ("2026-11-17", "2026-11-18", "mbo", DATASET, "data_start_after_available_end"),
        (DAY, None, "mbp-10", DATASET, "data_schema_not_fully_available"),
        (DAY, None, "mbo", "XNAS.ITCH", "dataset_unavailable"),
        ("the 16th", None, "mbo", DATASET, "parameter_invalid"),
    ],
)
def test_bad_requests_are_422(sgw, monkeypatch, start, end, schema, dataset, case):
    client = _client(sgw, monkeypatch)
    request = {"dataset": dataset, "start": start, "end": end, "symbols": "NQZ6"}

    for call in (client.timeseries.get_range, client.metadata.get_cost):
        with pytest.raises(BentoClientError) as caught:
            call(**request, schema=schema)
        assert caught.value.http_status == 422
        assert caught.value.json_body["detail"]["case"] == case


def test_dropped_connection_leaves_a_partial_file_and_a_retry_resumes(sgw, monkeypatch, tmp_path):
    client = _client(sgw, monkeypatch)
    complete = client.timeseries.get_range(**NQ_OPT_MBO).to_ndarray()
    sgw.reset()
    sgw.drop_after(10_000)  # once
    with pytest.raises(BentoClientError):  # a refused request leaves the fault armed
        client.timeseries.get_range(**{**NQ_OPT_MBO, "symbols": "NQ9.OPT"})
    target = tmp_path / "nq_opt.mbo.dbn.zst"

    with pytest.raises(BentoError, match="Error streaming response"):
        client.timeseries.get_range(**NQ_OPT_MBO, path=target)

    # What the client leaves behind: the bytes received before the drop, at the target path.
    assert target.stat().st_size == 10_000
    # Writing to the same path again is refused before any request: download to a temp path.
    with pytest.raises(FileExistsError):
        client.timeseries.get_range(**NQ_OPT_MBO, path=target)
    assert sgw.count("timeseries.get_range") == 2
    target.unlink()
    again = client.timeseries.get_range(**NQ_OPT_MBO, path=target)
    assert again.to_ndarray().tobytes() == complete.tobytes()
    log = [(r.status, r.dropped, r.body_bytes) for r in sgw.requests]
    assert log[0][0] == 422
    assert log[1:] == [(200, True, 10_000), (200, False, target.stat().st_size)]

    sgw.drop_after(0, times=None)  # always, right after the headers
    for _ in range(2):
        with pytest.raises(BentoError):
            client.timeseries.get_range(**NQ_OPT_MBO)
    assert sgw.count("timeseries.get_range") == 5


def test_server_errors_and_delays(sgw, monkeypatch):
    client = _client(sgw, monkeypatch)
    request = {"dataset": DATASET, "start": DAY, "symbols": "NQZ6", "schema": "mbo"}

    sgw.fail_with(503, endpoint="metadata.get_cost")
    with pytest.raises(BentoServerError) as caught:
        client.metadata.get_cost(**request)
    assert caught.value.http_status == 503
    assert client.metadata.get_cost(**request) > 0  # only once

    sgw.fail_with(504)
    with pytest.raises(BentoServerError, match="The remote gateway timed out"):
        client.timeseries.get_range(**request)

    sgw.fail_with(500, endpoint="timeseries.get_range", times=None)
    for _ in range(2):
        with pytest.raises(BentoServerError):
            client.timeseries.get_range(**request)
    sgw.clear_faults()
    assert len(client.timeseries.get_range(**request).to_ndarray()) > 0

    sgw.delay(0.3, endpoint="metadata.get_record_count", times=1)
    started = time.monotonic()
    client.metadata.get_record_count(**request)
    assert time.monotonic() - started >= 0.3
    assert [r.status for r in sgw.requests] == [503, 200, 504, 500, 500, 200, 200]


def test_request_counts_are_exact_under_concurrency(sgw, monkeypatch):
    client = _client(sgw, monkeypatch)
    request = NQ_OPT_MBO
    expected = client.metadata.get_record_count(**request)
    results: list[int] = []

    def work() -> None:
        for _ in range(4):
            results.append(client.metadata.get_record_count(**request))

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == [expected] * 24
    assert sgw.count("metadata.get_record_count") == 25 == sgw.count()


def test_metadata_endpoints_agree_with_the_store(sgw, monkeypatch):
    client = _client(sgw, monkeypatch)

    assert client.metadata.list_datasets() == [DATASET]
    assert client.metadata.list_datasets(start_date="2027-01-01") == []
    assert client.metadata.list_schemas(DATASET) == ["definition", "mbo"]
    window = client.metadata.get_dataset_range(DATASET)
    assert window["start"] == "2026-11-13T00:00:00.000000000Z"
    assert window["end"] == iso_ns(_ns("2026-11-17"))
    assert window["schema"]["mbo"] == {"start": window["start"], "end": window["end"]}
    # The advertised range is accepted up to its very end.
    assert client.metadata.get_record_count(
        DATASET, start=window["start"], end=window["end"], schema="mbo", symbols="NQZ6"
    ) > 0
    prices = client.metadata.list_unit_prices(DATASET)
    assert prices[0] == {
        "mode": "historical", "unit_prices": {"definition": 10.0, "mbo": MBO_PRICE},
    }  # fmt: skip
    publishers = client.metadata.list_publishers()
    assert publishers == [
        {
            "publisher_id": 1, "dataset": DATASET, "venue": "GLBX",
            "description": "CME Globex MDP 3.0",
        },
    ]  # fmt: skip
    conditions = client.metadata.get_dataset_condition(DATASET, start_date="2026-11-13")
    days = ["2026-11-13", "2026-11-14", "2026-11-15", "2026-11-16"]
    assert [c["date"] for c in conditions] == days

    resolved = client.symbology.resolve(DATASET, "QN4.OPT", "parent", "instrument_id", DAY)
    assert resolved["not_found"] == [] and resolved["status"] == 0
    assert {k.split(" ")[0] for k in resolved["result"]} == {"QN4X6"}


def test_async_client_trusts_the_gateway_when_told_before_import(sgw, scenario_mbo):
    # aiohttp builds its default TLS context when imported: SSL_CERT_FILE must be set first.
    script = (
        "import asyncio, sys, databento as db\n"
        "client = db.Historical(sys.argv[1], gateway=sys.argv[2])\n"
        "store = asyncio.run(client.timeseries.get_range_async("
        f"'{DATASET}', start='{DAY}', symbols='ALL_SYMBOLS', schema='mbo'))\n"
        "print(len(store.to_ndarray()))\n"
    )
    env = {**os.environ, **sgw.client_env()}
    done = subprocess.run(
        [sys.executable, "-c", script, sgw.api_key, sgw.url],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert int(done.stdout) == len(scenario_mbo)
    assert sgw.counts() == {"timeseries.get_range": 1}


def test_command_line_serves_a_folder(scenario_dir, scenario_mbo, monkeypatch):
    process = subprocess.Popen(
        [
            sys.executable, "-m", "adapters.databento.historical_gateway",
            "--store", str(scenario_dir), "--price", "mbo=1000",
        ],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )  # fmt: skip
    try:
        readable, _, _ = select.select([process.stdout], [], [], 60)
        assert readable, "the gateway did not start within 60 s"
        ready = json.loads(process.stdout.readline())
        assert ready["datasets"] == {DATASET: ["definition", "mbo"]}
        assert ready["url"].startswith("https://127.0.0.1:")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", ready["ca_file"])
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        client = db.Historical(DEFAULT_API_KEY, gateway=ready["url"])
        request = {"dataset": DATASET, "start": DAY, "schema": "mbo"}
        size = client.metadata.get_billable_size(**request)
        assert size == len(scenario_mbo) * 56
        assert client.metadata.get_cost(**request) == pytest.approx(size / 1e9 * 1000)
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
