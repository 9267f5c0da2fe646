"""A rule's occurrences, day by day, without dateutil.

A rule's occurrences are the instants on its period grid that pass its
by-fields. Which of them fall on one day follows from the day's date and, for
HOURLY and MINUTELY rules, from where the grid meets the day. :class:`_RuleDays`
jumps from one day that can hold occurrences to the next (months, years and
grid gaps the rule excludes are skipped in one step) and lists the day's
occurrences; :class:`_Walker` counts them to find the n-th occurrence, which
is how ``count`` becomes an end instant and how a rule is checked to occur at
all. The walk is resumable and metered in steps, so callers bound the work
done at once. Internal to the package :mod:`.schedule`.
"""

import calendar
from collections.abc import Iterator
from datetime import MAXYEAR, UTC, date, datetime, timedelta
import math
from typing import TYPE_CHECKING, Final

from frequenz.client.dispatch.recurrence import Frequency

if TYPE_CHECKING:
    from ._rules import _RuleSpec

_SECONDS_PER_DAY: Final = 86_400
_LAST_DAY: Final = date.max.toordinal()
_UNITS_PER_DAY: Final = {Frequency.HOURLY: 24, Frequency.MINUTELY: 1440}


class _RuleDays:
    """The days on which a rule occurs, and its occurrences on each.

    ``until`` is honoured unless ``use_until`` is False. :attr:`steps`
    meters the work: one per day looked at, three per month (about 0.5 us
    per step).
    """

    def __init__(self, spec: "_RuleSpec", *, use_until: bool = True) -> None:
        self._spec = spec
        first = spec.first
        self.first_day = first.toordinal()
        self._first_second = first.hour * 3600 + first.minute * 60 + first.second
        until = spec.until if use_until else None
        self.last_day = _LAST_DAY if until is None else until.toordinal()
        self._until_second = (
            _SECONDS_PER_DAY
            if until is None
            else until.hour * 3600 + until.minute * 60 + until.second
        )
        self._monday = self.first_day - first.weekday()
        self._first_month = first.year * 12 + first.month - 1
        self._months = spec.bymonth or tuple(range(1, 13))
        self._unit = _UNITS_PER_DAY.get(spec.freq)
        second = spec.bysecond[0]
        self._times: tuple[int, ...] = ()
        self._origin = 0
        if self._unit is None:  # DAILY and coarser: the same times every day
            assert spec.byhour is not None
            assert spec.byminute is not None
            self._times = tuple(
                sorted(
                    h * 3600 + m * 60 + second
                    for h in spec.byhour
                    for m in spec.byminute
                )
            )
        else:
            slot = first.hour if self._unit == 24 else first.hour * 60 + first.minute
            self._origin = self.first_day * self._unit + slot
        self._by_phase: dict[int, tuple[int, ...]] = {}
        self._days_by_month_kind: dict[tuple[int, int], tuple[int, ...]] = {}
        self.steps = 0

    def most_per_day(self) -> int:
        """The most occurrences the rule can have on one day."""
        spec = self._spec
        if self._unit is None:
            return len(self._times)
        on_grid = -(-self._unit // spec.interval)
        hours = len(spec.byhour or range(24))
        if self._unit == 24:
            assert spec.byminute is not None
            return min(on_grid, hours) * len(spec.byminute)
        return min(on_grid, hours * len(spec.byminute or range(60)))

    def days_from(self, ordinal: int) -> Iterator[tuple[int, tuple[int, ...]]]:
        """Yield ``(day, seconds of the day)`` for the days that may hold one.

        Starts at the day ``ordinal`` (not before the first occurrence's).
        Also yields ``(day, ())`` at each month or gap skipped, where every
        day before ``day`` is done, so a consumer may stop at any point.
        """
        day = max(ordinal, self.first_day)
        while day <= self.last_day:
            self.steps += 3  # a month costs about three days
            current = date.fromordinal(day)
            month_index = current.year * 12 + current.month - 1
            allowed = self._next_month(month_index)
            if allowed is None:
                return
            if allowed != month_index:
                year, month = divmod(allowed, 12)
                day = date(year, month + 1, 1).toordinal()
                yield day, ()
                continue
            length = calendar.monthrange(current.year, current.month)[1]
            month_start = day - current.day + 1
            next_month = month_start + length
            grid_day = self._next_grid_day(day)
            if grid_day is None:
                return
            if grid_day >= next_month:
                day = grid_day
                yield day, ()
                continue
            for candidate in self._candidate_days(month_start, length):
                ordinal = month_start + candidate - 1
                if ordinal < day:
                    continue
                if ordinal > self.last_day:
                    return
                self.steps += 1
                times = self._times_on(ordinal)
                if not times:
                    continue
                if ordinal == self.first_day:
                    times = tuple(t for t in times if t >= self._first_second)
                if ordinal == self.last_day:
                    times = tuple(t for t in times if t <= self._until_second)
                yield ordinal, times
            day = next_month
            yield day, ()

    def occurrences_from(self, instant: datetime) -> Iterator[datetime]:
        """Yield every occurrence >= ``instant`` (UTC), ascending."""
        start_day = instant.toordinal()
        start_second = instant.hour * 3600 + instant.minute * 60 + instant.second
        if instant.microsecond:
            start_second += 1
        for day, times in self.days_from(start_day):
            if not times:
                continue
            midnight = datetime.fromordinal(day).replace(tzinfo=UTC)
            for second in times:
                if day == start_day and second < start_second:
                    continue
                yield midnight + timedelta(seconds=second)

    def _next_month(self, month_index: int) -> int | None:
        """The first allowed month (index from the year 0) >= ``month_index``."""
        spec = self._spec
        freq = spec.freq
        months = self._months
        last = MAXYEAR * 12 + 11
        if freq == Frequency.YEARLY:
            first_year = self._first_month // 12
            year, month = divmod(month_index, 12)
            offset = (year - first_year) % spec.interval
            if offset:
                year += spec.interval - offset
                month = -1
            later = [m for m in months if m > month]
            if not later:
                year += spec.interval
                later = list(months)
            index = year * 12 + later[0] - 1
            return index if index <= last else None
        if freq == Frequency.MONTHLY:
            offset = (month_index - self._first_month) % spec.interval
            if offset:
                month_index += spec.interval - offset
            for _ in range(12):
                if month_index > last:
                    return None
                if month_index % 12 + 1 in months:
                    return month_index
                month_index += spec.interval
            return None  # no grid month is allowed (rejected when compiling)
        year, month = divmod(month_index, 12)
        later = [m for m in months if m >= month + 1]
        index = year * 12 + later[0] - 1 if later else (year + 1) * 12 + months[0] - 1
        return index if index <= last else None

    def _next_grid_day(self, day: int) -> int | None:
        """The first day >= ``day`` that the rule's grid reaches."""
        spec = self._spec
        interval = spec.interval
        if spec.freq == Frequency.DAILY:
            offset = (day - self.first_day) % interval
            day += (interval - offset) % interval
        elif spec.freq == Frequency.WEEKLY:
            week, weekday = divmod(day - self._monday, 7)
            offset = week % interval
            if offset:
                day += (interval - offset) * 7 - weekday
        elif self._unit is not None and interval > self._unit:
            # At most one grid point a day: go to the day of the next one.
            slot = day * self._unit - self._origin
            slot += (-slot) % interval
            day = (slot + self._origin) // self._unit
        return day if day <= _LAST_DAY else None

    def _candidate_days(self, month_start: int, length: int) -> tuple[int, ...]:
        """The days of a month the month-day or weekday filter lets through."""
        key = (month_start - 1) % 7, length  # weekday of the 1st, length
        days = self._days_by_month_kind.get(key)
        if days is None:
            spec = self._spec
            every = range(1, length + 1)
            weekdays = spec.byweekday
            monthdays = spec.bymonthday
            days = tuple(
                d
                for d in every
                if (weekdays is None or (key[0] + d - 1) % 7 in weekdays)
                and (monthdays is None or d in monthdays or d - length - 1 in monthdays)
            )
            self._days_by_month_kind[key] = days
        return days

    def _times_on(self, day: int) -> tuple[int, ...]:
        """The seconds of the day at which the rule occurs on a candidate day."""
        spec = self._spec
        if self._unit is None:
            if spec.freq == Frequency.DAILY:
                on_grid = (day - self.first_day) % spec.interval == 0
            elif spec.freq == Frequency.WEEKLY:
                on_grid = (day - self._monday) // 7 % spec.interval == 0
            else:  # MONTHLY and YEARLY: the months are on the grid
                on_grid = True
            return self._times if on_grid else ()
        phase = (day * self._unit - self._origin) % spec.interval
        times = self._by_phase.get(phase)
        if times is None:
            times = self._grid_times(phase)
            if spec.interval < self._unit:  # few phases: worth keeping
                self._by_phase[phase] = times
        return times

    def _grid_times(self, phase: int) -> tuple[int, ...]:
        """Seconds of the day on the HOURLY/MINUTELY grid passing the filters."""
        spec = self._spec
        unit = self._unit
        assert unit is not None
        second = spec.bysecond[0]
        times: list[int] = []
        for slot in range((-phase) % spec.interval, unit, spec.interval):
            if unit == 24:
                if spec.byhour is None or slot in spec.byhour:
                    assert spec.byminute is not None
                    times.extend(slot * 3600 + m * 60 + second for m in spec.byminute)
            else:
                hour, minute = divmod(slot, 60)
                if (spec.byhour is None or hour in spec.byhour) and (
                    spec.byminute is None or minute in spec.byminute
                ):
                    times.append(slot * 60 + second)
        return tuple(times)


class _Walker:
    """Finds the ``target``-th occurrence of a rule (its ``count`` ignored).

    The walk stops at the ``target``-th occurrence (:attr:`found`), at the
    rule's ``until`` or at the year 9999 (:attr:`found` stays None: there is
    no such occurrence).
    """

    def __init__(
        self, spec: "_RuleSpec", target: int, *, use_until: bool = True
    ) -> None:
        self._target = target
        self._days = _RuleDays(spec, use_until=use_until)
        self._iter = self._days.days_from(self._days.first_day)
        self.counted = 0  # occurrences before the day :attr:`reached`
        self.reached = self._days.first_day  # every day before it was counted
        self.done = target <= 0
        self.found: datetime | None = None
        self._give_up = _LAST_DAY
        if target == 1 and not use_until:
            self._give_up = _cycle_end(spec)

    @property
    def steps(self) -> int:
        """Work done so far."""
        return self._days.steps

    def walk(self, budget: int | None, *, past: int | None = None) -> bool:
        """Walk on for at most ``budget`` steps (None: unbounded).

        Args:
            budget: The most steps to take now.
            past: Stop once the day with this ordinal has been counted.

        Returns:
            True once the walk is done.

        """
        if self.done or (past is not None and self.reached > past):
            return self.done
        days = self._days
        days_left = days.last_day - self.reached + 1
        if self.counted + days_left * days.most_per_day() < self._target:
            self.done = True  # not that many occurrences before the end
            return True
        limit = None if budget is None else days.steps + budget
        for day, times in self._iter:
            if self.counted + len(times) >= self._target:
                second = times[self._target - self.counted - 1]
                self.found = datetime.fromordinal(day).replace(tzinfo=UTC) + timedelta(
                    seconds=second
                )
                self.done = True
                return True
            self.counted += len(times)
            self.reached = day + 1 if times else day  # `day` may be unseen
            if self.reached > self._give_up:
                break  # a whole cycle of the rule without an occurrence
            if (limit is not None and days.steps >= limit) or (
                past is not None and self.reached > past
            ):
                return False
        self.done = True
        return True


def _cycle_end(spec: "_RuleSpec") -> int:
    """A day by which a MONTHLY or YEARLY rule has occurred if it ever does.

    The Gregorian calendar repeats every 400 years (a whole number of
    weeks) and such a rule's grid every ``interval`` periods, so its
    occurrences repeat too; one cycle after the first period (plus that
    period, whose start may cut occurrences) shows them all.
    """
    first = spec.first
    if spec.freq == Frequency.YEARLY:
        years = math.lcm(spec.interval, 400) + 1
    elif spec.freq == Frequency.MONTHLY:
        years = math.lcm(spec.interval, 400 * 12) // 12 + 1
    else:
        return _LAST_DAY
    if first.year + years > MAXYEAR:
        return _LAST_DAY
    return date(first.year + years, 1, 1).toordinal()
