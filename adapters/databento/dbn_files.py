"""Open and validate Databento DBN files before anything is loaded from them.

The Databento and NautilusTrader readers both return an empty or short result for a
truncated ``.zst`` instead of failing, so every file is decompressed frame by frame and
its record framing checked here first; callers get a one-line ``IfdError`` naming the
file and the reason.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import databento as db
import numpy as np
import zstandard

from ifd.errors import IfdError

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
DBN_MAGIC = b"DBN"

# Schemas `ifd catalog ingest` loads, and what they become in the catalog.
SUPPORTED_SCHEMAS = ("definition", "mbo", "mbp-1", "tbbo", "trades", "statistics")


@dataclass(frozen=True)
class DbnFile:
    """A validated DBN file: its metadata, schema and decoded records."""

    path: Path
    schema: str
    dataset: str
    metadata: object
    records: np.ndarray
    raw_symbols: tuple[str, ...]
    header: bytes  # the encoded DBN metadata, to write record subsets as DBN again
    compressed: bool  # zstd on disk (NautilusTrader 1.231 reads nothing else)

    @property
    def record_count(self) -> int:
        return len(self.records)

    def action_counts(self) -> dict[str, int]:
        """Records per MBO action letter (A, C, M, R, T, F, N); empty for other schemas."""
        if "action" not in (self.records.dtype.names or ()):
            return {}
        letters, counts = np.unique(self.records["action"], return_counts=True)
        return {letter.decode(): int(n) for letter, n in zip(letters, counts, strict=True)}


def decompress(path: Path) -> bytes:
    """Return the decompressed bytes of a DBN file (plain or zstd, any number of frames)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise IfdError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise IfdError(f"{path}: is a directory, expected a DBN file") from None
    except OSError as exc:
        raise IfdError(f"{path}: cannot read ({exc.strerror or exc})") from None

    if raw.startswith(DBN_MAGIC):
        return raw
    if not raw.startswith(ZSTD_MAGIC):
        raise IfdError(f"{path}: not a DBN file (neither DBN nor zstd magic bytes)")

    chunks: list[bytes] = []
    frame = 0
    while raw:
        frame += 1
        decoder = zstandard.ZstdDecompressor().decompressobj()
        try:
            chunks.append(decoder.decompress(raw))
        except zstandard.ZstdError as exc:
            raise IfdError(f"{path}: corrupt zstd data in frame {frame} ({exc})") from None
        if not decoder.eof:
            raise IfdError(f"{path}: truncated zstd data (frame {frame} is incomplete)")
        raw = decoder.unused_data
    data = b"".join(chunks)
    if not data.startswith(DBN_MAGIC):
        raise IfdError(f"{path}: not a DBN file (zstd content does not start with DBN)")
    return data


def _starts_with(path: Path, magic: bytes) -> bool:
    with path.open("rb") as fh:
        return fh.read(len(magic)) == magic


def _check_framing(path: Path, body: memoryview) -> None:
    """Every record's length byte must tile the body exactly (catches cut or garbled records)."""
    offset = 0
    end = len(body)
    # Single-schema files have one record length; check it vectorized, fall back to walking.
    if end == 0:
        return
    first = body[0] * 4
    if first == 0:
        raise IfdError(f"{path}: corrupt DBN record at byte 0 (zero length)")
    if end % first == 0:
        lengths = np.frombuffer(body, dtype=np.uint8)[::first]
        if np.all(lengths.astype(np.int64) * 4 == first):
            return
    while offset < end:
        length = body[offset] * 4
        if length == 0 or offset + length > end:
            raise IfdError(f"{path}: truncated or corrupt DBN record at byte {offset}")
        offset += length


def open_dbn(path: Path | str) -> DbnFile:
    """Validate and decode a DBN file, raising ``IfdError`` with a one-line reason when bad."""
    path = Path(path)
    data = decompress(path)
    if len(data) < 8:
        raise IfdError(f"{path}: truncated DBN metadata")
    meta_len = int.from_bytes(data[4:8], "little")
    body_start = 8 + meta_len
    if body_start > len(data):
        raise IfdError(f"{path}: truncated DBN metadata ({len(data)} of {body_start} bytes)")
    _check_framing(path, memoryview(data)[body_start:])

    try:
        store = db.DBNStore.from_bytes(io.BytesIO(data))  # (bytes would be repr()'d whole)
        schema = store.schema
    except Exception as exc:  # databento raises several types for bad headers
        raise IfdError(f"{path}: invalid DBN metadata ({exc})") from None
    if schema is None:
        raise IfdError(f"{path}: mixed-schema DBN files are not supported")
    schema_name = str(schema.value if hasattr(schema, "value") else schema)
    if schema_name not in SUPPORTED_SCHEMAS:
        raise IfdError(
            f"{path}: unsupported schema {schema_name} (supported: {', '.join(SUPPORTED_SCHEMAS)})",
        )
    try:
        records = store.to_ndarray()
    except Exception as exc:
        raise IfdError(f"{path}: cannot decode DBN records ({exc})") from None

    metadata = store.metadata
    raw_symbols = tuple(sorted(_mappings(metadata)))
    return DbnFile(
        path=path,
        schema=schema_name,
        dataset=str(metadata.dataset),
        metadata=metadata,
        records=records,
        raw_symbols=raw_symbols,
        header=data[:body_start],
        compressed=_starts_with(path, ZSTD_MAGIC),
    )


def _mappings(metadata: object) -> dict[str, list[dict]]:
    """Symbol mappings: raw symbol -> intervals (dicts whose ``symbol`` is the instrument id)."""
    mappings = getattr(metadata, "mappings", None) or {}
    return dict(mappings)


def instrument_symbols(dbn: DbnFile) -> dict[int, str]:
    """Map each numeric instrument id in the file's symbology to its raw symbol."""
    mapping: dict[int, str] = {}
    for raw_symbol, intervals in _mappings(dbn.metadata).items():
        for interval in intervals:
            symbol = str(interval["symbol"])
            if symbol.isdigit():
                mapping[int(symbol)] = raw_symbol
    return mapping
