"""The bureau's working calendar: what counts as off-hours, in the bureau's time zone.

Configured from policy data (``data.ztcp.config.calendar``) so officers tune it with the rest of
the policy: ``timezone``, ``work_start`` / ``work_end`` (hours, local), ``workdays`` (ISO weekday
numbers, Monday = 1), ``holidays`` (dates off) and ``makeup_workdays`` (Saturdays Taiwan declares
working days to bridge a holiday).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
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

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "_zone", ZoneInfo(self.timezone))
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigurationError(f"unknown time zone in calendar: {self.timezone!r}") from None
        if not (0 <= self.work_start < self.work_end <= 24):
            raise ConfigurationError("calendar work_start/work_end must satisfy 0 <= start < end <= 24")

    @property
    def zone(self) -> ZoneInfo:
        return self._zone  # type: ignore[attr-defined]

    @classmethod
    def from_config(cls, config: dict | None, default_timezone: str = "Asia/Taipei") -> BusinessCalendar:
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
