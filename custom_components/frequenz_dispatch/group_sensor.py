"""Type + target groups: on while a dispatch of a type runs on one target.

Upstream's merge by type and target: two batteries with their own
dispatches of one type get one sensor each. Added as a subentry.
"""

from __future__ import annotations

from typing import Any

from homeassistant.components.binary_sensor import (  # type: ignore[attr-defined,unused-ignore]
    BinarySensorDeviceClass,
    BinarySensorEntity,
)

from .const import CONF_TARGET
from .subentry_entity import SubentryEntity


class TypeTargetSensor(SubentryEntity, BinarySensorEntity):
    """On while any matching dispatch runs."""

    _attr_device_class = BinarySensorDeviceClass.RUNNING

    def _configure(self, data: dict[str, Any]) -> None:
        self._object_id = f"{self.dispatch_type} on {data[CONF_TARGET]} running"

    @property
    def suggested_object_id(self) -> str:
        """The entity ID is built from the raw type, whatever the language."""
        return self._object_id

    def _compute(self) -> tuple[Any, ...]:
        chosen = self._chosen()
        ids = sorted(item.dispatch_id for item in chosen)
        return (ids, bool(chosen) and all(item.dry_run for item in chosen))

    @property
    def is_on(self) -> bool:
        """Whether a matching dispatch runs."""
        return self._shown is not None and bool(self._shown[0])

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        """Which dispatches keep it on; whether they all are dry runs."""
        if self._shown is None:
            return {"running_dispatch_ids": [], "dry_run": False}
        return {"running_dispatch_ids": self._shown[0], "dry_run": self._shown[1]}
