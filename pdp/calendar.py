"""The bureau's working calendar: what counts as off-hours, in the bureau's time zone.

Configured from policy data (``data.ztcp.config.calendar``) so officers tune it with the rest of
the policy: ``timezone``, ``work_start`` / ``work_end`` (hours, local), ``workdays`` (ISO weekday
numbers, Monday = 1), ``holidays`` (dates off) and ``makeup_workdays`` (Saturdays Taiwan declares
working days to bridge a holiday).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pdp.errors import ConfigurationError


@dataclass(frozen=True)
class BusinessCalendar:
    timezone: str = "Asia/Taipei"
    work_start: int = 8
    work_end: int = 18
    workdays: frozenset[int] = frozenset({1, 2, 3, 4, 5})
    holidays: frozenset[date] = field(default_factory=frozenset)
    makeup_workdays: frozenset[date] = field(default_factory=frozenset)
    # Derived in __post_init__, not compared: the zone, and (UTC minute, *at()'s answer) cached.
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _minute: tuple[int | None, int, bool, bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "_zone", ZoneInfo(self.timezone))
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigurationError(f"unknown time zone in calendar: {self.timezone!r}") from None
        if not (0 <= self.work_start < self.work_end <= 24):
            raise ConfigurationError("calendar work_start/work_end must satisfy 0 <= start < end <= 24")
        object.__setattr__(self, "_minute", (None, 0, False, False))

    def at(self, now: float) -> tuple[int, bool, bool]:
        """``(local hour, off hours, holiday)`` at epoch seconds ``now``: what every decision's signals
        need. Cached for the current UTC minute: local hour and date can only change at a local
        minute boundary, which is a UTC minute boundary whenever the zone's offset is whole minutes
        (the cache is used only then). One slot, replaced whole, so threads never see half of it."""
        minute = int(now // 60)
        cached = self._minute
        if cached[0] == minute:
            return cached[1], cached[2], cached[3]
        moment = datetime.fromtimestamp(now, tz=UTC)
        local = self.local(moment)
        holiday = self.is_holiday(moment)
        facts = (local.hour, holiday or not (self.work_start <= local.hour < self.work_end), holiday)
        offset = local.utcoffset()
        if offset is not None and offset.total_seconds() % 60 == 0:
            object.__setattr__(self, "_minute", (minute, *facts))
        return facts

    @property
    def zone(self) -> ZoneInfo:
        return self._zone

    @classmethod
    def from_config(cls, config: dict[str, Any] | None, default_timezone: str = "Asia/Taipei") -> BusinessCalendar:
        config = config or {}
        try:
            return cls(
                timezone=config.get("timezone", default_timezone),
                work_start=int(config.get("work_start", 8)),
                work_end=int(config.get("work_end", 18)),
                workdays=frozenset(int(d) for d in config.get("workdays", [1, 2, 3, 4, 5])),
                holidays=frozenset(date.fromisoformat(d) for d in config.get("holidays", [])),
                makeup_workdays=frozenset(date.fromisoformat(d) for d in config.get("makeup_workdays", [])),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"invalid calendar configuration: {exc}") from None

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.zone)

    def is_holiday(self, moment: datetime) -> bool:
        return self._holiday(self.local(moment).date())

    def is_off_hours(self, moment: datetime) -> bool:
        return self.flags(moment)[2]

    def flags(self, moment: datetime) -> tuple[datetime, bool, bool]:
        """(local time, holiday, off hours) with one time-zone conversion: the decide path asks for
        all three, and each conversion through the zone database costs about a microsecond."""
        local = self.local(moment)
        holiday = self._holiday(local.date())
        return local, holiday, holiday or not (self.work_start <= local.hour < self.work_end)

    def _holiday(self, day: date) -> bool:
        if day in self.makeup_workdays:
            return False
        return day in self.holidays or day.isoweekday() not in self.workdays
