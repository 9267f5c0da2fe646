"""Requests of the write RPCs from plain values; ValueError says what is wrong."""

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from frequenz.api.dispatch.v1 import dispatch_pb2
from frequenz.client.base.conversion import to_timestamp
from frequenz.client.dispatch.recurrence import RecurrenceRule
from google.protobuf.struct_pb2 import Struct

from .targets import target_to_protobuf


def _payload(payload: Mapping[str, Any]) -> Struct:
    """A JSON-like mapping as a protobuf Struct."""
    struct = Struct()
    try:
        struct.update(payload)
    except (ValueError, TypeError, OverflowError) as err:
        raise ValueError(f"payload: {err}") from None
    return struct


def _target(target: list[int] | list[str]) -> dispatch_pb2.TargetComponents:
    try:
        return target_to_protobuf(target)
    except ValueError as err:
        raise ValueError(f"target: {err}") from None


def _timestamp(name: str, value: datetime) -> Any:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must carry a time zone")
    return to_timestamp(value)


def _seconds(duration: timedelta) -> int:
    seconds = duration.total_seconds()
    if not 0 <= seconds < 2**32:
        raise ValueError("duration must be positive")
    return round(seconds)


def _recurrence(rule: RecurrenceRule | None) -> dispatch_pb2.RecurrenceRule:
    if rule is None:
        return dispatch_pb2.RecurrenceRule()
    try:
        return rule.to_protobuf()
    except (ValueError, TypeError) as err:
        raise ValueError(f"recurrence: {err}") from None


_RECURRENCE_PATHS = (
    "recurrence.freq",
    "recurrence.interval",
    "recurrence.end_criteria",
    "recurrence.byminutes",
    "recurrence.byhours",
    "recurrence.byweekdays",
    "recurrence.bymonthdays",
    "recurrence.bymonths",
)
"""All sub-paths, as the official client sends them: the whole rule is replaced."""


def update_request(
    microgrid_id: int, dispatch_id: int, changes: Mapping[str, Any]
) -> dispatch_pb2.UpdateMicrogridDispatchRequest:
    """Build the request and field mask of `DispatchApi.update`."""
    request = dispatch_pb2.UpdateMicrogridDispatchRequest(
        microgrid_id=microgrid_id, dispatch_id=dispatch_id
    )
    update = request.update
    paths = request.update_mask.paths
    for key, value in changes.items():
        match key:
            case "type" | "dry_run":
                raise ValueError(
                    f"the Dispatch API cannot change the {key} of a dispatch"
                )
            case "start_time":
                update.start_time.CopyFrom(_timestamp(key, value))
                paths.append(key)
            case "duration":
                if value is not None:
                    update.duration = _seconds(value)
                paths.append(key)
            case "target":
                update.target.CopyFrom(_target(value))
                paths.append(key)
            case "payload":
                update.payload.CopyFrom(_payload(value))
                paths.append(key)
            case "active":
                update.is_active = bool(value)
                paths.append("is_active")
            case "recurrence":
                # Same fields and numbers, another message type.
                update.recurrence.ParseFromString(
                    _recurrence(value).SerializeToString()
                )
                paths.extend(_RECURRENCE_PATHS)
            case _:
                raise ValueError(f"unknown field: {key}")
    return request


def create_request(
    microgrid_id: int,
    *,
    dispatch_type: str,
    start_time: datetime,
    duration: timedelta | None,
    target: list[int] | list[str],
    payload: Mapping[str, Any],
    active: bool,
    dry_run: bool,
    recurrence: RecurrenceRule | None,
) -> dispatch_pb2.CreateMicrogridDispatchRequest:
    """Build the request of `DispatchApi.create`."""
    data = dispatch_pb2.DispatchData(
        type=dispatch_type,
        start_time=_timestamp("start_time", start_time),
        duration=None if duration is None else _seconds(duration),
        target=_target(target),
        is_active=active,
        is_dry_run=dry_run,
        payload=_payload(payload),
        recurrence=_recurrence(recurrence),
    )
    return dispatch_pb2.CreateMicrogridDispatchRequest(
        microgrid_id=microgrid_id, dispatch_data=data
    )
