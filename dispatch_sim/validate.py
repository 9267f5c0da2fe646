"""Input validation matching what the real service rejects as INVALID_ARGUMENT."""

from datetime import datetime, timedelta

from frequenz.api.dispatch.v1 import dispatch_pb2

from .convert import to_datetime

PAST_TOLERANCE = timedelta(seconds=60)
"""How far in the past an RPC-supplied start time may lie (clock skew)."""

MAX_PAYLOAD_BYTES = 50 * 1024

_Rule = dispatch_pb2.RecurrenceRule
_CATEGORIES = dispatch_pb2.TargetComponents.CategoryAndType.DESCRIPTOR.fields_by_name[
    "category"
].enum_type
_TYPE_FIELDS = {
    "battery": "ELECTRICAL_COMPONENT_CATEGORY_BATTERY",
    "inverter": "ELECTRICAL_COMPONENT_CATEGORY_INVERTER",
    "ev_charger": "ELECTRICAL_COMPONENT_CATEGORY_EV_CHARGER",
}


class InvalidDispatchError(ValueError):
    """Raised for dispatch input the service refuses (INVALID_ARGUMENT)."""


def _check_range(name: str, values: list[int], low: int, high: int) -> None:
    """Check that every value lies within an inclusive range.

    Args:
        name: The field name, for the message.
        values: The values.
        low: The lowest allowed value.
        high: The highest allowed value.

    Raises:
        InvalidDispatchError: If a value lies outside.

    """
    bad = [value for value in values if not low <= value <= high]
    if bad:
        raise InvalidDispatchError(f"recurrence.{name} out of range {low}..{high}")


def validate_recurrence(rule: dispatch_pb2.RecurrenceRule) -> None:
    """Validate a recurrence rule (an unset frequency means "no recurrence").

    Args:
        rule: The rule.

    Raises:
        InvalidDispatchError: If the rule is malformed.

    """
    if rule.freq == _Rule.FREQUENCY_UNSPECIFIED:
        return
    if rule.freq not in _Rule.Frequency.values():
        raise InvalidDispatchError(f"unknown recurrence frequency {rule.freq}")
    if not 1 <= rule.interval <= 10_000:
        raise InvalidDispatchError("recurrence.interval must be within 1..10000")
    if rule.end_criteria.WhichOneof("count_or_until") == "count":
        _check_range("end_criteria.count", [rule.end_criteria.count], 1, 4096)
    _check_range("byminutes", list(rule.byminutes), 0, 59)
    _check_range("byhours", list(rule.byhours), 0, 23)
    _check_range("byweekdays", list(rule.byweekdays), 1, 7)
    _check_range("bymonths", list(rule.bymonths), 1, 12)
    _check_range("bymonthdays", [abs(day) for day in rule.bymonthdays], 1, 31)
    if rule.bymonthdays and rule.freq == _Rule.FREQUENCY_WEEKLY:
        raise InvalidDispatchError("recurrence.bymonthdays not allowed when WEEKLY")


def validate_target(target: dispatch_pb2.TargetComponents) -> None:
    """Validate the target components.

    Args:
        target: The target.

    Raises:
        InvalidDispatchError: If no or an empty target is given, or a category is
            unspecified or carries a type of another category.

    """
    unspecified = "ELECTRICAL_COMPONENT_CATEGORY_UNSPECIFIED"
    match target.WhichOneof("components"):
        case "component_ids":
            if not target.component_ids.ids:
                raise InvalidDispatchError("target.component_ids must not be empty")
        case "component_categories":
            categories = list(target.component_categories.categories)
            if not categories or 0 in categories:
                raise InvalidDispatchError("target categories invalid or empty")
        case "component_categories_types":
            entries = list(target.component_categories_types.categories)
            if not entries:
                raise InvalidDispatchError("target categories must not be empty")
            for entry in entries:
                category = _CATEGORIES.values_by_number.get(entry.category)
                if category is None or category.name == unspecified:
                    raise InvalidDispatchError("target category must be specified")
                kind = entry.WhichOneof("type")
                if kind is not None and _TYPE_FIELDS[kind] != category.name:
                    raise InvalidDispatchError(f"{kind} type on {category.name}")
        case _:
            raise InvalidDispatchError("target must be set")


def validate_data(
    data: dispatch_pb2.DispatchData, *, now: datetime | None = None
) -> None:
    """Validate dispatch data.

    Args:
        data: The data.
        now: When given, start times more than `PAST_TOLERANCE` before it are
            rejected (as for RPC input); None skips that check.

    Raises:
        InvalidDispatchError: If the data is invalid.

    """
    if not data.type.strip():
        raise InvalidDispatchError("type must not be empty")
    if not data.HasField("start_time"):
        raise InvalidDispatchError("start_time must be set")
    if now is not None and to_datetime(data.start_time) < now - PAST_TOLERANCE:
        raise InvalidDispatchError("start_time must not be in the past")
    validate_target(data.target)
    validate_recurrence(data.recurrence)
    if data.payload.ByteSize() > MAX_PAYLOAD_BYTES:
        raise InvalidDispatchError("payload larger than 50 KB")
