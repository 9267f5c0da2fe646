"""Arms one HA time tracker per dispatch and reports when runs start and stop."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers.event import async_track_point_in_utc_time
from homeassistant.util import dt as dt_util

from .api import ValidDispatch
from .schedule import Run

type RunCallback = Callable[[ValidDispatch, Run], None]
type RunningState = dict[int, tuple[ValidDispatch, Run]]
"""Reported runs that have not stopped yet, by dispatch id."""


@dataclass(slots=True)
class _Tracked:
    item: ValidDispatch
    run: Run | None = None
    unsub: CALLBACK_TYPE | None = None

    def cancel_timer(self) -> None:
        if self.unsub is not None:
            self.unsub()
            self.unsub = None


class DispatchScheduler:
    """Knows which dispatches run now and wakes up exactly at each transition.

    Like HA's `schedule` integration: on every change or timer the state is
    recomputed from the clock, then the single timer of that dispatch is
    re-armed at its next transition. Contiguous windows are one run, so the
    model reports no transition at their boundary and nothing fires there.
    """

    def __init__(
        self,
        hass: HomeAssistant,
        on_started: RunCallback,
        on_stopped: RunCallback,
        on_transition: Callable[[], None],
        carried: RunningState | None = None,
    ) -> None:
        """Initialize with the callbacks that report transitions.

        `carried` are the runs a previous scheduler of the same entry reported
        as started (see `shutdown`): after a reload they continue silently
        instead of starting a second time.
        """
        self._hass = hass
        self._on_started = on_started
        self._on_stopped = on_stopped
        self._on_transition = on_transition
        self._tracked: dict[int, _Tracked] = {}
        self._carried: RunningState = dict(carried or {})

    def run_of(self, dispatch_id: int) -> Run | None:
        """The current run of a dispatch, None if it is not running."""
        tracked = self._tracked.get(dispatch_id)
        return None if tracked is None else tracked.run

    @property
    def running(self) -> dict[int, Run]:
        """Every running dispatch id with its run."""
        return {
            dispatch_id: tracked.run
            for dispatch_id, tracked in self._tracked.items()
            if tracked.run is not None
        }

    @callback
    def track(self, item: ValidDispatch) -> None:
        """Start following a dispatch, or follow its new version."""
        now = dt_util.utcnow()
        tracked = self._tracked.get(item.id)
        if tracked is None:
            tracked = self._tracked[item.id] = _Tracked(item)
            if carried := self._carried.pop(item.id, None):
                old_item, old_run = carried
                run = item.schedule.run_at(now)
                if run is not None and run.start == old_run.start:
                    tracked.run = old_run  # the same run goes on: no new start
                else:
                    self._on_stopped(old_item, old_run)
        else:
            tracked.cancel_timer()
            tracked.item = item
        self._evaluate(tracked, now)

    @callback
    def untrack(self, dispatch_id: int) -> None:
        """Stop following a dispatch; a running one stops now."""
        tracked = self._tracked.pop(dispatch_id, None)
        if tracked is None:
            return
        tracked.cancel_timer()
        if tracked.run is not None:
            self._on_stopped(tracked.item, tracked.run)

    @callback
    def stop_carried(self) -> None:
        """Report the end of carried runs whose dispatch no longer exists."""
        carried, self._carried = self._carried, {}
        for item, run in carried.values():
            self._on_stopped(item, run)

    @callback
    def shutdown(self) -> RunningState:
        """Cancel every timer silently; return the runs still going on."""
        running: RunningState = dict(self._carried)
        for dispatch_id, tracked in self._tracked.items():
            tracked.cancel_timer()
            if tracked.run is not None:
                running[dispatch_id] = (tracked.item, tracked.run)
        self._tracked.clear()
        self._carried.clear()
        return running

    @callback
    def _evaluate(self, tracked: _Tracked, now: datetime) -> None:
        previous = tracked.run
        tracked.run = run = tracked.item.schedule.run_at(now)
        if run is not None and previous is None:
            self._on_started(tracked.item, run)
        elif run is None and previous is not None:
            self._on_stopped(tracked.item, previous)

        wake_at = run.end if run is not None else tracked.item.schedule.next_start(now)
        if wake_at is not None:
            tracked.unsub = async_track_point_in_utc_time(
                self._hass, partial(self._wake, tracked.item.id), wake_at
            )

    @callback
    def _wake(self, dispatch_id: int, point: datetime) -> None:
        tracked = self._tracked.get(dispatch_id)
        if tracked is None:
            return
        tracked.unsub = None
        # HA passes the scheduled point; after a stall the clock may be later.
        self._evaluate(tracked, max(point, dt_util.utcnow()))
        self._on_transition()
