"""ISO weeks ("2026-W47") in the configured report time zone: parsing and their bounds in UTC."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from service.errors import ValidationFailed, field_error

_PATTERN = re.compile(r"^(\d{4})-W(\d{2})$")


@dataclass(frozen=True, order=True)
class IsoWeek:
    year: int
    week: int

    @classmethod
    def parse(cls, text: str, *, field: str = "week") -> "IsoWeek":
        """Parse ``YYYY-Www``; a 422 problem naming ``field`` otherwise (week 53 only in years that have one)."""
        match = _PATTERN.match(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise ValidationFailed(f"invalid week {text!r}", errors=[field_error(field, "must look like 2026-W47 (an ISO week)")])
        year, week = int(match.group(1)), int(match.group(2))
        try:
            date.fromisocalendar(year, week, 1)
        except ValueError:
            raise ValidationFailed(f"invalid week {text!r}",
                                   errors=[field_error(field, f"{year} has no ISO week {week}")]) from None
        return cls(year, week)

    @classmethod
    def containing(cls, moment: datetime, tz: str) -> "IsoWeek":
        local = moment.astimezone(ZoneInfo(tz))
        year, week, _ = local.isocalendar()
        return cls(year, week)

    @classmethod
    def previous(cls, moment: datetime, tz: str) -> "IsoWeek":
        """The last complete week before ``moment`` (what the Monday-morning report covers)."""
        return cls.containing(moment, tz).shift(-1)

    def shift(self, weeks: int) -> "IsoWeek":
        monday = date.fromisocalendar(self.year, self.week, 1) + timedelta(weeks=weeks)
        year, week, _ = monday.isocalendar()
        return IsoWeek(year, week)

    @property
    def label(self) -> str:
        return f"{self.year:04d}-W{self.week:02d}"

    def __str__(self) -> str:
        return self.label

    def bounds(self, tz: str) -> tuple[datetime, datetime]:
        """[Monday 00:00, next Monday 00:00) local time, as UTC instants (DST-aware: a week may be 167 h)."""
        zone = ZoneInfo(tz)
        monday = date.fromisocalendar(self.year, self.week, 1)
        start = datetime.combine(monday, time(0), zone)
        end = datetime.combine(monday + timedelta(days=7), time(0), zone)
        return start.astimezone(timezone.utc), end.astimezone(timezone.utc)

    def days(self) -> tuple[date, date]:
        """First and last local day (Monday, Sunday), for display."""
        monday = date.fromisocalendar(self.year, self.week, 1)
        return monday, monday + timedelta(days=6)
