"""Fires the bus events of one config entry, held back until HA has started."""

from __future__ import annotations

from typing import Any

from homeassistant.core import HomeAssistant, callback

from .api import ValidDispatch
from .const import EVENT_STARTED, EVENT_STOPPED, EVENT_UPDATED
from .event_data import event_data
from .schedule import Run

_WITH_WINDOW = frozenset({EVENT_STARTED, EVENT_STOPPED, EVENT_UPDATED})


class EventReporter:
    """Turns dispatch changes into `frequenz_dispatch_*` bus events.

    Events found while the entry sets up (runs already under way at boot)
    are kept until `release()`: automations attach their triggers only once
    Home Assistant has started, and the event entity once its platform is set
    up. They are then fired in their original order.
    """

    def __init__(self, hass: HomeAssistant, entry_id: str, microgrid_id: int) -> None:
        """Hold events until `release()`."""
        self._hass = hass
        self._entry_id = entry_id
        self._microgrid_id = microgrid_id
        self._held: list[tuple[str, dict[str, Any]]] | None = []

    @callback
    def fire(
        self, event_type: str, item: ValidDispatch, run: Run | None = None
    ) -> None:
        """Fire now, or keep the event for `release()`."""
        data = event_data(
            self._entry_id,
            self._microgrid_id,
            item.dispatch,
            run,
            with_window=event_type in _WITH_WINDOW,
        )
        if self._held is None:
            self._hass.bus.async_fire(event_type, data)
        else:
            self._held.append((event_type, data))

    @callback
    def release(self) -> None:
        """Fire the held events; from now on events go out at once."""
        held, self._held = self._held or [], None
        for event_type, data in held:
            self._hass.bus.async_fire(event_type, data)
