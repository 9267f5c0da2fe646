"""Calendar: every run of every dispatch of a microgrid, one calendar per entry."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
import heapq
import json
from typing import Any, Final

from frequenz.client.dispatch.recurrence import Frequency
from frequenz.client.dispatch.types import Dispatch
from homeassistant.components.calendar import CalendarEntity, CalendarEvent
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.util import dt as dt_util

from .api import ValidDispatch
from .const import LOGGER, signal_runs_changed
from .coordinator import FrequenzDispatchCoordinator
from .data import FrequenzDispatchConfigEntry
from .entity import FrequenzDispatchEntity
from .event_data import dispatch_data
from .names import type_name
from .schedule import Run

PARALLEL_UPDATES = 0

MAX_EVENTS_PER_QUERY: Final = 1000
"""Most events one query returns (the earliest ones of the asked range).

A dispatch repeating every minute has 525,600 runs a year; the calendar's
month view must not make the event loop compute them all.
"""

MAX_STEPS_PER_QUERY: Final = 20_000
"""Most schedule steps one query takes (a step: one run computed, or one
dispatch found to have no more runs in the range).

A range after now costs a step or two per dispatch with a run in it; a range
reaching into the past one more per dispatch begun before its end. Past the
cap the query returns the runs found so far that are surely the earliest
(fewer than asked for), so 10,000 dispatches never stall the loop.
"""

OPEN_END: Final = timedelta(days=365)
"""A calendar event needs an end: an open-ended run is shown this long."""


async def async_setup_entry(
    hass: HomeAssistant,
    entry: FrequenzDispatchConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the microgrid's calendar."""
    async_add_entities([DispatchCalendar(entry.runtime_data)])


class DispatchCalendar(FrequenzDispatchEntity, CalendarEntity):
    """The runs of the microgrid's dispatches; on while one runs."""

    _attr_translation_key = "dispatches"
    # The description holds the payload, which can be large.
    _unrecorded_attributes = frozenset({"description"})

    def __init__(self, coordinator: FrequenzDispatchCoordinator) -> None:
        """One per microgrid."""
        super().__init__(coordinator, "calendar")
        self._event: CalendarEvent | None = None
        self.query_steps = 0
        """Schedule steps of all queries so far (work counter for tests, benchmarks)."""
        self._failures: dict[int, int | None] = {}
        """Dispatch id -> the version whose failure was logged."""

    async def async_added_to_hass(self) -> None:
        """Recompute the current or next event whenever dispatches or runs change."""
        await super().async_added_to_hass()
        self._event = self._current_event()
        self.async_on_remove(
            async_dispatcher_connect(
                self.hass,
                signal_runs_changed(self.coordinator.config_entry.entry_id),
                self._runs_changed,
            )
        )

    @callback
    def _runs_changed(self) -> None:
        """Write the state only if the current or next event changed.

        The start and end of that event are HA's to write (its calendar sets
        timers for them). Other changes still reach the calendar views that
        follow the events live (newer HA versions push them on each state
        write, and on this call).
        """
        event = self._current_event()
        if event != self._event:
            self._event = event
            self.async_write_ha_state()
            return
        # Not in every HA version we support; it does nothing without views.
        update_views = getattr(self, "async_update_event_listeners", None)
        if update_views is not None:
            update_views()

    @property
    def event(self) -> CalendarEvent | None:
        """The run going on now (the earliest-started one), else the next one."""
        return self._event

    def _current_event(self) -> CalendarEvent | None:
        """The run going on now (the earliest-started one), else the next one."""
        # O(running) + O(1): the coordinator keeps the running runs and a heap
        # of next starts; never evaluate every dispatch on each change.
        dispatches = self.coordinator.dispatches()
        running = self.coordinator.running()
        if running:
            dispatch_id, run = min(
                running.items(), key=lambda pair: (pair[1].start, pair[0])
            )
            return self._guarded_event(dispatch_id, dispatches[dispatch_id], run)
        upcoming = self.coordinator.next_starting()
        if upcoming is None:
            return None
        start, dispatch_id = upcoming
        return self._guarded_event(dispatch_id, dispatches[dispatch_id], start)

    def _guarded_event(
        self,
        dispatch_id: int,
        item: ValidDispatch,
        run_or_start: Run | datetime,
    ) -> CalendarEvent | None:
        """The event of a run (or of the run starting then); failures logged once."""
        try:
            if isinstance(run_or_start, Run):
                run = run_or_start
            else:
                run = item.schedule.run_at(run_or_start) or Run(run_or_start, None)
            return _event(self.hass, item, run)
        except Exception as err:  # never break the entity or its signal handler
            self._log_failure(dispatch_id, err)
            return None

    async def async_get_events(
        self, hass: HomeAssistant, start_date: datetime, end_date: datetime
    ) -> list[CalendarEvent]:
        """The runs meeting the range, earliest first, in bounded work.

        At most MAX_EVENTS_PER_QUERY events and MAX_STEPS_PER_QUERY schedule
        steps, so it stays on the loop without stalling it. A dispatch whose
        schedule or event raises is left out (and logged once), never the
        whole query.
        """
        start = dt_util.as_utc(start_date)
        end = dt_util.as_utc(end_date)
        query = _RunQuery(self.coordinator, start, end, dt_util.utcnow())
        runs = query.earliest_runs()
        self.query_steps += query.steps
        if query.capped:
            LOGGER.debug(
                "Calendar query %s - %s stopped after %s steps with %s events",
                start,
                end,
                query.steps,
                len(runs),
            )
        failed = query.failed
        texts: dict[int, _Texts] = {}
        events: list[tuple[int, CalendarEvent]] = []
        for run, item in runs:
            dispatch_id = item.id
            if dispatch_id in failed:
                continue
            try:
                if (text := texts.get(dispatch_id)) is None:
                    # Built once per version for dispatches with an entity;
                    # not kept for the others (memory per finished dispatch).
                    state = self.coordinator.state_of(dispatch_id)
                    data = None if state is None else state.data
                    if data is None:
                        data = dispatch_data(item.dispatch)
                    text = texts[dispatch_id] = _texts(hass, dispatch_id, data)
                events.append((dispatch_id, _calendar_event(text, run)))
            except Exception as err:  # one dispatch never fails the query
                failed[dispatch_id] = err
        for dispatch_id, error in failed.items():
            self._log_failure(dispatch_id, error)
        # A failed dispatch is left out entirely, also its runs found before.
        return [event for dispatch_id, event in events if dispatch_id not in failed]

    def _log_failure(self, dispatch_id: int, err: Exception) -> None:
        """Warn once per dispatch version that it is left out of the calendar."""
        state = self.coordinator.state_of(dispatch_id)
        version = None if state is None else state.item.version
        if dispatch_id in self._failures and self._failures[dispatch_id] == version:
            return
        self._failures[dispatch_id] = version
        LOGGER.warning("Dispatch %s is left out of the calendar: %r", dispatch_id, err)


class _RunQuery:
    """The earliest runs of all dispatches meeting [start, end), in bounded work.

    A lazy merge: the heap starts with a lower bound of each dispatch's first
    run instead of the run, and a dispatch's schedule is asked only when its
    bound is the smallest key left. So a range after now evaluates only the
    dispatches that run now or start a run before its end, and the steps
    (one run computed, or a dispatch found to have no more) never exceed
    MAX_STEPS_PER_QUERY.
    """

    def __init__(
        self,
        coordinator: FrequenzDispatchCoordinator,
        start: datetime,
        end: datetime,
        now: datetime,
    ) -> None:
        """A query of [start, end) asked at `now`."""
        self._coordinator = coordinator
        self._start = start
        self._end = end
        self._now = now
        self.steps = 0
        self.capped = False
        """Whether the step cap ended the query."""
        self.failed: dict[int, Exception] = {}
        """Dispatches whose schedule raised (or whose event could not be built)."""

    def earliest_runs(self) -> list[tuple[Run, ValidDispatch]]:
        """The first MAX_EVENTS_PER_QUERY runs; fewer if the step cap is reached."""
        items = self._coordinator.dispatches()
        # (key, id, run): the run's start, or a bound of it while run is None.
        # Ids are unique in the heap, so runs are never compared.
        heap = self._bounds()
        heapq.heapify(heap)
        iterators: dict[int, Iterator[Run]] = {}
        found: list[tuple[Run, ValidDispatch]] = []
        while heap and len(found) < MAX_EVENTS_PER_QUERY:
            _key, dispatch_id, run = heapq.heappop(heap)
            item = items[dispatch_id]
            if run is not None:
                found.append((run, item))
            if self.steps >= MAX_STEPS_PER_QUERY:
                # Out of steps: runs found are still taken while they come
                # before every bound left, as they are surely the earliest.
                self.capped = True
                if run is None:
                    break
                # Its next run, not computed, starts after this one.
                heapq.heappush(heap, (run.start, dispatch_id, None))
                continue
            self.steps += 1
            try:
                runs = iterators.get(dispatch_id)
                if runs is None:
                    runs = item.schedule.runs_between(self._start, self._end)
                    iterators[dispatch_id] = runs
                following = next(runs, None)
            except Exception as err:  # one dispatch never fails the query
                self.failed[dispatch_id] = err
                continue
            if following is not None:
                heapq.heappush(heap, (following.start, dispatch_id, following))
        return found

    def _bounds(self) -> list[tuple[datetime, int, Run | None]]:
        """(bound, id, None) of every dispatch that may have a run in the range.

        Runs of a dispatch are disjoint and none starts before its start
        time. So a dispatch running since before the range has no run in it
        starting before that run. In a range after now, a dispatch neither
        running nor with a run to come has none at all, one not running none
        starting before its next start. Only a range reaching into the past
        needs the other dispatches, except those that surely ended before it.
        """
        coordinator = self._coordinator
        start, end = self._start, self._end
        after_now = start >= self._now
        bounds: list[tuple[datetime, int, Run | None]] = []
        for dispatch_id, item in coordinator.dispatches().items():
            state = coordinator.state_of(dispatch_id)
            if state is None:
                continue
            run = state.run
            if run is not None and (after_now or run.start <= start):
                bound = run.start
            elif after_now:
                if state.next_start is None:
                    continue
                bound = state.next_start
            elif _ends_by(item.dispatch, start):
                continue
            else:
                bound = item.dispatch.start_time
            if bound < end:
                bounds.append((bound, dispatch_id, None))
        return bounds


def _ends_by(dispatch: Dispatch, instant: datetime) -> bool:
    """Whether every run of the dispatch surely ends by `instant` (cheap, no schedule).

    False when unsure: an open-ended or endless recurring dispatch.
    """
    if not dispatch.active:
        return True
    duration = dispatch.duration
    if duration is None:
        return False
    rule = dispatch.recurrence
    try:
        if rule.frequency == Frequency.UNSPECIFIED:
            return dispatch.start_time + duration <= instant
        until = rule.end_criteria.until if rule.end_criteria else None
        return until is not None and until + duration <= instant
    except OverflowError:  # past the year 9999
        return False


def _plain(value: Any) -> Any:
    """Whole numbers without ".0" (a protobuf Struct stores every number as float)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _plain(v) for key, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class _Texts:
    """What the events of one dispatch share."""

    summary: str
    description: str
    uid: str
    recurring: bool


@callback
def _texts(hass: HomeAssistant, dispatch_id: int, data: Mapping[str, Any]) -> _Texts:
    """Readable summary, raw fields in the description (`data`: dispatch_data)."""
    summary = type_name(hass, data["type"])
    if data["dry_run"]:
        summary = f"{summary} (dry run)"
    target = ", ".join(str(t) for t in data["target"])
    payload = json.dumps(_plain(data["payload"]), sort_keys=True, ensure_ascii=False)
    return _Texts(
        summary=summary,
        description=(
            f"Type: {data['type']}\nTarget: {target}\nPayload: {payload}\n"
            f"Dispatch ID: {dispatch_id}"
        ),
        uid=f"dispatch-{dispatch_id}",
        recurring=data["recurrence"] is not None,
    )


def _calendar_event(texts: _Texts, run: Run) -> CalendarEvent:
    """One run as a calendar event."""
    return CalendarEvent(
        start=dt_util.as_local(run.start),
        end=dt_util.as_local(run.end if run.end is not None else run.start + OPEN_END),
        summary=texts.summary,
        description=texts.description,
        uid=texts.uid,
        recurrence_id=run.start.isoformat() if texts.recurring else None,
    )


@callback
def _event(hass: HomeAssistant, item: ValidDispatch, run: Run) -> CalendarEvent:
    """One run as a calendar event: readable summary, raw fields in the description."""
    return _calendar_event(_texts(hass, item.id, dispatch_data(item.dispatch)), run)
