"""Feed faults planted into a real-format MBO file, for the data-quality monitor's tests.

``plant_faults`` rewrites a DBN MBO file (e.g. a generated session) with:

- a crossed book: a resting bid, far above every price of the instrument, added at one time and
  cancelled at another (a missed delete would look like this: the book stays crossed);
- a silence: every record from one time on shifted later by N seconds (the feed stops, then
  resumes where it was; the books stay consistent).

Records keep the file's layout (56-byte MBO), metadata and order; the planted records close
their event (F_LAST) and repeat the sequence number of the record before them (no regression).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zstandard

from adapters.databento.dbn_files import open_dbn
from ifd.scenario.dbn_encode import MBO_DTYPE

F_LAST = 128


@dataclass(frozen=True)
class PlantedFaults:
    """What was planted (UNIX ns); ``silence_*`` are the new times around the gap."""

    crossed_instrument_id: int
    crossed_from_ns: int
    crossed_until_ns: int
    crossed_price: int  # DBN fixed price (1e-9)
    silence_from_ns: int  # last record before the silence
    silence_until_ns: int  # first record after it


def _planted(template: np.ndarray, ts: int, action: bytes, order_id: int, price: int, sequence: int) -> np.ndarray:
    record = template.copy()
    record["ts_event"] = ts
    record["ts_recv"] = ts
    record["ts_in_delta"] = 0
    record["action"] = action
    record["side"] = b"B"
    record["order_id"] = order_id
    record["price"] = price
    record["size"] = 1
    record["flags"] = F_LAST
    record["sequence"] = sequence
    return record


def plant_faults(
    source: Path,
    target: Path,
    crossed_instrument_id: int,
    crossed_from_ns: int,
    crossed_until_ns: int,
    silence_at_ns: int,
    silence_s: float,
) -> PlantedFaults:
    """Write ``source`` with a crossed-book episode and a silence to ``target`` (zstd DBN)."""
    dbn = open_dbn(source)
    records = np.asarray(dbn.records).astype(MBO_DTYPE)
    mine = records[records["instrument_id"] == crossed_instrument_id]
    if not len(mine):
        raise ValueError(f"instrument {crossed_instrument_id} has no records in {source}")
    price = int(mine["price"][mine["price"] != np.iinfo(np.int64).max].max()) * 2
    order_id = int(records["order_id"].max()) + 1

    ts = records["ts_recv"].astype(np.int64)
    out = records
    for when, action in ((crossed_until_ns, b"C"), (crossed_from_ns, b"A")):  # later one first: indices stay valid
        at = int(np.searchsorted(ts, when, side="right"))
        sequence = int(records["sequence"][max(at - 1, 0)])
        out = np.insert(out, at, _planted(records[0], when, action, order_id, price, sequence))
        ts = out["ts_recv"].astype(np.int64)

    shift = int(silence_s * 1e9)
    after = ts >= silence_at_ns
    if not after.any() or after.all():
        raise ValueError("the silence must start inside the file")
    out["ts_recv"][after] += shift
    out["ts_event"][after] += shift
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(zstandard.ZstdCompressor().compress(dbn.header + out.tobytes()))
    new_ts = out["ts_recv"].astype(np.int64)
    return PlantedFaults(
        crossed_instrument_id=crossed_instrument_id,
        crossed_from_ns=crossed_from_ns,
        crossed_until_ns=crossed_until_ns,
        crossed_price=price,
        silence_from_ns=int(new_ts[~after].max()),
        silence_until_ns=int(new_ts[after].min()),
    )
