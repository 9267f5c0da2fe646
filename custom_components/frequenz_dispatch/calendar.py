"""Calendar: every run of every dispatch of a microgrid, one calendar per entry."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
import heapq
from itertools import islice
import json
from typing import Any, Final

from homeassistant.components.calendar import CalendarEntity, CalendarEvent
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.util import dt as dt_util

from .api import ValidDispatch
from .const import signal_runs_changed
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
            return _event(self.hass, dispatches[dispatch_id], run)
        upcoming = self.coordinator.next_starting()
        if upcoming is None:
            return None
        start, dispatch_id = upcoming
        item = dispatches[dispatch_id]
        run = item.schedule.run_at(start) or Run(start, None)
        return _event(self.hass, item, run)

    async def async_get_events(
        self, hass: HomeAssistant, start_date: datetime, end_date: datetime
    ) -> list[CalendarEvent]:
        """The runs meeting the range, earliest first, at most MAX_EVENTS_PER_QUERY."""
        start = dt_util.as_utc(start_date)
        end = dt_util.as_utc(end_date)
        items = list(self.coordinator.dispatches().values())
        # Capped, lazily merged: a few milliseconds even for a year of runs
        # every minute, so it stays on the loop.
        runs = _earliest_runs(items, start, end)
        return [_event(hass, item, run) for run, item in runs]


def _earliest_runs(
    items: list[ValidDispatch], start: datetime, end: datetime
) -> list[tuple[Run, ValidDispatch]]:
    """The first MAX_EVENTS_PER_QUERY runs of all dispatches meeting [start, end).

    A lazy merge: each dispatch computes only as many runs as are taken.
    """
    merged = heapq.merge(
        *(_runs(item, start, end) for item in items), key=lambda pair: pair[0].start
    )
    return list(islice(merged, MAX_EVENTS_PER_QUERY))


def _runs(
    item: ValidDispatch, start: datetime, end: datetime
) -> Iterator[tuple[Run, ValidDispatch]]:
    """The runs of one dispatch meeting [start, end)."""
    for run in item.schedule.runs_between(start, end):
        yield run, item


def _plain(value: Any) -> Any:
    """Whole numbers without ".0" (a protobuf Struct stores every number as float)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _plain(v) for key, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@callback
def _event(hass: HomeAssistant, item: ValidDispatch, run: Run) -> CalendarEvent:
    """One run as a calendar event: readable summary, raw fields in the description."""
    data = dispatch_data(item.dispatch)
    summary = type_name(hass, data["type"])
    if data["dry_run"]:
        summary = f"{summary} (dry run)"
    target = ", ".join(str(t) for t in data["target"])
    payload = json.dumps(_plain(data["payload"]), sort_keys=True, ensure_ascii=False)
    return CalendarEvent(
        start=dt_util.as_local(run.start),
        end=dt_util.as_local(run.end if run.end is not None else run.start + OPEN_END),
        summary=summary,
        description=(
            f"Type: {data['type']}\nTarget: {target}\nPayload: {payload}\n"
            f"Dispatch ID: {item.id}"
        ),
        uid=f"dispatch-{item.id}",
        recurrence_id=run.start.isoformat() if data["recurrence"] else None,
    )
