"""Timer callbacks on the node's own thread.

NautilusTrader 1.231's ``LiveClock`` calls timer and time-alert callbacks on a Rust worker thread,
not on the node's event loop. A handler that reads the cache, a book or a component's state, or
publishes on the message bus, would then race the node. ``on_node_loop`` wraps such a callback so
it runs on the loop that was running where the wrapper was made (a component's ``on_start``, which
a live node calls on its loop); in a backtest there is no running loop and the callback is
returned unchanged (the engine fires timers on its own thread, between events).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


def on_node_loop(callback: Callable[[Any], None]) -> Callable[[Any], None]:
    """``callback`` for ``clock.set_timer`` / ``set_time_alert``, hopping to the running event loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return callback

    def hop(event: Any) -> None:
        if not loop.is_closed():
            try:
                loop.call_soon_threadsafe(callback, event)
            except RuntimeError:  # the loop closed in between: the node is shutting down
                pass

    return hop
