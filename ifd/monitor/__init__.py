"""``ifd monitor poll``: poll Databento for newly completed UTC days, detect with the IFD strategies, alert."""

from ifd.monitor.config import MonitorConfig, load_monitor_config
from ifd.monitor.poll import CycleReport, Monitor
from ifd.monitor.state import MonitorState, SignalKey

__all__ = ["CycleReport", "Monitor", "MonitorConfig", "MonitorState", "SignalKey", "load_monitor_config"]
