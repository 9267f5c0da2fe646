"""Base entity: one service device per microgrid, unique ids from the entry id."""

from __future__ import annotations

from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import DOMAIN
from .coordinator import FrequenzDispatchCoordinator


class FrequenzDispatchEntity(CoordinatorEntity[FrequenzDispatchCoordinator]):
    """An entity of one microgrid's dispatch service."""

    _attr_has_entity_name = True

    def __init__(self, coordinator: FrequenzDispatchCoordinator, key: str) -> None:
        """Attach to the coordinator; `key` makes the unique id."""
        super().__init__(coordinator)
        entry_id = coordinator.config_entry.entry_id
        self._attr_unique_id = f"{entry_id}_{key}"
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, entry_id)},
            name=f"Microgrid {coordinator.microgrid_id}",
            manufacturer="Frequenz",
            model="Dispatch API",
            entry_type=DeviceEntryType.SERVICE,
        )

    @property
    def available(self) -> bool:
        """Cached dispatches stay valid while the stream reconnects."""
        return True
