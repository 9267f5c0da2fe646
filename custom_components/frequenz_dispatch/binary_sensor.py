"""Binary sensors: one per dispatch, one per dispatch type, and connectivity."""

from __future__ import annotations

from typing import Any

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
)
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.util import slugify

from .const import CONF_DRY_RUN_COUNTS, DOMAIN
from .coordinator import FrequenzDispatchCoordinator
from .data import FrequenzDispatchConfigEntry
from .entity import FrequenzDispatchEntity
from .event_data import dispatch_data, run_data

PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: FrequenzDispatchConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the sensors now and whenever dispatches or types appear."""
    coordinator = entry.runtime_data
    registry = er.async_get(hass)
    dispatch_ids: set[int] = set()
    types: set[str] = set()

    @callback
    def _sync_entities() -> None:
        current_ids = set(coordinator.data)
        current_types = {item.dispatch.type for item in coordinator.data.values()}
        new: list[BinarySensorEntity] = [
            DispatchRunningSensor(coordinator, dispatch_id)
            for dispatch_id in sorted(current_ids - dispatch_ids)
        ]
        new += [
            DispatchTypeSensor(coordinator, type_) for type_ in current_types - types
        ]
        for dispatch_id in dispatch_ids - current_ids:
            _remove(f"dispatch_{dispatch_id}")
        for type_ in types - current_types:
            _remove(_type_key(type_))
        dispatch_ids.clear()
        dispatch_ids.update(current_ids)
        types.clear()
        types.update(current_types)
        if new:
            async_add_entities(new)

    @callback
    def _remove(key: str) -> None:
        unique_id = f"{entry.entry_id}_{key}"
        if entity_id := registry.async_get_entity_id(
            "binary_sensor", DOMAIN, unique_id
        ):
            registry.async_remove(entity_id)

    async_add_entities([ConnectivitySensor(coordinator)])
    _sync_entities()
    entry.async_on_unload(coordinator.async_add_listener(_sync_entities))


def _type_key(dispatch_type: str) -> str:
    return f"type_{slugify(dispatch_type)}"


class DispatchRunningSensor(FrequenzDispatchEntity, BinarySensorEntity):
    """On while one dispatch runs."""

    _attr_device_class = BinarySensorDeviceClass.RUNNING
    _attr_translation_key = "dispatch"

    def __init__(
        self, coordinator: FrequenzDispatchCoordinator, dispatch_id: int
    ) -> None:
        """Follow the dispatch with this id."""
        super().__init__(coordinator, f"dispatch_{dispatch_id}")
        self.dispatch_id = dispatch_id
        item = coordinator.data[dispatch_id]
        self._attr_translation_placeholders = {
            "dispatch_id": str(dispatch_id),
            "type": item.dispatch.type,
        }

    @property
    def available(self) -> bool:
        """Unavailable only between its deletion and its removal."""
        return self.dispatch_id in self.coordinator.data

    @property
    def is_on(self) -> bool:
        """Whether the dispatch runs now."""
        return self.coordinator.scheduler.run_of(self.dispatch_id) is not None

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """The dispatch fields and its current/next window."""
        item = self.coordinator.data.get(self.dispatch_id)
        if item is None:
            return None
        run = self.coordinator.scheduler.run_of(self.dispatch_id)
        next_start = self.coordinator.next_start(self.dispatch_id)
        return {
            **dispatch_data(item.dispatch),
            **run_data(run),
            "next_start": None if next_start is None else next_start.isoformat(),
        }


class DispatchTypeSensor(FrequenzDispatchEntity, BinarySensorEntity):
    """On while any dispatch of one type runs (upstream's merge-by-type)."""

    _attr_device_class = BinarySensorDeviceClass.RUNNING
    _attr_translation_key = "dispatch_type"

    def __init__(
        self, coordinator: FrequenzDispatchCoordinator, dispatch_type: str
    ) -> None:
        """Follow every dispatch of this type."""
        super().__init__(coordinator, _type_key(dispatch_type))
        self.dispatch_type = dispatch_type
        self._attr_translation_placeholders = {"type": dispatch_type}
        self._dry_run_counts = bool(
            coordinator.config_entry.options.get(CONF_DRY_RUN_COUNTS, False)
        )

    def _running_ids(self) -> list[int]:
        data = self.coordinator.data
        return sorted(
            dispatch_id
            for dispatch_id in self.coordinator.scheduler.running
            if (item := data.get(dispatch_id)) is not None
            and item.dispatch.type == self.dispatch_type
            and (self._dry_run_counts or not item.dispatch.dry_run)
        )

    @property
    def is_on(self) -> bool:
        """Whether any dispatch of the type runs."""
        return bool(self._running_ids())

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        """Which dispatches keep it on."""
        return {"running_dispatch_ids": self._running_ids()}


class ConnectivitySensor(FrequenzDispatchEntity, BinarySensorEntity):
    """Whether the Dispatch API stream is connected."""

    _attr_device_class = BinarySensorDeviceClass.CONNECTIVITY
    _attr_entity_category = EntityCategory.DIAGNOSTIC
    _attr_translation_key = "api_connection"

    def __init__(self, coordinator: FrequenzDispatchCoordinator) -> None:
        """One per microgrid."""
        super().__init__(coordinator, "api_connection")

    @property
    def is_on(self) -> bool:
        """Whether the stream is up."""
        return self.coordinator.connected
