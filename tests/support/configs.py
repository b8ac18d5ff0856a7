"""Shipped configs as the starting point of test configs."""

from __future__ import annotations

from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
ACTORS_MARKER = "\n# Monitors:"


def without_actors(name: str) -> str:
    """The text of ``configs/backtests/<name>`` without its ``[[actors]]`` (monitors, alerts), which
    the shipped file appends after its ``# Monitors:`` comment: tests add the actors they examine."""
    text = (PROJECT / "configs" / "backtests" / name).read_text()
    head, marker, tail = text.partition(ACTORS_MARKER)
    assert "[[actors]]" not in head, f"{name}: [[actors]] before the {ACTORS_MARKER.strip()!r} comment"
    return head.rstrip("\n") + "\n"


# IFD v3 and v1 side by side in shadow, as [[strategies]] of a node or backtest file.
SHADOW_V3_V1 = """
[[strategies]]
strategy_path = "strategies.ifd_v3:IfdV3Strategy"
config_path = "strategies.ifd_v3:IfdV3Config"
profile = "configs/profiles/ifd_v3.toml"

[strategies.config]
order_id_tag = "V3"
mode = "shadow"

[[strategies]]
strategy_path = "strategies.ifd_v1:IfdV1Strategy"
config_path = "strategies.ifd_v1:IfdV1Config"
profile = "configs/profiles/ifd_v1.toml"

[strategies.config]
order_id_tag = "V1"
mode = "shadow"
"""
