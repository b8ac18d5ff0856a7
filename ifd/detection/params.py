"""Building frozen parameter dataclasses from TOML tables, strictly."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


def params_from_dict[T](cls: type[T], d: Mapping[str, Any]) -> T:
    """``cls(**d)`` where every key must be a field of ``cls`` (ValueError naming the first
    unknown key); lists become tuples, ints stay ints for ``*_ns`` fields."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in d.items():
        if key not in fields:
            raise ValueError(f"unknown {cls.__name__} parameter {key!r}")
        if isinstance(value, list):
            value = tuple(value)
        elif key.endswith("_ns"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(f"{cls.__name__} parameter {key!r} must be a whole number of ns")
            value = int(value)
        kwargs[key] = value
    return cls(**kwargs)


def params_to_dict(params: object) -> dict[str, Any]:
    """The fields of a parameter dataclass (tuples as lists), e.g. to write a profile."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(params):  # type: ignore[arg-type]
        value = getattr(params, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out
