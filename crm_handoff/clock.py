"""The cycle's clock: wall time, or wall time shifted so that it reads ``--as-of`` at the start.

Everything that stamps a watermark or a pull window reads one clock, so a cycle run
``--as-of`` a later time (a replay, a test, the benchmark's simulated schedule gaps) is
consistent with itself: its watermarks, windows and "now" all move together.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


def shifted(start: datetime) -> Clock:
    """A clock that reads ``start`` now and advances with the wall clock from there."""
    offset = start - utc_now()

    def now() -> datetime:
        return utc_now() + offset

    return now
