"""Calendar days in the configured timezone, as integer day numbers."""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo

DAY_MS = 86_400_000
_BUCKET_MS = 900_000  # UTC offsets are looked up per quarter hour and cached
_ORDINAL_1970 = dt.date(1970, 1, 1).toordinal()


class DayClock:
    """Maps epoch ms to the local day number (days since 1970-01-01 in `timezone`)."""

    def __init__(self, timezone: str = "UTC") -> None:
        self.timezone = timezone
        self._zone = zoneinfo.ZoneInfo(timezone)
        self._fixed = 0 if timezone in ("UTC", "Etc/UTC") else None
        self._offsets: dict[int, int | None] = {}

    def _offset_ms(self, ts: int) -> int:
        offset = dt.datetime.fromtimestamp(ts / 1000, self._zone).utcoffset()
        assert offset is not None  # a ZoneInfo always has an offset
        return int(offset.total_seconds() * 1000)

    def day(self, ts: int) -> int:
        """Local day number of the instant `ts` (epoch ms)."""
        return self.local_ms(ts) // DAY_MS

    def hour(self, ts: int) -> int:
        """Local hour of the day (0-23) of the instant `ts`."""
        return self.local_ms(ts) % DAY_MS // 3_600_000

    def local_ms(self, ts: int) -> int:
        """`ts` plus the timezone's UTC offset at that instant."""
        if self._fixed is not None:
            return ts + self._fixed
        bucket = ts // _BUCKET_MS
        offset = self._offsets.get(bucket, -1)
        if offset == -1:
            start = bucket * _BUCKET_MS
            first, last = self._offset_ms(start), self._offset_ms(start + _BUCKET_MS - 1)
            offset = first if first == last else None
            if len(self._offsets) > 200_000:
                self._offsets.clear()
            self._offsets[bucket] = offset
        if offset is None:  # a transition inside this quarter hour
            offset = self._offset_ms(ts)
        return ts + offset

    def day_start_ms(self, day: int) -> int:
        """The first instant (epoch ms) of local day `day`."""
        date = dt.date.fromordinal(_ORDINAL_1970 + day)
        start = dt.datetime(date.year, date.month, date.day, tzinfo=self._zone)
        return int(start.timestamp() * 1000)

    @staticmethod
    def iso(day: int) -> str:
        """Day number → 'YYYY-MM-DD'."""
        return dt.date.fromordinal(_ORDINAL_1970 + day).isoformat()

    @staticmethod
    def from_iso(text: str) -> int:
        return dt.date.fromisoformat(text).toordinal() - _ORDINAL_1970


# Calendar periods of local day numbers (weeks start on Monday, as ISO weeks).
def week_index(day: int) -> int:
    """Weeks since the Monday 1969-12-29 (1970-01-01 was a Thursday)."""
    return (day + 3) // 7


def week_start(index: int) -> int:
    return index * 7 - 3


@functools.lru_cache(maxsize=4096)
def month_index(day: int) -> int:
    """Months since January of year 0."""
    date = dt.date.fromordinal(_ORDINAL_1970 + day)
    return date.year * 12 + date.month - 1


@functools.lru_cache(maxsize=1024)
def month_start(index: int) -> int:
    year, month = divmod(index, 12)
    return dt.date(year, month + 1, 1).toordinal() - _ORDINAL_1970


def week_key(day: int) -> str:
    """'YYYY-Www' (ISO week) of a day."""
    year, week, _ = dt.date.fromordinal(_ORDINAL_1970 + day).isocalendar()
    return f"{year}-W{week:02d}"


def month_key(day: int) -> str:
    return DayClock.iso(day)[:7]
