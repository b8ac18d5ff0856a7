"""The CME Globex trading day: the session that opens at 17:00 Chicago time belongs to the next day.

NQ futures and options trade Sunday-Friday 17:00-16:00 America/Chicago; a "day" for daily limits is
that session, not the UTC date (00:00 UTC falls in the middle of the evening session).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

CME_TZ = ZoneInfo("America/Chicago")
SESSION_OPEN_HOUR = 17  # Chicago time; the trading day of a timestamp at or after it is the next date


def cme_trading_day(ts_ns: int) -> dt.date:
    """The CME trading date of a UNIX-nanosecond timestamp (17:00 Chicago rolls to the next date)."""
    local = dt.datetime.fromtimestamp(ts_ns / 1e9, tz=CME_TZ)
    day = local.date()
    return day + dt.timedelta(days=1) if local.hour >= SESSION_OPEN_HOUR else day
