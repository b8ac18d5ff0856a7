"""Write DBN (version 3) files: metadata from ``databento_dbn``, MBO records from numpy.

MBO records are encoded straight from a numpy structured array whose layout is exactly the
56-byte DBN ``MboMsg`` (little endian, no padding); tests prove the bytes equal
``bytes(databento_dbn.MBOMsg(...))``.  Output is zstd-compressed with a fixed level and no
worker threads, so equal input gives byte-identical files.  Every file is written to a temp
path beside its target and moved into place with ``os.replace``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import databento_dbn as dbn
import numpy as np
import zstandard

from ifd.scenario.chain import MULTIPLIER, InstrumentSpec
from ifd.scenario.pricing import PU_FIXED

DATASET = "GLBX.MDP3"
PUBLISHER_ID = 1  # GLBX.MDP3 / GLBX
ZSTD_LEVEL = 3
UNDEF_PRICE = 2**63 - 1

MBO_DTYPE = np.dtype(
    [
        ("length", "u1"),
        ("rtype", "u1"),
        ("publisher_id", "<u2"),
        ("instrument_id", "<u4"),
        ("ts_event", "<u8"),
        ("order_id", "<u8"),
        ("price", "<i8"),
        ("size", "<u4"),
        ("flags", "u1"),
        ("channel_id", "u1"),
        ("action", "S1"),
        ("side", "S1"),
        ("ts_recv", "<u8"),
        ("ts_in_delta", "<i4"),
        ("sequence", "<u4"),
    ]
)
assert MBO_DTYPE.itemsize == 56
MBO_LENGTH = 56 // 4
MBO_RTYPE = 0xA0

# Column order of the compact record tuples produced by the simulator (see tape.py).
COLUMNS = (
    "instrument_id",
    "ts_event",
    "order_id",
    "price_pu",
    "size",
    "flags",
    "action",
    "side",
    "ts_recv",
    "ts_in_delta",
    "sequence",
)


@dataclass(frozen=True)
class _Interval:
    start_date: dt.date
    end_date: dt.date
    symbol: str


@dataclass(frozen=True)
class _Mapping:
    raw_symbol: str
    intervals: list[_Interval]


def glbx_metadata(
    schema: dbn.Schema,
    start_ns: int,
    end_ns: int,
    mappings: dict[str, tuple[dt.date, dt.date, int]],
) -> bytes:
    """Encoded DBN v3 GLBX.MDP3 metadata mapping raw symbols to instrument ids over date ranges.

    ``mappings``: raw symbol -> (first date, end date exclusive, instrument id); symbols keep
    the given order.
    """
    meta = dbn.Metadata(
        dataset=DATASET,
        start=start_ns,
        stype_in=dbn.SType.RAW_SYMBOL,
        stype_out=dbn.SType.INSTRUMENT_ID,
        schema=schema,
        symbols=list(mappings),
        partial=[],
        not_found=[],
        mappings=[
            _Mapping(symbol, [_Interval(first, last, str(instrument_id))])
            for symbol, (first, last, instrument_id) in mappings.items()
        ],
        end=end_ns,
        ts_out=False,
    )
    return meta.encode()


def build_metadata(
    specs: list[InstrumentSpec],
    schema: dbn.Schema,
    session: dt.date,
    start_ns: int,
    end_ns: int,
) -> bytes:
    """Encoded DBN v3 metadata: raw_symbol -> instrument_id mappings for the session date."""
    nxt = session + dt.timedelta(days=1)
    return glbx_metadata(schema, start_ns, end_ns, {s.raw_symbol: (session, nxt, s.instrument_id) for s in specs})


def compact_to_mbo(rows: np.ndarray) -> np.ndarray:
    """Convert an (n, 11) int64 array of compact tuples (``COLUMNS``) to DBN MBO records."""
    out = np.empty(len(rows), dtype=MBO_DTYPE)
    out["length"] = MBO_LENGTH
    out["rtype"] = MBO_RTYPE
    out["publisher_id"] = PUBLISHER_ID
    out["instrument_id"] = rows[:, 0]
    out["ts_event"] = rows[:, 1]
    out["order_id"] = rows[:, 2]
    out["price"] = rows[:, 3] * PU_FIXED
    out["size"] = rows[:, 4]
    out["flags"] = rows[:, 5]
    out["channel_id"] = 0
    out["action"] = rows[:, 6].astype(np.uint8).view("S1")
    out["side"] = rows[:, 7].astype(np.uint8).view("S1")
    out["ts_recv"] = rows[:, 8]
    out["ts_in_delta"] = rows[:, 9]
    out["sequence"] = rows[:, 10]
    return out


class AtomicZstdWriter:
    """A zstd stream into ``<target>.tmp`` that is moved onto ``target`` on ``commit``."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        self._fh = open(self.tmp, "wb")  # noqa: SIM115 - held open across write() calls
        cctx = zstandard.ZstdCompressor(
            level=ZSTD_LEVEL, threads=0, write_checksum=True
        )
        self._zw = cctx.stream_writer(self._fh, closefd=False)
        self.raw_bytes = 0

    def write(self, data: bytes | memoryview) -> None:
        self._zw.write(data)
        self.raw_bytes += len(data)

    def commit(self) -> Path:
        self._zw.flush(zstandard.FLUSH_FRAME)
        self._zw.close()
        self._fh.close()
        os.replace(self.tmp, self.target)
        return self.target

    def abort(self) -> None:
        with contextlib.suppress(Exception):  # best effort cleanup
            self._zw.close()
        self._fh.close()
        self.tmp.unlink(missing_ok=True)


class MboFileWriter:
    """Streams compact record chunks into ``mbo.dbn.zst`` and counts records per action."""

    def __init__(self, target: Path, metadata: bytes) -> None:
        self._w = AtomicZstdWriter(target)
        self._w.write(metadata)
        self.records = 0
        self.by_action: dict[str, int] = {}

    def write_rows(self, rows: list[tuple[int, ...]]) -> None:
        if not rows:
            return
        arr = np.fromiter(
            itertools.chain.from_iterable(rows),
            dtype=np.int64,
            count=len(rows) * len(COLUMNS),
        )
        arr = arr.reshape(len(rows), len(COLUMNS))
        recs = compact_to_mbo(arr)
        codes, counts = np.unique(arr[:, 6], return_counts=True)
        for code, n in zip(codes.tolist(), counts.tolist(), strict=True):
            key = chr(code)
            self.by_action[key] = self.by_action.get(key, 0) + n
        self.records += len(recs)
        self._w.write(recs.tobytes())

    def commit(self) -> Path:
        return self._w.commit()

    def abort(self) -> None:
        self._w.abort()


def _fixed(points: float) -> int:
    return round(points * 1e9)


def definition_record(
    spec: InstrumentSpec, session_start_ns: int, ref_price: float
) -> dbn.InstrumentDefMsg:
    """A GLBX-style ``InstrumentDefMsg`` for the future or one option (fields as in real files)."""
    day_ns = session_start_ns - session_start_ns % (86_400 * 1_000_000_000)
    common = {
        "publisher_id": PUBLISHER_ID,
        "instrument_id": spec.instrument_id,
        "ts_event": day_ns - 3 * 3_600_000_000_000 - spec.index * 1_000_000,
        "ts_recv": day_ns,
        "display_factor": 10_000_000,
        "raw_symbol": spec.raw_symbol,
        "expiration": spec.expiration_ns,
        "activation": spec.activation_ns,
        "unit_of_measure_qty": MULTIPLIER * 1_000_000_000,
        "raw_instrument_id": spec.instrument_id,
        "currency": "USD",
        "exchange": "XCME",
        "unit_of_measure": "IPNT",
        "market_depth_implied": 0,
        "min_trade_vol": 1,
        "max_trade_vol": 3000,
        "contract_multiplier": 2_147_483_647,
        "decay_quantity": 2_147_483_647,
        "original_contract_size": 2_147_483_647,
        "appl_id": 310 if spec.is_future else 311,
        "maturity_year": dt.datetime.fromtimestamp(
            spec.expiration_ns / 1e9, dt.UTC
        ).year,
        "maturity_month": dt.datetime.fromtimestamp(
            spec.expiration_ns / 1e9, dt.UTC
        ).month,
        "decay_start_date": 65_535,
        "match_algorithm": dbn.MatchAlgorithm.FIFO,
        "main_fraction": 255,
        "price_display_format": 255,
        "sub_fraction": 255,
        "underlying_product": 5,  # equity index
        "maturity_day": 255,
        "maturity_week": 255,
        "user_defined_instrument": dbn.UserDefinedInstrument.NO,
        "contract_multiplier_unit": 127,
        "flow_schedule_type": 127,
        "security_update_action": dbn.SecurityUpdateAction.ADD,
    }
    if spec.is_future:
        return dbn.InstrumentDefMsg(
            **common,
            min_price_increment=250_000_000,
            min_price_increment_amount=5_000_000_000,  # 0.25 x $20
            high_limit_price=_fixed(round(ref_price * 1.07 * 4) / 4),
            low_limit_price=_fixed(round(ref_price * 0.93 * 4) / 4),
            max_price_variation=_fixed(100.0),
            asset="NQ",
            security_type="FUT",
            instrument_class=dbn.InstrumentClass.FUTURE,
            cfi="FFIXSX",
            group="NQ",
            market_depth=10,
            market_segment_id=64,
            channel_id=0,
            inst_attrib_value=270_351,
            tick_rule=255,
        )
    is_call = spec.kind == "CALL"
    return dbn.InstrumentDefMsg(
        **common,
        min_price_increment=50_000_000,  # 0.05 at or below 5.00, 0.25 above (tick_rule)
        min_price_increment_amount=0,
        high_limit_price=99_999_000_000_000,
        low_limit_price=50_000_000,
        asset=spec.product,
        security_type="OOF",
        instrument_class=dbn.InstrumentClass.CALL
        if is_call
        else dbn.InstrumentClass.PUT,
        cfi="OCAFPS" if is_call else "OPAFPS",
        group="NQ",
        market_depth=3,
        market_segment_id=54,
        channel_id=1,
        inst_attrib_value=270_339,
        strike_price=_fixed(spec.strike),
        strike_price_currency="USD",
        underlying=spec.underlying,
        underlying_id=spec.underlying_id,
        tick_rule=15,
    )


def write_definitions(
    target: Path,
    specs: list[InstrumentSpec],
    session: dt.date,
    start_ns: int,
    end_ns: int,
    ref_price: float,
) -> Path:
    """Write ``definition.dbn.zst`` with one definition per instrument."""
    w = AtomicZstdWriter(target)
    try:
        w.write(build_metadata(specs, dbn.Schema.DEFINITION, session, start_ns, end_ns))
        for spec in specs:
            w.write(bytes(definition_record(spec, start_ns, ref_price)))
        return w.commit()
    except BaseException:
        w.abort()
        raise
