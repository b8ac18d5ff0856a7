"""Synthetic, labeled CME NQ options sessions written as real Databento DBN files."""

from ifd.scenario.generate import ScenarioConfig, generate_scenario

__all__ = ["ScenarioConfig", "generate_scenario"]
