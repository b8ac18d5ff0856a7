"""Helpers for ``tests/test_latency_monitor.py``.

- ``SlowSignals``: a test actor that publishes ``FlowSignal``s with a chosen ``latency_ns`` on the
  first trades of chosen minutes (counted from the first trade's minute of the node clock).
- ``StampedReplayDataClient``: the project's replay client, but stamping records as NautilusTrader's
  live Databento client does: ``ts_init`` = the node clock when the record is handed to the node,
  ``ts_event`` = the time the record was due on the replay's schedule (the recording's time mapped
  onto the wall clock at the replay speed, as Databento's ``ts_recv`` is on the live feed). Feed
  latency is then the replay's real delivery delay, and the strategies' waits are real.
- ``python -m tests.support.latency_node SPEC.json``: one paper ``TradingNode`` on a replayed catalog
  (one node per process: NautilusTrader's logger is process-wide), with or without the
  ``LatencyMonitor``, stamped or not; writes the session folder and a JSON result.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from nautilus_trader.common.actor import Actor
from nautilus_trader.config import ActorConfig
from nautilus_trader.model.data import DataType
from nautilus_trader.model.data import OrderBookDelta
from nautilus_trader.model.data import OrderBookDeltas
from nautilus_trader.model.data import TradeTick
from nautilus_trader.model.identifiers import ClientId

from live.replay_client import ReplayDataClient
from live.replay_client import ReplayLiveDataClientFactory
from strategies.signals import FlowSignal
from tests.support.configs import SHADOW_V3_V1

NS_PER_MINUTE = 60_000_000_000

PAPER_TOML = """
[node]
trader_id = "IFD-LATENCY"
timeout_connection = 30.0
timeout_disconnection = 5.0
timeout_post_stop = 1.0

[sandbox]
venue = "GLBX"
starting_balances = ["1_000_000 USD"]
base_currency = "USD"
book_type = "L3_MBO"

[logging]
log_level = "ERROR"

[replay]
catalog = "{catalog}"
speed = 0
start_delay_s = 0.5

""" + SHADOW_V3_V1

MONITOR_ACTOR = """
[[actors]]
actor_path = "ifd.monitoring.latency_actor:LatencyMonitor"
config_path = "ifd.monitoring.latency_actor:LatencyConfig"
profile = "configs/monitors/latency.toml"
"""


class SlowSignalsConfig(ActorConfig, frozen=True):
    latency_ms: float = 150.0
    minutes: tuple[int, ...] = (2,)  # minutes after the first trade's minute that get slow signals
    per_minute: int = 3


class SlowSignals(Actor):
    """Publishes ``per_minute`` FlowSignals with ``latency_ms`` on the first trades of each listed minute."""

    def __init__(self, config: SlowSignalsConfig | None = None) -> None:
        super().__init__(config or SlowSignalsConfig())
        self._first_minute: int | None = None
        self._sent: dict[int, int] = {}
        self.published: list[tuple[int, int]] = []  # (clock ns, latency ns)

    def on_start(self) -> None:
        for instrument_id in self.cache.instrument_ids():
            self.subscribe_trade_ticks(instrument_id)

    def on_trade_tick(self, tick: TradeTick) -> None:
        now = self.clock.timestamp_ns()
        minute = now // NS_PER_MINUTE
        if self._first_minute is None:
            self._first_minute = minute
        offset = minute - self._first_minute
        if offset not in self.config.minutes or self._sent.get(offset, 0) >= self.config.per_minute:
            return
        self._sent[offset] = self._sent.get(offset, 0) + 1
        latency = int(self.config.latency_ms * 1_000_000)
        signal = FlowSignal(ts_event=tick.ts_event, ts_init=now, instrument_id=tick.instrument_id,
                            algorithm="test_slow", latency_ns=latency)
        self.publish_data(DataType(FlowSignal), signal)
        self.published.append((now, latency))


class StampedReplayDataClient(ReplayDataClient):
    """Replays a recording with live-feed timestamps (see the module docstring); needs speed > 0."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not self._config.speed:
            raise ValueError("StampedReplayDataClient needs a replay speed > 0 (a schedule to stamp)")
        self._origin_wall = 0  # the replay's start on the node clock
        self._origin_ts: int | None = None  # the first recorded ts_init (the schedule's zero)

    async def _stream(self, reader, speed, started, pending) -> None:
        self._origin_wall = self._clock.timestamp_ns() - int((time.monotonic() - started) * 1e9)
        next_chunk = reader.next_chunk

        def first_chunk():
            chunk = next_chunk()
            if chunk and self._origin_ts is None:
                self._origin_ts = chunk[0].ts_init
            return chunk

        reader.next_chunk = first_chunk
        await super()._stream(reader, speed, started, pending)

    def _due(self, ts_event: int) -> int:
        return self._origin_wall + int((ts_event - self._origin_ts) / self._config.speed)

    def _handle_data(self, data) -> None:
        if isinstance(data, OrderBookDeltas):
            now = self._clock.timestamp_ns()
            data = OrderBookDeltas(data.instrument_id, [
                OrderBookDelta(d.instrument_id, d.action, d.order, d.flags, d.sequence, self._due(d.ts_event), now)
                for d in data.deltas
            ])
        elif isinstance(data, TradeTick):
            now = self._clock.timestamp_ns()
            data = TradeTick(data.instrument_id, data.price, data.size, data.aggressor_side, data.trade_id,
                             self._due(data.ts_event), now)
        super()._handle_data(data)


class StampedReplayDataClientFactory(ReplayLiveDataClientFactory):
    @staticmethod
    def create(loop, name, config, msgbus, cache, clock):  # type: ignore[override]
        return StampedReplayDataClient(
            loop=loop, client_id=ClientId(name), msgbus=msgbus, cache=cache, clock=clock, config=config,
        )


def _child(spec_path: str) -> int:
    from nautilus_trader.live.node import TradingNode

    from live.paper import SANDBOX, build_paper_node, load_paper_spec, node_config, run_paper, with_replay
    from live.replay_client import REPLAY, replay_clients, replay_finished
    from live.sandbox import SandboxLiveExecClientFactory

    spec = json.loads(Path(spec_path).read_text())
    folder = Path(spec["out"]).parent
    config = folder / "paper.toml"
    config.write_text(PAPER_TOML.format(catalog=spec["catalog"]) + (MONITOR_ACTOR if spec["monitor"] else ""))
    paper = with_replay(load_paper_spec(config), catalog=spec["catalog"], speed=spec["speed"], start_delay_s=0.5)
    if spec["stamped"]:
        node = TradingNode(config=node_config(paper))
        node.add_data_client_factory(REPLAY, StampedReplayDataClientFactory)
        node.add_exec_client_factory(SANDBOX, SandboxLiveExecClientFactory)
        node.build()
    else:
        node = build_paper_node(paper, env={})
    client = replay_clients(node)[0]
    cpu: dict[str, float] = {}
    stream = client._stream

    async def timed_stream(*args) -> None:  # the node's CPU time while the replay streams
        started = time.process_time()
        try:
            await stream(*args)
        finally:
            cpu["replay"] = time.process_time() - started

    client._stream = timed_stream
    monitors = [a for a in node.trader.actors() if getattr(a, "report_name", None) == "latency"]
    snapshots: list[dict] = []

    def finished(node) -> bool:
        if monitors and client.started and not client.finished:
            snapshots.append(monitors[0].live_figures())  # on the node's event loop, mid-replay
        return replay_finished(node)

    started = time.monotonic()
    result = run_paper(node, 120.0, stop_when=finished, poll_s=0.05, session_dir=folder / "session")
    result["wall_seconds"] = time.monotonic() - started
    result["replay_seconds"] = client.replay_seconds
    result["replay_cpu_seconds"] = cpu.get("replay")
    result["published"] = client.published
    result["live_figures"] = snapshots[-1] if snapshots else None
    Path(spec["out"]).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "child":
        sys.exit(_child(sys.argv[2]))
    sys.exit("usage: python -m tests.support.latency_node child SPEC.json")
