"""Plain-JSON views of a dispatch: the data of bus events, attributes, diagnostics."""

from datetime import datetime
from enum import Enum
from typing import Any

from frequenz.client.dispatch.recurrence import Frequency, RecurrenceRule
from frequenz.client.dispatch.types import Dispatch, TargetCategory, TargetIds

from .schedule import Run


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _category_name(category: TargetCategory) -> str:
    """`BATTERY`, or `BATTERY:LI_ION` when a component type is given too."""
    # `category2` is the current enum; `category` maps numbers onto the
    # deprecated one, which names several categories wrongly.
    base = category.category2.name
    kind = category.type
    return base if kind is None else f"{base}:{kind.name}"


def target_list(dispatch: Dispatch) -> list[int] | list[str]:
    """Component ids, or category names, sorted for stable output."""
    if isinstance(dispatch.target, TargetIds):
        return sorted(int(component) for component in dispatch.target)
    return sorted(_category_name(category) for category in dispatch.target)


def recurrence_dict(rule: RecurrenceRule) -> dict[str, Any] | None:
    """The recurrence rule as a dict, or None for a one-shot dispatch."""
    if rule.frequency == Frequency.UNSPECIFIED:
        return None
    end = rule.end_criteria
    return {
        "frequency": rule.frequency.name,
        "interval": rule.interval,
        "count": end.count if end else None,
        "until": _iso(end.until) if end else None,
        "byminutes": list(rule.byminutes),
        "byhours": list(rule.byhours),
        "byweekdays": [day.name for day in rule.byweekdays],
        "bymonthdays": list(rule.bymonthdays),
        "bymonths": list(rule.bymonths),
    }


def _jsonable(value: Any) -> Any:
    """Payload values as JSON types (the payload is a protobuf Struct already)."""
    if isinstance(value, Enum):
        return value.name
    return value


def dispatch_data(dispatch: Dispatch) -> dict[str, Any]:
    """The fields every event and the dispatch sensor expose."""
    return {
        "dispatch_id": int(dispatch.id),
        "type": dispatch.type,
        "active": dispatch.active,
        "dry_run": dispatch.dry_run,
        "start_time": _iso(dispatch.start_time),
        "duration": None
        if dispatch.duration is None
        else dispatch.duration.total_seconds(),
        "target": target_list(dispatch),
        "payload": {key: _jsonable(v) for key, v in dispatch.payload.items()},
        "recurrence": recurrence_dict(dispatch.recurrence),
    }


def run_data(run: Run | None) -> dict[str, str | None]:
    """`window_start`/`window_end` of a run (both None when not running)."""
    if run is None:
        return {"window_start": None, "window_end": None}
    return {"window_start": _iso(run.start), "window_end": _iso(run.end)}


def event_data(
    entry_id: str,
    microgrid_id: int,
    dispatch: Dispatch,
    run: Run | None = None,
    *,
    with_window: bool = False,
    device_id: str | None = None,
) -> dict[str, Any]:
    """The data of a `frequenz_dispatch_*` bus event."""
    data: dict[str, Any] = {
        "config_entry_id": entry_id,
        "microgrid_id": microgrid_id,
        "device_id": device_id,
        **dispatch_data(dispatch),
    }
    if with_window:
        data.update(run_data(run))
    return data


def unknown_dispatch_data(dispatch_id: int) -> dict[str, Any]:
    """The fields of a dispatch that can no longer be read: only its id is known.

    Used for the `stopped` of a run reported earlier, so every `started` still
    gets its `stopped`.
    """
    return {
        "dispatch_id": dispatch_id,
        "type": None,
        "active": None,
        "dry_run": None,
        "start_time": None,
        "duration": None,
        "target": None,
        "payload": None,
        "recurrence": None,
    }
