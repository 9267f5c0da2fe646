"""Fires the events of one config entry, held back until HA has started."""

from __future__ import annotations

from typing import Any

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.dispatcher import async_dispatcher_send

from .const import DOMAIN, signal_event


class EventReporter:
    """Sends each dispatch event to the bus and to the entry's event entity.

    Events found while the entry sets up (runs already under way at boot)
    are kept until `release()`: automations attach their triggers only once
    Home Assistant has started, and the event entity once its platform is set
    up. They are then sent in their original order.
    """

    def __init__(self, hass: HomeAssistant, entry_id: str) -> None:
        """Hold events until `release()`."""
        self._hass = hass
        self._signal = signal_event(entry_id)
        self._held: list[tuple[str, dict[str, Any]]] | None = []

    @callback
    def fire(self, event_type: str, data: dict[str, Any]) -> None:
        """Send now, or keep the event for `release()`."""
        if self._held is None:
            self._send(event_type, data)
        else:
            self._held.append((event_type, data))

    @callback
    def release(self) -> None:
        """Send the held events; from now on events go out at once."""
        held, self._held = self._held or [], None
        for event_type, data in held:
            self._send(event_type, data)

    @callback
    def _send(self, event_type: str, data: dict[str, Any]) -> None:
        self._hass.bus.async_fire(event_type, data)
        async_dispatcher_send(
            self._hass, self._signal, event_type.removeprefix(f"{DOMAIN}_"), data
        )
