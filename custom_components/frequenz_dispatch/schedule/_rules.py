"""Recurrence rules of the scheduling model: validation and occurrences.

:class:`_RuleSpec` validates a dispatch's recurrence rule (dateutil's
constructor has the last word on what is valid) and spells out every by-field
dateutil would default; the occurrence sources yield its occurrences from any
instant on, walking the rule's days (:mod:`._counting`) rather than iterating
dateutil from ``start_time``. Internal to the package :mod:`.schedule`.
"""

from abc import ABC, abstractmethod
import calendar
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import MAXYEAR, UTC, datetime, timedelta
import itertools
import math
from typing import Final, Literal

from dateutil import rrule as du
from frequenz.client.dispatch.recurrence import Frequency, RecurrenceRule, Weekday

from ._counting import _RuleDays, _Walker
from ._types import InvalidDispatchError, NeverOccursError

_DuFreq = Literal[0, 1, 2, 3, 4, 5, 6]
_DU_FREQ: Final[dict[Frequency, _DuFreq]] = {
    Frequency.MINUTELY: du.MINUTELY,
    Frequency.HOURLY: du.HOURLY,
    Frequency.DAILY: du.DAILY,
    Frequency.WEEKLY: du.WEEKLY,
    Frequency.MONTHLY: du.MONTHLY,
    Frequency.YEARLY: du.YEARLY,
}
# Length of one period; months and years use their longest length, which is
# only used to size search blocks, never for arithmetic on the grid.
_UNIT: Final[dict[Frequency, timedelta]] = {
    Frequency.MINUTELY: timedelta(minutes=1),
    Frequency.HOURLY: timedelta(hours=1),
    Frequency.DAILY: timedelta(days=1),
    Frequency.WEEKLY: timedelta(weeks=1),
    Frequency.MONTHLY: timedelta(days=31),
    Frequency.YEARLY: timedelta(days=366),
}
_FIXED_LENGTH: Final = frozenset(
    {Frequency.MINUTELY, Frequency.HOURLY, Frequency.DAILY, Frequency.WEEKLY}
)
_MAX_MONTH_DAYS: Final = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_MINUTES_PER_WEEK: Final = 7 * 24 * 60
_MINUTES_PER_DAY: Final = 24 * 60
# Walking steps (see _RuleDays; about 0.5 us each) allowed while compiling:
# to find a rule's first occurrence, and to find the count-th occurrence (the
# rest is left to Schedule.prepare()). Together a few ms at most.
_PROBE_BUDGET: Final = 8_000
_COUNT_BUDGET: Final = 4_000
_HOURS_PER_WEEK: Final = 7 * 24


# --------------------------------------------------------------------------
# Compilation and validation
# --------------------------------------------------------------------------


_MAX: Final = datetime.max.replace(tzinfo=UTC)
_MIN: Final = datetime.min.replace(tzinfo=UTC)


def _to_utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidDispatchError(f"{name} must be timezone-aware, got {value!r}")
    try:
        return value.astimezone(UTC)
    except OverflowError as err:
        raise InvalidDispatchError(
            f"{name} is outside the years 1..9999 in UTC, got {value!r}"
        ) from err


def _clamp_to_utc(value: datetime) -> datetime:
    """Convert an aware instant to UTC, clamped to datetime's range."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        offset = value.utcoffset()
        assert offset is not None
        return _MAX if offset < timedelta(0) else _MIN


def _until_utc(until: datetime) -> datetime | None:
    """Validate ``until``; past the year 9999 in UTC it excludes nothing."""
    if until.tzinfo is None or until.utcoffset() is None:
        raise InvalidDispatchError(f"until must be timezone-aware, got {until!r}")
    clamped = _clamp_to_utc(until)
    return None if clamped == _MAX else clamped


def _plus(instant: datetime, delta: timedelta) -> datetime | None:
    """``instant + delta``, or None if that lies beyond the year 9999."""
    try:
        return instant + delta
    except OverflowError:
        return None


def _shift(instant: datetime, delta: timedelta) -> datetime | None:
    """``instant + delta``, or None if that lies outside datetime's range."""
    try:
        return instant + delta
    except OverflowError:
        return None


def _minus(instant: datetime, delta: timedelta) -> datetime:
    """``instant - delta`` for ``delta >= 0``, clamped to the year 1."""
    try:
        return instant - delta
    except OverflowError:
        return _MIN


def _sorted_unique(values: Iterable[int]) -> tuple[int, ...] | None:
    return tuple(sorted(set(values))) or None


def _check_range(name: str, values: Iterable[int], low: int, high: int) -> None:
    bad = [v for v in values if not low <= v <= high]
    if bad:
        raise InvalidDispatchError(f"{name} must be within {low}..{high}, got {bad}")


def _period_origin(freq: Frequency, start: datetime) -> datetime:
    """Start of the period containing ``start`` (months and years: its day).

    dateutil's weeks start on Monday (wkst). A week containing the year 1's
    first days starts on its first day.
    """
    midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
    if freq == Frequency.MINUTELY:
        return start.replace(second=0, microsecond=0)
    if freq == Frequency.HOURLY:
        return start.replace(minute=0, second=0, microsecond=0)
    if freq == Frequency.WEEKLY:
        return _minus(midnight, timedelta(days=start.weekday()))
    return midnight


@dataclass(frozen=True, slots=True, kw_only=True)
class _RuleSpec:
    """A validated recurrence with every by-field dateutil would default explicit.

    dateutil fills missing by-fields from ``dtstart`` (the second, minute and
    hour for coarser frequencies; the weekday, month day and month for
    WEEKLY/MONTHLY/YEARLY). Spelling them out lets us start an equivalent rule
    at any later period start without changing its occurrences.
    """

    freq: Frequency
    interval: int
    dtstart: datetime
    count: int | None
    until: datetime | None
    has_by_fields: bool
    bymonth: tuple[int, ...] | None
    bymonthday: tuple[int, ...] | None
    byweekday: tuple[int, ...] | None  # 0 = Monday, as in dateutil
    byhour: tuple[int, ...] | None
    byminute: tuple[int, ...] | None
    bysecond: tuple[int, ...]
    # The first occurrence, ignoring until; set once validated.
    first_occurrence: datetime | None = None

    @classmethod
    def compile(cls, start: datetime, rule: RecurrenceRule) -> "_RuleSpec | None":
        """Validate ``rule``; None for a one-shot (frequency UNSPECIFIED)."""
        try:
            freq = Frequency(rule.frequency)
        except ValueError as err:
            raise InvalidDispatchError(f"unknown frequency {rule.frequency!r}") from err
        if rule.interval < 0:
            raise InvalidDispatchError(f"interval must be >= 0, got {rule.interval}")
        _check_range("byminutes", rule.byminutes, 0, 59)
        _check_range("byhours", rule.byhours, 0, 23)
        _check_range("bymonths", rule.bymonths, 1, 12)
        bad_days = [v for v in rule.bymonthdays if not 1 <= abs(v) <= 31]
        if bad_days:
            raise InvalidDispatchError(
                f"bymonthdays must be within 1..31 or -31..-1, got {bad_days}"
            )
        weekdays: list[int] = []
        for day in rule.byweekdays:
            try:
                weekday = Weekday(day)
            except ValueError as err:
                raise InvalidDispatchError(f"unknown weekday {day!r}") from err
            if weekday == Weekday.UNSPECIFIED:
                raise InvalidDispatchError("byweekdays contains UNSPECIFIED")
            weekdays.append(weekday.value - Weekday.MONDAY.value)
        count = until = None
        if rule.end_criteria is not None:
            count, until = rule.end_criteria.count, rule.end_criteria.until
        if count is not None and count < 0:
            raise InvalidDispatchError(f"count must not be negative, got {count}")
        if until is not None:
            until = _until_utc(until)

        if freq == Frequency.UNSPECIFIED:
            return None
        if rule.interval == 0:
            raise InvalidDispatchError(
                f"interval must be at least 1 for frequency {freq.name}"
            )

        # Mirror dateutil's defaulting (rrule.__init__) exactly.
        bymonth = _sorted_unique(rule.bymonths)
        bymonthday = _sorted_unique(rule.bymonthdays)
        byweekday = _sorted_unique(weekdays)
        if bymonthday is None and byweekday is None:
            if freq == Frequency.YEARLY:
                bymonth = bymonth or (start.month,)
                bymonthday = (start.day,)
            elif freq == Frequency.MONTHLY:
                bymonthday = (start.day,)
            elif freq == Frequency.WEEKLY:
                byweekday = (start.weekday(),)
        coarser_than_hourly = _DU_FREQ[freq] < du.HOURLY
        coarser_than_minutely = _DU_FREQ[freq] < du.MINUTELY
        spec = cls(
            freq=freq,
            interval=rule.interval,
            dtstart=start,
            count=count,
            until=until,
            has_by_fields=bool(
                rule.byminutes
                or rule.byhours
                or rule.byweekdays
                or rule.bymonthdays
                or rule.bymonths
            ),
            bymonth=bymonth,
            bymonthday=bymonthday,
            byweekday=byweekday,
            byhour=_sorted_unique(rule.byhours)
            or ((start.hour,) if coarser_than_hourly else None),
            byminute=_sorted_unique(rule.byminutes)
            or ((start.minute,) if coarser_than_minutely else None),
            bysecond=(start.second,),
        )
        spec._check_dateutil_accepts()
        spec = spec._first_period_only()
        return replace(spec, first_occurrence=spec._check_satisfiable())

    def _check_dateutil_accepts(self) -> None:
        """Let dateutil validate the rule as given (its constructor only)."""
        try:
            self.build(self.dtstart, count=None, until=None)
        except OverflowError as err:
            raise InvalidDispatchError(f"invalid recurrence rule: {err}") from err

    def _first_period_only(self) -> "_RuleSpec":
        """An equivalent rule if the second period starts after the year 9999.

        Then only the first period's occurrences exist: the same rule with
        interval 1, ended at the first period's last instant, has exactly
        those, and keeps every computation (and dateutil, which would walk
        month by month towards the year 9999) away from huge intervals.
        """
        start = self.dtstart
        freq, interval = self.freq, self.interval
        if freq == Frequency.YEARLY:
            beyond = start.year + interval > MAXYEAR
            period_end = datetime(start.year, 12, 31, 23, 59, 59, tzinfo=UTC)
        elif freq == Frequency.MONTHLY:
            beyond = start.year * 12 + start.month - 1 + interval > MAXYEAR * 12 + 11
            last_day = calendar.monthrange(start.year, start.month)[1]
            period_end = start.replace(
                day=last_day, hour=23, minute=59, second=59, microsecond=0
            )
        else:
            origin = _period_origin(freq, start)
            beyond = interval > (_MAX - origin) // _UNIT[freq]
            next_origin = _plus(origin, _UNIT[freq])
            period_end = (
                _MAX.replace(microsecond=0)
                if next_origin is None
                else next_origin - timedelta(seconds=1)
            )
        if not beyond or interval == 1:
            return self
        until = period_end if self.until is None else min(self.until, period_end)
        return replace(self, interval=1, until=until)

    @property
    def first(self) -> datetime:
        """The earliest possible occurrence: dateutil drops microseconds."""
        return self.dtstart.replace(microsecond=0)

    def build(
        self, dtstart: datetime, *, count: int | None, until: datetime | None
    ) -> du.rrule:
        """Build the dateutil rule starting at ``dtstart``.

        Raises:
            InvalidDispatchError: If dateutil rejects the rule.

        """
        try:
            return du.rrule(
                freq=_DU_FREQ[self.freq],
                dtstart=dtstart,
                interval=self.interval,
                # The client leaves wkst to calendar.firstweekday(), which is
                # Monday unless a process changes it globally; pin it.
                wkst=du.MO,
                count=count,
                until=until,
                bymonth=self.bymonth,
                bymonthday=self.bymonthday,
                byweekday=self.byweekday,
                byhour=self.byhour,
                byminute=self.byminute,
                bysecond=self.bysecond,
            )
        except ValueError as err:
            raise InvalidDispatchError(f"invalid recurrence rule: {err}") from err

    def fixed_step(self) -> timedelta | None:
        """The constant gap between occurrences, if the rule is a progression.

        Without by-fields, MINUTELY/HOURLY/DAILY/WEEKLY rules yield
        ``first + k * interval * unit`` (UTC has no DST), so they need no
        dateutil at all.
        """
        if self.freq in _FIXED_LENGTH and not self.has_by_fields:
            return self.interval * _UNIT[self.freq]
        return None

    def progression_count(self, step: timedelta) -> int | None:
        """How many occurrences a progression has (None = unbounded)."""
        count = self.count
        if self.until is not None:
            by_until = (
                0 if self.until < self.first else (self.until - self.first) // step + 1
            )
            count = by_until if count is None else min(count, by_until)
        return count

    def _check_satisfiable(self) -> datetime:
        """Reject rules that can never produce an occurrence.

        dateutil rejects some such rules itself but iterates others until the
        year 9999 (seconds of CPU, on every query). Cheap analytic checks catch
        the common cases (February 30th, months or weekdays the interval
        never reaches); a bounded walk of the rule's days (never dateutil)
        finds the first occurrence, or that there is none. A rule whose first
        occurrence is further from its start than the walk may go (decades
        of days that pass its day filters) is rejected too.

        Returns:
            The first occurrence (ignoring ``until``).

        """
        months = set(self.bymonth or range(1, 13))
        if self.freq == Frequency.MONTHLY:
            first_month = self.dtstart.month - 1
            months &= {(first_month + i * self.interval) % 12 + 1 for i in range(12)}
        if not any(
            self.bymonthday is None
            or any(abs(day) <= _MAX_MONTH_DAYS[month - 1] for day in self.bymonthday)
            for month in months
        ):
            raise NeverOccursError(
                "recurrence rule never occurs: no selected month has the selected days"
            )
        if self.byweekday is not None and not self._weekdays_reachable():
            raise NeverOccursError(
                "recurrence rule never occurs: the interval never reaches the "
                "selected weekdays, hours and minutes"
            )
        if self.freq == Frequency.MINUTELY and not self._minutes_reachable():
            # dateutil raises this one lazily, while iterating.
            raise NeverOccursError(
                "invalid recurrence rule: the interval never reaches the selected "
                "hours and minutes"
            )
        probe = _Walker(self, 1, use_until=False)
        if not probe.walk(_PROBE_BUDGET):
            raise NeverOccursError(
                "recurrence rule does not occur within decades of its start"
            )
        if probe.found is None:
            raise NeverOccursError("recurrence rule never occurs")
        return probe.found

    def _minutes_reachable(self) -> bool:
        """Tell whether a MINUTELY grid meets the hour and minute filters.

        Modulo one day the grid is a residue class modulo gcd(interval, 1440).
        """
        modulus = math.gcd(self.interval, _MINUTES_PER_DAY)
        origin = self.dtstart.hour * 60 + self.dtstart.minute
        return any(
            (self.byhour is None or slot // 60 in self.byhour)
            and (self.byminute is None or slot % 60 in self.byminute)
            for slot in range(origin % modulus, _MINUTES_PER_DAY, modulus)
        )

    def _weekdays_reachable(self) -> bool:
        """Tell whether the grid of a sub-weekly rule meets its weekday filter.

        The grid of a DAILY/HOURLY/MINUTELY rule, taken modulo one week, is a
        residue class modulo gcd(step, week); some allowed (weekday, hour,
        minute) must fall into it.
        """
        assert self.byweekday is not None
        start = self.dtstart
        if self.freq == Frequency.DAILY:
            modulus = math.gcd(self.interval, 7)
            return any((day - start.weekday()) % modulus == 0 for day in self.byweekday)
        if self.freq == Frequency.HOURLY:
            modulus = math.gcd(self.interval, _HOURS_PER_WEEK)
            origin = start.weekday() * 24 + start.hour
            return any(
                (day * 24 + hour - origin) % modulus == 0
                for day in self.byweekday
                for hour in self.byhour or range(24)
            )
        if self.freq == Frequency.MINUTELY:
            modulus = math.gcd(self.interval, _MINUTES_PER_WEEK)
            origin = (start.weekday() * 24 + start.hour) * 60 + start.minute
            return any(
                ((day * 24 + hour) * 60 + minute - origin) % modulus == 0
                for day in self.byweekday
                for hour in self.byhour or range(24)
                for minute in self.byminute or range(60)
            )
        return True  # WEEKLY and coarser enumerate whole weeks


# --------------------------------------------------------------------------
# Occurrence sources: ascending occurrences of a rule from any instant
# --------------------------------------------------------------------------


class _OccurrenceSource(ABC):
    """Ascending occurrences of a recurrence rule, from any instant on."""

    def __init__(self, spec: _RuleSpec) -> None:
        # No occurrence lies before this.
        self.floor = spec.first_occurrence or spec.first

    @abstractmethod
    def iter_from(self, instant: datetime) -> Iterator[datetime]:
        """Yield every occurrence >= ``instant``, ascending."""

    @property
    def needs_preparation(self) -> bool:
        """Tell whether :meth:`prepare` has work to do."""
        return False

    @property
    def work(self) -> int:
        """Walking steps spent so far (a meter for callers' caps)."""
        return 0

    def prepare(self) -> None:  # noqa: B027 - an optional hook
        """Do the work that compiling left undone (nothing by default)."""

    def between(self, low: datetime, high: datetime) -> list[datetime]:
        """List the occurrences in ``[low, high)``, ascending."""
        return list(itertools.takewhile(lambda o: o < high, self.iter_from(low)))


class _PatternSource(_OccurrenceSource):
    """Occurrences of a rule ignoring ``count``, in time independent of age.

    dateutil always iterates from ``dtstart``, period by period (minute by
    minute through excluded hours of a MINUTELY rule). The rule's days are
    walked instead, from the day of the instant asked about, jumping over
    months, grid gaps and days its by-fields exclude (:class:`._RuleDays`).
    """

    def __init__(self, spec: _RuleSpec) -> None:
        super().__init__(spec)
        self._days = _RuleDays(spec)

    @property
    def work(self) -> int:
        """Walking steps spent so far."""
        return self._days.steps

    def iter_from(self, instant: datetime) -> Iterator[datetime]:
        """Yield every occurrence >= ``instant``, ascending."""
        return self._days.occurrences_from(max(instant, self.floor).astimezone(UTC))


class _CountedSource(_OccurrenceSource):
    """Occurrences of a rule with ``count``.

    Without ``count`` the rule yields the same occurrences up to the
    count-th, so those come from a pattern source; the count-th occurrence
    itself is found by walking the rule's days (:class:`._Walker`), not its
    occurrences. Compiling walks a bounded number of steps (decades of a
    dense rule; a sparse rule's whole life); the rest of the walk is done by
    :meth:`prepare` or, failing that, as far as the instants asked about.
    """

    def __init__(self, spec: _RuleSpec) -> None:
        super().__init__(spec)
        assert spec.count is not None
        self._pattern = _PatternSource(spec)  # ignores count, keeps until
        self._count = spec.count
        self._walker = _Walker(spec, spec.count)
        self._walker.walk(_COUNT_BUDGET)

    @property
    def needs_preparation(self) -> bool:
        """Tell whether the count-th occurrence is still to be found."""
        return not self._walker.done

    @property
    def work(self) -> int:
        """Walking steps spent so far."""
        return self._pattern.work + self._walker.steps

    def prepare(self) -> None:
        """Find the count-th occurrence (or that there is none)."""
        self._walker.walk(None)

    def _within_count(self, occurrence: datetime) -> bool:
        walker = self._walker
        walker.walk(None, past=occurrence.toordinal())
        if not walker.done:
            return True  # the count is not reached by that day
        if walker.found is None:  # fewer occurrences than the count
            return self._count > 0
        return occurrence <= walker.found

    def iter_from(self, instant: datetime) -> Iterator[datetime]:
        """Yield every occurrence >= ``instant``, ascending."""
        for occurrence in self._pattern.iter_from(instant):
            if not self._within_count(occurrence):
                return
            yield occurrence
