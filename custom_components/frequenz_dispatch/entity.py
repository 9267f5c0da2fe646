"""Base entity: one service device per microgrid, updated by dispatcher signals."""

from __future__ import annotations

from homeassistant.core import callback
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.entity import Entity

from .const import device_info, entity_unique_id
from .coordinator import FrequenzDispatchCoordinator


class FrequenzDispatchEntity(Entity):
    """An entity of one microgrid's dispatch service.

    It listens to the one signal of what it shows (`_signal`); the coordinator
    sends it only when that changed. Its state is read from the coordinator's
    prebuilt values, never recomputed here.
    """

    _attr_has_entity_name = True
    _attr_should_poll = False
    _signal: str | None = None
    """The dispatcher signal of what it shows (None: the subclass listens itself)."""

    def __init__(self, coordinator: FrequenzDispatchCoordinator, key: str) -> None:
        """Attach to the coordinator; `key` makes the unique id."""
        self.coordinator = coordinator
        self._attr_unique_id = entity_unique_id(coordinator.microgrid_id, key)
        self._attr_device_info = device_info(coordinator.microgrid_id)

    async def async_added_to_hass(self) -> None:
        """Follow the signal of what this entity shows."""
        await super().async_added_to_hass()
        if self._signal is not None:
            self.async_on_remove(
                async_dispatcher_connect(self.hass, self._signal, self._handle_change)
            )

    @callback
    def _handle_change(self) -> None:
        """What this entity shows changed: write the new state."""
        self.async_write_ha_state()
