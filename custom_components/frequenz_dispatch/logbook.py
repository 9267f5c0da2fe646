"""Logbook descriptions of the dispatch bus events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeassistant.components.logbook.const import (
    LOGBOOK_ENTRY_MESSAGE,
    LOGBOOK_ENTRY_NAME,
)
from homeassistant.core import Event, HomeAssistant, callback

from .const import ALL_EVENTS, DOMAIN

_MESSAGES = {
    "created": "was created",
    "updated": "was updated",
    "deleted": "was deleted",
    "started": "started",
    "stopped": "stopped",
}


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
        message = _MESSAGES.get(kind, kind)
        if kind == "started" and data.get("window_end"):
            message = f"started (until {data['window_end']})"
        if data.get("dry_run"):
            message += " [dry run]"
        return {
            LOGBOOK_ENTRY_NAME: (
                f"Dispatch {data.get('dispatch_id')} ({data.get('type')})"
            ),
            LOGBOOK_ENTRY_MESSAGE: message,
        }

    for event_type in ALL_EVENTS:
        async_describe_event(DOMAIN, event_type, describe)
