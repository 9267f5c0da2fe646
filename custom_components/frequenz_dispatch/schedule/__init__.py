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

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Final, Self

from frequenz.client.dispatch.recurrence import RecurrenceRule
from frequenz.client.dispatch.types import Dispatch

from ._rules import (
    _UNIT,
    _clamp_to_utc,
    _CountedSource,
    _OccurrenceSource,
    _PatternSource,
    _RuleSpec,
    _to_utc,
)
from ._timelines import (
    _ForeverTimeline,
    _NeverTimeline,
    _ProgressionTimeline,
    _RuleTimeline,
    _Timeline,
)
from ._types import (
    MERGE_CAP,
    MERGE_WORK_CAP,
    InvalidDispatchError,
    NeverOccursError,
    Run,
)

__all__ = [
    "MERGE_CAP",
    "MERGE_WORK_CAP",
    "InvalidDispatchError",
    "NeverOccursError",
    "Run",
    "Schedule",
]

_ZERO: Final = timedelta(0)


class Schedule:
    """Compiled, immutable schedule of one dispatch.

    Evaluation cost does not grow with the dispatch's age: rules that are a
    plain arithmetic progression (one-shots; no by-fields and a fixed-length
    frequency) are answered in closed form; other rules walk the rule's days
    from the day asked about (jumping over excluded months, grid gaps and
    days), never iterating dateutil from ``start_time``. Only a ``count`` end
    criterion depends on every earlier occurrence: for such rules (with
    by-fields) the count-th occurrence is found by counting occurrences a day
    at a time (never iterating them), while compiling if that takes a bounded
    number of steps, else in :meth:`prepare` (see :attr:`needs_preparation`).

    Occurrences past the year 9999 do not exist: a window that would end
    after it never ends, and no query raises for any schedule that compiled.

    Not thread-safe: evaluation fills internal caches without locks, because
    everything runs on Home Assistant's event loop. Use one schedule from one
    thread at a time.
    """

    __slots__ = ("_timeline",)

    _timeline: _Timeline

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
                (including rules dateutil rejects) while a duration is set.
                Malformed fields are rejected even where they would not
                matter (inactive or open-ended dispatches), so validity never
                depends on state; a rule that merely never occurs is ignored
                by an open-ended dispatch, which runs from its start time.

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
            occurrences or :data:`MERGE_WORK_CAP` steps (re-ask at
            ``run_at(now).end``).

        Raises:
            ValueError: If ``now`` is naive.

        """
        return self._timeline.next_start(_aware(now, "now"))

    def runs_between(self, start: datetime, end: datetime) -> Iterator[Run]:
        """Iterate over the runs intersecting ``[start, end)``, in order.

        Runs are merged exactly inside the range, so the cost grows with the
        occurrences in it; :data:`MERGE_CAP` and :data:`MERGE_WORK_CAP` limit
        how far runs are followed outside it: back before ``start``, forward
        past ``end``, and through the windows that began before ``start``
        (then the run covering ``start`` has a provisional end and is the
        last one yielded).

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

    @property
    def needs_preparation(self) -> bool:
        """Tell whether :meth:`prepare` should run before the schedule is used.

        True only for a rule with ``count`` and by-fields whose count-th
        occurrence (its last) lies further from its start than compiling
        walks (decades of a dense rule). Until :meth:`prepare` has run, a
        query walks on as far as the instant asked about: exact, but up to
        about 0.35 ms per year walked.
        """
        return self._timeline.needs_preparation

    def prepare(self) -> None:
        """Do the expensive part of compiling, e.g. in an executor thread.

        Finds the last occurrence of a ``count`` rule: at most one walking
        step per day (and month) up to the year 9999, about a second in the
        worst case (a rule starting in the year 1). Afterwards every query
        costs bounded work and ``needs_preparation`` is False. Does nothing
        if ``needs_preparation`` is False. Not thread-safe: nothing else may
        use the schedule while it runs; call it once, before handing the
        schedule to the event loop.
        """
        self._timeline.prepare()

    def __repr__(self) -> str:
        return f"Schedule({self._timeline!r})"


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")
    # Instants outside the years 1..9999 in UTC are answered as at the edge.
    return _clamp_to_utc(value)


def _compile(
    start_time: datetime,
    duration: timedelta | None,
    recurrence: RecurrenceRule | None,
    *,
    active: bool,
) -> _Timeline:
    start = _to_utc(start_time, "start_time")
    if duration is not None and duration < _ZERO:
        raise InvalidDispatchError(f"duration must not be negative, got {duration}")
    try:
        spec = _RuleSpec.compile(start, recurrence or RecurrenceRule())
    except NeverOccursError:
        if duration is not None:
            raise
        spec = None  # an open-ended dispatch ignores its rule (as the client does)

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
        _CountedSource(spec) if spec.count is not None else _PatternSource(spec)
    )
    return _RuleTimeline(source, duration, start, spec.interval * _UNIT[spec.freq])
