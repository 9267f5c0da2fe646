"""Actions: create, update, delete and list the dispatches of a microgrid.

Writes go to the Dispatch API; the change then comes back through the stream
like any other (events, entities). Listing reads what the entry holds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
import math
from typing import TYPE_CHECKING, Any

from frequenz.client.dispatch.recurrence import (
    EndCriteria,
    Frequency,
    RecurrenceRule,
    Weekday,
)
from homeassistant.core import (
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import config_validation as cv
from homeassistant.util import dt as dt_util
from homeassistant.util.json import JsonValueType

# HA 2026.x types schemas as probatio schemas (absent in HA 2025.6); voluptuous
# ones work at runtime, hence the `type: ignore[arg-type,unused-ignore]` below.
import voluptuous as vol

from .api import (
    DispatchApiError,
    DispatchInvalidInputError,
    DispatchNotFoundError,
    DispatchWriteDeniedError,
    ParsedDispatch,
    ValidDispatch,
)
from .const import DOMAIN
from .event_data import event_data
from .lookup import loaded_coordinator

if TYPE_CHECKING:
    from .coordinator import FrequenzDispatchCoordinator

SERVICE_CREATE = "create_dispatch"
SERVICE_UPDATE = "update_dispatch"
SERVICE_DELETE = "delete_dispatch"
SERVICE_LIST = "list_dispatches"

ATTR_ENTRY = "config_entry_id"
ATTR_ID = "dispatch_id"
ATTR_OPEN_ENDED = "open_ended"
ATTR_RUNNING = "running"
ATTR_START = "start"
ATTR_END = "end"

FREQUENCIES = [f.name for f in Frequency if f is not Frequency.UNSPECIFIED]
WEEKDAYS = [d.name for d in Weekday if d is not Weekday.UNSPECIFIED]
RECURRENCE_FIELDS = (
    "frequency",
    "interval",
    "count",
    "until",
    "byminutes",
    "byhours",
    "byweekdays",
    "bymonthdays",
    "bymonths",
)


def _safe(validator: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The validator, with a too large or malformed value refused as invalid.

    HA's and voluptuous' validators let OverflowError and some ValueErrors
    through (a date in year 10000, `{"days": 1e12}`); the schema then names
    the field like any other invalid input.
    """

    def validate(value: Any) -> Any:
        try:
            return validator(value)
        except (OverflowError, ValueError, TypeError) as err:
            raise vol.Invalid(str(err) or type(err).__name__) from None

    return validate


_DATETIME = _safe(cv.datetime)
_DURATION = _safe(cv.positive_time_period)


def _int(low: int, high: int) -> vol.All:
    return vol.All(_safe(vol.Coerce(int)), vol.Range(low, high))


def _ints(low: int, high: int) -> vol.All:
    return vol.All(cv.ensure_list, [_int(low, high)])


def _upper_in(names: list[str]) -> vol.All:
    return vol.All(cv.string, vol.Upper, vol.In(names))


_RECURRENCE_SCHEMA: dict[Any, Any] = {
    vol.Optional("frequency"): _upper_in(FREQUENCIES),
    vol.Optional("interval"): _int(1, 2**32 - 1),
    vol.Optional("count"): _int(1, 2**32 - 1),
    vol.Optional("until"): _DATETIME,
    vol.Optional("byminutes"): _ints(0, 59),
    vol.Optional("byhours"): _ints(0, 23),
    vol.Optional("byweekdays"): vol.All(cv.ensure_list, [_upper_in(WEEKDAYS)]),
    vol.Optional("bymonthdays"): _ints(1, 31),
    vol.Optional("bymonths"): _ints(1, 12),
}
_TARGET = vol.All(cv.ensure_list, [vol.Any(int, cv.string)])
_ENTRY: dict[Any, Any] = {vol.Required(ATTR_ENTRY): cv.string}
_DISPATCH_ID: dict[Any, Any] = {vol.Required(ATTR_ID): _int(1, 2**64 - 1)}

CREATE_SCHEMA = vol.Schema(
    {
        **_ENTRY,
        vol.Required("type"): vol.All(cv.string, vol.Length(min=1)),
        vol.Required("start_time"): _DATETIME,
        vol.Optional("duration"): _DURATION,
        vol.Required("target"): _TARGET,
        vol.Optional("payload", default={}): dict,
        vol.Optional("active", default=True): cv.boolean,
        vol.Optional("dry_run", default=False): cv.boolean,
        **_RECURRENCE_SCHEMA,
    }
)
UPDATE_SCHEMA = vol.Schema(
    {
        **_ENTRY,
        **_DISPATCH_ID,
        vol.Optional("start_time"): _DATETIME,
        vol.Optional("duration"): _DURATION,
        vol.Optional(ATTR_OPEN_ENDED): cv.boolean,
        vol.Optional("target"): _TARGET,
        vol.Optional("payload"): dict,
        vol.Optional("active"): cv.boolean,
        **_RECURRENCE_SCHEMA,
    }
)
DELETE_SCHEMA = vol.Schema({**_ENTRY, **_DISPATCH_ID})
LIST_SCHEMA = vol.Schema(
    {
        **_ENTRY,
        vol.Optional("type"): vol.All(cv.ensure_list, [cv.string]),
        vol.Optional(ATTR_RUNNING): cv.boolean,
        vol.Optional(ATTR_START): _DATETIME,
        vol.Optional(ATTR_END): _DATETIME,
    }
)


def _non_finite(value: Any, path: str) -> str | None:
    """The path of the first NaN or infinity in `value` (nested too), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    if isinstance(value, Mapping):
        items: Any = ((f"{path}.{key}", item) for key, item in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"{path}[{index}]", item) for index, item in enumerate(value))
    else:
        return None
    return next(
        (found for sub, item in items if (found := _non_finite(item, sub))), None
    )


def _checked(schema: vol.Schema) -> Callable[[Any], Any]:
    """The schema, refusing bad input with a translated error naming the field.

    NaN and infinity are refused anywhere (the API could not store them as
    JSON), nested payload values included.
    """

    def validate(data: Any) -> Any:
        if isinstance(data, Mapping):
            for key, value in data.items():
                if (path := _non_finite(value, str(key))) is not None:
                    raise _invalid(
                        "invalid_field", field=path, error="not a finite number"
                    )
        try:
            return schema(data)
        except vol.Invalid as err:
            first = err.errors[0] if isinstance(err, vol.MultipleInvalid) else err
            field = ".".join(str(part) for part in first.path) or "data"
            raise _invalid("invalid_field", field=field, error=first.msg) from None

    return validate


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the four actions (once, in `async_setup`)."""
    hass.services.async_register(
        DOMAIN,
        SERVICE_CREATE,
        _async_create,
        schema=_checked(CREATE_SCHEMA),  # type: ignore[arg-type,unused-ignore]
        supports_response=SupportsResponse.OPTIONAL,
    )
    hass.services.async_register(
        DOMAIN,
        SERVICE_UPDATE,
        _async_update,
        schema=_checked(UPDATE_SCHEMA),  # type: ignore[arg-type,unused-ignore]
    )
    hass.services.async_register(
        DOMAIN,
        SERVICE_DELETE,
        _async_delete,
        schema=_checked(DELETE_SCHEMA),  # type: ignore[arg-type,unused-ignore]
    )
    hass.services.async_register(
        DOMAIN,
        SERVICE_LIST,
        _async_list,
        schema=_checked(LIST_SCHEMA),  # type: ignore[arg-type,unused-ignore]
        supports_response=SupportsResponse.ONLY,
    )


# -- helpers -----------------------------------------------------------------


def _invalid(key: str, **placeholders: str) -> ServiceValidationError:
    return ServiceValidationError(
        translation_domain=DOMAIN,
        translation_key=key,
        translation_placeholders=placeholders or None,
    )


def _coordinator(call: ServiceCall) -> FrequenzDispatchCoordinator:
    entry_id: str = call.data[ATTR_ENTRY]
    entry = call.hass.config_entries.async_get_entry(entry_id)
    if entry is None or entry.domain != DOMAIN:
        raise _invalid("entry_not_found", config_entry_id=entry_id)
    coordinator = loaded_coordinator(call.hass, entry_id)
    if coordinator is None:
        raise _invalid("entry_not_loaded", title=entry.title)
    return coordinator


def _utc(value: datetime, field: str) -> datetime:
    """A time without an offset is HA's local time."""
    try:
        return dt_util.as_utc(value)
    except (OverflowError, ValueError) as err:  # beyond year 1 or 9999 in UTC
        raise _invalid("invalid_field", field=field, error=str(err)) from None


def _target(value: list[int | str]) -> list[int] | list[str]:
    """Component ids (numbers, also written as text) or category names."""
    ids = [int(v) for v in value if isinstance(v, int) or str(v).strip().isdigit()]
    if len(ids) == len(value) and ids:
        return ids
    if ids:
        raise _invalid("target_mixed")
    if not value:
        raise _invalid("invalid_field", field="target", error="empty")
    return [str(v).strip().upper() for v in value]


def _recurrence(data: Mapping[str, Any], base: RecurrenceRule | None) -> RecurrenceRule:
    """The rule from the recurrence fields, on top of `base` (kept fields)."""
    rule = base or RecurrenceRule()
    frequency = Frequency[data["frequency"]] if "frequency" in data else rule.frequency
    if "count" in data and "until" in data:
        raise _invalid("count_and_until")
    if frequency is Frequency.UNSPECIFIED:
        raise _invalid("recurrence_needs_frequency")
    end = rule.end_criteria
    if "count" in data:
        end = EndCriteria(count=data["count"])
    elif "until" in data:
        end = EndCriteria(until=_utc(data["until"], "until"))
    return RecurrenceRule(
        frequency=frequency,
        interval=data.get("interval", rule.interval or 1),
        end_criteria=end,
        byminutes=data.get("byminutes", list(rule.byminutes)),
        byhours=data.get("byhours", list(rule.byhours)),
        byweekdays=[Weekday[d] for d in data["byweekdays"]]
        if "byweekdays" in data
        else list(rule.byweekdays),
        bymonthdays=data.get("bymonthdays", list(rule.bymonthdays)),
        bymonths=data.get("bymonths", list(rule.bymonths)),
    )


_FIELD_PREFIXES = ("target", "payload", "recurrence", "duration", "start_time")


def _api_error(err: DispatchApiError, dispatch_id: int | None = None) -> Exception:
    """The HA error a person should see for a failed write."""
    if isinstance(err, DispatchNotFoundError):
        return _invalid("dispatch_not_found", dispatch_id=str(dispatch_id))
    if isinstance(err, DispatchInvalidInputError):
        message = str(err)
        field = next((f for f in _FIELD_PREFIXES if message.startswith(f)), None)
        if field is not None:
            return _invalid("invalid_field", field=field, error=message)
        return _invalid("invalid_input", error=message)
    if isinstance(err, DispatchWriteDeniedError):
        # Never reauth: the key may be read-only and still valid for reading.
        return HomeAssistantError(
            translation_domain=DOMAIN, translation_key="write_denied"
        )
    return HomeAssistantError(
        translation_domain=DOMAIN,
        translation_key="cannot_connect",
        translation_placeholders={"error": str(err)},
    )


def _item(
    coordinator: FrequenzDispatchCoordinator, item: ValidDispatch
) -> dict[str, Any]:
    """One dispatch as actions return it: the event data, with its current run."""
    return event_data(
        coordinator.config_entry.entry_id,
        coordinator.microgrid_id,
        item.dispatch,
        coordinator.run_of_item(item),
        with_window=True,
        device_id=coordinator.device_id,
    )


def _written(
    coordinator: FrequenzDispatchCoordinator, parsed: ParsedDispatch
) -> dict[str, Any]:
    if isinstance(parsed, ValidDispatch):
        return _item(coordinator, parsed)
    # Stored, but not in a form we can show (the stream will skip it too).
    return {ATTR_ID: parsed.id, "malformed": parsed.reason}


async def _call_api[T](
    call: Callable[[], Awaitable[T]], dispatch_id: int | None = None
) -> T:
    """Run one API call, raising the HA error a person should see."""
    try:
        return await call()
    except DispatchApiError as err:
        raise _api_error(err, dispatch_id) from err


# -- actions -----------------------------------------------------------------


async def _async_create(call: ServiceCall) -> ServiceResponse:
    coordinator = _coordinator(call)
    data = call.data
    recurrence = (
        _recurrence(data, None)
        if any(key in data for key in RECURRENCE_FIELDS)
        else None
    )
    target = _target(data["target"])
    created = await _call_api(
        lambda: coordinator.api.create(
            dispatch_type=data["type"],
            start_time=_utc(data["start_time"], "start_time"),
            duration=data.get("duration"),
            target=target,
            payload=data["payload"],
            active=data["active"],
            dry_run=data["dry_run"],
            recurrence=recurrence,
        )
    )
    return _written(coordinator, created)


async def _async_update(call: ServiceCall) -> None:
    coordinator = _coordinator(call)
    data = call.data
    dispatch_id: int = data[ATTR_ID]
    changes: dict[str, Any] = {}
    if data.get(ATTR_OPEN_ENDED):
        if "duration" in data:
            raise _invalid("duration_and_open_ended")
        changes["duration"] = None
    elif "duration" in data:
        changes["duration"] = data["duration"]
    if "start_time" in data:
        changes["start_time"] = _utc(data["start_time"], "start_time")
    if "target" in data:
        changes["target"] = _target(data["target"])
    for key in ("payload", "active"):
        if key in data:
            changes[key] = data[key]
    if any(key in data for key in RECURRENCE_FIELDS):
        held = coordinator.dispatches().get(dispatch_id)
        if held is None:
            fetched = await _call_api(
                lambda: coordinator.api.get(dispatch_id), dispatch_id
            )
            held = fetched if isinstance(fetched, ValidDispatch) else None
        base = None if held is None else held.dispatch.recurrence
        changes["recurrence"] = _recurrence(data, base)
    if not changes:
        raise _invalid("no_changes")
    await _call_api(lambda: coordinator.api.update(dispatch_id, changes), dispatch_id)


async def _async_delete(call: ServiceCall) -> None:
    coordinator = _coordinator(call)
    dispatch_id: int = call.data[ATTR_ID]
    await _call_api(lambda: coordinator.api.delete(dispatch_id), dispatch_id)


async def _async_list(call: ServiceCall) -> ServiceResponse:
    coordinator = _coordinator(call)
    data = call.data
    types = set(data.get("type", []))
    start = _utc(data[ATTR_START], ATTR_START) if ATTR_START in data else None
    end = _utc(data[ATTR_END], ATTR_END) if ATTR_END in data else None
    if start is not None and end is not None and end <= start:
        raise _invalid("end_before_start")
    items: list[JsonValueType] = []
    for dispatch_id, item in sorted(coordinator.dispatches().items()):
        if types and item.dispatch.type not in types:
            continue
        if ATTR_RUNNING in data and (
            (coordinator.run_of(dispatch_id) is not None) != data[ATTR_RUNNING]
        ):
            continue
        if (start is not None or end is not None) and not _runs_in(item, start, end):
            continue
        items.append(_item(coordinator, item))
    return {"dispatches": items}


def _runs_in(item: ValidDispatch, start: datetime | None, end: datetime | None) -> bool:
    """Whether a run of the dispatch meets [start, end) (a missing side is open)."""
    schedule = item.schedule
    # No run starts before the dispatch's start time.
    low = start or item.dispatch.start_time
    if end is None:
        return schedule.run_at(low) is not None or schedule.next_start(low) is not None
    return next(iter(schedule.runs_between(low, end)), None) is not None
