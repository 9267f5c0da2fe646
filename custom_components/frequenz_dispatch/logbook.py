"""Logbook lines for the dispatch bus events: readable names, local times, icons."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from homeassistant.components.logbook.const import (
    LOGBOOK_ENTRY_ICON,
    LOGBOOK_ENTRY_MESSAGE,
    LOGBOOK_ENTRY_NAME,
)
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.util import dt as dt_util

from .const import ALL_EVENTS, DOMAIN
from .names import type_name

ICONS: Final = {
    "created": "mdi:calendar-plus",
    "updated": "mdi:calendar-edit",
    "deleted": "mdi:calendar-remove",
    "started": "mdi:play-circle",
    "stopped": "mdi:stop-circle",
}


def _local(value: Any) -> datetime | None:
    """An ISO time from the event data in HA's time zone (None if unreadable)."""
    if not isinstance(value, str):
        return None
    parsed = dt_util.parse_datetime(value)
    return None if parsed is None else dt_util.as_local(parsed)


def _when(moment: datetime, same_day_as: datetime | None = None) -> str:
    """Local time as read: "14:15" on the same day, else "3 Dec 14:15".

    The year is added when it is not the current one.
    """
    clock = moment.strftime("%H:%M")
    if same_day_as is not None and moment.date() == same_day_as.date():
        return clock
    day = f"{moment.day} {moment.strftime('%b')}"
    if moment.year != dt_util.now().year:
        day = f"{day} {moment.year}"
    return f"{day} {clock}"


def describe_message(kind: str, data: dict[str, Any]) -> str:
    """The message of one event, e.g. "started, until 14:15"."""
    message = {
        "created": "was created",
        "updated": "was updated",
        "deleted": "was deleted",
        "started": "started",
        "stopped": "stopped",
    }.get(kind, kind)
    window_start = _local(data.get("window_start"))
    if kind == "started":
        if (end := _local(data.get("window_end"))) is not None:
            message += f", until {_when(end, window_start)}"
        elif window_start is not None:
            message += ", open-ended"
    elif kind == "created" and (start := _local(data.get("start_time"))) is not None:
        message += f", starts {_when(start)}"
    if data.get("dry_run"):
        message += " (dry run)"
    return message


@callback
def async_describe_events(
    hass: HomeAssistant,
    async_describe_event: Callable[[str, str, Callable[[Event], dict[str, Any]]], None],
) -> None:
    """Describe the five dispatch events."""

    @callback
    def describe(event: Event) -> dict[str, Any]:
        data = event.data
        kind = str(event.event_type).removeprefix(f"{DOMAIN}_")
        dispatch_type = data.get("type")
        name = type_name(hass, dispatch_type) if dispatch_type else "Dispatch"
        return {
            LOGBOOK_ENTRY_NAME: f"{name} (dispatch {data.get('dispatch_id')})",
            LOGBOOK_ENTRY_MESSAGE: describe_message(kind, dict(data)),
            LOGBOOK_ENTRY_ICON: ICONS.get(kind, "mdi:calendar-clock"),
        }

    for event_type in ALL_EVENTS:
        async_describe_event(DOMAIN, event_type, describe)
