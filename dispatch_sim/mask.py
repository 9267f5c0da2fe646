"""Apply an UpdateMicrogridDispatch field mask to dispatch data."""

from frequenz.api.dispatch.v1 import dispatch_pb2

from .validate import InvalidDispatchError

_LIST_FIELDS = ("byminutes", "byhours", "byweekdays", "bymonthdays", "bymonths")
_READ_ONLY = ("type", "is_dry_run", "dry_run")

_Update = dispatch_pb2.UpdateMicrogridDispatchRequest.DispatchUpdate


def _apply_recurrence(
    rule: dispatch_pb2.RecurrenceRule,
    update: _Update.RecurrenceRuleUpdate,
    name: str,
) -> None:
    """Apply one `recurrence.<name>` mask path.

    Args:
        rule: The rule to change in place.
        update: The requested values.
        name: The sub-field name ("freq"/"frequency", "interval", ...).

    Raises:
        InvalidDispatchError: If the sub-field is unknown.

    """
    match name:
        case "freq" | "frequency":
            rule.freq = update.freq
        case "interval":
            rule.interval = update.interval
        case "end_criteria":
            if update.HasField("end_criteria"):
                rule.end_criteria.CopyFrom(update.end_criteria)
            else:
                rule.ClearField("end_criteria")
        case _ if name in _LIST_FIELDS:
            target = getattr(rule, name)
            del target[:]
            target.extend(getattr(update, name))
        case _:
            raise InvalidDispatchError(f"unknown update_mask path: recurrence.{name}")


def _apply_path(data: dispatch_pb2.DispatchData, update: _Update, path: str) -> None:
    """Apply one mask path.

    Args:
        data: The data to change in place.
        update: The requested values.
        path: The mask path.

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
    """Compute the data after an update request.

    Paths are those the client sends: `start_time`, `duration`, `target`,
    `is_active`, `payload`, `recurrence` and `recurrence.<field>`.

    Args:
        data: The current data (not modified).
        request: The update request.

    Returns:
        The new data.

    Raises:
        InvalidDispatchError: If the mask is empty or has an unknown or
            read-only path.

    """
    paths = list(request.update_mask.paths)
    if not paths:
        raise InvalidDispatchError("update_mask must not be empty")
    result = dispatch_pb2.DispatchData()
    result.CopyFrom(data)
    for path in paths:
        _apply_path(result, request.update, path)
    return result
