"""Dispatch targets as people write them: component ids, "BATTERY", "BATTERY:LI_ION".

The reverse of `event_data.target_list`: what an event shows can be sent back.
"""

from enum import Enum

from frequenz.api.dispatch.v1 import dispatch_pb2
from frequenz.client.common.microgrid.electrical_components import (
    ElectricalComponentCategory,
)
from frequenz.client.dispatch.types import BatteryType, EvChargerType, InverterType

_TYPES: dict[ElectricalComponentCategory, type[Enum]] = {
    ElectricalComponentCategory.BATTERY: BatteryType,
    ElectricalComponentCategory.INVERTER: InverterType,
    ElectricalComponentCategory.EV_CHARGER: EvChargerType,
}
_TYPE_FIELDS = {
    ElectricalComponentCategory.BATTERY: "battery",
    ElectricalComponentCategory.INVERTER: "inverter",
    ElectricalComponentCategory.EV_CHARGER: "ev_charger",
}
_MAX_ID = 2**64 - 1


def _member[E: Enum](enum: type[E], name: str, what: str) -> E:
    """The enum member called `name` (never UNSPECIFIED)."""
    member = enum.__members__.get(name.strip().upper())
    if member is None or member.name == "UNSPECIFIED":
        known = ", ".join(n for n in enum.__members__ if n != "UNSPECIFIED")
        raise ValueError(f"unknown {what} {name!r} (known: {known})")
    return member


def target_to_protobuf(target: list[int] | list[str]) -> dispatch_pb2.TargetComponents:
    """Convert component ids or category names; ValueError names what is wrong."""
    result = dispatch_pb2.TargetComponents()
    items: list[object] = list(target)
    if not items:
        raise ValueError("target must not be empty")
    ids = [i for i in items if isinstance(i, int) and not isinstance(i, bool)]
    if len(ids) == len(items):
        if any(not 0 <= component <= _MAX_ID for component in ids):
            raise ValueError("component ids must not be negative")
        result.component_ids.ids.extend(ids)
        return result
    if not all(isinstance(item, str) for item in items):
        raise ValueError("target must be all component ids or all category names")
    for item in items:
        category_name, _, type_name = str(item).partition(":")
        category = _member(ElectricalComponentCategory, category_name, "category")
        entry = result.component_categories_types.categories.add()
        entry.category = category.value  # the protobuf enum number
        if not type_name:
            continue
        if (enum := _TYPES.get(category)) is None:
            raise ValueError(f"category {category.name} has no types")
        setattr(entry, _TYPE_FIELDS[category], _member(enum, type_name, "type").value)
    return result
