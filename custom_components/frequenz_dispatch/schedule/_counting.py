"""Counting a rule's occurrences day by day, without dateutil.

A rule's occurrences are the instants on its period grid that pass its
by-fields. How many fall on one day follows from the day's date and, for
HOURLY and MINUTELY rules, from where the grid meets the day: :class:`_Walker`
counts them a day at a time (whole months and years the by-fields or the grid
exclude are skipped) and finds the n-th occurrence, which is how ``count``
becomes an end instant and how a rule is checked to occur at all. The walk is
resumable and metered, so callers bound the work done at once. Internal to
the package :mod:`.schedule`.
"""

import calendar
from collections.abc import Iterator
from datetime import MAXYEAR, UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Final

from frequenz.client.dispatch.recurrence import Frequency

if TYPE_CHECKING:
    from ._rules import _RuleSpec

_SECONDS_PER_DAY: Final = 86_400
_LAST_MONTH: Final = MAXYEAR * 12 + 11  # months counted from the year 0


class _Walker:
    """Finds the ``target``-th occurrence of a rule (``count`` ignored).

    The walk stops at the ``target``-th occurrence (:attr:`found`), at the
    rule's ``until`` or at the year 9999 (:attr:`found` stays None: there is
    no such occurrence). :attr:`steps` meters the work: one per month and day
    visited.
    """

    def __init__(
        self, spec: "_RuleSpec", target: int, *, use_until: bool = True
    ) -> None:
        self._spec = spec
        self._target = target
        first = spec.first
        self._first_day = first.toordinal()
        self._first_second = first.hour * 3600 + first.minute * 60 + first.second
        until = spec.until if use_until else None
        self._last_day = date.max.toordinal() if until is None else until.toordinal()
        self._until_second = (
            _SECONDS_PER_DAY
            if until is None
            else until.hour * 3600 + until.minute * 60 + until.second
        )
        self._monday = self._first_day - first.weekday()
        second = spec.bysecond[0]
        freq = spec.freq
        self._unit = {Frequency.HOURLY: 24, Frequency.MINUTELY: 1440}.get(freq)
        if self._unit is None:  # DAILY and coarser: fixed times on a day
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
            self._origin = self._first_day * self._unit + (
                first.hour
                if freq == Frequency.HOURLY
                else first.hour * 60 + first.minute
            )
        self._by_phase: dict[int, tuple[int, ...]] = {}
        self._days_by_month_kind: dict[tuple[int, int], tuple[int, ...]] = {}
        self._months = self._month_iter()
        self.counted = 0  # occurrences before the day being walked
        self.steps = 0
        self.done = False
        self.found: datetime | None = None
        self.reached = self._first_day  # every day before it was counted

    def upper_bound(self) -> int:
        """The most occurrences the rule can have before the year 9999."""
        spec = self._spec
        days = self._last_day - self._first_day + 1
        if self._unit is None:
            return days * len(self._times)
        grid = -(-self._unit // spec.interval)  # grid points a day, at most
        if self._unit == 24:
            allowed = len(spec.byhour or range(24))
            assert spec.byminute is not None
            return days * min(grid, allowed) * len(spec.byminute)
        allowed = len(spec.byhour or range(24)) * len(spec.byminute or range(60))
        return days * min(grid, allowed)

    def walk(self, budget: int | None, *, past: int | None = None) -> bool:
        """Walk on for at most ``budget`` steps (None: unbounded).

        Args:
            budget: The most steps to take now (whole months are finished).
            past: Stop once the day with this ordinal has been counted.

        Returns:
            True once the walk is done.

        """
        if self.done or (past is not None and self.reached > past):
            return self.done
        if self._target <= 0:
            self.done = True
            return True
        if self.upper_bound() < self._target:
            self.done = True  # not that many occurrences before the year 9999
            return True
        limit = None if budget is None else self.steps + budget
        for year, month in self._months:
            self.steps += 1
            month_start = date(year, month, 1).toordinal()
            length = calendar.monthrange(year, month)[1]
            for day in self._candidate_days(month_start, length):
                ordinal = month_start + day - 1
                if ordinal < self._first_day:
                    continue
                if ordinal > self._last_day:
                    self.done = True
                    return True
                self.steps += 1
                times = self._times_on(ordinal, day, length, month, year)
                if ordinal == self._first_day:
                    times = tuple(t for t in times if t >= self._first_second)
                if ordinal == self._last_day:
                    times = tuple(t for t in times if t <= self._until_second)
                if self.counted + len(times) >= self._target:
                    second = times[self._target - self.counted - 1]
                    self.found = datetime(year, month, day, tzinfo=UTC) + timedelta(
                        seconds=second
                    )
                    self.done = True
                    return True
                self.counted += len(times)
            self.reached = month_start + length
            if (limit is not None and self.steps >= limit) or (
                past is not None and self.reached > past
            ):
                return False
        self.done = True
        return True

    def _month_iter(self) -> Iterator[tuple[int, int]]:
        """The months that may hold occurrences, from the first one's on."""
        spec = self._spec
        first = spec.first
        months = spec.bymonth or tuple(range(1, 13))
        start = first.year * 12 + first.month - 1
        step = 1
        if spec.freq == Frequency.MONTHLY:
            step = spec.interval
        elif spec.freq == Frequency.YEARLY:
            for year in range(first.year, MAXYEAR + 1, spec.interval):
                for month in months:
                    if year * 12 + month - 1 >= start:
                        yield year, month
            return
        for index in range(start, _LAST_MONTH + 1, step):
            year, month = divmod(index, 12)
            if month + 1 in months:
                yield year, month + 1
            else:
                self.steps += 1

    def _candidate_days(self, month_start: int, length: int) -> tuple[int, ...]:
        """The days of a month the month-day or weekday filter lets through."""
        key = (month_start - 1) % 7, length  # weekday of the 1st, length
        days = self._days_by_month_kind.get(key)
        if days is None:
            spec = self._spec
            candidates = range(1, length + 1)
            if spec.bymonthday is not None:
                days = tuple(
                    sorted(
                        {d if d > 0 else length + d + 1 for d in spec.bymonthday}
                        & set(candidates)
                    )
                )
            elif spec.byweekday is not None:
                days = tuple(
                    d for d in candidates if (key[0] + d - 1) % 7 in spec.byweekday
                )
            else:
                days = tuple(candidates)
            self._days_by_month_kind[key] = days
        return days

    def _times_on(
        self, ordinal: int, day: int, length: int, month: int, year: int
    ) -> tuple[int, ...]:
        """The seconds of the day at which the rule occurs on one day."""
        spec = self._spec
        weekday = (ordinal - 1) % 7
        if spec.byweekday is not None and weekday not in spec.byweekday:
            return ()
        if (
            spec.bymonthday is not None
            and day not in spec.bymonthday
            and day - length - 1 not in spec.bymonthday
        ):
            return ()
        freq = spec.freq
        if self._unit is None:
            if freq == Frequency.DAILY:
                on_grid = (ordinal - self._first_day) % spec.interval == 0
            elif freq == Frequency.WEEKLY:
                on_grid = (ordinal - self._monday) // 7 % spec.interval == 0
            else:  # MONTHLY and YEARLY: the month iterator keeps to the grid
                on_grid = True
            return self._times if on_grid else ()
        phase = (ordinal * self._unit - self._origin) % spec.interval
        times = self._by_phase.get(phase)
        if times is None:
            times = self._grid_times(phase)
            if spec.interval < self._unit:  # few phases: worth keeping
                self._by_phase[phase] = times
        return times

    def _grid_times(self, phase: int) -> tuple[int, ...]:
        """Seconds of the day on the HOURLY/MINUTELY grid that pass the filters."""
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
