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
