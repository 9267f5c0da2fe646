"""Binary sensors: one per current dispatch, one per dispatch type, connectivity.

Two rules decide which exist:
- a dispatch has a sensor while it runs or has a run to come; once its last
  run has ended (or it is inactive with nothing to come) the sensor leaves the
  entity registry, and it comes back if an update gives it a run again;
- a type's sensor stays once created, off with no ids when its last dispatch
  goes, so a user's renames and areas are kept.
"""

from __future__ import annotations

import asyncio
from typing import Any

from homeassistant.components.binary_sensor import (  # type: ignore[attr-defined,unused-ignore]
    BinarySensorDeviceClass,
    BinarySensorEntity,
)
from homeassistant.const import EntityCategory, Platform
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.entity import Entity
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import (
    DOMAIN,
    SUBENTRY_GROUP,
    entity_unique_id,
    signal_connection,
    signal_dispatch,
    signal_type,
    type_sensor_key,
)
from .coordinator import FrequenzDispatchCoordinator
from .data import FrequenzDispatchConfigEntry
from .entity import FrequenzDispatchEntity
from .group_sensor import TypeTargetSensor
from .names import type_name
from .subentries import async_follow_subentries

PARALLEL_UPDATES = 0
BATCH = 100
"""Entities added per call: each call is its own task, so the loop breathes."""


async def async_setup_entry(
    hass: HomeAssistant,
    entry: FrequenzDispatchConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the sensors now; follow the coordinator's entity changes."""
    coordinator = entry.runtime_data
    registry = er.async_get(hass)
    dispatch_prefix = entity_unique_id(coordinator.microgrid_id, "dispatch_")
    type_prefix = entity_unique_id(coordinator.microgrid_id, type_sensor_key(""))
    sensors: dict[int, DispatchRunningSensor] = {}
    """The sensor of every dispatch that has one, or is being added."""

    def add_in_batches(entities: list[Entity]) -> None:
        for first in range(0, len(entities), BATCH):
            async_add_entities(entities[first : first + BATCH])

    def new_sensor(dispatch_id: int) -> DispatchRunningSensor:
        sensor = sensors[dispatch_id] = DispatchRunningSensor(coordinator, dispatch_id)

        @callback
        def forget() -> None:
            if sensors.get(dispatch_id) is sensor:
                del sensors[dispatch_id]

        sensor.async_on_remove(forget)
        return sensor

    @callback
    def _changed(appeared: list[int], vanished: list[int], types: list[str]) -> None:
        for dispatch_id in vanished:
            entity_id = registry.async_get_entity_id(
                "binary_sensor", DOMAIN, f"{dispatch_prefix}{dispatch_id}"
            )
            if entity_id is not None:
                sensors.pop(dispatch_id, None)
                registry.async_remove(entity_id)
            # Otherwise it is still being added: once added, it sees that its
            # dispatch is gone and removes itself (no orphan, no duplicate).
        new: list[Entity] = [
            DispatchTypeSensor(coordinator, dispatch_type) for dispatch_type in types
        ]
        new.extend(new_sensor(i) for i in appeared if i not in sensors)
        add_in_batches(new)

    current, types = coordinator.async_set_entity_listener(_changed)
    wanted = set(current)
    known_types = set(types)
    # The registry is the reference: sensors of dispatches that ended or went
    # while the entry was not loaded leave it; type sensors come back.
    for reg_entry in er.async_entries_for_config_entry(registry, entry.entry_id):
        if reg_entry.domain != "binary_sensor":
            continue
        if reg_entry.unique_id.startswith(dispatch_prefix):
            suffix = reg_entry.unique_id.removeprefix(dispatch_prefix)
            if not suffix.isdigit() or int(suffix) not in wanted:
                registry.async_remove(reg_entry.entity_id)
        elif reg_entry.unique_id.startswith(type_prefix):
            # The unique id holds the exact type (const.type_sensor_key).
            known = reg_entry.unique_id.removeprefix(type_prefix)
            if known and known not in known_types:
                known_types.add(known)
                types.append(known)
    coordinator.async_add_known_types(types)
    async_add_entities([ConnectivitySensor(coordinator)])
    async_follow_subentries(
        hass,
        entry,
        Platform.BINARY_SENSOR,
        SUBENTRY_GROUP,
        TypeTargetSensor,
        async_add_entities,
    )
    add_in_batches([DispatchTypeSensor(coordinator, t) for t in sorted(types)])
    ordered = sorted(current)
    for first in range(0, len(ordered), BATCH):
        async_add_entities(
            [
                new_sensor(dispatch_id)
                for dispatch_id in ordered[first : first + BATCH]
                # Not added by a change, nor gone, while we yielded.
                if dispatch_id not in sensors and _is_current(coordinator, dispatch_id)
            ]
        )
        await asyncio.sleep(0)


def _is_current(coordinator: FrequenzDispatchCoordinator, dispatch_id: int) -> bool:
    """Whether the dispatch runs or has a run to come (it has a sensor then)."""
    state = coordinator.state_of(dispatch_id)
    return state is not None and state.current


class DispatchRunningSensor(FrequenzDispatchEntity, BinarySensorEntity):
    """On while one dispatch runs."""

    _attr_device_class = BinarySensorDeviceClass.RUNNING
    _attr_translation_key = "dispatch"
    _unrecorded_attributes = frozenset({"payload", "recurrence"})

    def __init__(
        self, coordinator: FrequenzDispatchCoordinator, dispatch_id: int
    ) -> None:
        """Follow the dispatch with this id."""
        super().__init__(coordinator, f"dispatch_{dispatch_id}")
        self.dispatch_id = dispatch_id
        self._signal = signal_dispatch(coordinator.config_entry.entry_id, dispatch_id)
        state = coordinator.state_of(dispatch_id)
        self._type = "" if state is None else state.item.dispatch.type
        self._attr_translation_placeholders = self._placeholders(self._type)

    @property
    def suggested_object_id(self) -> str:
        """The entity ID is built from the raw type, whatever the language."""
        return f"dispatch {self.dispatch_id} {self._type}"

    def _placeholders(self, dispatch_type: str) -> dict[str, str]:
        """Of the translated name: "{type} (dispatch {dispatch_id})"."""
        return {
            "dispatch_id": str(self.dispatch_id),
            "type": type_name(self.coordinator.hass, dispatch_type),
        }

    async def async_added_to_hass(self) -> None:
        """Follow the dispatch; leave at once if it went while being added."""
        await super().async_added_to_hass()
        if not _is_current(self.coordinator, self.dispatch_id):
            # After HA has finished adding it (it writes its state first).
            self.hass.loop.call_soon(self._remove_if_gone)

    @callback
    def _remove_if_gone(self) -> None:
        if self.registry_entry is not None and not _is_current(
            self.coordinator, self.dispatch_id
        ):
            er.async_get(self.hass).async_remove(self.entity_id)

    @callback
    def _handle_change(self) -> None:
        """Write the new state; a new type renames the sensor."""
        state = self.coordinator.state_of(self.dispatch_id)
        renamed = state is not None and state.item.dispatch.type != self._type
        if renamed:
            assert state is not None
            self._type = state.item.dispatch.type
            self._attr_translation_placeholders = self._placeholders(self._type)
            # HA keeps the name it formatted from the translation (a cached
            # property); drop it so the new placeholders are used.
            self.__dict__.pop("name", None)
        super()._handle_change()
        if (
            renamed
            and (entry := self.registry_entry) is not None
            and isinstance(name := self.name, str)
            and entry.original_name != name
        ):
            # HA 2026.x updates the registry's name as it writes the state;
            # older versions keep the name the entity was added with.
            er.async_get(self.hass).async_update_entity(
                self.entity_id, original_name=name
            )

    @property
    def is_on(self) -> bool:
        """Whether the dispatch runs now."""
        return self.coordinator.run_of(self.dispatch_id) is not None

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """The dispatch fields and its current/next window (prebuilt)."""
        return self.coordinator.attributes(self.dispatch_id)


class DispatchTypeSensor(FrequenzDispatchEntity, BinarySensorEntity):
    """On while any dispatch of one type runs (upstream's merge-by-type)."""

    _attr_device_class = BinarySensorDeviceClass.RUNNING
    _attr_translation_key = "dispatch_type"

    def __init__(
        self, coordinator: FrequenzDispatchCoordinator, dispatch_type: str
    ) -> None:
        """Follow every dispatch of this type."""
        super().__init__(coordinator, type_sensor_key(dispatch_type))
        self.dispatch_type = dispatch_type
        self._signal = signal_type(coordinator.config_entry.entry_id, dispatch_type)
        # "Battery charge running": the readable type, in HA's language.
        self._attr_translation_placeholders = {
            "type": type_name(coordinator.hass, dispatch_type)
        }

    @property
    def suggested_object_id(self) -> str:
        """The entity ID is built from the raw type, whatever the language."""
        return f"{self.dispatch_type} running"

    @property
    def is_on(self) -> bool:
        """Whether any dispatch of the type runs."""
        return self.coordinator.is_type_running(self.dispatch_type)

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        """Which dispatches keep it on."""
        return {
            "running_dispatch_ids": self.coordinator.running_of_type(self.dispatch_type)
        }


class ConnectivitySensor(FrequenzDispatchEntity, BinarySensorEntity):
    """Whether the Dispatch API stream is connected."""

    _attr_device_class = BinarySensorDeviceClass.CONNECTIVITY
    _attr_entity_category = EntityCategory.DIAGNOSTIC
    _attr_translation_key = "api_connection"

    def __init__(self, coordinator: FrequenzDispatchCoordinator) -> None:
        """One per microgrid."""
        super().__init__(coordinator, "api_connection")
        self._signal = signal_connection(coordinator.config_entry.entry_id)

    @property
    def is_on(self) -> bool:
        """Whether the stream is up."""
        return self.coordinator.connected
