"""Run one paper or limited (sandbox) TradingNode in this process, as a child of a test.

``python -m tests.support.node_child SPEC.json``; the spec names the node ``kind`` ("paper" or
"limited": the limited config with the Sandbox standing in for Interactive Brokers), its
``config`` file, the replayed ``catalog`` (``speed``, ``start_delay_s``), ``duration_s``, and where
the ``summary`` (``run_paper``'s result), ``session_dir`` and ``pid_dir`` go. One node per process:
NautilusTrader's logger is process-wide, and a test can kill the process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from live.replay_client import replay_finished


def main(spec_path: str) -> int:
    from live.limited import build_limited_node, run_limited
    from live.paper import build_paper_node, load_paper_spec, replay_config, run_paper, with_replay

    spec = json.loads(Path(spec_path).read_text())
    replay = dict(catalog=spec["catalog"], speed=spec.get("speed"), start_delay_s=spec.get("start_delay_s", 0.5))
    stop_when = replay_finished if spec.get("stop_when_replayed") else None
    common = dict(stop_when=stop_when, summary_path=spec["summary"], session_dir=spec.get("session_dir"),
                  pid_dir=spec.get("pid_dir"), poll_s=0.1)
    if spec["kind"] == "paper":
        node = build_paper_node(with_replay(load_paper_spec(spec["config"]), **replay))
        run_paper(node, spec.get("duration_s"), **common)
    else:
        node = build_limited_node(spec["config"], sandbox=True, replay=replay_config(**replay))
        run_limited(node, spec.get("duration_s"), **common)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
