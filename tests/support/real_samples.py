"""Helpers around the real Databento samples in ../shared/data/databento.

The samples ship MBO files for ESH4 (E-mini S&P 500, March 2024) but no ESH4
instrument definition, and NautilusTrader needs a definition (for the price
precision and the instrument itself) before it can replay MBO data.  This module
constructs one from the real ESM4 definition of the same product.
"""

from __future__ import annotations

import datetime as dt
import inspect
from pathlib import Path

import databento_dbn as dbn
import numpy as np
import zstandard

from ifd.scenario.dbn_encode import glbx_metadata

from tests.support.book_reference import read_dbn

SAMPLES_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "databento"
NT_SAMPLES = SAMPLES_ROOT / "nautilus_trader"

ESM4_DEFINITION = "nautilus_trader/orderbooks_definition.dbn.zst"
ESM4_MBO = "nautilus_trader/orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst"
ESH4_MBO_20231225 = "nautilus_trader/esh4-glbx-mdp3-20231225.mbo.dbn.zst"
ESH4_MBO_20231224 = "nautilus_trader/esh4-glbx-mdp3-20231224.mbo.dbn.zst"

ESH4_RAW_SYMBOL = "ESH4"
ESH4_INSTRUMENT_ID = 17077  # the id the ESH4 MBO files' symbology maps ESH4 to
ESH4_EXPIRATION_NS = int(dt.datetime(2024, 3, 15, 13, 30, tzinfo=dt.UTC).timestamp() * 1e9)
# Approximate listing time: the quarter after ESZ2 expired (third Friday of Dec 2022).
ESH4_ACTIVATION_NS = int(dt.datetime(2022, 12, 16, 14, 30, tzinfo=dt.UTC).timestamp() * 1e9)
ESH4_DEF_TS_NS = int(dt.datetime(2023, 12, 24, tzinfo=dt.UTC).timestamp() * 1e9)
ESH4_MAP_START = dt.date(2023, 12, 24)
ESH4_MAP_END = dt.date(2023, 12, 26)


def _def_kwargs(record: dbn.InstrumentDefMsg) -> dict[str, object]:
    """Every constructor argument of `InstrumentDefMsg` read back from `record`."""
    params = inspect.signature(dbn.InstrumentDefMsg).parameters
    kwargs: dict[str, object] = {}
    for name in params:
        if name == "ts_out" or not hasattr(record, name):
            continue
        value = getattr(record, name)
        if isinstance(value, str) and value == "\x00":
            continue  # unset c_char: let the constructor use its default
        kwargs[name] = value
    return kwargs


def esh4_definition_record(esm4_definition: Path | None = None) -> dbn.InstrumentDefMsg:
    """The constructed ESH4 `InstrumentDefMsg` (see `write_esh4_definition`)."""
    source = read_dbn(esm4_definition or SAMPLES_ROOT / ESM4_DEFINITION)
    template = next(iter(source))
    if not isinstance(template, dbn.InstrumentDefMsg) or template.raw_symbol != "ESM4":
        raise ValueError(f"unexpected ESM4 definition record: {template!r}")

    kwargs = _def_kwargs(template)
    kwargs.update(
        raw_symbol=ESH4_RAW_SYMBOL,
        instrument_id=ESH4_INSTRUMENT_ID,
        raw_instrument_id=ESH4_INSTRUMENT_ID,
        expiration=ESH4_EXPIRATION_NS,
        activation=ESH4_ACTIVATION_NS,
        maturity_year=2024,
        maturity_month=3,
        high_limit_price=dbn.UNDEF_PRICE,
        low_limit_price=dbn.UNDEF_PRICE,
        ts_event=ESH4_DEF_TS_NS,
        ts_recv=ESH4_DEF_TS_NS,
    )
    return dbn.InstrumentDefMsg(**kwargs)


def write_dbn(
    path: Path,
    schema: dbn.Schema,
    start_ns: int,
    end_ns: int,
    mappings: dict[str, tuple[dt.date, dt.date, int]],
    payload: bytes,
) -> Path:
    """Write metadata (raw_symbol -> instrument_id mappings) + raw records as zstd DBN."""
    metadata = glbx_metadata(schema, start_ns, end_ns, dict(sorted(mappings.items())))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zstandard.ZstdCompressor().compress(metadata + payload))
    return path


def write_esh4_definition(path: Path, esm4_definition: Path | None = None) -> Path:
    """Write a *constructed* ESH4 definition (zstd DBN) to `path` and return `path`.

    The real samples hold ESH4 MBO files but no ESH4 definition, so this one is
    built from the real ESM4 definition (same product: ES on GLBX.MDP3, tick 0.25,
    multiplier 50, USD) with only the contract-specific fields changed:
    raw symbol "ESH4", instrument_id / raw_instrument_id 17077 (the id used by the
    ESH4 MBO files' symbology), expiration 2024-03-15 13:30 UTC, maturity month 3,
    an approximate activation, undefined daily price limits (ESM4's May-2024 limits
    do not apply to ESH4 in Dec 2023) and timestamps at 2023-12-24 00:00 UTC. The
    metadata maps ESH4 -> 17077 for 2023-12-24..2023-12-26 so both ESH4 files resolve.
    It is a test fixture, not exchange data. `esm4_definition` defaults to the
    shared sample `nautilus_trader/orderbooks_definition.dbn.zst`.
    """
    record = esh4_definition_record(esm4_definition)
    return write_dbn(
        path,
        dbn.Schema.DEFINITION,
        ESH4_DEF_TS_NS,
        ESH4_DEF_TS_NS + 2 * 86_400 * 10**9,
        {ESH4_RAW_SYMBOL: (ESH4_MAP_START, ESH4_MAP_END, ESH4_INSTRUMENT_ID)},
        bytes(record),
    )


def write_two_future_files(
    folder: Path,
    esh4_mbo: Path,
    esm4_mbo: Path,
    esm4_definition: Path,
) -> tuple[Path, Path]:
    """One definition file and one MBO file holding both ESH4 and ESM4 (real records).

    The ESH4 2023-12-25 and ESM4 2024-05-08 MBO records are merged by ts_recv into
    one file (raw 56-byte records, unchanged) with symbology for both, and the
    constructed ESH4 definition is written next to the real ESM4 one. This exercises
    the multi-instrument path the generated options files will take.
    """
    esm4_def_store = read_dbn(esm4_definition)
    esm4_def = next(iter(esm4_def_store))
    esh4_def = esh4_definition_record(esm4_definition)
    esm4_day = dt.date(2024, 5, 8)
    definition_path = write_dbn(
        folder / "es_futures_definition.dbn.zst",
        dbn.Schema.DEFINITION,
        ESH4_DEF_TS_NS,
        int(esm4_def.ts_recv) + 86_400 * 10**9,
        {
            ESH4_RAW_SYMBOL: (ESH4_MAP_START, ESH4_MAP_END, ESH4_INSTRUMENT_ID),
            "ESM4": (esm4_day, esm4_day + dt.timedelta(days=1), int(esm4_def.instrument_id)),
        },
        bytes(esh4_def) + bytes(esm4_def),
    )

    stores = [read_dbn(esh4_mbo), read_dbn(esm4_mbo)]
    arrays = [store.to_ndarray() for store in stores]
    merged = np.concatenate(arrays)
    merged = merged[np.argsort(merged["ts_recv"], kind="stable")]
    esm4_ids = np.unique(arrays[1]["instrument_id"]).tolist()
    if esm4_ids != [int(esm4_def.instrument_id)]:
        raise ValueError(f"unexpected ESM4 MBO instrument ids {esm4_ids}")
    mbo_path = write_dbn(
        folder / "es_futures.mbo.dbn.zst",
        dbn.Schema.MBO,
        min(store.metadata.start for store in stores),
        max(store.metadata.end for store in stores),
        {
            ESH4_RAW_SYMBOL: (dt.date(2023, 12, 25), dt.date(2023, 12, 26), ESH4_INSTRUMENT_ID),
            "ESM4": (esm4_day, esm4_day + dt.timedelta(days=1), int(esm4_def.instrument_id)),
        },
        merged.tobytes(),
    )
    return definition_path, mbo_path
