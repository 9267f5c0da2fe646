"""What the service accepts and computes: validation, update masks, end times."""

from datetime import datetime, timedelta
from typing import Literal

from dateutil import rrule
from frequenz.api.dispatch.v1 import dispatch_pb2

from .convert import to_datetime
from .errors import InvalidDispatchError

PAST_TOLERANCE = timedelta(seconds=60)
"""How far in the past an RPC-supplied start time may lie (clock skew)."""

DEFAULT_MAX_PAYLOAD_BYTES = 50 * 1024
"""The largest payload (serialized) the service accepts by default."""

_Rule = dispatch_pb2.RecurrenceRule
_Update = dispatch_pb2.UpdateMicrogridDispatchRequest.DispatchUpdate
_CATEGORIES = dispatch_pb2.TargetComponents.CategoryAndType.DESCRIPTOR.fields_by_name[
    "category"
].enum_type
_TYPE_FIELDS = {
    "battery": "ELECTRICAL_COMPONENT_CATEGORY_BATTERY",
    "inverter": "ELECTRICAL_COMPONENT_CATEGORY_INVERTER",
    "ev_charger": "ELECTRICAL_COMPONENT_CATEGORY_EV_CHARGER",
}
_LIST_FIELDS = ("byminutes", "byhours", "byweekdays", "bymonthdays", "bymonths")
_READ_ONLY = ("type", "is_dry_run", "dry_run")
_FREQ: dict[int, Literal[0, 1, 2, 3, 4, 5, 6]] = {
    _Rule.FREQUENCY_MINUTELY: rrule.MINUTELY,
    _Rule.FREQUENCY_HOURLY: rrule.HOURLY,
    _Rule.FREQUENCY_DAILY: rrule.DAILY,
    _Rule.FREQUENCY_WEEKLY: rrule.WEEKLY,
    _Rule.FREQUENCY_MONTHLY: rrule.MONTHLY,
    _Rule.FREQUENCY_YEARLY: rrule.YEARLY,
}
_WEEKDAYS = (rrule.MO, rrule.TU, rrule.WE, rrule.TH, rrule.FR, rrule.SA, rrule.SU)
_MAX_OCCURRENCES = 100_000

# ---- validation ---------------------------------------------------------------


def _check_range(name: str, values: list[int], low: int, high: int) -> None:
    """Raise InvalidDispatchError unless every value lies within low..high."""
    if any(not low <= value <= high for value in values):
        raise InvalidDispatchError(f"recurrence.{name} out of range {low}..{high}")


def validate_recurrence(rule: dispatch_pb2.RecurrenceRule) -> None:
    """Validate a recurrence rule (an unset frequency means "no recurrence").

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
    data: dispatch_pb2.DispatchData,
    *,
    now: datetime | None = None,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> None:
    """Validate dispatch data.

    Args:
        data: The data.
        now: When given, start times more than `PAST_TOLERANCE` before it are
            rejected (as for RPC input); None skips that check.
        max_payload_bytes: The largest serialized payload accepted.

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
    if data.payload.ByteSize() > max_payload_bytes:
        raise InvalidDispatchError(f"payload larger than {max_payload_bytes} bytes")


# ---- update masks ---------------------------------------------------------------


def _apply_recurrence(
    rule: dispatch_pb2.RecurrenceRule, update: _Update.RecurrenceRuleUpdate, name: str
) -> None:
    """Apply one `recurrence.<name>` mask path to `rule` in place.

    Raises:
        InvalidDispatchError: If the sub-field is unknown.

    """
    match name:
        case "freq" | "frequency":
            rule.freq = update.freq
        case "interval":
            rule.interval = update.interval
        case "end_criteria":
            # An unset or empty end criteria means "no end".
            if update.end_criteria.WhichOneof("count_or_until") is None:
                rule.ClearField("end_criteria")
            else:
                rule.end_criteria.CopyFrom(update.end_criteria)
        case _ if name in _LIST_FIELDS:
            target = getattr(rule, name)
            del target[:]
            target.extend(getattr(update, name))
        case _:
            raise InvalidDispatchError(f"unknown update_mask path: recurrence.{name}")


def _apply_path(data: dispatch_pb2.DispatchData, update: _Update, path: str) -> None:
    """Apply one mask path to `data` in place.

    Raises:
        InvalidDispatchError: If the path is unknown or read-only.

    """
    head, _, rest = path.partition(".")
    match head:
        case "start_time":
            if not update.HasField("start_time"):
                raise InvalidDispatchError("start_time in update_mask but not set")
            data.start_time.CopyFrom(update.start_time)
        case "duration":
            if update.HasField("duration"):
                data.duration = update.duration
            else:
                data.ClearField("duration")
        case "target":
            data.target.CopyFrom(update.target)
        case "is_active" | "active":
            data.is_active = update.is_active
        case "payload":
            data.payload.CopyFrom(update.payload)
        case "recurrence" if rest:
            _apply_recurrence(data.recurrence, update.recurrence, rest)
        case "recurrence":
            for name in ("freq", "interval", "end_criteria", *_LIST_FIELDS):
                _apply_recurrence(data.recurrence, update.recurrence, name)
        case _ if head in _READ_ONLY:
            raise InvalidDispatchError(f"field cannot be updated: {path}")
        case _:
            raise InvalidDispatchError(f"unknown update_mask path: {path}")


def apply_update(
    data: dispatch_pb2.DispatchData,
    request: dispatch_pb2.UpdateMicrogridDispatchRequest,
) -> dispatch_pb2.DispatchData:
    """Compute the data after an update request (`data` is not modified).

    Paths are those the client sends: `start_time`, `duration` (unset: open
    ended), `target`, `is_active`, `payload`, `recurrence` and
    `recurrence.<field>`. A rule whose frequency ends up unspecified is removed
    whole, so no stale sub-fields remain.

    Raises:
        InvalidDispatchError: If the mask is empty or has an unknown or
            read-only path (`type` and `dry_run` cannot be changed).

    """
    paths = list(request.update_mask.paths)
    if not paths:
        raise InvalidDispatchError("update_mask must not be empty")
    result = dispatch_pb2.DispatchData()
    result.CopyFrom(data)
    for path in paths:
        _apply_path(result, request.update, path)
    if result.recurrence.freq == _Rule.FREQUENCY_UNSPECIFIED:
        result.ClearField("recurrence")
    return result


# ---- end time -------------------------------------------------------------------


def _last_start(start: datetime, rule: dispatch_pb2.RecurrenceRule) -> datetime | None:
    """Find the start of the last occurrence of a bounded recurrence.

    Returns:
        The last occurrence's start, or None if there is none or it is too far
        away to enumerate.

    Raises:
        ValueError: If the rule cannot be expressed as an rrule.
        KeyError: If the rule has an unknown frequency.

    """
    criteria = rule.end_criteria
    which = criteria.WhichOneof("count_or_until")
    recurrence = rrule.rrule(
        freq=_FREQ[rule.freq],
        dtstart=start,
        interval=rule.interval,
        count=criteria.count if which == "count" else None,
        until=to_datetime(criteria.until_time) if which == "until_time" else None,
        byminute=list(rule.byminutes) or None,
        byhour=list(rule.byhours) or None,
        byweekday=[_WEEKDAYS[day - 1] for day in rule.byweekdays] or None,
        bymonthday=list(rule.bymonthdays) or None,
        bymonth=list(rule.bymonths) or None,
    )
    last: datetime | None = None
    for index, occurrence in enumerate(recurrence):
        if index >= _MAX_OCCURRENCES:
            return None
        last = occurrence
    return last


def compute_end_time(data: dispatch_pb2.DispatchData) -> datetime | None:
    """Compute when a dispatch stops for good, as the service's `end_time`.

    Returns:
        The end of the last occurrence, or None for open-ended dispatches
        (no duration, or a recurrence without end criteria) and for rules that
        cannot be evaluated.

    """
    if not data.HasField("duration") or not data.HasField("start_time"):
        return None
    start = to_datetime(data.start_time)
    duration = timedelta(seconds=data.duration)
    rule = data.recurrence
    if rule.freq == _Rule.FREQUENCY_UNSPECIFIED:
        return start + duration
    if rule.end_criteria.WhichOneof("count_or_until") is None:
        return None
    try:
        last = _last_start(start, rule)
    except (ValueError, KeyError, IndexError, OverflowError):
        return None
    if last is None:
        return None
    # rrule drops sub-second parts of the start; add them back.
    return last.replace(microsecond=start.microsecond) + duration
