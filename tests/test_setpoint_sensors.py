"""Payload sensors and type + target groups, added in the UI as subentries."""

from __future__ import annotations

from datetime import datetime, timedelta
import json
import logging
from pathlib import Path
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import (
    SOURCE_RECONFIGURE,
    ConfigEntry,
    ConfigEntryState,
)
from homeassistant.const import (
    ATTR_DEVICE_CLASS,
    ATTR_FRIENDLY_NAME,
    ATTR_UNIT_OF_MEASUREMENT,
    STATE_OFF,
    STATE_ON,
    STATE_UNKNOWN,
)
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import device_registry as dr, entity_registry as er
import pytest

from dispatch_sim.server import DispatchSimulator

from .common import (
    MICROGRID_ID,
    add_subentry,
    create_dispatch,
    go_to,
    setup_and_follow,
    subentry_id_of,
    wait_for,
)
from .conftest import DOMAIN

MINUTE = timedelta(minutes=1)
EV = "EV_CHARGING_LIMIT"
CURRENT = "limits.max_current_a"


def _state(hass: HomeAssistant, entity_id: str) -> str:
    state = hass.states.get(entity_id)
    assert state is not None, entity_id
    return state.state


def _value(hass: HomeAssistant, entity_id: str) -> float | None:
    state = _state(hass, entity_id)
    return None if state == STATE_UNKNOWN else float(state)


def _attrs(hass: HomeAssistant, entity_id: str) -> dict[str, Any]:
    state = hass.states.get(entity_id)
    assert state is not None, entity_id
    return dict(state.attributes)


async def _entry(
    hass: HomeAssistant, entry_data: dict[str, Any], server: DispatchSimulator
) -> ConfigEntry:
    coordinator, _ = await setup_and_follow(hass, entry_data, server)
    return coordinator.config_entry


async def _reconfigure(
    hass: HomeAssistant, entry: ConfigEntry, subentry_id: str
) -> Any:
    return await hass.config_entries.subentries.async_init(
        (entry.entry_id, entry.subentries[subentry_id].subentry_type),
        context={"source": SOURCE_RECONFIGURE, "subentry_id": subentry_id},
    )


def _setpoint(dispatch_type: str, key: str, **more: Any) -> dict[str, Any]:
    return {"dispatch_type": dispatch_type, "payload_key": key, **more}


async def test_a_payload_sensor_follows_its_dispatch(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    dispatch_id = create_dispatch(
        dispatch_server,
        type=EV,
        target=[4],
        start_time=t0 + 5 * MINUTE,
        duration=10 * MINUTE,
        payload={"limits": {"max_current_a": 16}},
    )
    entry = await _entry(hass, entry_data, dispatch_server)
    lists = dispatch_server.list_calls
    sensor = await add_subentry(
        hass, entry, "setpoint", _setpoint(EV, CURRENT, kind="current")
    )
    assert sensor == "sensor.microgrid_42_ev_charging_limit_limits_max_current_a"
    attrs = _attrs(hass, sensor)
    assert attrs[ATTR_FRIENDLY_NAME] == (
        "Microgrid 42 EV charging limit limits.max_current_a"
    )
    assert attrs[ATTR_DEVICE_CLASS] == "current"
    assert attrs[ATTR_UNIT_OF_MEASUREMENT] == "A"
    assert attrs["state_class"] == "measurement"
    assert _state(hass, sensor) == STATE_UNKNOWN
    # On the microgrid's device; adding it neither reloaded nor re-listed.
    reg_entry = er.async_get(hass).async_get(sensor)
    assert reg_entry is not None
    assert reg_entry.device_id is not None
    device = dr.async_get(hass).async_get(reg_entry.device_id)
    assert device is not None
    assert (DOMAIN, str(MICROGRID_ID)) in device.identifiers
    assert dispatch_server.list_calls == lists
    assert entry.state is ConfigEntryState.LOADED

    await go_to(hass, freezer, t0 + 5 * MINUTE)
    assert _value(hass, sensor) == 16
    assert _attrs(hass, sensor)["dispatch_ids"] == [dispatch_id]
    assert _attrs(hass, sensor)["dry_run"] is False

    # A payload change while it runs shows at once.
    dispatch_server.update(
        MICROGRID_ID, dispatch_id, payload={"limits": {"max_current_a": 10}}
    )
    await wait_for(hass, lambda: _value(hass, sensor) == 10, "new payload")

    await go_to(hass, freezer, t0 + 15 * MINUTE)
    assert _state(hass, sensor) == STATE_UNKNOWN
    assert _attrs(hass, sensor)["dispatch_ids"] == []


async def test_each_merge_rule(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    first = create_dispatch(
        dispatch_server,
        start_time=t0 + MINUTE,
        duration=10 * MINUTE,
        payload={"power_w": 3000},
    )
    second = create_dispatch(
        dispatch_server,
        start_time=t0 + 2 * MINUTE,
        duration=20 * MINUTE,
        payload={"power_w": 1000},
    )
    # Another type running meanwhile counts for none of them.
    create_dispatch(
        dispatch_server,
        type="BATTERY_DISCHARGE",
        start_time=t0,
        duration=60 * MINUTE,
        payload={"power_w": 99},
    )
    entry = await _entry(hass, entry_data, dispatch_server)
    sensors = {
        rule: await add_subentry(
            hass,
            entry,
            "setpoint",
            _setpoint("BATTERY_CHARGE", "power_w", kind="power", merge=rule),
        )
        for rule in ("last_started", "largest", "smallest", "sum")
    }
    assert len(set(sensors.values())) == 4
    await go_to(hass, freezer, t0 + MINUTE)
    assert {rule: _value(hass, s) for rule, s in sensors.items()} == {
        "last_started": 3000,
        "largest": 3000,
        "smallest": 3000,
        "sum": 3000,
    }
    await go_to(hass, freezer, t0 + 2 * MINUTE)
    assert {rule: _value(hass, s) for rule, s in sensors.items()} == {
        "last_started": 1000,
        "largest": 3000,
        "smallest": 1000,
        "sum": 4000,
    }
    assert _attrs(hass, sensors["sum"])["dispatch_ids"] == [first, second]
    assert _attrs(hass, sensors["last_started"])["dispatch_ids"] == [second]
    assert _attrs(hass, sensors["sum"])[ATTR_UNIT_OF_MEASUREMENT] == "W"
    # The first ends: the second alone.
    await go_to(hass, freezer, t0 + 11 * MINUTE)
    assert {_value(hass, s) for s in sensors.values()} == {1000}


async def test_target_filter_by_id_and_category(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
) -> None:
    def running(target: list[int] | list[str], power: int) -> int:
        return create_dispatch(
            dispatch_server,
            target=target,
            start_time=t0 - MINUTE,
            duration=30 * MINUTE,
            payload={"power_w": power},
        )

    on_4 = running([4, 7], 100)
    on_5 = running([5], 200)
    li_ion = running(["BATTERY:LI_ION"], 300)
    running(["INVERTER"], 400)
    entry = await _entry(hass, entry_data, dispatch_server)

    async def setpoint(target: str) -> str:
        return await add_subentry(
            hass,
            entry,
            "setpoint",
            _setpoint("BATTERY_CHARGE", "power_w", target=target, merge="sum"),
        )

    async def group(target: str) -> str:
        return await add_subentry(
            hass,
            entry,
            "type_target",
            {"dispatch_type": "BATTERY_CHARGE", "target": target},
        )

    assert _value(hass, await setpoint("4")) == 100
    assert _value(hass, await setpoint("battery")) == 300
    assert _value(hass, await setpoint("")) == 1000
    on_battery_4 = await group("4")
    assert on_battery_4 == "binary_sensor.microgrid_42_battery_charge_on_4_running"
    assert _attrs(hass, on_battery_4)[ATTR_FRIENDLY_NAME] == (
        "Microgrid 42 Battery charge on 4 running"
    )
    assert _state(hass, on_battery_4) == STATE_ON
    assert _attrs(hass, on_battery_4)["running_dispatch_ids"] == [on_4]
    on_5_sensor = await group("5")
    assert _attrs(hass, on_5_sensor)["running_dispatch_ids"] == [on_5]
    batteries = await group("BATTERY")
    assert _attrs(hass, batteries)["running_dispatch_ids"] == [li_ion]
    assert _state(hass, await group("6")) == STATE_OFF
    # Ids and categories are not matched with each other.
    assert _state(hass, await group("EV_CHARGER")) == STATE_OFF

    dispatch_server.delete(MICROGRID_ID, on_5)
    await wait_for(hass, lambda: _state(hass, on_5_sensor) == STATE_OFF, "off")
    assert _state(hass, on_battery_4) == STATE_ON


async def test_missing_or_non_numeric_value_is_unknown_with_one_log_line(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad = create_dispatch(
        dispatch_server,
        start_time=t0 - MINUTE,
        duration=30 * MINUTE,
        payload={"power_w": "lots"},
    )
    entry = await _entry(hass, entry_data, dispatch_server)
    caplog.set_level(logging.WARNING)
    sensor = await add_subentry(
        hass, entry, "setpoint", _setpoint("BATTERY_CHARGE", "power_w", merge="sum")
    )
    assert _state(hass, sensor) == STATE_UNKNOWN
    assert _attrs(hass, sensor)["dispatch_ids"] == [bad]

    def log_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if "gives no value" in r.message]

    assert log_lines() == [
        f"{sensor}: dispatch {bad} gives no value ('power_w' is not a number: "
        "'lots'); showing unknown"
    ]
    # Another dispatch of the type starts: still unknown, no second line.
    create_dispatch(
        dispatch_server,
        start_time=t0 + MINUTE,
        duration=MINUTE,
        payload={"power_w": 5},
    )
    await wait_for(hass, lambda: len(entry.runtime_data.dispatches()) == 2, "created")
    await go_to(hass, freezer, t0 + MINUTE)
    assert _attrs(hass, sensor)["dispatch_ids"] == [bad, bad + 1]
    assert _state(hass, sensor) == STATE_UNKNOWN
    assert len(log_lines()) == 1
    # The key goes missing: a new reason, one new line.
    dispatch_server.update(MICROGRID_ID, bad, payload={"other": 1})
    await wait_for(hass, lambda: len(log_lines()) == 2, "second line")
    assert "payload has no 'power_w'" in log_lines()[1]
    # Fixed: a value again.
    dispatch_server.update(MICROGRID_ID, bad, payload={"power_w": 7})
    await wait_for(hass, lambda: _value(hass, sensor) == 12, "fixed")
    assert len(log_lines()) == 2


async def test_dry_runs_count_per_subentry(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
) -> None:
    dry = create_dispatch(
        dispatch_server,
        start_time=t0 - MINUTE,
        duration=30 * MINUTE,
        dry_run=True,
        payload={"power_w": 100},
        target=[4],
    )
    entry = await _entry(hass, entry_data, dispatch_server)
    # The integration's option (off by default) leaves it out.
    as_option = await add_subentry(
        hass, entry, "setpoint", _setpoint("BATTERY_CHARGE", "power_w")
    )
    assert _state(hass, as_option) == STATE_UNKNOWN
    counted = await add_subentry(
        hass,
        entry,
        "setpoint",
        _setpoint(
            "BATTERY_CHARGE", "power_w", target="4", dry_runs="count", merge="sum"
        ),
    )
    assert _value(hass, counted) == 100
    assert _attrs(hass, counted)["dry_run"] is True
    group = await add_subentry(
        hass,
        entry,
        "type_target",
        {"dispatch_type": "BATTERY_CHARGE", "target": "4", "dry_runs": "count"},
    )
    assert _state(hass, group) == STATE_ON
    assert _attrs(hass, group)["dry_run"] is True
    ignoring = await add_subentry(
        hass,
        entry,
        "type_target",
        {"dispatch_type": "BATTERY_CHARGE", "target": "4", "dry_runs": "ignore"},
    )
    assert _state(hass, ignoring) == STATE_OFF
    # A real run next to it: the flag is off, both count.
    real = create_dispatch(
        dispatch_server,
        start_time=t0 - MINUTE,
        duration=30 * MINUTE,
        payload={"power_w": 50},
        target=[4],
    )
    await wait_for(hass, lambda: _value(hass, as_option) == 50, "real run")
    assert _value(hass, counted) == 150
    assert _attrs(hass, counted)["dry_run"] is False
    assert _attrs(hass, counted)["dispatch_ids"] == [dry, real]
    assert _attrs(hass, group)["dry_run"] is False
    assert _state(hass, ignoring) == STATE_ON


async def test_dry_runs_follow_the_integration_option(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
) -> None:
    create_dispatch(
        dispatch_server,
        start_time=t0 - MINUTE,
        duration=30 * MINUTE,
        dry_run=True,
        payload={"power_w": 100},
    )
    entry = await _entry(hass, entry_data, dispatch_server)
    sensor = await add_subentry(
        hass, entry, "setpoint", _setpoint("BATTERY_CHARGE", "power_w")
    )
    assert _state(hass, sensor) == STATE_UNKNOWN
    hass.config_entries.async_update_entry(entry, options={"dry_run_counts": True})
    await wait_for(hass, lambda: _state(hass, sensor) == "100.0", "counted")


async def test_reconfigure_and_remove_without_reloading(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
) -> None:
    create_dispatch(
        dispatch_server,
        start_time=t0 - MINUTE,
        duration=30 * MINUTE,
        payload={"power_w": 3000, "soc": {"max": 80}},
    )
    entry = await _entry(hass, entry_data, dispatch_server)
    coordinator = entry.runtime_data
    sensor = await add_subentry(
        hass, entry, "setpoint", _setpoint("BATTERY_CHARGE", "power_w", kind="power")
    )
    assert _value(hass, sensor) == 3000
    calls = (dispatch_server.list_calls, dispatch_server.stream_calls)
    subentry_id = subentry_id_of(hass, sensor)

    result = await _reconfigure(hass, entry, subentry_id)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reconfigure"
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"],
        _setpoint("BATTERY_CHARGE", "soc.max", kind="percentage", target="BATTERY"),
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    # Same entity, new settings: no reconnect, no re-list, no reload.
    assert entry.subentries[subentry_id].title == "Battery charge soc.max on BATTERY"
    assert _state(hass, sensor) == STATE_UNKNOWN  # its target is [1, 2]
    attrs = _attrs(hass, sensor)
    assert attrs[ATTR_UNIT_OF_MEASUREMENT] == "%"
    assert ATTR_DEVICE_CLASS not in attrs
    assert attrs[ATTR_FRIENDLY_NAME] == "Microgrid 42 Battery charge soc.max on BATTERY"
    registered = er.async_get(hass).async_get(sensor)
    assert registered is not None
    assert registered.original_name == "Battery charge soc.max on BATTERY"
    result = await _reconfigure(hass, entry, subentry_id)
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], _setpoint("BATTERY_CHARGE", "soc.max", kind="percentage")
    )
    await hass.async_block_till_done()
    assert _value(hass, sensor) == 80

    assert hass.config_entries.async_remove_subentry(entry, subentry_id)
    await hass.async_block_till_done()
    assert hass.states.get(sensor) is None
    assert er.async_get(hass).async_get(sensor) is None
    assert (dispatch_server.list_calls, dispatch_server.stream_calls) == calls
    assert entry.runtime_data is coordinator
    assert entry.state is ConfigEntryState.LOADED
    assert dispatch_server.open_streams == 1


async def test_values_come_back_from_the_cache_after_a_restart(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
) -> None:
    create_dispatch(
        dispatch_server,
        type=EV,
        target=["EV_CHARGER"],
        start_time=t0 - MINUTE,
        duration=30 * MINUTE,
        payload={"limits": {"max_current_a": 16}},
    )
    entry = await _entry(hass, entry_data, dispatch_server)
    sensor = await add_subentry(
        hass, entry, "setpoint", _setpoint(EV, CURRENT, kind="current")
    )
    group = await add_subentry(
        hass, entry, "type_target", {"dispatch_type": EV, "target": "EV_CHARGER"}
    )
    assert _value(hass, sensor) == 16
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    await dispatch_server.stop()
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert not entry.runtime_data.connected
    assert _value(hass, sensor) == 16
    assert _state(hass, group) == STATE_ON


async def test_form_refuses_bad_input(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
) -> None:
    entry = await _entry(hass, entry_data, dispatch_server)
    flows = hass.config_entries.subentries
    for data, errors in [
        (_setpoint(" ", "power_w"), {"dispatch_type": "invalid_type"}),
        (_setpoint("X", "limits..a"), {"payload_key": "invalid_payload_key"}),
        (_setpoint("X", "a", kind="current", unit="W"), {"unit": "invalid_unit"}),
        (_setpoint("X", "a", target="-4"), {"target": "invalid_target"}),
    ]:
        result = await flows.async_init(
            (entry.entry_id, "setpoint"), context={"source": "user"}
        )
        result = await flows.async_configure(result["flow_id"], data)
        assert result["type"] is FlowResultType.FORM
        assert result["errors"] == errors
    result = await flows.async_init(
        (entry.entry_id, "type_target"), context={"source": "user"}
    )
    result = await flows.async_configure(
        result["flow_id"], {"dispatch_type": "X", "target": " "}
    )
    assert result["errors"] == {"target": "invalid_target"}
    result = await flows.async_configure(
        result["flow_id"], {"dispatch_type": " ", "target": "BATTERY"}
    )
    assert result["errors"] == {"dispatch_type": "invalid_type"}
    # Changing one: the same errors, and the form again until the input is fine.
    sensor = await add_subentry(hass, entry, "setpoint", _setpoint("X", "a"))
    subentry_id = subentry_id_of(hass, sensor)
    result = await _reconfigure(hass, entry, subentry_id)
    result = await flows.async_configure(result["flow_id"], _setpoint("X", "a.."))
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reconfigure"
    assert result["errors"] == {"payload_key": "invalid_payload_key"}
    result = await flows.async_configure(result["flow_id"], _setpoint("X", "a.b"))
    assert result["type"] is FlowResultType.ABORT
    assert entry.subentries[subentry_id].data["payload_key"] == "a.b"
    # The unit of a kind is normalised; the title names type, key and target.
    result = await flows.async_init(
        (entry.entry_id, "setpoint"), context={"source": "user"}
    )
    result = await flows.async_configure(
        result["flow_id"], _setpoint("X", "p", kind="power", unit="kw", target="7")
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "X p on 7"
    assert result["data"]["unit"] == "kW"


async def test_a_subentry_removed_while_unloaded_leaves_with_the_next_load(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
) -> None:
    entry = await _entry(hass, entry_data, dispatch_server)
    sensor = await add_subentry(
        hass, entry, "setpoint", _setpoint("BATTERY_CHARGE", "power_w")
    )
    group = await add_subentry(
        hass, entry, "type_target", {"dispatch_type": "BATTERY_CHARGE", "target": "1"}
    )
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    for entity_id in (sensor, group):
        hass.config_entries.async_remove_subentry(
            entry, subentry_id_of(hass, entity_id)
        )
    await hass.async_block_till_done()
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    registry = er.async_get(hass)
    assert registry.async_get(sensor) is None
    assert registry.async_get(group) is None
    # The entry's own entities stay.
    assert hass.states.get("binary_sensor.microgrid_42_api_connection") is not None


def test_translations_have_the_same_keys() -> None:
    base = Path(__file__).parent.parent / "custom_components/frequenz_dispatch"

    def keys(value: Any, prefix: str = "") -> set[str]:
        if not isinstance(value, dict):
            return {prefix}
        return set().union(*(keys(v, f"{prefix}/{k}") for k, v in value.items()))

    english = json.loads((base / "strings.json").read_text())
    for name in ("en", "de"):
        translated = json.loads((base / "translations" / f"{name}.json").read_text())
        assert keys(translated) == keys(english), name
    assert english["config_subentries"]["setpoint"]["initiate_flow"]["user"] == (
        "Add payload sensor"
    )
