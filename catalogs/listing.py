"""``ifd catalog ls``: what a catalog holds, read from Parquet footers and file names (no full scan)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from catalogs.layout import DATA_DIR
from catalogs.layout import check_catalog_path
from catalogs.layout import file_interval
from catalogs.layout import open_catalog

INSTRUMENT_FOLDERS = {
    "futures_contract",
    "option_contract",
    "futures_spread",
    "option_spread",
    "equity",
    "currency_pair",
    "crypto_future",
    "crypto_perpetual",
    "crypto_option",
    "betting_instrument",
    "binary_option",
    "commodity",
    "index_instrument",
    "cfd",
    "synthetic_instrument",
}


def _iso(ns: int | None) -> str | None:
    return None if ns is None else pd.Timestamp(ns, unit="ns", tz="UTC").isoformat()


def _instrument_rows(root: Path) -> list[dict]:
    rows = []
    for instrument in open_catalog(root).instruments():
        row = {
            "instrument_id": instrument.id.value,
            "type": type(instrument).__name__,
            "raw_symbol": instrument.raw_symbol.value,
            "price_increment": str(instrument.price_increment),
            "price_precision": instrument.price_precision,
            "multiplier": str(instrument.multiplier),
            "expiration": _iso(getattr(instrument, "expiration_ns", None)),
        }
        if hasattr(instrument, "option_kind"):
            row["option_kind"] = "CALL" if int(instrument.option_kind) == 1 else "PUT"
            row["strike"] = float(instrument.strike_price)
            row["underlying"] = str(instrument.underlying)
        rows.append(row)
    # One row per instrument: a multi-day catalog holds a definition per day (the latest wins).
    latest = {row["instrument_id"]: row for row in rows}
    return sorted(latest.values(), key=lambda r: r["instrument_id"])


def describe_catalog(path: Path | str) -> dict:
    """Instruments, and per data type and instrument: rows, files and the time range."""
    root = check_catalog_path(Path(path), create=False)
    data_types: dict[str, dict] = {}
    data = root / DATA_DIR
    for type_dir in sorted(p for p in data.iterdir() if p.is_dir()) if data.is_dir() else []:
        if type_dir.name in INSTRUMENT_FOLDERS:
            continue
        per_instrument: dict[str, dict] = {}
        for leaf in sorted(p for p in type_dir.iterdir() if p.is_dir()):
            files = sorted(leaf.glob("*.parquet"))
            if not files:
                continue
            intervals = [i for i in (file_interval(f) for f in files) if i is not None]
            per_instrument[leaf.name] = {
                "rows": sum(pq.ParquetFile(f).metadata.num_rows for f in files),
                "files": len(files),
                "start": _iso(min(i[0] for i in intervals)) if intervals else None,
                "end": _iso(max(i[1] for i in intervals)) if intervals else None,
            }
        if per_instrument:
            starts = [v["start"] for v in per_instrument.values() if v["start"]]
            ends = [v["end"] for v in per_instrument.values() if v["end"]]
            data_types[type_dir.name] = {
                "rows": sum(v["rows"] for v in per_instrument.values()),
                "start": min(starts) if starts else None,
                "end": max(ends) if ends else None,
                "instruments": per_instrument,
            }
    return {
        "catalog": str(root),
        "instruments": _instrument_rows(root) if data.is_dir() else [],
        "data_types": data_types,
    }


def format_catalog(summary: dict, per_instrument: bool = False) -> str:
    """A plain-text view of ``describe_catalog`` output."""
    lines = [f"catalog {summary['catalog']}", f"instruments: {len(summary['instruments'])}"]
    kinds: dict[str, int] = {}
    for inst in summary["instruments"]:
        kinds[inst["type"]] = kinds.get(inst["type"], 0) + 1
    for kind, n in sorted(kinds.items()):
        lines.append(f"  {kind}: {n}")
    lines.append(f"{'data type':<32} {'instruments':>11} {'rows':>12}  start .. end")
    for name, info in summary["data_types"].items():
        lines.append(
            f"{name:<32} {len(info['instruments']):>11} {info['rows']:>12,}  {info['start']} .. {info['end']}",
        )
        if per_instrument:
            for inst, row in info["instruments"].items():
                lines.append(f"    {inst:<28} {'':>11} {row['rows']:>12,}")
    return "\n".join(lines)
