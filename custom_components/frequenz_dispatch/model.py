"""Pure scheduling model: when a dispatch runs.

A :class:`Schedule` compiles one dispatch into an immutable object that answers
"is it running at instant *t*?", "when does this run end?" and "when does the
next run start?". It never reads the clock (``now`` is always passed in) and
imports nothing from Home Assistant, so it can be tested exhaustively.

Semantics, matching the client library's ``Dispatch.started_at`` and
``Dispatch.next_run_after`` for UTC datetimes:

* All times are aware datetimes, evaluated in UTC.
* Occurrences are those of the RFC 5545 rule built like
  ``RecurrenceRule._as_rrule(start_time)`` (dateutil, week start Monday).
  ``Frequency.UNSPECIFIED`` means a single occurrence at ``start_time``.
* Every occurrence opens a window ``[occurrence, occurrence + duration)``.
  dateutil drops sub-second precision, so the first occurrence may lie a
  fraction of a second before ``start_time``; windows never start before
  ``start_time`` (the client does the same via ``now < start_time``).
* ``duration is None`` runs forever from ``start_time`` (the recurrence is then
  irrelevant), a zero duration never runs, an inactive dispatch never runs.
* Overlapping and back-to-back windows merge into one :class:`Run`, so a
  consumer never sees a stop/start pair at a window boundary.
"""

from abc import ABC, abstractmethod
import calendar
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import MAXYEAR, UTC, datetime, timedelta
import itertools
import math
import threading
from typing import Final, Literal, Self

from dateutil import rrule as du
from frequenz.client.dispatch.recurrence import Frequency, RecurrenceRule, Weekday
from frequenz.client.dispatch.types import Dispatch

__all__ = ["MERGE_CAP", "InvalidDispatchError", "Run", "Schedule"]

MERGE_CAP: Final = 1000
"""Most occurrences merged into one run in either direction per evaluation.

Chains of touching windows can be unbounded (every minute, two minutes long,
forever); past this many occurrences a run's edge is reported provisionally.
"""

_ZERO: Final = timedelta(0)
_CHAIN_CACHE_SIZE: Final = 8
_RULE_CACHE_SIZE: Final = 16

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
_SKIPPABLE: Final = frozenset({Frequency.MINUTELY, Frequency.HOURLY, Frequency.DAILY})
_SKIP_SEARCH_STEPS: Final = 400  # enough to find a February 29th
_MINUTES_PER_WEEK: Final = 7 * 24 * 60
_HOURS_PER_WEEK: Final = 7 * 24


class InvalidDispatchError(ValueError):
    """The dispatch cannot be scheduled: its timing fields are malformed."""


@dataclass(frozen=True, slots=True)
class Run:
    """One continuous run: overlapping or back-to-back windows merged.

    ``end`` is the earliest instant at which the run may end; re-check there.
    It is exact unless the run is a chain of more than :data:`MERGE_CAP`
    touching windows: then it is the end of the chain found so far and
    ``Schedule.run_at(end)`` reports the continuation. Likewise ``start`` is
    the earliest start found. ``end is None`` means the run never ends.
    """

    start: datetime
    end: datetime | None

    def contains(self, instant: datetime) -> bool:
        """Tell whether ``instant`` lies in ``[start, end)``.

        Args:
            instant: An aware datetime.

        Returns:
            True if the run covers ``instant``.

        """
        return self.start <= instant and (self.end is None or instant < self.end)


class Schedule:
    """Compiled, immutable schedule of one dispatch.

    Evaluation cost does not grow with the dispatch's age: rules that are a
    plain arithmetic progression (one-shots; no by-fields and a fixed-length
    frequency) are answered in closed form; other rules start dateutil at the
    recurrence period containing the instant asked about instead of at
    ``start_time``. Only a ``count`` end criterion depends on every earlier
    occurrence: such rules (with by-fields) are additionally walked once from
    ``start_time``, as far as the instants asked about and at most ``count``
    occurrences over the schedule's lifetime.

    Thread-safe: internal caches are guarded by locks.
    """

    __slots__ = ("_timeline",)

    _timeline: "_Timeline"

    def __init__(self, dispatch: Dispatch) -> None:
        """Compile the schedule of a dispatch.

        Args:
            dispatch: The dispatch; only its timing fields are used.

        Raises:
            InvalidDispatchError: If the timing fields are malformed, see
                :meth:`from_fields`.

        """
        self._timeline = _compile(
            dispatch.start_time,
            dispatch.duration,
            dispatch.recurrence,
            active=dispatch.active,
        )

    @classmethod
    def from_fields(
        cls,
        *,
        start_time: datetime,
        duration: timedelta | None,
        recurrence: RecurrenceRule | None = None,
        active: bool = True,
    ) -> Self:
        """Compile a schedule from the timing fields alone.

        Args:
            start_time: Aware start of the dispatch (its first occurrence).
            duration: Length of every window; None runs forever once started.
            recurrence: Recurrence rule; None or ``Frequency.UNSPECIFIED`` is
                a one-shot dispatch.
            active: An inactive dispatch never runs.

        Returns:
            The compiled schedule.

        Raises:
            InvalidDispatchError: If a datetime is naive, the duration is
                negative, a frequency is set with an interval below 1, a
                by-value is out of range or ``Weekday.UNSPECIFIED``, the count
                is negative, or the rule can never produce an occurrence
                (including rules dateutil rejects). Malformed fields are
                rejected even where they would not matter (inactive or
                open-ended dispatches), so validity never depends on state.

        """
        schedule = cls.__new__(cls)
        schedule._timeline = _compile(start_time, duration, recurrence, active=active)
        return schedule

    def run_at(self, now: datetime) -> Run | None:
        """Find the run containing ``now``.

        Args:
            now: The instant to evaluate (aware).

        Returns:
            The run with ``start <= now < end``, or None if not running.

        Raises:
            ValueError: If ``now`` is naive.

        """
        return self._timeline.run_at(_aware(now, "now"))

    def is_running(self, now: datetime) -> bool:
        """Tell whether the dispatch runs at ``now``.

        Args:
            now: The instant to evaluate (aware).

        Returns:
            True if some run contains ``now``.

        Raises:
            ValueError: If ``now`` is naive.

        """
        return self._timeline.is_running(_aware(now, "now"))

    def next_start(self, now: datetime) -> datetime | None:
        """Find the start of the first run beginning strictly after ``now``.

        Args:
            now: The instant to evaluate (aware).

        Returns:
            The start of the next run. None if no run starts after ``now``, or
            if ``now`` lies in a run whose end is beyond :data:`MERGE_CAP`
            occurrences (re-ask at ``run_at(now).end``).

        Raises:
            ValueError: If ``now`` is naive.

        """
        return self._timeline.next_start(_aware(now, "now"))

    def runs_between(self, start: datetime, end: datetime) -> Iterator[Run]:
        """Iterate over the runs intersecting ``[start, end)``, in order.

        Runs are merged exactly inside the range; :data:`MERGE_CAP` only
        limits how far the first run is followed back before ``start`` and the
        last one forward past ``end``.

        Args:
            start: Inclusive start of the range (aware).
            end: Exclusive end of the range (aware).

        Returns:
            An iterator of runs; the first may start before ``start`` and the
            last may end after ``end``.

        Raises:
            ValueError: If ``start`` or ``end`` is naive.

        """
        return self._timeline.runs_between(_aware(start, "start"), _aware(end, "end"))

    def __repr__(self) -> str:
        return f"Schedule({self._timeline!r})"


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")
    return value


# --------------------------------------------------------------------------
# Compilation and validation
# --------------------------------------------------------------------------


def _to_utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidDispatchError(f"{name} must be timezone-aware, got {value!r}")
    return value.astimezone(UTC)


def _compile(
    start_time: datetime,
    duration: timedelta | None,
    recurrence: RecurrenceRule | None,
    *,
    active: bool,
) -> "_Timeline":
    start = _to_utc(start_time, "start_time")
    if duration is not None and duration < _ZERO:
        raise InvalidDispatchError(f"duration must not be negative, got {duration}")
    spec = _RuleSpec.compile(start, recurrence or RecurrenceRule())

    if not active or duration == _ZERO:
        return _NeverTimeline()
    if duration is None:
        # As in the client: without a duration, it runs forever once started.
        return _ForeverTimeline(start)
    if spec is None:
        return _ProgressionTimeline(
            first=start, step=duration, count=1, duration=duration, clip=start
        )
    if (step := spec.fixed_step()) is not None:
        return _ProgressionTimeline(
            first=spec.first,
            step=step,
            count=spec.progression_count(step),
            duration=duration,
            clip=start,
        )
    source: _OccurrenceSource = (
        _CountedSource(spec) if spec.count is not None else _JumpingSource(spec)
    )
    return _RuleTimeline(source, duration, start, spec.interval * _UNIT[spec.freq])


def _sorted_unique(values: Iterable[int]) -> tuple[int, ...] | None:
    return tuple(sorted(set(values))) or None


def _check_range(name: str, values: Iterable[int], low: int, high: int) -> None:
    bad = [v for v in values if not low <= v <= high]
    if bad:
        raise InvalidDispatchError(f"{name} must be within {low}..{high}, got {bad}")


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
            until = _to_utc(until, "until")

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
        spec._check_satisfiable()
        return spec

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

    def _check_satisfiable(self) -> None:
        """Reject rules that can never produce an occurrence.

        dateutil rejects some such rules itself but iterates others until the
        year 9999 (seconds of CPU, on every query). Cheap analytic checks catch
        the common cases (February 30th, months or weekdays the interval
        never reaches); a probe for the first occurrence catches the rest.
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
            raise InvalidDispatchError(
                "recurrence rule never occurs: no selected month has the selected days"
            )
        if self.byweekday is not None and not self._weekdays_reachable():
            raise InvalidDispatchError(
                "recurrence rule never occurs: the interval never reaches the "
                "selected weekdays, hours and minutes"
            )
        try:
            pattern = self.build(self.dtstart, count=None, until=None)
            first = next(iter(pattern), None)
        except ValueError as err:  # dateutil raises some errors lazily
            raise InvalidDispatchError(f"invalid recurrence rule: {err}") from err
        if first is None:
            raise InvalidDispatchError("recurrence rule never occurs")

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
        self.floor = spec.first  # no occurrence lies before this

    @abstractmethod
    def iter_from(self, instant: datetime) -> Iterator[datetime]:
        """Yield every occurrence >= ``instant``, ascending."""

    def between(self, low: datetime, high: datetime) -> list[datetime]:
        """List the occurrences in ``[low, high)``, ascending."""
        return list(itertools.takewhile(lambda o: o < high, self.iter_from(low)))


class _JumpingSource(_OccurrenceSource):
    """Occurrences of a rule without ``count``, in time independent of age.

    dateutil always iterates from ``dtstart``. An equivalent rule is built
    whose ``dtstart`` is the start of the recurrence period containing the
    instant asked about: a whole number of ``interval`` periods after the
    original period, so the period grid is unchanged, and with every defaulted
    by-field explicit, so the periods produce the same occurrences. ``until``
    keeps its meaning; without ``count`` no occurrence depends on earlier ones.
    """

    def __init__(self, spec: _RuleSpec) -> None:
        super().__init__(spec)
        self._spec = spec
        start = spec.dtstart
        # Start of the period containing dtstart; dateutil's weeks start on
        # Monday (wkst), months and years on their first day.
        midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
        self._origin = {
            Frequency.MINUTELY: start.replace(second=0, microsecond=0),
            Frequency.HOURLY: start.replace(minute=0, second=0, microsecond=0),
            Frequency.DAILY: midnight,
            Frequency.WEEKLY: midnight - timedelta(days=start.weekday()),
        }.get(spec.freq, midnight)
        self._rules: OrderedDict[datetime, du.rrule] = OrderedDict()
        self._lock = threading.Lock()

    def iter_from(self, instant: datetime) -> Iterator[datetime]:
        """Yield every occurrence >= ``instant``, ascending."""
        until = self._spec.until
        if until is not None and instant > until:
            return
        dtstart = self._jump_start(self._skip_excluded(instant))
        if dtstart is None:
            return
        for occurrence in self._rule(dtstart):
            if occurrence >= instant:
                yield occurrence

    def _rule(self, dtstart: datetime) -> du.rrule:
        with self._lock:
            rule = self._rules.get(dtstart)
            if rule is not None:
                self._rules.move_to_end(dtstart)
                return rule
        rule = self._spec.build(dtstart, count=None, until=self._spec.until)
        with self._lock:
            self._rules[dtstart] = rule
            if len(self._rules) > _RULE_CACHE_SIZE:
                self._rules.popitem(last=False)
        return rule

    def _skip_excluded(self, instant: datetime) -> datetime:
        """Move ``instant`` past the days (and hours) the by-fields exclude.

        For MINUTELY, HOURLY and DAILY rules dateutil steps through excluded
        periods one at a time (minute by minute through excluded hours), e.g.
        for months until the next allowed month. Nothing can occur there, so
        the jump may land after them. The search is bounded; whatever it
        skipped so far is excluded, so stopping early is still exact.
        """
        spec = self._spec
        if spec.freq not in _SKIPPABLE:
            return instant
        hours = spec.byhour if spec.freq != Frequency.DAILY else None
        if (
            hours is None
            and spec.bymonth is None
            and spec.bymonthday is None
            and spec.byweekday is None
        ):
            return instant
        current = instant.astimezone(UTC)
        for _ in range(_SKIP_SEARCH_STEPS):
            if spec.bymonth is not None and current.month not in spec.bymonth:
                later = [m for m in spec.bymonth if m > current.month]
                year = current.year if later else current.year + 1
                if year > MAXYEAR:
                    return current
                month = later[0] if later else spec.bymonth[0]
                current = datetime(year, month, 1, tzinfo=UTC)
                continue
            if self._day_allowed(current):
                later_hours = [h for h in hours or (current.hour,) if h >= current.hour]
                if later_hours:
                    if later_hours[0] > current.hour:
                        current = current.replace(
                            hour=later_hours[0], minute=0, second=0, microsecond=0
                        )
                    return current
            try:
                current = current.replace(
                    hour=0, minute=0, second=0, microsecond=0
                ) + timedelta(days=1)
            except OverflowError:
                return current
        return current

    def _day_allowed(self, instant: datetime) -> bool:
        """Tell whether the day of ``instant`` passes the day-level by-fields."""
        spec = self._spec
        if spec.byweekday is not None and instant.weekday() not in spec.byweekday:
            return False
        if spec.bymonthday is not None:
            length = calendar.monthrange(instant.year, instant.month)[1]
            # dateutil matches negative days counted from the month's end.
            if (
                instant.day not in spec.bymonthday
                and instant.day - length - 1 not in spec.bymonthday
            ):
                return False
        return True

    def _jump_start(self, instant: datetime) -> datetime | None:
        """The ``dtstart`` of a rule producing every occurrence >= ``instant``.

        It is the start of the earliest period (of the original grid) that
        ends after ``instant``, but never earlier than the original
        ``dtstart``: if that period is the first one, the original is used.
        None if that period is beyond what datetime can represent.
        """
        spec = self._spec
        try:
            if spec.freq in _FIXED_LENGTH:
                step = spec.interval * _UNIT[spec.freq]
                index = (instant - self._origin) // step
                if instant >= self._origin + index * step + _UNIT[spec.freq]:
                    index += 1  # instant lies after period `index`, in a gap
                if index <= 0:
                    return spec.dtstart
                period = self._origin + index * step
                if spec.freq == Frequency.WEEKLY and period < instant:
                    # dateutil enumerates a week from dtstart's day on and
                    # then steps from the week's Monday, so starting on the
                    # instant's day skips up to six days of candidates.
                    period = instant.astimezone(UTC).replace(
                        hour=0, minute=0, second=0, microsecond=0
                    )
                return period
            instant = instant.astimezone(UTC)
            if spec.freq == Frequency.MONTHLY:
                origin = spec.dtstart.year * 12 + spec.dtstart.month - 1
                target = instant.year * 12 + instant.month - 1
                index = -((origin - target) // spec.interval)  # ceil division
                if index <= 0:
                    return spec.dtstart
                month = origin + index * spec.interval
                if month // 12 > MAXYEAR:
                    return None
                return datetime(month // 12, month % 12 + 1, 1, tzinfo=UTC)
            # YEARLY
            index = -((spec.dtstart.year - instant.year) // spec.interval)
            if index <= 0:
                return spec.dtstart
            year = spec.dtstart.year + index * spec.interval
            if year > MAXYEAR:
                return None
            return datetime(year, 1, 1, tzinfo=UTC)
        except OverflowError:
            return None


class _CountedSource(_OccurrenceSource):
    """Occurrences of a rule with ``count``, in O(1) memory.

    Whether an occurrence is within the count depends on all earlier ones.
    Without ``count`` the rule yields the same occurrences up to the
    count-th, so those come from a jumping source, and the original rule is
    walked from ``dtstart`` only to confirm that an occurrence is not past the
    count-th. The walk is remembered (one position), so it costs at most
    ``count`` steps over the schedule's lifetime, and only as far as the
    instants asked about.
    """

    def __init__(self, spec: _RuleSpec) -> None:
        super().__init__(spec)
        self._pattern = _JumpingSource(spec)  # ignores count, keeps until
        # dateutil warns when given both count and until (RFC 5545 forbids
        # it, the client's oneof prevents it); until is in the pattern.
        self._walker = iter(spec.build(spec.dtstart, count=spec.count, until=None))
        self._walked: datetime | None = None  # the latest occurrence walked
        self._exhausted = False  # then `_walked` is the count-th occurrence
        self._lock = threading.Lock()

    def _within_count(self, occurrence: datetime) -> bool:
        with self._lock:
            while not self._exhausted and (
                self._walked is None or self._walked < occurrence
            ):
                walked = next(self._walker, None)
                if walked is None:
                    self._exhausted = True
                else:
                    self._walked = walked
            return self._walked is not None and occurrence <= self._walked

    def iter_from(self, instant: datetime) -> Iterator[datetime]:
        """Yield every occurrence >= ``instant``, ascending."""
        for occurrence in self._pattern.iter_from(instant):
            if not self._within_count(occurrence):
                return
            yield occurrence


# --------------------------------------------------------------------------
# Timelines: the runs of a compiled schedule
# --------------------------------------------------------------------------


class _Timeline(ABC):
    """The runs of one compiled schedule."""

    @abstractmethod
    def run_at(self, now: datetime) -> Run | None:
        """See :meth:`Schedule.run_at`."""

    def is_running(self, now: datetime) -> bool:
        """See :meth:`Schedule.is_running`."""
        return self.run_at(now) is not None

    @abstractmethod
    def next_start(self, now: datetime) -> datetime | None:
        """See :meth:`Schedule.next_start`."""

    @abstractmethod
    def runs_between(self, start: datetime, end: datetime) -> Iterator[Run]:
        """See :meth:`Schedule.runs_between`."""


class _NeverTimeline(_Timeline):
    """Inactive, zero duration: never runs."""

    def run_at(self, now: datetime) -> Run | None:
        return None

    def next_start(self, now: datetime) -> datetime | None:
        return None

    def runs_between(self, start: datetime, end: datetime) -> Iterator[Run]:
        return iter(())

    def __repr__(self) -> str:
        return "never"


class _ForeverTimeline(_Timeline):
    """No duration: one run from ``start`` on, never ending."""

    def __init__(self, start: datetime) -> None:
        self._run = Run(start, None)

    def run_at(self, now: datetime) -> Run | None:
        return self._run if self._run.start <= now else None

    def next_start(self, now: datetime) -> datetime | None:
        return self._run.start if now < self._run.start else None

    def runs_between(self, start: datetime, end: datetime) -> Iterator[Run]:
        return iter([self._run] if start < end and self._run.start < end else [])

    def __repr__(self) -> str:
        return f"from {self._run.start.isoformat()} on"


class _ProgressionTimeline(_Timeline):
    """Occurrences ``first + k * step`` for ``0 <= k < count``, in O(1).

    Covers one-shots (count 1) and rules without by-fields whose periods have
    a fixed length. Windows are ``[max(o_k, clip), o_k + duration)``.
    """

    def __init__(
        self,
        *,
        first: datetime,
        step: timedelta,
        count: int | None,
        duration: timedelta,
        clip: datetime,
    ) -> None:
        self._first = first
        self._step = step
        self._count = count
        self._duration = duration
        self._clip = clip
        # The first window is empty if clipping eats it (sub-second duration).
        self._k_min = 0 if max(first, clip) < first + duration else 1
        self._merged: Run | None = None
        if duration >= step and self._has(self._k_min):
            # Every window reaches the next occurrence: one single run.
            end: datetime | None = None
            if count is not None:
                try:
                    end = self._occurrence(count - 1) + duration
                except OverflowError:  # past year 9999, where dateutil stops
                    end = None
            self._merged = Run(self._window_start(self._k_min), end)

    def _has(self, k: int) -> bool:
        return self._count is None or k < self._count

    def _occurrence(self, k: int) -> datetime:
        return self._first + k * self._step

    def _window_start(self, k: int) -> datetime:
        return max(self._first, self._clip) if k == 0 else self._occurrence(k)

    def _window(self, k: int) -> Run:
        return Run(self._window_start(k), self._occurrence(k) + self._duration)

    def run_at(self, now: datetime) -> Run | None:
        if self._merged is not None or not self._has(self._k_min):
            merged = self._merged
            return merged if merged is not None and merged.contains(now) else None
        if now < self._first:
            return None
        k = (now - self._first) // self._step
        if k < self._k_min or not self._has(k):
            return None
        window = self._window(k)
        return window if window.contains(now) else None

    def next_start(self, now: datetime) -> datetime | None:
        if self._merged is not None or not self._has(self._k_min):
            merged = self._merged
            return merged.start if merged is not None and now < merged.start else None
        if now < self._window_start(self._k_min):
            k = self._k_min
        else:
            k = max(self._k_min, (now - self._first) // self._step + 1)
        return self._window_start(k) if self._has(k) else None

    def runs_between(self, start: datetime, end: datetime) -> Iterator[Run]:
        if start >= end:
            return
        if self._merged is not None or not self._has(self._k_min):
            merged = self._merged
            if (
                merged is not None
                and merged.start < end
                and (merged.end is None or merged.end > start)
            ):
                yield merged
            return
        # First k whose window ends after `start`.
        k = max(self._k_min, (start - self._first - self._duration) // self._step + 1)
        while self._has(k):
            window = self._window(k)
            if window.start >= end:
                return
            yield window
            k += 1

    def __repr__(self) -> str:
        return (
            f"progression(first={self._first.isoformat()}, step={self._step}, "
            f"count={self._count}, duration={self._duration})"
        )


@dataclass(frozen=True, slots=True)
class _Chain:
    run: Run
    capped: bool  # the forward merge hit MERGE_CAP: run.end is provisional


class _RuleTimeline(_Timeline):
    """Runs of a general recurrence rule, merging touching windows."""

    def __init__(
        self,
        source: _OccurrenceSource,
        duration: timedelta,
        clip: datetime,
        nominal_period: timedelta,
    ) -> None:
        self._source = source
        self._duration = duration
        self._clip = clip
        # Backward searches start with blocks of about one period and double:
        # cheap for sparse rules, few rebuilt rules for dense ones.
        self._initial_span = min(duration, nominal_period)
        self._chains: list[_Chain] = []
        self._lock = threading.Lock()

    def _window_start(self, occurrence: datetime) -> datetime:
        return max(occurrence, self._clip)

    def is_running(self, now: datetime) -> bool:
        # Only the window containing `now` matters, not the merged chain.
        if now < self._clip:
            return False
        # The first occurrence whose window ends after `now` (an occurrence
        # exactly at `now - duration` has just ended).
        for occurrence in self._source.iter_from(now - self._duration):
            if occurrence + self._duration > now:
                return occurrence <= now
        return False

    def run_at(self, now: datetime) -> Run | None:
        chain = self._chain_at(now)
        return None if chain is None else chain.run

    def _chain_at(self, now: datetime) -> _Chain | None:
        if now < self._clip:
            return None
        with self._lock:
            for chain in self._chains:
                if chain.run.contains(now):
                    return chain
        occurrences = self._source.iter_from(now - self._duration)
        for first in occurrences:
            if first + self._duration > now:
                break
        else:
            return None
        if first > now:
            return None
        end, capped, _ = self._extend_forward(first, occurrences, uncapped_before=first)
        start = self._extend_backward(first)
        chain = _Chain(Run(self._window_start(start), end), capped)
        with self._lock:
            self._chains.insert(0, chain)
            del self._chains[_CHAIN_CACHE_SIZE:]
        return chain

    def _extend_forward(
        self,
        occurrence: datetime,
        following: Iterator[datetime],
        *,
        uncapped_before: datetime,
    ) -> tuple[datetime, bool, datetime | None]:
        """Merge the windows following ``occurrence``'s while they touch.

        Args:
            occurrence: The occurrence whose window starts the chain.
            following: The occurrences after it, ascending.
            uncapped_before: Occurrences before this do not count towards
                :data:`MERGE_CAP`.

        Returns:
            The chain's end, whether the cap was hit, and the next occurrence
            (which starts the next chain) if it was read.

        """
        end = occurrence + self._duration
        counted = 0
        for nxt in following:
            if nxt > end:
                return end, False, nxt
            end = nxt + self._duration
            if nxt >= uncapped_before:
                counted += 1
                if counted >= MERGE_CAP:
                    return end, True, None
        return end, False, None

    def _extend_backward(self, occurrence: datetime) -> datetime:
        """Find the earliest occurrence chained to ``occurrence`` (capped).

        Predecessors are read in blocks going backwards from ``occurrence``;
        the blocks double in length so a long chain needs few rebuilt rules.
        Windows have one length, so only the immediate predecessor can touch.
        """
        chain_start = high = occurrence
        span = self._initial_span
        counted = 0
        floor = self._source.floor
        while high > floor:
            low = floor if span >= high - floor else high - span
            block = self._source.between(low, high)
            if not block and low <= chain_start - self._duration:
                return chain_start  # nothing close enough to touch it
            for previous in reversed(block):
                if previous + self._duration < chain_start:
                    return chain_start
                chain_start = previous
                counted += 1
                if counted >= MERGE_CAP:
                    return chain_start
            high = low
            span *= 2
        return chain_start

    def next_start(self, now: datetime) -> datetime | None:
        if now < self._clip:
            for occurrence in self._source.iter_from(self._source.floor):
                if self._window_start(occurrence) < occurrence + self._duration:
                    return self._window_start(occurrence)
            return None
        chain = self._chain_at(now)
        if chain is not None and chain.capped:
            return None
        after = now if chain is None or chain.run.end is None else chain.run.end
        for occurrence in self._source.iter_from(after):
            if occurrence > after:
                return occurrence
        return None

    def runs_between(self, start: datetime, end: datetime) -> Iterator[Run]:
        if start >= end or end <= self._clip:
            return
        occurrences = self._source.iter_from(start - self._duration)
        # The first window ending after `start` (skipping an empty clipped one).
        for occurrence in occurrences:
            window_end = occurrence + self._duration
            if window_end > start and self._window_start(occurrence) < window_end:
                break
        else:
            return
        chain_start = occurrence
        if occurrence <= start:
            # Earlier windows end by `start` but may touch this one.
            chain_start = self._extend_backward(occurrence)
        while self._window_start(occurrence) < end:
            chain_end, capped, nxt = self._extend_forward(
                occurrence, occurrences, uncapped_before=end
            )
            yield Run(self._window_start(chain_start), chain_end)
            if capped or nxt is None:
                return
            # `nxt` did not touch the chain, so it starts the next one.
            occurrence = chain_start = nxt

    def __repr__(self) -> str:
        return f"rule({type(self._source).__name__}, duration={self._duration})"
