"""Sensors: next dispatch start, number of running dispatches, payload values."""

from __future__ import annotations

from datetime import datetime

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorStateClass,
)
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import SUBENTRY_SETPOINT, signal_summary
from .coordinator import FrequenzDispatchCoordinator
from .data import FrequenzDispatchConfigEntry
from .entity import FrequenzDispatchEntity
from .setpoint_sensor import SetpointSensor
from .subentries import async_follow_subentries

PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: FrequenzDispatchConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the microgrid's summary sensors and the payload sensors."""
    coordinator = entry.runtime_data
    async_add_entities([NextStartSensor(coordinator), RunningCountSensor(coordinator)])
    async_follow_subentries(
        hass,
        entry,
        Platform.SENSOR,
        SUBENTRY_SETPOINT,
        SetpointSensor,
        async_add_entities,
    )


class NextStartSensor(FrequenzDispatchEntity, SensorEntity):
    """When the next dispatch run begins."""

    _attr_device_class = SensorDeviceClass.TIMESTAMP
    _attr_translation_key = "next_start"

    def __init__(self, coordinator: FrequenzDispatchCoordinator) -> None:
        """One per microgrid."""
        super().__init__(coordinator, "next_start")
        self._signal = signal_summary(coordinator.config_entry.entry_id)

    @property
    def native_value(self) -> datetime | None:
        """The earliest upcoming start of any dispatch (a heap's top)."""
        return self.coordinator.next_start()


class RunningCountSensor(FrequenzDispatchEntity, SensorEntity):
    """How many dispatches run now."""

    _attr_state_class = SensorStateClass.MEASUREMENT
    _attr_translation_key = "running_dispatches"

    def __init__(self, coordinator: FrequenzDispatchCoordinator) -> None:
        """One per microgrid."""
        super().__init__(coordinator, "running_dispatches")
        self._signal = signal_summary(coordinator.config_entry.entry_id)

    @property
    def native_value(self) -> int:
        """Number of running dispatches (dry runs included)."""
        return self.coordinator.running_count
