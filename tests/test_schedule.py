"""Tests for the pure scheduling model against a brute-force oracle.

The oracle expands the client's own ``RecurrenceRule._as_rrule(start_time)``
from ``start_time`` with plain iteration, builds the windows, merges them and
answers every question by linear search. It only knows occurrences before a
small horizon, so runs touching the horizon are compared as "at least".
"""

from __future__ import annotations

import bisect
import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
import itertools
from typing import Any
import warnings

from dateutil import rrule as du_rrule
from frequenz.client.dispatch.recurrence import (
    EndCriteria,
    Frequency,
    RecurrenceRule,
    Weekday,
)
from frequenz.client.dispatch.types import Dispatch, DispatchId, TargetIds
from hypothesis import HealthCheck, given, settings, strategies as st
import pytest

from custom_components.frequenz_dispatch.schedule import (
    MERGE_CAP,
    InvalidDispatchError,
    Run,
    Schedule,
)

# The client's own rule, used as the oracle, warns when given count and until.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Using both 'count' and 'until':DeprecationWarning"
)


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """Override the conftest fixture: the pure model needs no Home Assistant."""


US = timedelta(microseconds=1)
T0 = datetime(2025, 3, 10, 8, 0, tzinfo=UTC)  # a Monday
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

UNIT = {
    Frequency.UNSPECIFIED: HOUR,
    Frequency.MINUTELY: MINUTE,
    Frequency.HOURLY: HOUR,
    Frequency.DAILY: DAY,
    Frequency.WEEKLY: timedelta(weeks=1),
    Frequency.MONTHLY: timedelta(days=30),
    Frequency.YEARLY: timedelta(days=365),
}
# How far the oracle looks ahead; long enough for the by-filters to matter.
SPAN = {
    Frequency.UNSPECIFIED: timedelta(days=2),
    Frequency.MINUTELY: timedelta(days=8),
    Frequency.HOURLY: timedelta(days=60),
    Frequency.DAILY: timedelta(days=2 * 366),
    Frequency.WEEKLY: timedelta(days=8 * 366),
    Frequency.MONTHLY: timedelta(days=30 * 366),
    Frequency.YEARLY: timedelta(days=60 * 366),
}
# Far below MERGE_CAP, so every chain inside the horizon is merged exactly.
ORACLE_MAX_OCCURRENCES = 600


def make_dispatch(
    start_time: datetime,
    duration: timedelta | None,
    recurrence: RecurrenceRule | None = None,
    *,
    active: bool = True,
) -> Dispatch:
    return Dispatch(
        id=DispatchId(1),
        type="test",
        start_time=start_time,
        duration=duration,
        target=TargetIds(1),
        active=active,
        dry_run=False,
        payload={},
        recurrence=recurrence or RecurrenceRule(),
        create_time=start_time,
        update_time=start_time,
    )


def rule(frequency: Frequency, interval: int = 1, **kwargs: Any) -> RecurrenceRule:
    return RecurrenceRule(frequency=frequency, interval=interval, **kwargs)


# --------------------------------------------------------------------------
# Oracle
# --------------------------------------------------------------------------


@dataclass
class OracleRun:
    start: datetime
    end: datetime | None
    open: bool  # touches the horizon: the true end is >= `end`


@dataclass
class Oracle:
    runs: list[OracleRun]
    windows: list[tuple[datetime, datetime]]
    horizon: datetime
    complete: bool  # every occurrence is known

    def run_at(self, now: datetime) -> OracleRun | None:
        for run in self.runs:
            if run.start <= now and (run.end is None or now < run.end):
                return run
        return None

    def next_start(self, now: datetime) -> datetime | None:
        return next((run.start for run in self.runs if run.start > now), None)


def build_oracle(dispatch: Dispatch, span: timedelta) -> Oracle:
    start = dispatch.start_time
    horizon = start + span
    duration = dispatch.duration
    if not dispatch.active or duration == timedelta(0):
        return Oracle([], [], horizon, complete=True)
    if duration is None:
        return Oracle([OracleRun(start, None, open=False)], [], horizon, complete=True)

    occurrences: list[datetime] = []
    complete = True
    if dispatch.recurrence.frequency == Frequency.UNSPECIFIED:
        occurrences = [start]
    else:
        with warnings.catch_warnings():  # count together with until
            warnings.simplefilter("ignore", DeprecationWarning)
            expanded = dispatch.recurrence._as_rrule(start)
        for occurrence in expanded:
            if occurrence >= horizon or len(occurrences) >= ORACLE_MAX_OCCURRENCES:
                horizon = min(horizon, occurrence)
                complete = False
                break
            occurrences.append(occurrence)

    windows = [(max(o, start), o + duration) for o in occurrences]
    windows = [(s, e) for s, e in windows if s < e]
    runs: list[OracleRun] = []
    for window_start, window_end in windows:
        last = runs[-1] if runs else None
        if last is not None and last.end is not None and window_start <= last.end:
            last.end = max(last.end, window_end)
        else:
            runs.append(OracleRun(window_start, window_end, open=False))
    if not complete and runs and runs[-1].end is not None:
        # An occurrence at or after the horizon may still touch the last run.
        runs[-1].open = runs[-1].end >= horizon
    return Oracle(runs, windows, horizon, complete)


def assert_same_run(got: Run | None, expected: OracleRun | None, now: Any) -> None:
    if expected is None:
        assert got is None, now
        return
    assert got is not None, now
    assert got.start == expected.start, now
    if expected.open:
        assert expected.end is not None
        assert got.end is None or got.end >= expected.end, now
    else:
        assert got.end == expected.end, now


def check_against_oracle(
    schedule: Schedule,
    oracle: Oracle,
    instants: list[datetime],
    ranges: list[tuple[datetime, datetime]],
) -> None:
    for now in instants:
        if now >= oracle.horizon:
            continue
        expected = oracle.run_at(now)
        assert_same_run(schedule.run_at(now), expected, now)
        assert schedule.is_running(now) == (expected is not None), now

        got_next = schedule.next_start(now)
        if expected is not None and expected.open:
            assert got_next is None or got_next >= oracle.horizon, now
        elif (want_next := oracle.next_start(now)) is not None:
            assert got_next == want_next, now
        elif oracle.complete:
            assert got_next is None, now
        else:
            assert got_next is None or got_next >= oracle.horizon, now

    for low, high in ranges:
        if not low < high <= oracle.horizon:
            continue
        got = list(schedule.runs_between(low, high))
        want = [
            run
            for run in oracle.runs
            if run.start < high and (run.end is None or run.end > low)
        ]
        assert len(got) == len(want), (low, high, got, want)
        for got_run, want_run in zip(got, want, strict=True):
            assert_same_run(got_run, want_run, (low, high))


def interesting_instants(oracle: Oracle, start: datetime) -> list[datetime]:
    """Window edges (and their neighbours): where off-by-one bugs live."""
    edges = {start}
    for window_start, window_end in oracle.windows[:40] + oracle.windows[-10:]:
        edges.update((window_start, window_end))
    for run in oracle.runs[:10]:
        edges.add(run.start)
        if run.end is not None:
            edges.add(run.end)
    return sorted({edge + delta for edge in edges for delta in (-US, 0 * US, US)})


# --------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------

WEEKDAYS = [day for day in Weekday if day != Weekday.UNSPECIFIED]


@st.composite
def start_times(draw: st.DrawFn) -> datetime:
    day = draw(
        st.datetimes(
            min_value=datetime(2020, 1, 1),  # noqa: DTZ001 - made aware below
            max_value=datetime(2030, 12, 31),  # noqa: DTZ001
        )
    )
    second = draw(st.sampled_from([0, 0, day.second]))
    microsecond = draw(st.sampled_from([0, 0, 0, 1, 500_000, 999_999]))
    return day.replace(second=second, microsecond=microsecond, tzinfo=UTC)


@st.composite
def dispatches(draw: st.DrawFn) -> Dispatch:
    start = draw(start_times())
    frequency = draw(st.sampled_from(list(Frequency)))
    interval = draw(st.integers(1, 5))
    step = interval * UNIT[frequency]
    # Mostly finite, non-zero durations around the step: short ones leave
    # gaps, step-long ones touch (back-to-back), longer ones overlap.
    kind = draw(st.integers(0, 19))
    duration: timedelta | None
    if kind == 0:
        duration = None
    elif kind == 1:
        duration = timedelta(0)
    elif kind == 2:
        duration = timedelta(microseconds=draw(st.integers(1, 999_999)))
    elif kind < 12:
        duration = step * draw(st.sampled_from([0.5, 1, 1, 1, 1.5, 2, 3]))
    else:
        seconds = draw(st.integers(1, 3 * int(step.total_seconds())))
        duration = timedelta(seconds=seconds)

    end_kind = draw(st.integers(0, 6))
    until = start + timedelta(
        seconds=draw(
            st.integers(
                -int(SPAN[frequency].total_seconds()) // 10,
                int(SPAN[frequency].total_seconds()),
            )
        )
    )
    count = draw(st.integers(0, 40))
    end_criteria = [
        None,
        None,
        EndCriteria(count=count),
        EndCriteria(count=count),
        EndCriteria(until=until),
        EndCriteria(until=until),
        EndCriteria(count=count, until=until),  # the client's oneof forbids it
    ][end_kind]

    def by_list(values: st.SearchStrategy[Any], size: int, own: Any) -> Any:
        """A by-field list, often containing the start's own value.

        Filters far from the start would leave the small horizon empty.
        """
        chosen = draw(
            st.one_of(st.just([]), st.lists(values, max_size=size, unique=True))
        )
        if chosen and own not in chosen and draw(st.integers(0, 2)):
            chosen.append(own)
        return chosen

    last_day = calendar.monthrange(start.year, start.month)[1]
    recurrence = RecurrenceRule(
        frequency=frequency,
        interval=interval if frequency != Frequency.UNSPECIFIED else 0,
        end_criteria=end_criteria,
        byminutes=by_list(st.integers(0, 59), 4, start.minute),
        byhours=by_list(st.integers(0, 23), 4, start.hour),
        byweekdays=by_list(st.sampled_from(WEEKDAYS), 3, Weekday(start.weekday() + 1)),
        bymonthdays=by_list(
            st.integers(-31, 31).filter(lambda day: day != 0),
            3,
            draw(st.sampled_from([start.day, start.day - last_day - 1])),
        ),
        bymonths=by_list(st.integers(1, 12), 3, start.month),
    )
    active = draw(st.sampled_from([True, True, True, True, False]))
    return make_dispatch(start, duration, recurrence, active=active)


def never_occurs_brute_force(dispatch: Dispatch) -> bool:
    """Whether no day in 40 years passes the rule's day-level filters.

    Independent of the model: dateutil's defaults per RFC 5545, then every
    day of the period grid is tested. Used to double-check rejections.
    """
    rec = dispatch.recurrence
    start = dispatch.start_time.astimezone(UTC)
    months = set(rec.bymonths)
    monthdays = set(rec.bymonthdays)
    weekdays = {day.value - 1 for day in rec.byweekdays}
    if not monthdays and not weekdays:
        if rec.frequency == Frequency.YEARLY:
            months = months or {start.month}
            monthdays = {start.day}
        elif rec.frequency == Frequency.MONTHLY:
            monthdays = {start.day}
        elif rec.frequency == Frequency.WEEKLY:
            weekdays = {start.weekday()}
    first_monday = start.date() - timedelta(days=start.weekday())
    day = start.date()
    for _ in range(40 * 366):
        length = calendar.monthrange(day.year, day.month)[1]
        on_grid = {
            Frequency.DAILY: (day - start.date()).days % rec.interval == 0,
            Frequency.WEEKLY: (day - first_monday).days // 7 % rec.interval == 0,
            Frequency.MONTHLY: ((day.year - start.year) * 12 + day.month - start.month)
            % rec.interval
            == 0,
            Frequency.YEARLY: (day.year - start.year) % rec.interval == 0,
        }.get(rec.frequency, True)
        if (
            on_grid
            and (not months or day.month in months)
            and (not weekdays or day.weekday() in weekdays)
            and (
                not monthdays
                or day.day in monthdays
                or day.day - length - 1 in monthdays
            )
        ):
            return False
        day += DAY
    return True


# --------------------------------------------------------------------------
# Property tests
# --------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY_SETTINGS
@given(
    dispatch=dispatches(),
    fractions=st.lists(st.floats(-0.1, 1.0), min_size=1, max_size=12),
    range_fractions=st.lists(
        st.tuples(st.floats(-0.1, 1.0), st.floats(0.0, 0.5)), max_size=4
    ),
)
def test_matches_brute_force_oracle(
    dispatch: Dispatch,
    fractions: list[float],
    range_fractions: list[tuple[float, float]],
) -> None:
    """Every rule field, duration kind and end criterion, at random instants."""
    try:
        schedule = Schedule(dispatch)
    except InvalidDispatchError:
        # Only rules that truly never occur may be rejected (the fields
        # drawn are all in range): either no day passes the day filters, or
        # dateutil itself refuses the rule.
        if never_occurs_brute_force(dispatch):
            return
        with pytest.raises(ValueError):  # noqa: PT011 - dateutil's own errors
            next(iter(dispatch.recurrence._as_rrule(dispatch.start_time)))
        return

    frequency = dispatch.recurrence.frequency
    oracle = build_oracle(dispatch, SPAN[frequency])
    start = dispatch.start_time
    length = oracle.horizon - start
    instants = [start + length * f for f in fractions]
    instants += interesting_instants(oracle, start)
    ranges = [
        (start + length * f, start + length * (f + g)) for f, g in range_fractions
    ]
    ranges += [(run.start, run.end) for run in oracle.runs[:5] if run.end is not None]
    ranges += [(run.start - US, run.start + US) for run in oracle.runs[:5]]
    ranges.append((start - DAY, oracle.horizon))
    check_against_oracle(schedule, oracle, instants, ranges)

    # The client is the reference for "is it running" (cheap: small horizon).
    for now in instants[:4]:
        if now < oracle.horizon:
            assert schedule.is_running(now) == dispatch.started_at(now), now


@PROPERTY_SETTINGS
@given(
    start=start_times(),
    frequency=st.sampled_from(
        [Frequency.MINUTELY, Frequency.HOURLY, Frequency.DAILY, Frequency.WEEKLY]
    ),
    interval=st.integers(1, 5),
    multiple=st.sampled_from([0.25, 0.5, 1.0, 1.0, 1.5, 2.0, 3.0]),
    count=st.one_of(st.none(), st.integers(0, 30)),
    fractions=st.lists(st.floats(-0.1, 1.0), min_size=1, max_size=8),
)
def test_progressions_match_oracle(
    start: datetime,
    frequency: Frequency,
    interval: int,
    multiple: float,
    count: int | None,
    fractions: list[float],
) -> None:
    """Rules without by-fields (closed form), back-to-back and overlapping."""
    recurrence = rule(
        frequency,
        interval,
        end_criteria=None if count is None else EndCriteria(count=count),
    )
    dispatch = make_dispatch(start, interval * UNIT[frequency] * multiple, recurrence)
    schedule = Schedule(dispatch)
    oracle = build_oracle(dispatch, SPAN[frequency])
    length = oracle.horizon - start
    instants = [start + length * f for f in fractions]
    instants += interesting_instants(oracle, start)
    ranges = [(start - DAY, oracle.horizon), (start + length / 3, start + length / 2)]
    check_against_oracle(schedule, oracle, instants, ranges)


@PROPERTY_SETTINGS
@given(
    start=start_times(),
    frequency=st.sampled_from(
        [Frequency.MINUTELY, Frequency.HOURLY, Frequency.DAILY, Frequency.WEEKLY]
    ),
    interval=st.integers(1, 3),
    multiple=st.sampled_from([1.0, 1.0, 1.5, 2.0, 5.0]),
    block=st.integers(1, 4),
    weekdays=st.lists(st.sampled_from(WEEKDAYS), min_size=1, max_size=4, unique=True),
    count=st.one_of(st.none(), st.integers(0, 300)),
    fractions=st.lists(st.floats(-0.1, 1.0), min_size=1, max_size=8),
)
def test_merged_blocks_match_oracle(
    start: datetime,
    frequency: Frequency,
    interval: int,
    multiple: float,
    block: int,
    weekdays: list[Weekday],
    count: int | None,
    fractions: list[float],
) -> None:
    """General rules whose windows touch or overlap inside hour/day blocks."""
    hours = [(start.hour + h) % 24 for h in range(block)]
    by_fields_per_frequency: dict[Frequency, dict[str, Any]] = {
        Frequency.MINUTELY: {"byhours": hours},
        Frequency.HOURLY: {"byhours": hours, "byweekdays": weekdays},
        Frequency.DAILY: {"byweekdays": weekdays, "byhours": hours[:2]},
        Frequency.WEEKLY: {"byweekdays": weekdays},
    }
    by_fields = by_fields_per_frequency[frequency]
    recurrence = rule(
        frequency,
        interval,
        end_criteria=None if count is None else EndCriteria(count=count),
        **by_fields,
    )
    duration = interval * UNIT[frequency] * multiple
    dispatch = make_dispatch(start, duration, recurrence)
    try:
        schedule = Schedule(dispatch)
    except InvalidDispatchError:
        # Only HOURLY with an interval that never reaches the hours.
        assert frequency == Frequency.HOURLY
        with pytest.raises(ValueError, match="empty set"):
            recurrence._as_rrule(start)
        return
    oracle = build_oracle(dispatch, SPAN[frequency])
    length = oracle.horizon - start
    instants = [start + length * f for f in fractions]
    instants += interesting_instants(oracle, start)
    ranges = [(start - DAY, oracle.horizon), (start + length / 3, start + length / 2)]
    ranges += [(run.start, run.end) for run in oracle.runs[:5] if run.end is not None]
    check_against_oracle(schedule, oracle, instants, ranges)


# --------------------------------------------------------------------------
# Edge cases
# --------------------------------------------------------------------------


def test_back_to_back_windows_form_one_continuous_run() -> None:
    until = T0 + timedelta(hours=5)
    schedule = Schedule(
        make_dispatch(
            T0, HOUR, rule(Frequency.HOURLY, end_criteria=EndCriteria(until=until))
        )
    )
    expected = Run(T0, until + HOUR)  # occurrences 08:00 .. 13:00
    for minutes in range(0, 6 * 60, 7):
        assert schedule.run_at(T0 + timedelta(minutes=minutes)) == expected
    # Exactly at a window boundary: still the same run, no stop/start.
    assert schedule.run_at(T0 + 3 * HOUR) == expected
    assert schedule.run_at(T0 - US) is None
    assert schedule.run_at(until + HOUR) is None
    assert schedule.next_start(T0 + 2 * HOUR) is None
    assert schedule.next_start(T0 - HOUR) == T0
    assert list(schedule.runs_between(T0 - DAY, T0 + DAY)) == [expected]


def test_back_to_back_forever_is_open_ended() -> None:
    schedule = Schedule(make_dispatch(T0, HOUR, rule(Frequency.HOURLY)))
    assert schedule.run_at(T0 + timedelta(days=1000)) == Run(T0, None)
    assert schedule.next_start(T0 + DAY) is None
    assert schedule.next_start(T0 - DAY) == T0


def test_back_to_back_with_by_fields_merges_daily_blocks() -> None:
    # 08:00..11:00 every weekday, one hour each: one run 08:00-12:00 a day.
    recurrence = rule(
        Frequency.HOURLY,
        byhours=[8, 9, 10, 11],
        byweekdays=[Weekday.MONDAY, Weekday.TUESDAY],
    )
    schedule = Schedule(make_dispatch(T0, HOUR, recurrence))
    monday = Run(T0, T0 + 4 * HOUR)
    tuesday = Run(T0 + DAY, T0 + DAY + 4 * HOUR)
    next_monday = Run(T0 + 7 * DAY, T0 + 7 * DAY + 4 * HOUR)
    assert schedule.run_at(T0 + 2 * HOUR) == monday
    assert schedule.run_at(T0 + 4 * HOUR) is None
    assert schedule.next_start(T0 + HOUR) == tuesday.start
    assert schedule.next_start(tuesday.start) == next_monday.start
    assert list(schedule.runs_between(T0, T0 + 8 * DAY)) == [
        monday,
        tuesday,
        next_monday,
    ]


def test_overlapping_windows_merge() -> None:
    recurrence = rule(Frequency.HOURLY, end_criteria=EndCriteria(count=3))
    schedule = Schedule(make_dispatch(T0, timedelta(minutes=90), recurrence))
    end = T0 + 2 * HOUR + timedelta(minutes=90)
    expected = Run(T0, end)
    assert schedule.run_at(T0 + timedelta(minutes=100)) == expected
    assert schedule.run_at(end - US) == expected
    assert schedule.run_at(end) is None
    assert list(schedule.runs_between(T0, T0 + DAY)) == [expected]


def test_separate_windows() -> None:
    recurrence = rule(Frequency.DAILY, 2, end_criteria=EndCriteria(count=3))
    schedule = Schedule(make_dispatch(T0, HOUR, recurrence))
    runs = [Run(T0 + k * 2 * DAY, T0 + k * 2 * DAY + HOUR) for k in range(3)]
    assert list(schedule.runs_between(T0 - DAY, T0 + 30 * DAY)) == runs
    assert schedule.run_at(T0 + HOUR) is None
    assert schedule.run_at(T0 + HOUR - US) == runs[0]
    assert schedule.next_start(T0) == runs[1].start
    assert schedule.next_start(runs[2].start) is None


def test_one_shot() -> None:
    schedule = Schedule(make_dispatch(T0, HOUR))
    assert schedule.run_at(T0) == Run(T0, T0 + HOUR)
    assert schedule.run_at(T0 + HOUR) is None
    assert schedule.run_at(T0 - US) is None
    assert schedule.next_start(T0 - US) == T0
    assert schedule.next_start(T0) is None
    # by-fields and end criteria are irrelevant without a frequency.
    schedule = Schedule(
        make_dispatch(
            T0, HOUR, RecurrenceRule(byhours=[3], end_criteria=EndCriteria(count=0))
        )
    )
    assert schedule.is_running(T0 + HOUR / 2)


def test_open_ended_ignores_recurrence() -> None:
    recurrence = rule(Frequency.DAILY, end_criteria=EndCriteria(count=1))
    schedule = Schedule(make_dispatch(T0, None, recurrence))
    assert schedule.run_at(T0 + timedelta(days=400)) == Run(T0, None)
    assert schedule.run_at(T0 - US) is None
    assert schedule.next_start(T0 - US) == T0
    assert schedule.next_start(T0) is None
    assert list(schedule.runs_between(T0 + DAY, T0 + 2 * DAY)) == [Run(T0, None)]
    assert list(schedule.runs_between(T0 - DAY, T0)) == []


@pytest.mark.parametrize(
    "dispatch",
    [
        make_dispatch(T0, timedelta(0), rule(Frequency.MINUTELY)),
        make_dispatch(T0, timedelta(0)),
        make_dispatch(T0, HOUR, rule(Frequency.MINUTELY), active=False),
        make_dispatch(T0, None, active=False),
        make_dispatch(
            T0, HOUR, rule(Frequency.DAILY, end_criteria=EndCriteria(count=0))
        ),
        make_dispatch(
            T0, HOUR, rule(Frequency.DAILY, end_criteria=EndCriteria(until=T0 - US))
        ),
    ],
    ids=[
        "zero-duration",
        "zero-one-shot",
        "inactive",
        "inactive-open",
        "count-0",
        "until-before",
    ],
)
def test_never_runs(dispatch: Dispatch) -> None:
    schedule = Schedule(dispatch)
    for now in (T0 - DAY, T0, T0 + MINUTE / 2, T0 + DAY):
        assert schedule.run_at(now) is None
        assert not schedule.is_running(now)
        assert schedule.next_start(now) is None
    assert list(schedule.runs_between(T0 - DAY, T0 + DAY)) == []


@pytest.mark.parametrize(
    ("start", "duration", "recurrence", "match"),
    [
        (T0.replace(tzinfo=None), HOUR, None, "timezone-aware"),
        (T0, -US, None, "negative"),
        (T0, HOUR, rule(Frequency.DAILY, 0), "interval"),
        (T0, HOUR, rule(Frequency.DAILY, -1), "interval"),
        (
            T0,
            HOUR,
            rule(Frequency.DAILY, byweekdays=[Weekday.UNSPECIFIED]),
            "UNSPECIFIED",
        ),
        (T0, HOUR, rule(Frequency.DAILY, byminutes=[60]), "byminutes"),
        (T0, HOUR, rule(Frequency.DAILY, byhours=[24]), "byhours"),
        (T0, HOUR, rule(Frequency.DAILY, bymonthdays=[0]), "bymonthdays"),
        (T0, HOUR, rule(Frequency.DAILY, bymonthdays=[32]), "bymonthdays"),
        (T0, HOUR, rule(Frequency.DAILY, bymonthdays=[-32]), "bymonthdays"),
        (T0, HOUR, rule(Frequency.DAILY, bymonths=[13]), "bymonths"),
        (T0, HOUR, rule(Frequency.DAILY, bymonths=[0]), "bymonths"),
        (T0, HOUR, rule(Frequency.DAILY, end_criteria=EndCriteria(count=-1)), "count"),
        (
            T0,
            HOUR,
            rule(Frequency.DAILY, end_criteria=EndCriteria(until=datetime(2026, 1, 1))),  # noqa: DTZ001
            "until must be timezone-aware",
        ),
        # Malformed even where it would not matter.
        (T0, None, rule(Frequency.DAILY, 0), "interval"),
        # dateutil rejects these itself.
        (T0, HOUR, rule(Frequency.HOURLY, 2, byhours=[9]), "invalid recurrence"),
        (T0, HOUR, rule(Frequency.MINUTELY, 1440, byhours=[9]), "invalid recurrence"),
        # These can never occur (dateutil would iterate until the year 9999).
        (T0, HOUR, rule(Frequency.YEARLY, bymonths=[2], bymonthdays=[30]), "never"),
        (T0, HOUR, rule(Frequency.MONTHLY, 2, bymonths=[4]), "never"),
        (T0, HOUR, rule(Frequency.DAILY, 7, byweekdays=[Weekday.TUESDAY]), "never"),
        (T0, HOUR, rule(Frequency.HOURLY, 168, byweekdays=[Weekday.SUNDAY]), "never"),
        (
            T0,
            HOUR,
            rule(Frequency.MINUTELY, 10080, byweekdays=[Weekday.FRIDAY]),
            "never",
        ),
    ],
)
def test_malformed_raises(
    start: datetime,
    duration: timedelta | None,
    recurrence: RecurrenceRule | None,
    match: str,
) -> None:
    with pytest.raises(InvalidDispatchError, match=match):
        Schedule(make_dispatch(start, duration, recurrence))


def test_end_criteria_until_is_inclusive() -> None:
    until = T0 + 2 * DAY  # exactly the third occurrence: included
    recurrence = rule(Frequency.DAILY, end_criteria=EndCriteria(until=until))
    schedule = Schedule(make_dispatch(T0, HOUR, recurrence))
    assert [run.start for run in schedule.runs_between(T0, T0 + 10 * DAY)] == [
        T0,
        T0 + DAY,
        T0 + 2 * DAY,
    ]
    assert schedule.next_start(T0 + 2 * DAY) is None
    # A run that started before `until` still lasts its full duration.
    assert schedule.run_at(until + HOUR / 2) == Run(until, until + HOUR)


def test_end_criteria_count_with_by_fields() -> None:
    recurrence = rule(
        Frequency.WEEKLY,
        byweekdays=[Weekday.MONDAY, Weekday.WEDNESDAY],
        end_criteria=EndCriteria(count=3),
    )
    schedule = Schedule(make_dispatch(T0, HOUR, recurrence))
    assert [run.start for run in schedule.runs_between(T0, T0 + 30 * DAY)] == [
        T0,
        T0 + 2 * DAY,
        T0 + 7 * DAY,
    ]
    assert schedule.next_start(T0 + 7 * DAY) is None
    assert schedule.run_at(T0 + 9 * DAY) is None


def test_count_and_until_together_stop_at_the_first() -> None:
    both = EndCriteria(count=5, until=T0 + 2 * HOUR)
    schedule = Schedule(
        make_dispatch(
            T0, MINUTE, rule(Frequency.HOURLY, byminutes=[0], end_criteria=both)
        )
    )
    assert [r.start for r in schedule.runs_between(T0, T0 + DAY)] == [
        T0,
        T0 + HOUR,
        T0 + 2 * HOUR,
    ]


@pytest.mark.parametrize("seconds", [30, 60])
def test_year_old_minutely(seconds: int) -> None:
    now = datetime(2025, 6, 1, 12, 0, 10, 123, tzinfo=UTC)
    start = now - timedelta(days=365, seconds=5)  # occurrences at second 5
    duration = timedelta(seconds=seconds)
    dispatch = make_dispatch(start, duration, rule(Frequency.MINUTELY))
    schedule = Schedule(dispatch)
    minute = now.replace(second=5, microsecond=0)
    for offset in range(-70, 70):
        instant = now + timedelta(seconds=offset)
        if seconds == 60:
            assert schedule.run_at(instant) == Run(start, None)
            assert schedule.next_start(instant) is None
            continue
        latest = minute + (instant - minute) // MINUTE * MINUTE
        running = instant < latest + duration
        assert schedule.is_running(instant) == running
        assert schedule.run_at(instant) == (
            Run(latest, latest + duration) if running else None
        )
        assert schedule.next_start(instant) == latest + MINUTE
    # The client agrees (each of its calls walks the whole year: keep few).
    assert schedule.is_running(now) == dispatch.started_at(now)
    if seconds == 30:
        later = now + timedelta(seconds=30)
        assert schedule.is_running(later) == dispatch.started_at(later)
        assert schedule.next_start(now) == dispatch.next_run_after(now)


@pytest.mark.parametrize(
    "recurrence",
    [
        rule(Frequency.MINUTELY, 3, byhours=[9, 10, 17]),
        rule(Frequency.MINUTELY, byminutes=[7, 37], byweekdays=[Weekday.SUNDAY]),
        rule(Frequency.HOURLY, 5, byweekdays=[Weekday.MONDAY, Weekday.THURSDAY]),
        rule(Frequency.DAILY, 3, byhours=[6, 18], bymonthdays=[1, 15, -1]),
        rule(Frequency.WEEKLY, 2, byweekdays=[Weekday.TUESDAY, Weekday.SATURDAY]),
        rule(Frequency.MONTHLY, 1),  # the 31st: skips short months
        rule(Frequency.MONTHLY, 5, bymonthdays=[-1], byhours=[23]),
        rule(Frequency.YEARLY, 1),  # February 29th: leap years only
        rule(Frequency.YEARLY, 3, bymonths=[2, 8], byweekdays=[Weekday.FRIDAY]),
    ],
)
def test_old_dispatch_with_by_fields(recurrence: RecurrenceRule) -> None:
    """Jumping to the period containing `now` changes no occurrence."""
    now = datetime(2025, 6, 1, 17, 0, 0, tzinfo=UTC)
    start = datetime(2016, 2, 29, 10, 7, 42, tzinfo=UTC)
    lookahead = timedelta(days=6 * 366)
    if recurrence.frequency == Frequency.MONTHLY and not recurrence.bymonthdays:
        start = start.replace(month=1, day=31)
    if recurrence.frequency == Frequency.YEARLY:
        start = start.replace(year=1904)
        lookahead = timedelta(days=60 * 366)
    if recurrence.frequency in (Frequency.MINUTELY, Frequency.HOURLY):
        start = datetime(2025, 1, 20, 10, 7, 42, tzinfo=UTC)  # keep brute force fast
        lookahead = timedelta(days=20)
    duration = timedelta(seconds=90)  # shorter than any gap: no merging
    dispatch = make_dispatch(start, duration, recurrence)
    schedule = Schedule(dispatch)

    expanded: list[datetime] = []  # brute force: plain iteration from start
    for occurrence in recurrence._as_rrule(start):
        expanded.append(occurrence)
        if occurrence > now + lookahead:
            break
    middle = bisect.bisect_right(expanded, now)
    assert 10 <= middle <= len(expanded) - 10
    sample = expanded[middle - 10 : middle + 10]
    for occurrence in sample:
        for instant in (occurrence - US, occurrence, occurrence + duration / 2):
            index = bisect.bisect_right(expanded, instant)
            latest = expanded[index - 1]
            running = instant < latest + duration
            assert schedule.is_running(instant) == running
            assert schedule.run_at(instant) == (
                Run(latest, latest + duration) if running else None
            )
            assert schedule.next_start(instant) == expanded[index]
    for instant in (sample[9] + duration / 2, sample[10] - US):
        assert schedule.is_running(instant) == dispatch.started_at(instant)


def test_sub_second_start_is_clipped_like_the_client() -> None:
    # dateutil drops microseconds: the first occurrence is 08:00:00, before
    # the start; the window starts at the start, later ones on the second.
    start = T0 + timedelta(microseconds=500_000)
    for recurrence in (rule(Frequency.MINUTELY), rule(Frequency.MINUTELY, byhours=[8])):
        dispatch = make_dispatch(start, timedelta(seconds=10), recurrence)
        schedule = Schedule(dispatch)
        assert schedule.run_at(T0) is None
        assert schedule.next_start(T0) == start
        assert schedule.run_at(start) == Run(start, T0 + timedelta(seconds=10))
        assert schedule.next_start(start) == T0 + MINUTE
        assert dispatch.started_at(start)
        assert not dispatch.started_at(T0)
    # A window shorter than the clipped part vanishes.
    tiny = Schedule(
        make_dispatch(start, timedelta(microseconds=100), rule(Frequency.MINUTELY))
    )
    assert tiny.next_start(T0) == T0 + MINUTE
    assert tiny.run_at(start) is None


def test_unbounded_chain_is_capped_and_continues() -> None:
    # Every minute of every hour, two minutes long, forever: by-fields force
    # the general path, which has to cap the merging.
    recurrence = rule(Frequency.MINUTELY, byminutes=list(range(60)))
    schedule = Schedule(make_dispatch(T0, 2 * MINUTE, recurrence))
    now = T0 + timedelta(days=30)
    run = schedule.run_at(now)
    assert run is not None
    assert run.end is not None
    # The first window containing `now` opened at now - 1 min; a thousand
    # windows are merged on either side of it.
    assert run.start == now - (MERGE_CAP + 1) * MINUTE
    assert run.end == now + (MERGE_CAP + 1) * MINUTE
    assert schedule.next_start(now) is None  # the end is not known
    # Re-checking at the provisional end finds the run continuing.
    later = schedule.run_at(run.end)
    assert later is not None
    assert later.start <= run.end
    assert later.end is not None
    assert later.end > run.end
    # Inside a range, merging is exact: one run across the whole range.
    runs = list(schedule.runs_between(now, now + 3 * MERGE_CAP * MINUTE))
    assert len(runs) == 1
    assert runs[0].start <= now
    assert runs[0].end is not None
    assert runs[0].end >= now + 3 * MERGE_CAP * MINUTE
    # Near the start the chain is exact on that side.
    first = schedule.run_at(T0 + MINUTE)
    assert first is not None
    assert first.start == T0


def test_from_fields_and_other_timezones() -> None:
    berlin = timezone(timedelta(hours=2))
    schedule = Schedule.from_fields(
        start_time=T0.astimezone(berlin),
        duration=HOUR,
        recurrence=rule(Frequency.DAILY, byhours=[8]),  # 08:00 UTC
    )
    assert schedule.run_at(T0 + DAY) == Run(T0 + DAY, T0 + DAY + HOUR)
    assert schedule.run_at((T0 + DAY).astimezone(berlin)) == Run(
        T0 + DAY, T0 + DAY + HOUR
    )
    assert (
        Schedule.from_fields(start_time=T0, duration=HOUR, active=False).run_at(T0)
        is None
    )


def test_naive_instants_are_rejected() -> None:
    schedule = Schedule.from_fields(start_time=T0, duration=HOUR)
    naive = T0.replace(tzinfo=None)
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        schedule.run_at(naive)
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        schedule.next_start(naive)
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        schedule.is_running(naive)
    with pytest.raises(ValueError, match="start must be timezone-aware"):
        list(schedule.runs_between(naive, T0))


def test_runs_between_empty_and_reversed_ranges() -> None:
    schedule = Schedule(make_dispatch(T0, HOUR, rule(Frequency.DAILY, byhours=[8, 20])))
    assert list(schedule.runs_between(T0 + DAY, T0 + DAY)) == []
    assert list(schedule.runs_between(T0 + DAY, T0)) == []
    assert list(schedule.runs_between(T0 - DAY, T0)) == []
    # A run overlapping the range's start is included whole.
    assert list(schedule.runs_between(T0 + HOUR / 2, T0 + 2 * HOUR)) == [
        Run(T0, T0 + HOUR)
    ]


def test_repeated_queries_are_stable() -> None:
    """Caches must not change answers: walk forwards and backwards."""
    recurrence = rule(
        Frequency.MINUTELY, 2, byhours=[8, 9], end_criteria=EndCriteria(count=500)
    )
    dispatch = make_dispatch(T0, 3 * MINUTE, recurrence)
    schedule = Schedule(dispatch)
    oracle = build_oracle(dispatch, timedelta(days=30))
    instants = [T0 + k * timedelta(seconds=97) for k in range(300)]
    instants += list(reversed(instants))
    check_against_oracle(schedule, oracle, instants, [])
    assert [run.start for run in schedule.runs_between(T0, T0 + 30 * DAY)] == [
        run.start for run in oracle.runs
    ]


def test_huge_count_does_not_overflow() -> None:
    # A uint32 count of minutes reaches past the year 9999, where dateutil
    # stops: the back-to-back run is reported as never ending.
    recurrence = rule(Frequency.MINUTELY, end_criteria=EndCriteria(count=2**32 - 1))
    schedule = Schedule(make_dispatch(T0, MINUTE, recurrence))
    assert schedule.run_at(T0 + DAY) == Run(T0, None)
    separate = Schedule(make_dispatch(T0, MINUTE / 2, recurrence))
    assert separate.run_at(T0 + DAY) == Run(T0 + DAY, T0 + DAY + MINUTE / 2)
    assert separate.next_start(T0 + DAY) == T0 + DAY + MINUTE


# --------------------------------------------------------------------------
# Extreme values: never an exception after construction
# --------------------------------------------------------------------------

MAX_UTC = datetime.max.replace(tzinfo=UTC)
MIN_UTC = datetime.min.replace(tzinfo=UTC)


@st.composite
def extreme_instants(draw: st.DrawFn) -> datetime:
    """Instants anywhere in datetime's range, often at its edges."""
    offset = timezone(timedelta(minutes=draw(st.integers(-23 * 60, 23 * 60))))
    naive = draw(
        st.one_of(
            st.sampled_from(
                [
                    datetime(1, 1, 1),  # noqa: DTZ001 - made aware below
                    datetime(9999, 12, 31, 23, 59, 59, 999_999),  # noqa: DTZ001
                    datetime(9999, 12, 31, 23, 59),  # noqa: DTZ001
                    datetime(9999, 12, 31),  # noqa: DTZ001 - made aware below
                    datetime(9999, 1, 1),  # noqa: DTZ001
                    datetime(1, 1, 1, 0, 1),  # noqa: DTZ001
                    T0.replace(tzinfo=None),
                ]
            ),
            st.datetimes(),
        )
    )
    return naive.replace(tzinfo=draw(st.sampled_from([UTC, offset])))


BIG = st.one_of(
    st.sampled_from([2**31 - 1, 2**32 - 1, 2**63, 10**30]),
    st.integers(1, 2**64),
)


@st.composite
def extreme_durations(draw: st.DrawFn) -> timedelta | None:
    return draw(
        st.one_of(
            st.none(),
            st.sampled_from(
                [timedelta.max, timedelta(days=3_652_059), timedelta(0), US, HOUR]
            ),
            st.timedeltas(min_value=timedelta(0)),
        )
    )


@st.composite
def extreme_rules(draw: st.DrawFn) -> RecurrenceRule:
    end_criteria = draw(
        st.one_of(
            st.none(),
            st.builds(EndCriteria, count=st.one_of(st.integers(0, 50), BIG)),
            st.builds(EndCriteria, until=extreme_instants()),
        )
    )
    values = st.lists
    return RecurrenceRule(
        frequency=draw(st.sampled_from(list(Frequency))),
        interval=draw(st.one_of(st.integers(0, 5), BIG)),
        end_criteria=end_criteria,
        byminutes=draw(values(st.integers(0, 59), max_size=3)),
        byhours=draw(values(st.integers(0, 23), max_size=3)),
        byweekdays=draw(values(st.sampled_from(WEEKDAYS), max_size=3)),
        bymonthdays=draw(
            values(st.integers(-31, 31).filter(lambda day: day != 0), max_size=2)
        ),
        bymonths=draw(values(st.integers(1, 12), max_size=2)),
    )


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    start=extreme_instants(),
    duration=extreme_durations(),
    recurrence=extreme_rules(),
    instants=st.lists(extreme_instants(), min_size=1, max_size=4),
)
def test_extreme_values_never_raise_after_construction(
    start: datetime,
    duration: timedelta | None,
    recurrence: RecurrenceRule,
    instants: list[datetime],
) -> None:
    """Huge intervals and counts, edges of time: no run means no exception."""
    try:
        schedule = Schedule.from_fields(
            start_time=start, duration=duration, recurrence=recurrence
        )
    except InvalidDispatchError:
        return
    for now in [*instants, MIN_UTC, MAX_UTC, T0]:
        run = schedule.run_at(now)
        assert schedule.is_running(now) == (run is not None)
        following = schedule.next_start(now)
        assert following is None or following > now
        try:
            utc_now = now.astimezone(UTC)
        except OverflowError:  # outside the years 1..9999 in UTC
            offset = now.utcoffset()
            utc_now = MAX_UTC if offset is not None and offset < DAY * 0 else MIN_UTC
        day_before = max(utc_now, MIN_UTC + DAY) - DAY
        for low, high in ((now, MAX_UTC), (day_before, now)):
            for found in itertools.islice(schedule.runs_between(low, high), 3):
                assert found.end is None or found.start < found.end


@pytest.mark.parametrize(
    "frequency",
    [
        Frequency.MINUTELY,
        Frequency.HOURLY,
        Frequency.DAILY,
        Frequency.WEEKLY,
        Frequency.MONTHLY,
        Frequency.YEARLY,
    ],
)
def test_poison_interval_is_a_single_period(frequency: Frequency) -> None:
    """Interval 2**32-1 parses; its second period lies past the year 9999."""
    schedule = Schedule(make_dispatch(T0, HOUR, rule(frequency, 2**32 - 1)))
    assert schedule.run_at(T0) == Run(T0, T0 + HOUR)
    assert schedule.next_start(T0 - US) == T0
    assert schedule.next_start(T0) is None
    assert schedule.run_at(T0 + HOUR) is None
    assert list(schedule.runs_between(T0, MAX_UTC)) == [Run(T0, T0 + HOUR)]


def test_windows_past_the_year_9999_never_end() -> None:
    near_end = datetime(9999, 12, 31, 22, tzinfo=UTC)
    schedule = Schedule(make_dispatch(near_end, timedelta(days=2)))
    assert schedule.run_at(MAX_UTC) == Run(near_end, None)
    recurrence = rule(Frequency.DAILY, byhours=[22])
    schedule = Schedule(make_dispatch(T0, timedelta.max, recurrence))
    assert schedule.run_at(T0 + DAY) == Run(T0 + 14 * HOUR, None)
    assert schedule.next_start(T0 + DAY) is None
    # Beyond the year 9999 in UTC, until excludes nothing.
    late = datetime.max.replace(tzinfo=timezone(-HOUR))
    every_day = rule(Frequency.DAILY, end_criteria=EndCriteria(until=late))
    schedule = Schedule(make_dispatch(T0, HOUR, every_day))
    assert schedule.next_start(datetime(9999, 12, 30, 9, tzinfo=UTC)) == datetime(
        9999, 12, 31, 8, tzinfo=UTC
    )


# --------------------------------------------------------------------------
# Bounded work: count dateutil's periods (its unit of work), not time
# --------------------------------------------------------------------------


@pytest.fixture
def dateutil_periods(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the periods dateutil iterates (one day/week/month/year set each)."""
    calls = [0]
    for name in ("ydayset", "mdayset", "wdayset", "ddayset"):
        original = getattr(du_rrule._iterinfo, name)

        def counting(*args: Any, _original: Any = original) -> Any:
            calls[0] += 1
            return _original(*args)

        monkeypatch.setattr(du_rrule._iterinfo, name, counting)
    return calls


def test_old_count_rule_is_not_walked_occurrence_by_occurrence(
    dateutil_periods: list[int],
) -> None:
    """A year-old MINUTELY count rule used to iterate every minute since its start."""
    now = datetime(2025, 6, 1, 12, 0, 10, tzinfo=UTC)
    start = now - timedelta(days=365)
    recurrence = rule(
        Frequency.MINUTELY,
        byhours=list(range(8, 18)),
        end_criteria=EndCriteria(count=10**6),  # about 4.5 years
    )
    schedule = Schedule(make_dispatch(start, timedelta(seconds=30), recurrence))
    assert not schedule.needs_preparation  # the count-th was found compiling
    minute = now.replace(second=start.second, microsecond=0)
    assert schedule.run_at(now) == Run(minute, minute + timedelta(seconds=30))
    assert schedule.next_start(now) == minute + MINUTE
    assert dateutil_periods[0] < 100  # was about 220 000 (every minute walked)


def test_count_rule_ends_at_its_count_th_occurrence() -> None:
    # Weekdays 08:00-08:59 every minute: 60 a day, 300 a week.
    recurrence = rule(
        Frequency.MINUTELY,
        byhours=[8],
        byweekdays=WEEKDAYS[:5],
        end_criteria=EndCriteria(count=300 * 52 * 30 + 7),
    )
    schedule = Schedule(make_dispatch(T0, timedelta(seconds=1), recurrence))
    # 30 * 52 weeks later on the Monday, 7 more minutes.
    last = T0 + timedelta(weeks=30 * 52) + 6 * MINUTE
    assert schedule.next_start(last - US) == last
    assert schedule.next_start(last) is None
    assert schedule.run_at(last) == Run(last, last + timedelta(seconds=1))


def test_far_count_needs_preparation_and_stays_exact(
    dateutil_periods: list[int],
) -> None:
    """Its count-th occurrence lies centuries ahead: found by prepare()."""
    recurrence = rule(
        Frequency.MINUTELY,
        byhours=[8],
        byweekdays=[Weekday.MONDAY],
        end_criteria=EndCriteria(count=60 * 52 * 300),  # about 300 years
    )
    lazy = Schedule(make_dispatch(T0, timedelta(seconds=1), recurrence))
    prepared = Schedule(make_dispatch(T0, timedelta(seconds=1), recurrence))
    assert lazy.needs_preparation
    prepared.prepare()
    assert not prepared.needs_preparation
    for schedule in (prepared, lazy):  # lazy: walks as far as asked, exact
        assert schedule.next_start(T0 + timedelta(days=100 * 365)) is not None
        assert schedule.next_start(T0 + timedelta(days=400 * 365)) is None
    assert dateutil_periods[0] < 100


@PROPERTY_SETTINGS
@given(dispatch=dispatches(), count=st.integers(0, 3000))
def test_count_th_occurrence_matches_dateutil(dispatch: Dispatch, count: int) -> None:
    """The end of a count rule is the client's count-th occurrence."""
    recurrence = dispatch.recurrence
    if recurrence.frequency == Frequency.UNSPECIFIED:
        return
    recurrence.end_criteria = EndCriteria(count=count)
    try:
        schedule = Schedule.from_fields(
            start_time=dispatch.start_time,
            duration=timedelta(seconds=1),
            recurrence=recurrence,
        )
    except InvalidDispatchError:
        return
    expanded = list(recurrence._as_rrule(dispatch.start_time))
    schedule.prepare()
    if not expanded:
        assert schedule.next_start(dispatch.start_time - DAY) is None
        return
    last = expanded[-1]
    if last < dispatch.start_time:  # the clipped first window is empty
        return
    assert schedule.next_start(last - US) == last
    assert schedule.next_start(last) is None


def test_impossible_yearly_leap_day_is_rejected_without_iterating(
    dateutil_periods: list[int],
) -> None:
    # Every 4 years from 2025: never a leap year, so never a February 29th.
    start = datetime(2025, 2, 28, tzinfo=UTC)
    recurrence = rule(Frequency.YEARLY, 4, bymonths=[2], bymonthdays=[29])
    with pytest.raises(InvalidDispatchError, match="never occurs"):
        Schedule(make_dispatch(start, HOUR, recurrence))
    assert dateutil_periods[0] < 10  # was about 2000 (one per period to 9999)


def test_rare_occurrences_are_found_without_iterating_dateutil(
    dateutil_periods: list[int],
) -> None:
    """February 29th on a Monday at 08:xx: dateutil stepped every day between."""
    recurrence = rule(
        Frequency.MINUTELY,
        byhours=[8],
        bymonths=[2],
        bymonthdays=[29],
        byweekdays=[Weekday.MONDAY],
    )
    start = datetime(2017, 3, 1, tzinfo=UTC)
    schedule = Schedule(make_dispatch(start, timedelta(seconds=30), recurrence))
    leap_monday = datetime(2044, 2, 29, 8, tzinfo=UTC)
    assert schedule.next_start(start) == leap_monday
    assert schedule.next_start(leap_monday + 59 * MINUTE) == datetime(
        2072, 2, 29, 8, tzinfo=UTC
    )
    assert not schedule.is_running(leap_monday - US)
    assert schedule.run_at(leap_monday + MINUTE) == Run(
        leap_monday + MINUTE, leap_monday + MINUTE + timedelta(seconds=30)
    )
    assert dateutil_periods[0] == 0  # was about 10 000 days, 1 s


def test_an_open_ended_dispatch_ignores_a_rule_that_never_occurs() -> None:
    """As the client library: without a duration, it runs from its start time."""
    start = datetime(2025, 2, 28, tzinfo=UTC)
    recurrence = rule(Frequency.YEARLY, 4, bymonths=[2], bymonthdays=[29])
    schedule = Schedule(make_dispatch(start, None, recurrence))
    assert schedule.run_at(start + DAY) == Run(start, None)
    assert schedule.next_start(start - DAY) == start
    # With a duration the same rule is still malformed.
    with pytest.raises(InvalidDispatchError, match="never occurs"):
        Schedule(make_dispatch(start, HOUR, recurrence))
