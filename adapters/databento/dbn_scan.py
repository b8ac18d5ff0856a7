"""Stream through a DBN file without holding it in memory: zstd frames, metadata, record layout.

``scan_dbn(path)`` checks what a download must be before it is moved into the raw folder: every
zstd frame complete, the DBN metadata decodable, every record of the size the schema's struct has
for the file's DBN version and of the schema's record type, no bytes cut off at the end. It counts
records and their uncompressed bytes (what Databento bills), chunk by chunk and vectorized, so a
multi-GB day costs no more memory than one chunk. ``partial=True`` counts what a cut download
holds (complete records only) instead of raising.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import databento_dbn as dbn
import numpy as np
import zstandard
from databento.common.constants import SCHEMA_STRUCT_MAP, SCHEMA_STRUCT_MAP_V1, SCHEMA_STRUCT_MAP_V2

from ifd.errors import IfdError

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
DBN_MAGIC = b"DBN"
READ_SIZE = 4 * 1024 * 1024
_STRUCT_MAPS = {1: SCHEMA_STRUCT_MAP_V1, 2: SCHEMA_STRUCT_MAP_V2, 3: SCHEMA_STRUCT_MAP}


@dataclass(frozen=True)
class DbnScan:
    """What a DBN file holds: its metadata, complete records and their uncompressed bytes."""

    path: Path
    dataset: str
    schema: str
    version: int
    metadata: object | None
    records: int
    record_bytes: int
    complete: bool
    problem: str = ""


class _Records:
    """Counts fixed-size records fed in arbitrary pieces, checking each one's length and type bytes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.header: bytes | None = None
        self.metadata = None
        self.pending = bytearray()
        self.size = 0
        self.rtype = -1
        self.expected_size = 0
        self.count = 0

    def feed(self, data: bytes) -> None:
        self.pending += data
        if self.header is None and not self._read_header():
            return
        self._consume()

    def _read_header(self) -> bool:
        if len(self.pending) < 8:
            return False
        if bytes(self.pending[:3]) != DBN_MAGIC:
            raise IfdError(f"{self.path}: not a DBN file (the data does not start with DBN)")
        end = 8 + int.from_bytes(self.pending[4:8], "little")
        if len(self.pending) < end:
            return False
        self.header = bytes(self.pending[:end])
        try:
            self.metadata = dbn.Metadata.decode(self.header, upgrade_policy=dbn.VersionUpgradePolicy.AS_IS)
        except Exception as exc:  # databento_dbn raises its own error types
            raise IfdError(f"{self.path}: invalid DBN metadata ({exc})") from None
        if self.metadata.schema is None:
            raise IfdError(f"{self.path}: mixed-schema DBN data (live data?) is not a historical download")
        struct = _STRUCT_MAPS.get(self.metadata.version, {}).get(dbn.Schema(str(self.metadata.schema)))
        self.expected_size = np.dtype(struct._dtypes).itemsize if struct is not None else 0
        del self.pending[:end]
        return True

    def _consume(self) -> None:
        if not self.pending:
            return
        if not self.size:
            self.size, self.rtype = self.pending[0] * 4, self.pending[1]
            if self.size == 0:
                raise IfdError(f"{self.path}: corrupt DBN record (zero length)")
            if self.expected_size and self.size != self.expected_size:
                raise IfdError(f"{self.path}: records of {self.size} bytes, but {self.metadata.schema} records "
                               f"of DBN v{self.metadata.version} have {self.expected_size}")
        whole = len(self.pending) - len(self.pending) % self.size
        if not whole:
            return
        view = np.frombuffer(self.pending, dtype=np.uint8, count=whole).reshape(-1, self.size)
        bad = np.flatnonzero((view[:, 0].astype(np.int64) * 4 != self.size) | (view[:, 1] != self.rtype))
        if len(bad):
            at = self.count + int(bad[0])
            raise IfdError(f"{self.path}: corrupt DBN record #{at} (length or record type differs from the schema's)")
        self.count += len(view)
        del view
        del self.pending[:whole]


def scan_dbn(path: Path | str, *, partial: bool = False) -> DbnScan:
    """Check and count a DBN file (plain or zstd), streaming; ``IfdError`` on any defect unless ``partial``.

    With ``partial=True`` a defect (a cut zstd frame, a record cut in two, missing metadata) ends
    the scan and is reported in ``problem``; ``records`` / ``record_bytes`` count the complete
    records before it.
    """
    path = Path(path)
    records = _Records(path)
    problem = ""
    try:
        with path.open("rb") as fh:
            first = fh.read(READ_SIZE)
            if first.startswith(ZSTD_MAGIC):
                problem = _feed_zstd(fh, first, records)
            elif first.startswith(DBN_MAGIC) or (partial and not first):
                records.feed(first)
                while chunk := fh.read(READ_SIZE):
                    records.feed(chunk)
            else:
                raise IfdError(f"{path}: not a DBN file (neither DBN nor zstd magic bytes)")
        if not problem and records.header is None:
            problem = "truncated DBN metadata"
        elif not problem and records.pending:
            problem = f"truncated: {len(records.pending)} bytes of a cut record at the end"
    except FileNotFoundError:
        if not partial:
            raise IfdError(f"{path}: no such file") from None
        problem = "no such file"
    except IfdError as exc:
        if not partial:
            raise
        problem = str(exc).removeprefix(f"{path}: ")
    if problem and not partial:
        raise IfdError(f"{path}: {problem}")
    meta = records.metadata
    return DbnScan(
        path=path,
        dataset=str(meta.dataset) if meta is not None else "",
        schema=str(meta.schema) if meta is not None else "",
        version=int(meta.version) if meta is not None else 0,
        metadata=meta,
        records=records.count,
        record_bytes=records.count * records.size,
        complete=not problem,
        problem=problem,
    )


def _feed_zstd(fh, first: bytes, records: _Records) -> str:
    """Decompress frame after frame into ``records``; a problem text when the data ends mid-frame."""
    decoder = zstandard.ZstdDecompressor().decompressobj()
    frame = 1
    chunk = first
    while chunk:
        while chunk:
            try:
                out = decoder.decompress(chunk)
            except zstandard.ZstdError as exc:
                return f"corrupt zstd data in frame {frame} ({exc})"
            if out:
                records.feed(out)
            if not decoder.eof:
                break
            chunk = decoder.unused_data  # the next frame starts here
            if chunk:
                decoder = zstandard.ZstdDecompressor().decompressobj()
                frame += 1
            else:
                decoder = None
        chunk = fh.read(READ_SIZE)
        if chunk and decoder is None:
            decoder = zstandard.ZstdDecompressor().decompressobj()
            frame += 1
    if decoder is not None and not decoder.eof:
        return f"truncated zstd data (frame {frame} is incomplete)"
    return ""
