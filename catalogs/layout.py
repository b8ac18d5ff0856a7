"""Where things live in a NautilusTrader ``ParquetDataCatalog`` folder, and how it is opened.

File and folder names follow NautilusTrader's own conventions (``data/<type>/<id>/<start>_<end>.parquet``)
so the catalog stays readable by ``ParquetDataCatalog`` and ``BacktestNode``.
"""

from __future__ import annotations

from pathlib import Path

from nautilus_trader.persistence.catalog.parquet import ParquetDataCatalog
from nautilus_trader.persistence.catalog.parquet import _parse_filename_timestamps
from nautilus_trader.persistence.catalog.parquet import _timestamps_to_filename
from nautilus_trader.persistence.funcs import class_to_filename
from nautilus_trader.persistence.funcs import urisafe_identifier

from ifd.errors import IfdError

DATA_DIR = "data"
STAGING_PREFIX = ".ifd-staging-"


def check_catalog_path(path: Path, create: bool) -> Path:
    """Return the catalog root, refusing paths that are not (and cannot become) a catalog."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise IfdError(f"{path}: not a catalog (it is a file, expected a folder)")
    if path.is_dir():
        entries = [p for p in path.iterdir() if not p.name.startswith(STAGING_PREFIX)]
        if entries and not (path / DATA_DIR).is_dir():
            raise IfdError(
                f"{path}: not a NautilusTrader catalog (no '{DATA_DIR}' folder in a non-empty folder)",
            )
        return path
    if not create:
        raise IfdError(f"{path}: no such catalog")
    return path


def open_catalog(path: Path) -> ParquetDataCatalog:
    """A ``ParquetDataCatalog`` on an existing catalog folder."""
    return ParquetDataCatalog(str(check_catalog_path(Path(path), create=False)))


def leaf_dir(root: Path, data_cls: type, identifier: str | None) -> Path:
    """The folder NautilusTrader uses for one data type (and instrument)."""
    directory = Path(root) / DATA_DIR / class_to_filename(data_cls)
    if identifier is not None:
        directory = directory / urisafe_identifier(identifier)
    return directory


def file_name(start_ns: int, end_ns: int) -> str:
    return _timestamps_to_filename(start_ns, end_ns)


def file_interval(path: Path) -> tuple[int, int] | None:
    return _parse_filename_timestamps(path.name)
