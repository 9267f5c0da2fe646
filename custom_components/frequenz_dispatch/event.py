"""Event entity: the dispatch lifecycle and run events of one microgrid."""

from __future__ import annotations

from typing import Any

from homeassistant.components.event import EventEntity
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import ALL_EVENTS, DOMAIN, signal_event
from .coordinator import FrequenzDispatchCoordinator
from .data import FrequenzDispatchConfigEntry
from .entity import FrequenzDispatchEntity

PARALLEL_UPDATES = 0
EVENT_TYPES = [event_type.removeprefix(f"{DOMAIN}_") for event_type in ALL_EVENTS]


async def async_setup_entry(
    hass: HomeAssistant,
    entry: FrequenzDispatchConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the microgrid's event entity."""
    async_add_entities([DispatchEventEntity(entry.runtime_data)])


class DispatchEventEntity(FrequenzDispatchEntity, EventEntity):
    """Shows each event of this entry (created, updated, ..., stopped).

    The coordinator sends them on a per-entry signal, with the same data as
    the bus event.
    """

    _attr_translation_key = "dispatch_event"
    _attr_event_types = EVENT_TYPES
    _unrecorded_attributes = frozenset({"payload", "recurrence"})

    def __init__(self, coordinator: FrequenzDispatchCoordinator) -> None:
        """One per microgrid."""
        super().__init__(coordinator, "dispatch_event")
        self._signal = signal_event(coordinator.config_entry.entry_id)

    @callback
    def _handle_change(self, event_type: str, data: dict[str, Any]) -> None:  # type: ignore[override]
        """Show one event."""
        self._trigger_event(event_type, data)
        self.async_write_ha_state()
