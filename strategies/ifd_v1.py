"""IFD v1 ("dead simple") as a NautilusTrader strategy: volume spikes and large premium prints."""

from __future__ import annotations

from collections.abc import Mapping

from ifd.detection.types import InstrumentInfo
from ifd.detection.v1 import V1Detector
from ifd.detection.v1 import V1Params
from strategies.flow_strategy import FlowStrategy
from strategies.flow_strategy import FlowStrategyConfig


class IfdV1Config(FlowStrategyConfig, frozen=True):
    """IFD v1: the profile's [detector] table holds V1Params."""


class IfdV1Strategy(FlowStrategy):
    algorithm = "ifd_v1"
    needs_book = False  # v1 reads trades only

    def parse_detector_params(self, values: dict) -> V1Params:
        return V1Params.from_dict(values)

    def make_detector(self, params: V1Params, instruments: Mapping[str, InstrumentInfo], baselines) -> V1Detector:
        return V1Detector(params, instruments, baselines)
