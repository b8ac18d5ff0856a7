"""NautilusTrader objects -> Arrow tables, grouped by catalog folder as NautilusTrader's writer groups them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pyarrow as pa
from nautilus_trader.model.instruments import Instrument
from nautilus_trader.serialization.arrow.serializer import ArrowSerializer

from catalogs.layout import leaf_dir

TableSource = Callable[[], pa.Table]


def catalog_identifier(obj: object) -> str | None:
    """The catalog folder identifier NautilusTrader's writer uses for an object."""
    if isinstance(obj, Instrument):
        return obj.id.value
    instrument_id = getattr(obj, "instrument_id", None)
    return None if instrument_id is None else instrument_id.value


def serialize_objects(objects: list) -> list[tuple[str, TableSource]]:
    """Group objects by type and instrument as NautilusTrader's catalog writer does; serialize each group."""
    groups: dict[tuple[type, str | None], list] = defaultdict(list)
    for obj in objects:
        groups[(type(obj), catalog_identifier(obj))].append(obj)
    out = []
    for (cls, identifier), group in groups.items():
        group.sort(key=lambda o: o.ts_init)  # stable: keeps feed order within a timestamp
        source = partial(ArrowSerializer.serialize_batch, group, data_cls=cls)
        out.append((leaf_dir(Path(), cls, identifier).as_posix(), source))
    return out
