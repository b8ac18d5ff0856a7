"""The replay gateway against the official databento.Live client over real TCP on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from collections import Counter

import databento as db
import databento_dbn as dbn
import pytest

from live.databento_gateway import DatabentoGateway, cram_response, parse_control_line

KEY = "db-TESTKEYtestkeyTESTKEYabcde"
MBO = "nautilus_trader/orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst"
DEF = "nautilus_trader/orderbooks_definition.dbn.zst"
TIMEOUT = 20.0


@pytest.fixture()
def gateway(real_file):
    gw = DatabentoGateway(
        [real_file(MBO), real_file(DEF)], api_keys=[KEY], heartbeat_interval_s=1
    )
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


seen: dict = {}


def collect(client: db.Live, until, timeout: float = TIMEOUT) -> list:
    """Records via callback until ``until(records)`` or timeout; always terminates the client."""
    records: list = []
    done = threading.Event()

    def on_record(rec) -> None:
        records.append(rec)
        if until(records):
            done.set()

    client.add_callback(on_record)
    client.start()
    try:
        done.wait(timeout)
        seen["metadata"], seen["symbology"] = (
            client.metadata,
            dict(client.symbology_map),
        )
    finally:
        if client.is_connected():
            client.terminate()
    return records


def count_of(cls, n):
    return lambda recs: sum(isinstance(r, cls) for r in recs) >= n


def test_cram_and_line_format():
    assert cram_response("abc", KEY) == db.common.cram.get_challenge_response(
        "abc", KEY
    )
    assert parse_control_line("success=1|session_id=7\n") == {
        "success": "1",
        "session_id": "7",
    }


def test_mbo_subscription_streams_the_whole_file(gateway, real_file):
    expected = list(db.DBNStore.from_file(real_file(MBO)))
    client = db.Live(key=KEY, gateway="127.0.0.1", port=gateway.port)
    client.subscribe(
        dataset="GLBX.MDP3",
        schema="mbo",
        symbols=["ESM4"],
        stype_in="raw_symbol",
        snapshot=True,
    )
    records = collect(client, lambda recs: isinstance(recs[-1], dbn.SystemMsg))
    kinds = Counter(
        type(r).__name__ for r in records if not isinstance(r, dbn.SystemMsg)
    )
    assert kinds == {"MBOMsg": 13_796, "SymbolMappingMsg": 1, "InstrumentDefMsg": 1}
    assert isinstance(records[0], dbn.SymbolMappingMsg)
    assert records[0].stype_out_symbol == "ESM4" and records[0].instrument_id == 5602
    assert (
        isinstance(records[1], dbn.InstrumentDefMsg) and records[1].raw_symbol == "ESM4"
    )
    mbo = [r for r in records if isinstance(r, dbn.MBOMsg)]
    for i in (0, 1, 500, 7_000, 13_795):
        a, b = mbo[i], expected[i]
        for field in (
            "ts_recv",
            "ts_event",
            "instrument_id",
            "order_id",
            "price",
            "size",
            "action",
            "side",
            "flags",
            "sequence",
        ):
            assert getattr(a, field) == getattr(b, field), (i, field)
    assert records[-1].is_heartbeat()
    assert (
        seen["metadata"].dataset == "GLBX.MDP3"
        and seen["metadata"].schema == dbn.Schema.MBO
    )
    assert seen["metadata"].version == 3
    assert seen["symbology"][5602] == "ESM4"
    sub = gateway.sessions[0].subscriptions[0]
    assert (sub.schema, sub.symbols, sub.stype_in, sub.snapshot) == (
        "mbo",
        ["ESM4"],
        "raw_symbol",
        True,
    )


def test_trades_derived_from_mbo_and_ts_order_across_subscriptions(gateway):
    client = db.Live(key=KEY, gateway="127.0.0.1", port=gateway.port)
    client.subscribe(dataset="GLBX.MDP3", schema="trades", symbols="ALL_SYMBOLS")
    records = collect(client, count_of(dbn.TradeMsg, 5))
    trades = [r for r in records if isinstance(r, dbn.TradeMsg)]
    assert len(trades) == 5
    t = trades[0]
    assert (t.price, t.size, t.depth, t.side, t.sequence) == (
        5_214_250_000_000,
        1,
        0,
        "B",
        11051173,
    )
    assert t.action == "T" and t.ts_event == 1715126401488989583
    assert sum(isinstance(r, dbn.SymbolMappingMsg) for r in records) == 1

    client = db.Live(key=KEY, gateway="127.0.0.1", port=gateway.port)
    client.subscribe(dataset="GLBX.MDP3", schema="mbo", symbols=["ESM4"])
    client.subscribe(dataset="GLBX.MDP3", schema="trades", symbols=["ESM4"])
    records = collect(client, lambda recs: isinstance(recs[-1], dbn.SystemMsg))
    data = [r for r in records if isinstance(r, (dbn.MBOMsg, dbn.TradeMsg))]
    assert Counter(type(r).__name__ for r in data) == {"MBOMsg": 13_796, "TradeMsg": 5}
    stamps = [r.ts_recv for r in data]
    assert stamps == sorted(stamps)


def test_ts_out_appended(gateway):
    client = db.Live(key=KEY, gateway="127.0.0.1", port=gateway.port, ts_out=True)
    client.subscribe(dataset="GLBX.MDP3", schema="trades", symbols=["ESM4"])
    records = collect(client, count_of(dbn.TradeMsg, 5))
    trades = [r for r in records if isinstance(r, dbn.TradeMsg)]
    assert len(trades) == 5 and abs(trades[0].ts_out - time.time_ns()) < 60e9


def test_wrong_key_is_refused(gateway):
    client = db.Live(
        key="db-WRONGkeyWRONGkeyWRONGxyzzy", gateway="127.0.0.1", port=gateway.port
    )
    with pytest.raises(db.BentoError, match="Authentication failed"):
        client.subscribe(dataset="GLBX.MDP3", schema="mbo", symbols=["ESM4"])
    assert not gateway.sessions[0].authenticated


def test_unknown_dataset_is_refused(gateway):
    client = db.Live(key=KEY, gateway="127.0.0.1", port=gateway.port)
    with pytest.raises(db.BentoError, match="Unknown dataset"):
        client.subscribe(dataset="XNAS.ITCH", schema="mbo", symbols=["AAPL"])


def test_unknown_schema_is_refused(gateway):
    client = db.Live(key=KEY, gateway="127.0.0.1", port=gateway.port)
    client.subscribe(dataset="GLBX.MDP3", schema="ohlcv-1s", symbols=["ESM4"])
    client.start()
    with pytest.raises(db.BentoError, match="Unknown schema"):
        client.block_for_close(timeout=TIMEOUT)


def test_drop_after_records_closes_mid_stream(real_file):
    gw = DatabentoGateway(
        [real_file(MBO), real_file(DEF)], api_keys=[KEY], drop_after_records=1_000
    )
    port = gw.start()
    try:
        client = db.Live(key=KEY, gateway="127.0.0.1", port=port)
        client.subscribe(dataset="GLBX.MDP3", schema="mbo", symbols=["ESM4"])
        records = []
        client.add_callback(records.append)
        client.start()
        client.block_for_close(
            timeout=TIMEOUT
        )  # returns: the gateway closed the connection
        assert len(records) == 1_000
        assert gw.sessions[0].dropped
    finally:
        gw.stop()


SYNC = {"sync_schemas": ("mbo", "trades"), "heartbeat_interval_s": 1}


def _until(predicate, timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _client(port: int, schema: str, arrivals: list, **kwargs) -> db.Live:
    """A live client on ESM4 that appends (schema, record) to ``arrivals`` and is started."""
    client = db.Live(key=KEY, gateway="127.0.0.1", port=port)
    client.subscribe(dataset="GLBX.MDP3", schema=schema, symbols=["ESM4"], **kwargs)
    client.add_callback(lambda rec: arrivals.append((schema, rec)))
    client.start()
    return client


def _data(arrivals: list) -> list:
    return [(s, r) for s, r in arrivals if isinstance(r, (dbn.MBOMsg, dbn.TradeMsg))]


def test_synced_sessions_replay_one_market(real_file):
    """A trades session and an MBO session of one gateway get one merged, paced stream.

    The trades session is held until the MBO session has started; then every trade arrives
    after the MBO records before its ``T`` record and before the ones after it (both clients
    share databento's event loop thread, so ``arrivals`` is the order they were read in).
    """
    mbo = list(db.DBNStore.from_file(real_file(MBO)))
    trade_at = [i for i, r in enumerate(mbo) if r.action == "T"]
    speed = 4.0
    gw = DatabentoGateway([real_file(MBO), real_file(DEF)], api_keys=[KEY], speed=speed, sync_gap_s=0.02, **SYNC)
    port = gw.start()
    arrivals: list = []
    clients = []
    try:
        clients.append(_client(port, "trades", arrivals))
        time.sleep(1.5)  # the trades session alone: mappings, definitions and heartbeats only
        market = gw.markets["GLBX.MDP3"]
        assert not market.started.is_set() and not _data(arrivals)
        assert gw.sessions[0].heartbeats_sent > 0  # kept alive while it waits
        clients.append(_client(port, "mbo", arrivals, snapshot=True))
        assert _until(lambda: market.finished.is_set() and len(_data(arrivals)) == len(mbo) + len(trade_at))
    finally:
        for client in clients:
            client.terminate()
        gw.stop()
    data = _data(arrivals)
    assert [s for s, _ in data].count("trades") == len(trade_at) == 5
    for k, pos in enumerate(i for i, (s, _) in enumerate(data) if s == "trades"):
        before = sum(1 for s, _ in data[:pos] if s == "mbo")
        assert before == trade_at[k], (k, before, trade_at[k])  # exchange order across sessions
        assert data[pos][1].ts_recv == mbo[trade_at[k]].ts_recv
    assert [r.ts_recv for s, r in data if s == "mbo"] == [r.ts_recv for r in mbo]
    stats = market.stats
    assert stats["sessions"] == [1, 2] and stats["schemas"] == ["mbo", "trades"]
    assert stats["records"] == len(data) and stats["switches"] == 2 * len(trade_at)
    span_s = (mbo[-1].ts_recv - mbo[0].ts_recv) / 1e9
    assert span_s / speed * 0.95 <= stats["wall_s"] <= span_s / speed + 2.0  # paced on one clock
    assert all(s.synced for s in gw.sessions)


def test_synced_market_starts_without_a_missing_schema_after_the_timeout(real_file):
    gw = DatabentoGateway([real_file(MBO), real_file(DEF)], api_keys=[KEY], sync_timeout_s=0.5, **SYNC)
    port = gw.start()
    arrivals: list = []
    try:
        client = _client(port, "trades", arrivals)
        market = gw.markets["GLBX.MDP3"]
        assert _until(lambda: len(_data(arrivals)) == 5)
        client.terminate()
    finally:
        gw.stop()
    assert market.stats["schemas"] == ["trades"] and market.stats["records"] == 5


def test_late_session_joins_the_market_where_it_is(real_file):
    """After the market: an MBO session with ``snapshot=1`` gets the book's history at once (it
    stands in for the snapshot); a trades session without ``start`` gets no past trades."""
    mbo_records = 13_796
    gw = DatabentoGateway([real_file(MBO), real_file(DEF)], api_keys=[KEY], **SYNC)
    port = gw.start()
    first: list = []
    late_mbo: list = []
    late_trades: list = []
    clients = []
    try:
        clients += [_client(port, "trades", first), _client(port, "mbo", first, snapshot=True)]
        market = gw.markets["GLBX.MDP3"]
        assert _until(lambda: market.finished.is_set() and len(_data(first)) == mbo_records + 5)
        clients.append(_client(port, "mbo", late_mbo, snapshot=True))
        clients.append(_client(port, "trades", late_trades))
        heartbeat = lambda recs: any(isinstance(r, dbn.SystemMsg) and r.is_heartbeat() for _, r in recs)
        assert _until(lambda: heartbeat(late_mbo) and heartbeat(late_trades))
    finally:
        for client in clients:
            client.terminate()
        gw.stop()
    assert len(_data(late_mbo)) == mbo_records
    assert _data(late_trades) == []
    assert any(isinstance(r, dbn.SymbolMappingMsg) for _, r in late_trades)
    assert market.stats["sessions"] == [1, 2]  # the late sessions were served beside it
