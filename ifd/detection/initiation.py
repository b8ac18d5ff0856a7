"""Trade initiation: who was the aggressor of a trade, from the feed and from the book.

The book rule, applied to the best bid / ask just *before* the trade's match event:

* ``price >= best ask`` -> buyer-initiated (a tie with the ask counts as a buy),
* ``price <= best bid`` -> seller-initiated (a tie with the bid counts as a sell),
* strictly inside the spread -> unknown by the book.

Edge cases, defined explicitly:

* missing book (both sides NaN / non-positive): unknown;
* one side missing: only the rule of the present side can apply (a price at or above a present
  ask is a buy, at or below a present bid a sell), anything else is unknown;
* locked book (bid == ask): a trade at that price satisfies both rules, so it is unknown;
  above it is a buy, below it a sell;
* crossed book (bid > ask): the book is stale or inconsistent, so it says nothing: unknown.

Which side the detectors use (``resolve_side``): the feed's aggressor side when the feed gives
one (CME reports the aggressor of every match, which is exact), otherwise the book side. The
running agreement between the two (``InitiationStats``) is a data-quality figure: on clean MBO
data it is ~1.0; a low value means a stale book or mis-ordered records.
"""

from __future__ import annotations

from ifd.detection.types import BUY
from ifd.detection.types import SELL
from ifd.detection.types import UNKNOWN


def book_side(price: float, best_bid: float, best_ask: float) -> int:
    """BUY / SELL / UNKNOWN for a trade at ``price`` against the book before it (rules above)."""
    has_bid = best_bid > 0.0  # False for NaN too
    has_ask = best_ask > 0.0
    if has_bid and has_ask:
        if best_bid > best_ask:  # crossed: no opinion
            return UNKNOWN
        if best_bid == best_ask:  # locked: only strictly outside prices are classified
            if price > best_ask:
                return BUY
            if price < best_bid:
                return SELL
            return UNKNOWN
    if has_ask and price >= best_ask:
        return BUY
    if has_bid and price <= best_bid:
        return SELL
    return UNKNOWN


def resolve_side(feed_side: int, by_book: int) -> int:
    """The side the detectors use: the feed's aggressor side when known, else the book's."""
    return feed_side if feed_side != UNKNOWN else by_book


class InitiationStats:
    """Running counts of feed vs book initiation (a data-quality figure)."""

    __slots__ = ("agree", "book_known", "both_known", "feed_known", "trades", "unknown")

    def __init__(self) -> None:
        self.trades = 0
        self.feed_known = 0
        self.book_known = 0
        self.both_known = 0
        self.agree = 0
        self.unknown = 0  # neither the feed nor the book could tell

    def classify(self, price: float, feed_side: int, best_bid: float, best_ask: float) -> int:
        """Count one trade and return the side to use (``resolve_side``)."""
        by_book = book_side(price, best_bid, best_ask)
        self.trades += 1
        if feed_side != UNKNOWN:
            self.feed_known += 1
            if by_book != UNKNOWN:
                self.book_known += 1
                self.both_known += 1
                if by_book == feed_side:
                    self.agree += 1
            return feed_side
        if by_book != UNKNOWN:
            self.book_known += 1
            return by_book
        self.unknown += 1
        return UNKNOWN

    @property
    def agreement_rate(self) -> float | None:
        """Share of trades where feed and book both classify and agree (None before any)."""
        return self.agree / self.both_known if self.both_known else None

    def as_dict(self) -> dict:
        """Counts and the agreement rate."""
        rate = self.agreement_rate
        return {
            "trades_seen": self.trades,
            "feed_side_known": self.feed_known,
            "book_side_known": self.book_known,
            "agreement_checked": self.both_known,
            "agreement_rate": round(rate, 6) if rate is not None else None,
            "unknown_initiation": self.unknown,
        }
