"""The record tape: stamps events the way the GLBX MDP3 feed does and buffers them in chunks.

One *event* is one or more *packets*; every record of a packet shares ``ts_recv`` and
``sequence`` (one sequence number per packet), every record of an event shares ``ts_event``,
and only the last record of the event carries ``F_LAST`` (130 = F_LAST | 0x02 as on real GLBX;
all others 0).  ``ts_event`` strictly increases between events and ``ts_recv`` never decreases.
Records are compact int tuples (see ``dbn_encode.COLUMNS``) flushed to a sink every chunk.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

ACT_ADD, ACT_CANCEL, ACT_MODIFY, ACT_TRADE, ACT_FILL = (ord(c) for c in "ACMTF")
SIDE_BID, SIDE_ASK, SIDE_NONE = ord("B"), ord("A"), ord("N")
F_LAST_GLBX = 130
_RING = 1 << 16


class Tape:
    """Stamps and buffers MBO records; ``flush`` hands full chunks to ``sink``."""

    def __init__(
        self,
        rng: np.random.Generator,
        sink: Callable[[list[tuple[int, ...]]], None],
        chunk: int = 1 << 17,
        first_sequence: int = 1_000,
    ) -> None:
        # Feed latency ts_recv - ts_event: ~85us floor, median ~120us, a tail to ~2ms (as in ESH4).
        lat = (
            82_000
            + rng.exponential(35_000, _RING)
            + (rng.random(_RING) < 0.08) * rng.exponential(500_000, _RING)
        )
        self._lat = lat.astype(np.int64).tolist()
        self._delta = (
            rng.normal(15_300, 1_400, _RING)
            .clip(12_500, 22_000)
            .astype(np.int64)
            .tolist()
        )
        self._gap = rng.integers(
            150, 2_500, _RING
        ).tolist()  # ns between events that collide in time
        self._pkt_gap = rng.integers(
            5_000, 60_000, _RING
        ).tolist()  # ns between packets of one event
        self._k = 0
        self.rows: list[tuple[int, ...]] = []
        self.chunk = chunk
        self.sink = sink
        self.last_ts = 0
        self.last_recv = 0
        self.seq = first_sequence
        self.count = 0

    def _stamp(self, t: int) -> tuple[int, int, int]:
        k = self._k = (self._k + 1) & (_RING - 1)
        ts = t if t > self.last_ts else self.last_ts + self._gap[k]
        self.last_ts = ts
        recv = ts + self._lat[k]
        recv = max(recv, self.last_recv)
        self.last_recv = recv
        self.seq += 1
        return ts, recv, self._delta[k]

    def single(
        self, t: int, iid: int, oid: int, price: int, size: int, action: int, side: int
    ) -> int:
        """Emit a one-record event (an order add, cancel or modify); returns its ts_event."""
        k = self._k = (self._k + 1) & (_RING - 1)
        ts = t if t > self.last_ts else self.last_ts + self._gap[k]
        self.last_ts = ts
        recv = ts + self._lat[k]
        recv = max(recv, self.last_recv)
        self.last_recv = recv
        self.seq = seq = self.seq + 1
        rows = self.rows
        rows.append(
            (
                iid,
                ts,
                oid,
                price,
                size,
                F_LAST_GLBX,
                action,
                side,
                recv,
                self._delta[k],
                seq,
            )
        )
        self.count += 1
        if len(rows) >= self.chunk:
            self.flush()
        return ts

    def trade(
        self,
        t: int,
        iid: int,
        match: list[tuple[int, int, int, int, int]],
        book: list[tuple[int, int, int, int, int]],
    ) -> int:
        """Emit a match event: packet 1 = T/F records, packet 2 = the C/M book updates.

        Each entry is ``(order_id, price, size, action, side)``.  Returns the event's ts_event.
        """
        ts, recv, delta = self._stamp(t)
        rows = self.rows
        seq = self.seq
        for oid, price, size, action, side in match:
            rows.append((iid, ts, oid, price, size, 0, action, side, recv, delta, seq))
        k = self._k
        recv2 = recv + self._pkt_gap[k]
        self.last_recv = recv2
        self.seq = seq2 = seq + 1
        delta2 = self._delta[(k + 7) & (_RING - 1)]
        n = len(book)
        for i, (oid, price, size, action, side) in enumerate(book):
            rows.append(
                (
                    iid,
                    ts,
                    oid,
                    price,
                    size,
                    F_LAST_GLBX if i == n - 1 else 0,
                    action,
                    side,
                    recv2,
                    delta2,
                    seq2,
                )
            )
        self.count += len(match) + n
        if len(rows) >= self.chunk:
            self.flush()
        return ts

    def flush(self) -> None:
        """Hand buffered rows to the sink."""
        if self.rows:
            self.sink(self.rows)
            self.rows = []
