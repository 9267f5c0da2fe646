#!/usr/bin/env python3
"""Benchmark the scheduling model against the client library's evaluation.

For old recurring dispatches, times ``Schedule.run_at(now)`` plus
``Schedule.next_start(now)`` against the client's ``Dispatch.started_at(now)``
plus ``Dispatch.next_run_after(now)`` (which iterate dateutil from the start
time), prints both per-call costs and their ratio, and checks that both agree
on whether the dispatch is running and on the next start. Exits non-zero if
they disagree.

A second section times the nastiest rules we know (old count rules with
by-fields, February 29th, huge intervals and counts, by-field combinations
that occur rarely or never, windows reaching past the year 9999): compiling,
``prepare()`` where needed (meant for an executor) and the slowest single
evaluation; the goal is under 10 ms on the event loop for both.

Run from the repository root: ``.venv/bin/python scripts/benchmark_model.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
import itertools
from pathlib import Path
import sys
import time
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from frequenz.client.dispatch.recurrence import (
    EndCriteria,
    Frequency,
    RecurrenceRule,
    Weekday,
)
from frequenz.client.dispatch.types import (
    Dispatch,
    DispatchId,
    TargetIds,
)

from custom_components.frequenz_dispatch.schedule import (
    InvalidDispatchError,
    Run,
    Schedule,
)

NOW = datetime(2025, 6, 1, 12, 0, 10, 250_000, tzinfo=UTC)
AGE = timedelta(days=365)
US = timedelta(microseconds=1)
OUR_CALLS = 5000  # distinct instants, so no answer comes from a cache
CLIENT_REPS = 3  # each client call walks the dispatch's whole history
GOAL = 1000.0


@dataclass(frozen=True)
class Case:
    name: str
    recurrence: RecurrenceRule
    duration: timedelta
    goal: bool = False  # the >= 1000x goal applies


CASES = [
    Case(
        "MINUTELY, 30 s",
        RecurrenceRule(frequency=Frequency.MINUTELY, interval=1),
        timedelta(seconds=30),
        goal=True,
    ),
    Case(
        "MINUTELY, 1 min (back-to-back)",
        RecurrenceRule(frequency=Frequency.MINUTELY, interval=1),
        timedelta(minutes=1),
        goal=True,
    ),
    Case(
        "HOURLY, 15 min",
        RecurrenceRule(frequency=Frequency.HOURLY, interval=1),
        timedelta(minutes=15),
    ),
    Case(
        "DAILY, 1 h",
        RecurrenceRule(frequency=Frequency.DAILY, interval=1),
        timedelta(hours=1),
    ),
    Case(
        "MINUTELY 08-17h, 30 s (by-fields)",
        RecurrenceRule(
            frequency=Frequency.MINUTELY, interval=1, byhours=list(range(8, 18))
        ),
        timedelta(seconds=30),
        goal=True,
    ),
    Case(
        "WEEKLY Mon+Fri, 2 h (by-fields)",
        RecurrenceRule(
            frequency=Frequency.WEEKLY,
            interval=1,
            byweekdays=[Weekday.MONDAY, Weekday.FRIDAY],
        ),
        timedelta(hours=2),
    ),
]


def make_dispatch(case: Case) -> Dispatch:
    start = NOW - AGE - timedelta(seconds=3)
    return Dispatch(
        id=DispatchId(1),
        type="benchmark",
        start_time=start,
        duration=case.duration,
        target=TargetIds(1),
        active=True,
        dry_run=False,
        payload={},
        recurrence=case.recurrence,
        create_time=start,
        update_time=start,
    )


def time_ours(schedule: Schedule) -> float:
    """Seconds per run_at + next_start pair, over distinct instants."""
    instants = [NOW + i * timedelta(seconds=1.37) for i in range(OUR_CALLS)]
    begin = time.perf_counter()
    for instant in instants:
        schedule.run_at(instant)
        schedule.next_start(instant)
    return (time.perf_counter() - begin) / OUR_CALLS


@dataclass
class ClientAnswer:
    instant: datetime
    running: bool
    next_occurrence: datetime | None  # strictly after `instant`


def time_client(dispatch: Dispatch) -> tuple[float, list[ClientAnswer]]:
    """Seconds per started_at + next_run_after pair, and what it answered."""
    answers = []
    begin = time.perf_counter()
    for rep in range(CLIENT_REPS):
        instant = NOW + rep * timedelta(seconds=17)
        running = dispatch.started_at(instant)
        # next_run_after is inclusive; the model's next_start is strict.
        answers.append(
            ClientAnswer(instant, running, dispatch.next_run_after(instant + US))
        )
    return (time.perf_counter() - begin) / CLIENT_REPS, answers


def disagreements(
    schedule: Schedule, dispatch: Dispatch, answer: ClientAnswer
) -> list[str]:
    """Compare the model with the client at one instant.

    The client reports occurrences, the model merged runs: when running, the
    next run starts at the first occurrence after the run's end, and a
    never-ending run is checked for continuity at the next occurrence.
    """
    problems = []
    instant = answer.instant
    run: Run | None = schedule.run_at(instant)
    if (run is not None) != answer.running:
        problems.append(f"running at {instant}: model {run}, client {answer.running}")
    expected_next = answer.next_occurrence
    if run is not None and run.end is None:
        expected_next = None
        if answer.next_occurrence is not None:
            boundary = answer.next_occurrence
            if not (
                dispatch.started_at(boundary - US) and dispatch.started_at(boundary)
            ):
                problems.append(f"client sees a gap at {boundary}, model does not")
    elif run is not None and run.end is not None:
        if not dispatch.started_at(run.end - US) or dispatch.started_at(run.end):
            problems.append(f"client disagrees that the run ends at {run.end}")
        if expected_next is not None and expected_next <= run.end:
            expected_next = dispatch.next_run_after(run.end + US)
    got_next = schedule.next_start(instant)
    if got_next != expected_next:
        problems.append(
            f"next start after {instant}: model {got_next}, client {expected_next}"
        )
    return problems


def fmt(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:8.2f} s "
    if seconds >= 1e-3:
        return f"{seconds * 1e3:8.2f} ms"
    return f"{seconds * 1e6:8.2f} us"


@dataclass(frozen=True)
class WorstCase:
    name: str
    start: datetime
    recurrence: RecurrenceRule
    duration: timedelta | None = timedelta(minutes=1)


def _rule(frequency: Frequency, interval: int = 1, **kwargs: Any) -> RecurrenceRule:
    return RecurrenceRule(frequency=frequency, interval=interval, **kwargs)


OFFICE_HOURS = list(range(8, 18))
WORST_CASES = [
    WorstCase(
        "MINUTELY 08-17h, count 1e6, 1 y old",
        NOW - timedelta(days=365),
        _rule(
            Frequency.MINUTELY,
            byhours=OFFICE_HOURS,
            end_criteria=EndCriteria(count=10**6),
        ),
        timedelta(seconds=30),
    ),
    WorstCase(
        "MINUTELY 08-17h, count 1e8, 10 y old",
        NOW - timedelta(days=3650),
        _rule(
            Frequency.MINUTELY,
            byhours=OFFICE_HOURS,
            end_criteria=EndCriteria(count=10**8),
        ),
        timedelta(seconds=30),
    ),
    WorstCase(
        "MINUTELY 08-17h, count 2**32-1, year 1",
        datetime(1, 1, 1, tzinfo=UTC),
        _rule(
            Frequency.MINUTELY,
            byhours=OFFICE_HOURS,
            end_criteria=EndCriteria(count=2**32 - 1),
        ),
        timedelta(seconds=30),
    ),
    WorstCase(
        "HOURLY Mon, count 1e6, year 1000",
        datetime(1000, 1, 1, tzinfo=UTC),
        _rule(
            Frequency.HOURLY,
            byweekdays=[Weekday.MONDAY],
            end_criteria=EndCriteria(count=10**6),
        ),
    ),
    WorstCase(
        "YEARLY Feb 29, 1 h",
        datetime(1904, 2, 29, 10, tzinfo=UTC),
        _rule(Frequency.YEARLY),
        timedelta(hours=1),
    ),
    WorstCase(
        "YEARLY Feb 29, 4 y + 1 d (merging)",
        datetime(1904, 2, 29, 10, tzinfo=UTC),
        _rule(Frequency.YEARLY),
        timedelta(days=4 * 365 + 1),
    ),
    WorstCase(
        "YEARLY Feb 29, count 500",
        datetime(1904, 2, 29, 10, tzinfo=UTC),
        _rule(Frequency.YEARLY, end_criteria=EndCriteria(count=500)),
    ),
    WorstCase(
        "YEARLY/4 Feb 29 from 2025 (never)",
        datetime(2025, 2, 28, tzinfo=UTC),
        _rule(Frequency.YEARLY, 4, bymonths=[2], bymonthdays=[29]),
    ),
    WorstCase(
        "MINUTELY interval 2**32-1",
        NOW - timedelta(days=365),
        _rule(Frequency.MINUTELY, 2**32 - 1),
    ),
    WorstCase(
        "DAILY interval 2**32-1, 08-17h",
        NOW - timedelta(days=365),
        _rule(Frequency.DAILY, 2**32 - 1, byhours=OFFICE_HOURS),
    ),
    WorstCase(
        "DAILY interval 1e6, 08-17h",
        datetime(1, 1, 1, tzinfo=UTC),
        _rule(Frequency.DAILY, 10**6, byhours=OFFICE_HOURS),
    ),
    WorstCase(
        "MINUTELY interval 2**20, 08-17h",
        datetime(1, 1, 1, tzinfo=UTC),
        _rule(Frequency.MINUTELY, 2**20, byhours=OFFICE_HOURS),
    ),
    WorstCase(
        "MINUTELY Feb 29 on Mondays, 8h",
        datetime(2017, 3, 1, tzinfo=UTC),
        _rule(
            Frequency.MINUTELY,
            byhours=[8],
            bymonths=[2],
            bymonthdays=[29],
            byweekdays=[Weekday.MONDAY],
        ),
    ),
    WorstCase(
        "MINUTELY/707, 3 h, Thu/Fri/Sun, 7th/last",
        datetime(120, 1, 22, 8, 29, 27, tzinfo=UTC),
        _rule(
            Frequency.MINUTELY,
            707,
            byhours=[8, 17, 23],
            byweekdays=[Weekday.THURSDAY, Weekday.FRIDAY, Weekday.SUNDAY],
            bymonthdays=[7, -1],
            end_criteria=EndCriteria(count=4658),
        ),
        timedelta(days=3_652_059),
    ),
    WorstCase(
        "MINUTELY 08-17h, duration timedelta.max",
        NOW - timedelta(days=365),
        _rule(Frequency.MINUTELY, byhours=OFFICE_HOURS),
        timedelta.max,
    ),
]
WORST_GOAL = 10e-3
MAX_UTC = datetime.max.replace(tzinfo=UTC)


def first_runs(schedule: Schedule, start: datetime, end: datetime) -> list[Run]:
    """The first three runs in ``[start, end)``."""
    return list(itertools.islice(schedule.runs_between(start, end), 3))


def time_worst_case(case: WorstCase) -> tuple[str, float, float | None, float]:
    """Compile, prepare and the slowest evaluation of one nasty rule."""
    begin = time.perf_counter()
    try:
        schedule = Schedule.from_fields(
            start_time=case.start, duration=case.duration, recurrence=case.recurrence
        )
    except InvalidDispatchError as err:
        return f"rejected: {err}", time.perf_counter() - begin, None, 0.0
    compile_time = time.perf_counter() - begin
    prepare_time = None
    if schedule.needs_preparation:
        begin = time.perf_counter()
        schedule.prepare()
        prepare_time = time.perf_counter() - begin
    slowest = 0.0
    instants = [NOW, NOW + timedelta(days=1, seconds=7), case.start, MAX_UTC]
    for instant in instants:
        day_later = min(MAX_UTC - timedelta(days=1), instant) + timedelta(days=1)
        queries: list[Callable[[], object]] = [
            partial(schedule.run_at, instant),
            partial(schedule.is_running, instant),
            partial(schedule.next_start, instant),
            partial(first_runs, schedule, instant, day_later),
        ]
        for query in queries:
            begin = time.perf_counter()
            query()
            slowest = max(slowest, time.perf_counter() - begin)
    return "", compile_time, prepare_time, slowest


def worst_cases() -> bool:
    """Print the worst-case table; True if every figure meets the goal."""
    print()
    print(f"worst cases (goal: compile and each evaluation < {fmt(WORST_GOAL)})")
    print(f"{'case':42} {'compile':>11} {'prepare':>11} {'slowest eval':>12}")
    met = True
    for case in WORST_CASES:
        note, compile_time, prepare_time, slowest = time_worst_case(case)
        prepared = "-" if prepare_time is None else fmt(prepare_time)
        ok = compile_time < WORST_GOAL and slowest < WORST_GOAL
        met &= ok
        print(
            f"{case.name:42} {fmt(compile_time)} {prepared:>11} {fmt(slowest):>12}"
            f"  {'' if ok else 'OVER GOAL'} {note}".rstrip(),
            flush=True,
        )
    print(f"worst-case goal: {'met' if met else 'NOT met'}")
    return met


def main() -> int:
    print(
        f"now = {NOW.isoformat()}, dispatches started {AGE.days} days earlier; "
        f"model: {OUR_CALLS} instants, client: {CLIENT_REPS} repetitions"
    )
    print(
        f"{'case':36} {'compile':>11} {'model/pair':>11} {'client/pair':>11} "
        f"{'speed-up':>10}  agree"
    )
    failed = False
    goal_met = True
    for case in CASES:
        dispatch = make_dispatch(case)
        begin = time.perf_counter()
        schedule = Schedule(dispatch)
        compile_time = time.perf_counter() - begin
        ours = time_ours(schedule)
        theirs, answers = time_client(dispatch)
        problems = [
            problem
            for answer in answers
            for problem in disagreements(schedule, dispatch, answer)
        ]
        ratio = theirs / ours
        if case.goal and ratio < GOAL:
            goal_met = False
        print(
            f"{case.name:36} {fmt(compile_time)} {fmt(ours)} {fmt(theirs)} "
            f"{ratio:9.0f}x  {'yes' if not problems else 'NO'}",
            flush=True,
        )
        for problem in problems:
            print(f"    {problem}")
        failed |= bool(problems)
    print(
        f"goal (>= {GOAL:.0f}x on the 365-day MINUTELY cases): "
        f"{'met' if goal_met else 'NOT met'}"
    )
    worst_cases()
    if failed:
        print("model and client DISAGREE", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
