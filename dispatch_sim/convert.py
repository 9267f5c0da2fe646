"""Conversions between plain Python values and the Dispatch API protobufs."""

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as ec_pb2,
)
from frequenz.api.dispatch.v1 import dispatch_pb2
from frequenz.client.common.microgrid.electrical_components import (
    ElectricalComponentCategory,
)
from frequenz.client.dispatch.recurrence import RecurrenceRule
from frequenz.client.dispatch.types import TargetCategory
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from .errors import InvalidDispatchError

TargetItem = int | str | TargetCategory | ElectricalComponentCategory
"""One element of a control-API target: a component id or a category."""

_CATEGORY_PREFIX = "ELECTRICAL_COMPONENT_CATEGORY_"
_TYPE_ENUMS: dict[str, tuple[str, Any, str]] = {
    "BATTERY": ("battery", ec_pb2.BatteryType, "BATTERY_TYPE_"),
    "INVERTER": ("inverter", ec_pb2.InverterType, "INVERTER_TYPE_"),
    "EV_CHARGER": ("ev_charger", ec_pb2.EvChargerType, "EV_CHARGER_TYPE_"),
}


def now_utc() -> datetime:
    """Return the current time as an aware UTC datetime.

    Returns:
        The current time.

    """
    return datetime.now(UTC)


def to_timestamp(value: datetime) -> Timestamp:
    """Convert an aware datetime to a protobuf timestamp.

    Args:
        value: The datetime; must carry a timezone.

    Returns:
        The timestamp.

    Raises:
        InvalidDispatchError: If the datetime is naive.

    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidDispatchError(f"datetime must be timezone aware: {value!r}")
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


def to_datetime(stamp: Timestamp) -> datetime:
    """Convert a protobuf timestamp to an aware UTC datetime.

    Args:
        stamp: The timestamp.

    Returns:
        The datetime.

    """
    result: datetime = stamp.ToDatetime(tzinfo=UTC)
    return result


def round_to_second(stamp: Timestamp) -> None:
    """Round a timestamp to the nearest whole second, as the real service does.

    Args:
        stamp: The timestamp, changed in place.

    """
    if stamp.nanos >= 500_000_000:
        stamp.seconds += 1
    stamp.nanos = 0


def duration_seconds(duration: timedelta | None) -> int | None:
    """Convert a duration to whole seconds, as the API stores it.

    Args:
        duration: The duration, or None for an open-ended dispatch.

    Returns:
        The rounded number of seconds, or None.

    Raises:
        InvalidDispatchError: If the duration is negative.

    """
    if duration is None:
        return None
    seconds = round(duration.total_seconds())
    if seconds < 0:
        raise InvalidDispatchError(f"duration must not be negative: {duration}")
    return seconds


def payload_to_struct(payload: Mapping[str, Any] | None) -> Struct:
    """Convert a JSON-like mapping to a protobuf struct.

    Args:
        payload: The payload, or None for an empty one.

    Returns:
        The struct.

    """
    struct = Struct()
    if payload:
        struct.update(dict(payload))
    return struct


def recurrence_to_pb(
    recurrence: RecurrenceRule | None,
) -> dispatch_pb2.RecurrenceRule:
    """Convert a client recurrence rule to protobuf.

    Args:
        recurrence: The rule, or None for a one-off dispatch.

    Returns:
        The protobuf rule (empty when `recurrence` is None).

    """
    if recurrence is None:
        return dispatch_pb2.RecurrenceRule()
    return recurrence.to_protobuf()


def category_value(name: str) -> ec_pb2.ElectricalComponentCategory.ValueType:
    """Look up a component category by name.

    Args:
        name: A name such as "BATTERY" or "ELECTRICAL_COMPONENT_CATEGORY_BATTERY".

    Returns:
        The protobuf enum value.

    Raises:
        InvalidDispatchError: If the name is unknown.

    """
    enum = ec_pb2.ElectricalComponentCategory
    short = name.strip().upper().removeprefix(_CATEGORY_PREFIX)
    try:
        value = int(enum.Value(_CATEGORY_PREFIX + short))
    except ValueError:  # protobuf's error for an unknown enum name
        raise InvalidDispatchError(f"unknown component category: {name!r}") from None
    if value == 0:
        raise InvalidDispatchError("component category must not be UNSPECIFIED")
    return enum.ValueType(value)


def _category_entry(item: TargetItem) -> dispatch_pb2.TargetComponents.CategoryAndType:
    """Build one category (and optional type) target entry.

    Args:
        item: "CATEGORY", "CATEGORY:TYPE" (e.g. "INVERTER:PV") or a client enum.

    Returns:
        The protobuf entry.

    Raises:
        InvalidDispatchError: If the item does not name a known category or type.

    """
    entry = dispatch_pb2.TargetComponents.CategoryAndType()
    if isinstance(item, ElectricalComponentCategory):
        entry.category = item.value
        return entry
    if isinstance(item, TargetCategory):
        entry.category = item.category2.value
        if item.type is not None:
            field_name = _TYPE_ENUMS[item.category2.name][0]
            setattr(entry, field_name, item.type.value)
        return entry
    if not isinstance(item, str):
        raise InvalidDispatchError(f"invalid target item: {item!r}")
    category, _, type_name = item.partition(":")
    entry.category = category_value(category)
    if type_name:
        short = category.strip().upper().removeprefix(_CATEGORY_PREFIX)
        if short not in _TYPE_ENUMS:
            raise InvalidDispatchError(f"category {short} has no types: {item!r}")
        field_name, enum, prefix = _TYPE_ENUMS[short]
        try:
            type_value = enum.Value(prefix + type_name.strip().upper())
        except ValueError:
            raise InvalidDispatchError(f"unknown {short} type: {item!r}") from None
        setattr(entry, field_name, type_value)
    return entry


def target_to_pb(
    target: Iterable[TargetItem] | str,
) -> dispatch_pb2.TargetComponents:
    """Convert component ids or category names to protobuf target components.

    Args:
        target: Either only component ids, or only categories (a single name
            is accepted too). Categories are
            names ("BATTERY", "INVERTER:PV", "EV_CHARGER:AC") or the client's
            `ElectricalComponentCategory` / `TargetCategory` values.

    Returns:
        The protobuf target.

    Raises:
        InvalidDispatchError: If the target is empty, mixes ids and
            categories, or names an unknown category.

    """
    items = [target] if isinstance(target, str) else list(target)
    if not items:
        raise InvalidDispatchError("target must not be empty")
    pb_target = dispatch_pb2.TargetComponents()
    ids = [item for item in items if isinstance(item, int)]
    if ids and len(ids) != len(items):
        raise InvalidDispatchError("target must not mix component ids and categories")
    if ids:
        pb_target.component_ids.ids.extend(ids)
        return pb_target
    pb_target.component_categories_types.categories.extend(
        _category_entry(item) for item in items
    )
    return pb_target


def build_data(
    *,
    type: str,  # pylint: disable=redefined-builtin
    start_time: datetime,
    duration: timedelta | None,
    target: Iterable[TargetItem],
    active: bool = True,
    dry_run: bool = False,
    payload: Mapping[str, Any] | None = None,
    recurrence: RecurrenceRule | None = None,
) -> dispatch_pb2.DispatchData:
    """Build dispatch data from plain Python values.

    Args:
        type: The dispatch type.
        start_time: The (aware) start time.
        duration: The duration, or None for an open-ended dispatch.
        target: Component ids or categories, see `target_to_pb`.
        active: Whether the dispatch is active.
        dry_run: Whether the dispatch is a dry run.
        payload: The JSON-like payload.
        recurrence: The recurrence rule, or None.

    Returns:
        The protobuf dispatch data.

    """
    return dispatch_pb2.DispatchData(
        type=type,
        start_time=to_timestamp(start_time),
        duration=duration_seconds(duration),
        target=target_to_pb(target),
        is_active=active,
        is_dry_run=dry_run,
        payload=payload_to_struct(payload),
        recurrence=recurrence_to_pb(recurrence),
    )


def set_field(data: dispatch_pb2.DispatchData, name: str, value: Any) -> None:
    """Set one control-API field (same names as `DispatchSimulator.create`).

    Args:
        data: The data to change in place.
        name: The field name.
        value: The new value.

    Raises:
        TypeError: If the field name is unknown.

    """
    match name:
        case "type":
            data.type = value
        case "start_time":
            data.start_time.CopyFrom(to_timestamp(value))
        case "duration":
            seconds = duration_seconds(value)
            if seconds is None:
                data.ClearField("duration")
            else:
                data.duration = seconds
        case "target":
            data.target.CopyFrom(target_to_pb(value))
        case "active":
            data.is_active = bool(value)
        case "dry_run":
            data.is_dry_run = bool(value)
        case "payload":
            data.payload.CopyFrom(payload_to_struct(value))
        case "recurrence":
            data.recurrence.CopyFrom(recurrence_to_pb(value))
        case _:
            raise TypeError(f"unknown dispatch field: {name!r}")
