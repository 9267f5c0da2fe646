"""Payload sensors: one payload value of the running dispatches of a type.

Added as a subentry of the microgrid's entry; `unknown` while no matching
dispatch runs, so HA's history and statistics graph the setpoints.
"""

from __future__ import annotations

from typing import Any

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorStateClass,
)

from .const import CONF_KIND, CONF_MERGE, CONF_PAYLOAD_KEY, CONF_TARGET, CONF_UNIT
from .setpoints import Kind, Merge, merge, unit_for
from .subentry_entity import SubentryEntity

_DEVICE_CLASSES: dict[Kind, SensorDeviceClass] = {
    Kind.POWER: SensorDeviceClass.POWER,
    Kind.CURRENT: SensorDeviceClass.CURRENT,
    Kind.ENERGY: SensorDeviceClass.ENERGY_STORAGE,
}


class SetpointSensor(SubentryEntity, SensorEntity):
    """The value at a payload key of the matching running dispatches, merged."""

    _attr_state_class = SensorStateClass.MEASUREMENT
    _unrecorded_attributes = frozenset({"dispatch_ids"})

    def _configure(self, data: dict[str, Any]) -> None:
        self._path = str(data[CONF_PAYLOAD_KEY])
        self._merge = Merge(data.get(CONF_MERGE, Merge.LAST_STARTED))
        kind = Kind(data.get(CONF_KIND, Kind.NONE))
        self._attr_device_class = _DEVICE_CLASSES.get(kind)
        unit = unit_for(kind, str(data.get(CONF_UNIT) or ""))
        self._attr_native_unit_of_measurement = unit
        object_id = f"{self.dispatch_type} {self._path}"
        if target := data.get(CONF_TARGET):
            object_id += f" on {target}"
        self._object_id = object_id

    @property
    def suggested_object_id(self) -> str:
        """The entity ID is built from the raw type, whatever the language."""
        return self._object_id

    def _compute(self) -> tuple[Any, ...]:
        setpoint = merge(self._chosen(), self._path, self._merge)
        self._log_problems(setpoint.problems)
        return (setpoint.value, setpoint.dispatch_ids, setpoint.dry_run)

    @property
    def native_value(self) -> float | None:
        """The merged value; None (unknown) while nothing matching runs."""
        return None if self._shown is None else self._shown[0]

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        """Which dispatches it comes from; whether they all are dry runs."""
        if self._shown is None:
            return {"dispatch_ids": [], "dry_run": False}
        return {"dispatch_ids": self._shown[1], "dry_run": self._shown[2]}
