"""Event entity: the dispatch lifecycle and run events of one microgrid."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeassistant.components.event import EventEntity
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import ALL_EVENTS, DOMAIN
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
    """Mirrors the bus events of this entry (created, updated, ..., stopped)."""

    _attr_translation_key = "dispatch_event"
    _attr_event_types = EVENT_TYPES

    def __init__(self, coordinator: FrequenzDispatchCoordinator) -> None:
        """One per microgrid."""
        super().__init__(coordinator, "dispatch_event")

    async def async_added_to_hass(self) -> None:
        """Listen to this entry's bus events."""
        await super().async_added_to_hass()
        entry_id = self.coordinator.config_entry.entry_id

        @callback
        def _mine(event_data: Mapping[str, Any]) -> bool:
            return event_data.get("config_entry_id") == entry_id

        for event_type in ALL_EVENTS:
            self.async_on_remove(
                self.hass.bus.async_listen(
                    event_type, self._handle_bus_event, event_filter=_mine
                )
            )

    @callback
    def _handle_bus_event(self, event: Event[Mapping[str, Any]]) -> None:
        self._trigger_event(
            str(event.event_type).removeprefix(f"{DOMAIN}_"), dict(event.data)
        )
        self.async_write_ha_state()
