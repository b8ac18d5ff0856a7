"""IFD v3 as a NautilusTrader strategy: MBO pressure, baselines, sweeps, market-making filters."""

from __future__ import annotations

from collections.abc import Mapping

from ifd.detection.types import InstrumentInfo
from ifd.detection.v3 import V3Detector
from ifd.detection.v3 import V3Params
from strategies.flow_strategy import FlowStrategy
from strategies.flow_strategy import FlowStrategyConfig


class IfdV3Config(FlowStrategyConfig, frozen=True):
    """IFD v3: the profile's [detector] table holds V3Params."""


class IfdV3Strategy(FlowStrategy):
    algorithm = "ifd_v3"
    needs_book = True  # initiation is cross-checked against the L3 book at trade time

    def parse_detector_params(self, values: dict) -> V3Params:
        return V3Params.from_dict(values)

    def make_detector(self, params: V3Params, instruments: Mapping[str, InstrumentInfo], baselines) -> V3Detector:
        return V3Detector(params, instruments, baselines)
