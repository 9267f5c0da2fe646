"""The actions, called through HA's service registry against the real simulator."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import device_registry as dr
from homeassistant.util import dt as dt_util
import pytest

from custom_components.frequenz_dispatch.const import DOMAIN
from custom_components.frequenz_dispatch.coordinator import FrequenzDispatchCoordinator
from dispatch_sim.server import DispatchSimulator

from .common import (
    MICROGRID_ID,
    EventRecorder,
    create_dispatch,
    setup_and_follow,
    wait_for,
)


async def _call(
    hass: HomeAssistant, service: str, data: dict[str, Any], *, response: bool = False
) -> Any:
    return await hass.services.async_call(
        DOMAIN, service, data, blocking=True, return_response=response
    )


async def test_create_update_delete_roundtrip(
    hass: HomeAssistant,
    t0: datetime,
    entry_data: dict[str, Any],
    dispatch_server: DispatchSimulator,
) -> None:
    await hass.config.async_set_time_zone("Europe/Berlin")
    coordinator, recorder = await setup_and_follow(hass, entry_data, dispatch_server)
    entry_id = coordinator.config_entry.entry_id
    local = dt_util.as_local(t0 + timedelta(hours=1))

    created = await _call(
        hass,
        "create_dispatch",
        {
            "config_entry_id": entry_id,
            "type": "BATTERY_CHARGE",
            # As the UI's date-time picker sends it: local time, no offset.
            "start_time": local.strftime("%Y-%m-%d %H:%M:%S"),
            "duration": {"minutes": 15},
            "target": ["battery", "INVERTER:PV"],
            "payload": {"power_w": 5000},
            "frequency": "daily",
            "count": 3,
            "byhours": ["13", "14"],
        },
        response=True,
    )
    dispatch_id = created["dispatch_id"]
    assert created["config_entry_id"] == entry_id
    assert created["microgrid_id"] == MICROGRID_ID
    assert created["type"] == "BATTERY_CHARGE"
    assert created["start_time"] == (t0 + timedelta(hours=1)).isoformat()
    assert created["duration"] == 900
    assert created["target"] == ["BATTERY", "INVERTER:PV"]
    assert created["payload"] == {"power_w": 5000}
    assert created["dry_run"] is False
    assert created["recurrence"]["frequency"] == "DAILY"
    assert created["recurrence"]["count"] == 3
    assert created["recurrence"]["byhours"] == [13, 14]
    assert created["window_start"] is None

    # The change comes back through the stream, as any other.
    await wait_for(hass, lambda: recorder.kinds(dispatch_id) == ["created"])
    assert dispatch_id in coordinator.dispatches()
    # The item names the same device as the bus event.
    [device] = dr.async_entries_for_config_entry(dr.async_get(hass), entry_id)
    assert recorder.of("created")[0]["device_id"] == device.id
    assert created["device_id"] == device.id

    # Only the given fields change; the recurrence keeps what is not given.
    await _call(
        hass,
        "update_dispatch",
        {
            "config_entry_id": entry_id,
            "dispatch_id": dispatch_id,
            "open_ended": True,
            "byhours": ["9"],
        },
    )
    await wait_for(hass, lambda: len(recorder.of("updated")) == 1, "updated")
    updated = recorder.of("updated")[0]
    assert updated["duration"] is None
    assert updated["payload"] == {"power_w": 5000}
    assert updated["recurrence"]["count"] == 3
    assert updated["recurrence"]["byhours"] == [9]

    await _call(
        hass,
        "update_dispatch",
        {"config_entry_id": entry_id, "dispatch_id": dispatch_id, "duration": "0:10"},
    )
    await wait_for(hass, lambda: len(recorder.of("updated")) == 2, "updated")
    assert recorder.of("updated")[1]["duration"] == 600

    await _call(
        hass,
        "delete_dispatch",
        {"config_entry_id": entry_id, "dispatch_id": dispatch_id},
    )
    await wait_for(hass, lambda: len(recorder.of("deleted")) == 1, "deleted")
    assert dispatch_server.dispatches(MICROGRID_ID) == []

    with pytest.raises(ServiceValidationError) as err:
        await _call(
            hass,
            "delete_dispatch",
            {"config_entry_id": entry_id, "dispatch_id": dispatch_id},
        )
    assert err.value.translation_key == "dispatch_not_found"
    assert str(dispatch_id) in str(err.value)


@pytest.mark.parametrize(
    ("data", "key", "field"),
    [
        ({"target": [1, "BATTERY"]}, "target_mixed", None),
        ({"target": ["TOASTER"]}, "invalid_field", "target"),
        ({"count": 2, "until": "2030-01-01 00:00:00"}, "count_and_until", None),
        ({"interval": 2}, "recurrence_needs_frequency", None),
    ],
)
async def test_invalid_input_names_the_field(
    hass: HomeAssistant,
    t0: datetime,
    entry_data: dict[str, Any],
    dispatch_server: DispatchSimulator,
    data: dict[str, Any],
    key: str,
    field: str | None,
) -> None:
    coordinator, _ = await setup_and_follow(hass, entry_data, dispatch_server)
    with pytest.raises(ServiceValidationError) as err:
        await _call(
            hass,
            "create_dispatch",
            {
                "config_entry_id": coordinator.config_entry.entry_id,
                "type": "BATTERY_CHARGE",
                "start_time": (t0 + timedelta(hours=1)).isoformat(),
                "target": [1],
                **data,
            },
        )
    assert err.value.translation_domain == DOMAIN
    assert err.value.translation_key == key
    assert (err.value.translation_placeholders or {}).get("field") == field
    assert dispatch_server.dispatches(MICROGRID_ID) == []


async def test_update_without_changes_and_unknown_entry(
    hass: HomeAssistant,
    t0: datetime,
    entry_data: dict[str, Any],
    dispatch_server: DispatchSimulator,
) -> None:
    coordinator, _ = await setup_and_follow(hass, entry_data, dispatch_server)
    with pytest.raises(ServiceValidationError) as err:
        await _call(
            hass,
            "update_dispatch",
            {"config_entry_id": coordinator.config_entry.entry_id, "dispatch_id": 1},
        )
    assert err.value.translation_key == "no_changes"
    with pytest.raises(ServiceValidationError) as err:
        await _call(
            hass, "delete_dispatch", {"config_entry_id": "nope", "dispatch_id": 1}
        )
    assert err.value.translation_key == "entry_not_found"


async def test_unreachable_server_is_an_error_not_a_validation_error(
    hass: HomeAssistant,
    t0: datetime,
    entry_data: dict[str, Any],
    dispatch_server: DispatchSimulator,
) -> None:
    coordinator, _ = await setup_and_follow(hass, entry_data, dispatch_server)
    await dispatch_server.stop()
    with pytest.raises(HomeAssistantError) as err:
        await _call(
            hass,
            "delete_dispatch",
            {"config_entry_id": coordinator.config_entry.entry_id, "dispatch_id": 1},
        )
    assert not isinstance(err.value, ServiceValidationError)
    assert err.value.translation_key == "cannot_connect"


async def test_list_dispatches_filters(
    hass: HomeAssistant,
    t0: datetime,
    entry_data: dict[str, Any],
    dispatch_server: DispatchSimulator,
) -> None:
    running = create_dispatch(
        dispatch_server,
        start_time=t0 - timedelta(minutes=1),
        duration=timedelta(minutes=30),
    )
    tomorrow = create_dispatch(
        dispatch_server,
        type="PV_CURTAILMENT",
        start_time=t0 + timedelta(days=1),
        duration=timedelta(hours=2),
    )
    coordinator, _ = await setup_and_follow(hass, entry_data, dispatch_server)
    entry_id = coordinator.config_entry.entry_id

    async def ids(**filters: Any) -> list[int]:
        result = await _call(
            hass,
            "list_dispatches",
            {"config_entry_id": entry_id, **filters},
            response=True,
        )
        return [item["dispatch_id"] for item in result["dispatches"]]

    assert await ids() == [running, tomorrow]
    assert await ids(type=["PV_CURTAILMENT"]) == [tomorrow]
    assert await ids(running=True) == [running]
    assert await ids(running=False) == [tomorrow]
    in_a_day = t0 + timedelta(days=1)
    assert await ids(start=(in_a_day - timedelta(hours=1)).isoformat()) == [tomorrow]
    assert await ids(end=(t0 + timedelta(hours=1)).isoformat()) == [running]
    assert (
        await ids(
            start=(t0 + timedelta(hours=1)).isoformat(),
            end=(in_a_day - timedelta(hours=1)).isoformat(),
        )
        == []
    )
    result = await _call(
        hass, "list_dispatches", {"config_entry_id": entry_id}, response=True
    )
    first = result["dispatches"][0]
    assert first["window_start"] == (t0 - timedelta(minutes=1)).isoformat()
    [device] = dr.async_entries_for_config_entry(dr.async_get(hass), entry_id)
    assert first["device_id"] == device.id
    assert first["type"] == "BATTERY_CHARGE"


async def test_rejected_write_is_an_error_without_reauth(
    hass: HomeAssistant,
    t0: datetime,
    entry_data: dict[str, Any],
    dispatch_server: DispatchSimulator,
) -> None:
    dispatch_server.read_only_api_key = "read-only-key"
    coordinator, _ = await setup_and_follow(
        hass, {**entry_data, "api_key": "read-only-key"}, dispatch_server
    )
    entry = coordinator.config_entry
    with pytest.raises(HomeAssistantError) as err:
        await _call(
            hass,
            "create_dispatch",
            {
                "config_entry_id": entry.entry_id,
                "type": "BATTERY_CHARGE",
                "start_time": (t0 + timedelta(hours=1)).isoformat(),
                "target": [1],
            },
        )
    assert not isinstance(err.value, ServiceValidationError)
    assert err.value.translation_key == "write_denied"
    assert "may only read" in str(err.value)
    await hass.async_block_till_done()
    assert hass.config_entries.flow.async_progress_by_handler(DOMAIN) == []
    assert entry.state is ConfigEntryState.LOADED
    assert dispatch_server.dispatches(MICROGRID_ID) == []


async def _far_east(
    hass: HomeAssistant, entry_data: dict[str, Any], server: DispatchSimulator
) -> tuple[FrequenzDispatchCoordinator, EventRecorder]:
    """Set up an entry in UTC+14, where local year 1 begins in UTC's year 0."""
    await hass.config.async_set_time_zone("Pacific/Kiritimati")
    return await setup_and_follow(hass, entry_data, server)


async def test_dates_beyond_what_utc_holds_and_other_refusals_name_the_field(
    hass: HomeAssistant,
    t0: datetime,
    entry_data: dict[str, Any],
    dispatch_server: DispatchSimulator,
) -> None:
    coordinator, _ = await _far_east(hass, entry_data, dispatch_server)
    entry = coordinator.config_entry
    base = {
        "config_entry_id": entry.entry_id,
        "type": "BATTERY_CHARGE",
        "start_time": (t0 + timedelta(hours=1)).isoformat(),
        "target": [1],
    }
    for data, field in (
        # Local midnight of 1 January of year 1 is in year 0 in UTC.
        ({"start_time": "0001-01-01 00:00:00"}, "start_time"),
        ({"target": []}, "target"),
        ({"duration": {"days": 10**12}}, "duration"),
        ({"payload": {"a": [1, {"b": float("nan")}]}}, "payload.a[1].b"),
    ):
        with pytest.raises(ServiceValidationError) as err:
            await _call(hass, "create_dispatch", {**base, **data})
        assert err.value.translation_key == "invalid_field"
        assert (err.value.translation_placeholders or {})["field"] == field
    assert dispatch_server.dispatches(MICROGRID_ID) == []
    assert await hass.config_entries.async_unload(entry.entry_id)
    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, "create_dispatch", base)
    assert err.value.translation_key == "entry_not_loaded"


async def test_update_and_list_refusals_name_the_field(
    hass: HomeAssistant,
    t0: datetime,
    entry_data: dict[str, Any],
    dispatch_server: DispatchSimulator,
) -> None:
    """Changes and queries are checked as creations are; nothing is written."""
    coordinator, recorder = await _far_east(hass, entry_data, dispatch_server)
    entry_id = coordinator.config_entry.entry_id
    created = await _call(
        hass,
        "create_dispatch",
        {
            "config_entry_id": entry_id,
            "type": "BATTERY_CHARGE",
            "start_time": (t0 + timedelta(hours=1)).isoformat(),
            "duration": "0:30",
            "target": [1],
            "frequency": "daily",
            "until": (t0 + timedelta(days=3)).isoformat(),
        },
        response=True,
    )
    (stored,) = dispatch_server.dispatches(MICROGRID_ID)
    end_criteria = stored.recurrence.end_criteria
    assert end_criteria is not None
    assert end_criteria.until == t0 + timedelta(days=3)
    dispatch = {"config_entry_id": entry_id, "dispatch_id": created["dispatch_id"]}
    for data, key, field in (
        ({"open_ended": True, "duration": "1:00"}, "duration_and_open_ended", None),
        # Local midnight of 1 January of year 1 is in year 0 in UTC.
        ({"start_time": "0001-01-01 00:00:00"}, "invalid_field", "start_time"),
        ({"target": ["TOASTER"]}, "invalid_field", "target"),
    ):
        with pytest.raises(ServiceValidationError) as err:
            await _call(hass, "update_dispatch", {**dispatch, **data})
        assert err.value.translation_key == key
        assert (err.value.translation_placeholders or {}).get("field") == field
    assert dispatch_server.dispatches(MICROGRID_ID) == [stored]
    assert recorder.of("updated") == []

    with pytest.raises(ServiceValidationError) as err:
        await _call(
            hass,
            "list_dispatches",
            {
                "config_entry_id": entry_id,
                "start": t0.isoformat(),
                "end": t0.isoformat(),
            },
            response=True,
        )
    assert err.value.translation_key == "end_before_start"

    # A valid change of target and start goes through.
    await _call(
        hass,
        "update_dispatch",
        {
            **dispatch,
            "target": ["BATTERY"],
            "start_time": (t0 + timedelta(hours=2)).isoformat(),
        },
    )
    await wait_for(hass, lambda: len(recorder.of("updated")) == 1, "updated")
    assert recorder.of("updated")[0]["target"] == ["BATTERY"]
