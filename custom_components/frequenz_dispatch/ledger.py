"""The runs the outside world was told about: the one source of started/stopped.

The promise automations are built on is that every `started` is followed by
exactly one `stopped`, across reloads, restarts, outages and crashes. It is
kept here, in one HA-free class, by one rule:

    After any change, the coordinator says what runs now; the ledger compares
    it with what it has told. A run it has not told is `started`; a told run
    that no longer runs is `stopped`; a run that overlaps or touches the told
    one is the *same* run (its end may move, its identity does not).

The identity of a run (`run_id`) is its dispatch id, the start first told and
the dispatch's version then, so it is stable however the run's start is
computed later (a long chain of touching windows is only followed a bounded
way back in time), and a run started again by a change (deactivated and
activated within one window) gets a new one.

Holding: until Home Assistant has started, automations cannot see events, so
the coordinator's events are held and sent later. While holding, the ledger
answers against its *view* (what will have been told once the held events are
sent) and keeps `told` unchanged: `told` is what is saved, so a crash before
the release repeats nothing and loses nothing.

Startup, reload and entry removal are the same comparison: against what the
cache says runs now, or against nothing (removal).
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from .schedule import Run


@dataclass(frozen=True, slots=True)
class ToldRun[T]:
    """A run the outside world was told has started (and not yet stopped)."""

    dispatch_id: int
    start: datetime
    """The start first told: with the dispatch id, the run's identity."""
    end: datetime | None
    """The latest end known (None: it never ends)."""
    subject: T
    """What the run is of (the dispatch as last seen), for the `stopped` event."""
    version: int
    """The dispatch's version when the run was first told."""

    @property
    def run_id(self) -> str:
        """A stable id of this run: dispatch id, start and version first told."""
        return run_id(self.dispatch_id, self.start, self.version)

    @property
    def run(self) -> Run:
        """The run as told: its first start, its latest end."""
        return Run(self.start, self.end)

    def continues_as(self, run: Run) -> bool:
        """Tell whether `run` is this run going on: it overlaps or touches it."""
        return (self.end is None or run.start <= self.end) and (
            run.end is None or self.start <= run.end
        )


def run_id(dispatch_id: int, start: datetime, version: int) -> str:
    """The id of a run of `dispatch_id` first told at `version` to start at `start`."""
    return f"{dispatch_id}@{start.isoformat()}#{version}"


@dataclass(frozen=True, slots=True)
class Transition[T]:
    """One event to send: a told run started or stopped."""

    started: bool
    run: ToldRun[T]


class RunLedger[T]:
    """What the outside world has been told is running, by dispatch id.

    The only owner of that knowledge: every `started` and `stopped` comes
    from `update` or `sync`, and `told` is what must be saved after each.
    """

    __slots__ = ("_told", "_view", "changed")

    def __init__(self, told: Iterable[ToldRun[T]] = (), *, holding: bool = False):
        """Start from the runs told before (loaded from storage)."""
        self._told: dict[int, ToldRun[T]] = {run.dispatch_id: run for run in told}
        self._view: dict[int, ToldRun[T]] | None = dict(self._told) if holding else None
        self.changed: set[int] = set()
        """Ids whose told run changed since the owner last saved (it clears this)."""

    @property
    def holding(self) -> bool:
        """Whether events are held (not yet told) until `release`."""
        return self._view is not None

    @property
    def told(self) -> Mapping[int, ToldRun[T]]:
        """The runs told and not yet stopped: what to save."""
        return self._told

    def current(self, dispatch_id: int) -> ToldRun[T] | None:
        """The run of a dispatch as told (or as held to be told), None if none."""
        return self._runs.get(dispatch_id)

    def update(
        self, dispatch_id: int, run: Run | None, subject: T, version: int = 0
    ) -> tuple[Run | None, list[Transition[T]]]:
        """Compare what runs now for one dispatch with what was told.

        Args:
            dispatch_id: The dispatch.
            run: Its run now, None if it does not run.
            subject: The dispatch as it is now (or as last seen, if it is gone).
            version: The subject's version (part of a new run's id).

        Returns:
            The run as it is to be shown (its start the one first told, if it
            goes on), and the transitions to send, in order.

        """
        runs = self._runs
        told = runs.get(dispatch_id)
        if told is not None and run is not None and told.continues_as(run):
            if told.end != run.end or told.subject is not subject:
                runs[dispatch_id] = replace(told, end=run.end, subject=subject)
                self._changed(dispatch_id)
            return Run(told.start, run.end), []
        transitions: list[Transition[T]] = []
        if told is not None:
            del runs[dispatch_id]
            transitions.append(Transition(False, replace(told, subject=subject)))
        if run is not None:
            new = runs[dispatch_id] = ToldRun(
                dispatch_id, run.start, run.end, subject, version
            )
            transitions.append(Transition(True, new))
        if transitions:
            self._changed(dispatch_id)
        return run, transitions

    def sync(self, running: Mapping[int, object]) -> list[Transition[T]]:
        """`stopped` for every told run whose dispatch is not in `running`.

        The runs that are in it are compared one by one with `update`; this
        ends the others: startup against the cache, or removal (against
        nothing). Their `stopped` carries the subject last told.
        """
        runs = self._runs
        gone = [dispatch_id for dispatch_id in runs if dispatch_id not in running]
        for dispatch_id in gone:
            self._changed(dispatch_id)
        return [Transition(False, runs.pop(dispatch_id)) for dispatch_id in gone]

    def release(self) -> None:
        """The held events were sent: what was held is told now (`changed`)."""
        view, self._view = self._view, None
        if view is not None and view != self._told:
            self.changed.update(
                dispatch_id
                for dispatch_id in view.keys() | self._told.keys()
                if view.get(dispatch_id) is not self._told.get(dispatch_id)
            )
            self._told = view

    def _changed(self, dispatch_id: int) -> None:
        if self._view is None:
            self.changed.add(dispatch_id)

    @property
    def _runs(self) -> dict[int, ToldRun[T]]:
        return self._told if self._view is None else self._view
