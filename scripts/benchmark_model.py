#!/usr/bin/env python3
"""Benchmark the scheduling model against the client library's evaluation.

For old recurring dispatches, times ``Schedule.run_at(now)`` plus
``Schedule.next_start(now)`` against the client's ``Dispatch.started_at(now)``
plus ``Dispatch.next_run_after(now)`` (which iterate dateutil from the start
time), prints both per-call costs and their ratio, and checks that both agree
on whether the dispatch is running and on the next start. Exits non-zero if
they disagree.

Run from the repository root: ``.venv/bin/python scripts/benchmark_model.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
import sys
import time

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from frequenz.client.dispatch.recurrence import (
    Frequency,
    RecurrenceRule,
    Weekday,
)
from frequenz.client.dispatch.types import (
    Dispatch,
    DispatchId,
    TargetIds,
)

from custom_components.frequenz_dispatch.schedule import Run, Schedule

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
    if failed:
        print("model and client DISAGREE", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
