"""Timelines of the scheduling model: the runs of a compiled schedule.

Each timeline answers :class:`.Schedule`'s questions for one kind of
schedule, merging overlapping and back-to-back windows into runs. Internal to
the package :mod:`.schedule`.
"""

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from ._rules import _MAX, _minus, _OccurrenceSource, _plus, _shift
from ._types import MERGE_CAP, MERGE_WORK_CAP, Run

_CHAIN_CACHE_SIZE: Final = 8


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

    @property
    def needs_preparation(self) -> bool:
        """See :attr:`Schedule.needs_preparation`."""
        return False

    def prepare(self) -> None:  # noqa: B027 - an optional hook
        """See :meth:`Schedule.prepare`."""


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
        # Occurrences past the year 9999 do not exist (dateutil stops there).
        representable = (_MAX - first) // step + 1
        self._count = representable if count is None else min(count, representable)
        self._duration = duration
        self._clip = clip
        # The first window is empty if clipping eats it (sub-second duration).
        first_end = _plus(first, duration)
        self._k_min = 0 if first_end is None or max(first, clip) < first_end else 1
        self._merged: Run | None = None
        if duration >= step and self._has(self._k_min):
            # Every window reaches the next occurrence: one single run, which
            # never ends if it lasts until the last occurrence in datetime's
            # range.
            end: datetime | None = None
            if count is not None and count <= representable:
                end = _plus(self._occurrence(count - 1), duration)
            self._merged = Run(self._window_start(self._k_min), end)

    def _has(self, k: int) -> bool:
        return k < self._count

    def _occurrence(self, k: int) -> datetime:
        return self._first + k * self._step

    def _window_start(self, k: int) -> datetime:
        return max(self._first, self._clip) if k == 0 else self._occurrence(k)

    def _window(self, k: int) -> Run:
        return Run(self._window_start(k), _plus(self._occurrence(k), self._duration))

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
        # First k whose window ends after `start`, i.e. o_k > start - duration.
        lower = _shift(start, -self._duration)
        k = self._k_min
        if lower is not None:
            k = max(k, (lower - self._first) // self._step + 1)
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
    capped: bool  # the forward merge hit a cap: run.end is provisional


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

    @property
    def needs_preparation(self) -> bool:
        """See :attr:`Schedule.needs_preparation`."""
        return self._source.needs_preparation

    def prepare(self) -> None:
        """See :meth:`Schedule.prepare`."""
        self._source.prepare()

    def _window_start(self, occurrence: datetime) -> datetime:
        return max(occurrence, self._clip)

    def is_running(self, now: datetime) -> bool:
        # Only the window containing `now` matters, not the merged chain.
        if now < self._clip:
            return False
        # The first occurrence whose window ends after `now` (an occurrence
        # exactly at `now - duration` has just ended).
        for occurrence in self._source.iter_from(_minus(now, self._duration)):
            if self._ends_after(occurrence, now):
                return occurrence <= now
        return False

    def _window_end(self, occurrence: datetime) -> datetime | None:
        """The end of an occurrence's window; None past the year 9999."""
        return _plus(occurrence, self._duration)

    def _ends_after(self, occurrence: datetime, instant: datetime) -> bool:
        end = self._window_end(occurrence)
        return end is None or end > instant

    def run_at(self, now: datetime) -> Run | None:
        chain = self._chain_at(now)
        return None if chain is None else chain.run

    def _chain_at(self, now: datetime) -> _Chain | None:
        if now < self._clip:
            return None
        for chain in self._chains:
            if chain.run.contains(now):
                return chain
        occurrences = self._source.iter_from(_minus(now, self._duration))
        for first in occurrences:
            if self._ends_after(first, now):
                break
        else:
            return None
        if first > now:
            return None
        end, capped, _ = self._extend_forward(first, occurrences, exact=(first, first))
        start = self._extend_backward(first)
        chain = _Chain(Run(self._window_start(start), end), capped)
        self._chains.insert(0, chain)
        del self._chains[_CHAIN_CACHE_SIZE:]
        return chain

    def _extend_forward(
        self,
        occurrence: datetime,
        following: Iterator[datetime],
        *,
        exact: tuple[datetime, datetime],
    ) -> tuple[datetime | None, bool, datetime | None]:
        """Merge the windows following ``occurrence``'s while they touch.

        Args:
            occurrence: The occurrence whose window starts the chain.
            following: The occurrences after it, ascending.
            exact: Occurrences in ``[exact[0], exact[1])`` do not count
                towards :data:`MERGE_CAP` (nor their walking steps towards
                :data:`MERGE_WORK_CAP`).

        Returns:
            The chain's end (None: past the year 9999, never), whether the
            cap was hit, and the next occurrence (which starts the next
            chain) if it was read.

        """
        end = self._window_end(occurrence)
        if end is None:
            return None, False, None
        counted = 0
        budget = self._source.work + MERGE_WORK_CAP
        for nxt in following:
            if nxt > end:
                return end, False, nxt
            end = self._window_end(nxt)
            if end is None:
                return None, False, None
            if exact[0] <= nxt < exact[1]:
                budget = self._source.work + MERGE_WORK_CAP
            else:
                counted += 1
                if counted >= MERGE_CAP or self._source.work > budget:
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
        budget = self._source.work + MERGE_WORK_CAP
        floor = self._source.floor
        while high > floor:
            low = floor if span >= high - floor else high - span
            block = self._source.between(low, high)
            if not block and low <= _minus(chain_start, self._duration):
                return chain_start  # nothing close enough to touch it
            for previous in reversed(block):
                previous_end = self._window_end(previous)
                if previous_end is not None and previous_end < chain_start:
                    return chain_start
                chain_start = previous
                counted += 1
                if counted >= MERGE_CAP or self._source.work > budget:
                    return chain_start
            high = low
            span *= 2
        return chain_start

    def next_start(self, now: datetime) -> datetime | None:
        if now < self._clip:
            for occurrence in self._source.iter_from(self._source.floor):
                if self._ends_after(occurrence, self._window_start(occurrence)):
                    return self._window_start(occurrence)
            return None
        chain = self._chain_at(now)
        if chain is not None and (chain.capped or chain.run.end is None):
            return None
        after = now if chain is None or chain.run.end is None else chain.run.end
        for occurrence in self._source.iter_from(after):
            if occurrence > after:
                return occurrence
        return None

    def runs_between(self, start: datetime, end: datetime) -> Iterator[Run]:
        if start >= end or end <= self._clip:
            return
        occurrences = self._source.iter_from(_minus(start, self._duration))
        # The first window ending after `start` (skipping an empty clipped one).
        for occurrence in occurrences:
            if self._ends_after(occurrence, start) and self._ends_after(
                occurrence, self._window_start(occurrence)
            ):
                break
        else:
            return
        chain_start = occurrence
        if occurrence <= start:
            # Earlier windows end by `start` but may touch this one.
            chain_start = self._extend_backward(occurrence)
        while self._window_start(occurrence) < end:
            chain_end, capped, nxt = self._extend_forward(
                occurrence, occurrences, exact=(start, end)
            )
            yield Run(self._window_start(chain_start), chain_end)
            if capped or nxt is None or chain_end is None:
                return
            # `nxt` did not touch the chain, so it starts the next one.
            occurrence = chain_start = nxt

    def __repr__(self) -> str:
        return f"rule({type(self._source).__name__}, duration={self._duration})"
