"""Binary sensors: one per dispatch, one per dispatch type, and connectivity."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
import hashlib
from typing import Any

from homeassistant.components.binary_sensor import (  # type: ignore[attr-defined,unused-ignore]
    BinarySensorDeviceClass,
    BinarySensorEntity,
)
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.util import slugify

from .const import CONF_DRY_RUN_COUNTS
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
    prefixes = (f"{entry.entry_id}_dispatch_", f"{entry.entry_id}_type_")
    added: set[str] = set()

    @callback
    def _sync_entities() -> None:
        """Add sensors for new dispatches/types, drop those of vanished ones.

        The registry is the reference, so sensors of dispatches deleted while
        the entry was not loaded go too.
        """
        expected: dict[str, Callable[[], BinarySensorEntity]] = {}
        for dispatch_id, item in sorted(coordinator.data.items()):
            expected[f"{entry.entry_id}_dispatch_{dispatch_id}"] = partial(
                DispatchRunningSensor, coordinator, dispatch_id
            )
            expected[f"{entry.entry_id}_{_type_key(item.dispatch.type)}"] = partial(
                DispatchTypeSensor, coordinator, item.dispatch.type
            )
        for reg_entry in er.async_entries_for_config_entry(registry, entry.entry_id):
            if (
                reg_entry.domain == "binary_sensor"
                and reg_entry.unique_id.startswith(prefixes)
                and reg_entry.unique_id not in expected
            ):
                registry.async_remove(reg_entry.entity_id)
        new = [make() for unique_id, make in expected.items() if unique_id not in added]
        added.clear()
        added.update(expected)
        if new:
            async_add_entities(new)

    async_add_entities([ConnectivitySensor(coordinator)])
    _sync_entities()
    entry.async_on_unload(coordinator.async_add_listener(_sync_entities))


def _type_key(dispatch_type: str) -> str:
    """A unique-id part per type, different for types with the same slug.

    Types are free text: "BATTERY_CHARGE" and "battery charge" share a slug.
    The usual upper-case form keeps the plain slug; any other form gets a
    short hash of the exact type.
    """
    slug = slugify(dispatch_type)
    if dispatch_type == slug.upper():
        return f"type_{slug}"
    digest = hashlib.sha256(dispatch_type.encode()).hexdigest()[:8]
    return f"type_{slug}_{digest}"


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
