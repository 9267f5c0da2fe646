"""What a user sees: devices, binary sensors, sensors and the event entity."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from frequenz.client.dispatch.recurrence import EndCriteria, Frequency, RecurrenceRule
from homeassistant.components.binary_sensor import BinarySensorDeviceClass  # type: ignore[attr-defined,unused-ignore]
from homeassistant.components.sensor import SensorDeviceClass
from homeassistant.config_entries import ConfigEntry, ConfigEntryState
from homeassistant.const import (
    ATTR_DEVICE_CLASS,
    ATTR_FRIENDLY_NAME,
    STATE_OFF,
    STATE_ON,
    STATE_UNAVAILABLE,
    STATE_UNKNOWN,
    EntityCategory,
)
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.helpers.event import async_track_state_change_event
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
)

from custom_components.frequenz_dispatch.coordinator import FrequenzDispatchCoordinator
from dispatch_sim.server import DispatchSimulator

from .common import (
    EventRecorder,
    StateWrites,
    add_subentry,
    create_dispatch as _create,
    go_to as _go_to,
    settle,
    setup_entry,
    wait_for,
)
from .conftest import DOMAIN, MICROGRID_ID

MINUTE = timedelta(minutes=1)


async def _setup(
    hass: HomeAssistant,
    entry_data: dict[str, Any],
    server: DispatchSimulator,
    options: dict[str, Any] | None = None,
) -> MockConfigEntry:
    entry = await setup_entry(hass, entry_data, options)
    assert entry.state is ConfigEntryState.LOADED
    await wait_for(hass, lambda: server.open_streams >= 1, "stream open")
    return entry


def _entity_id(hass: HomeAssistant, entry: ConfigEntry, platform: str, key: str) -> str:
    entity_id = er.async_get(hass).async_get_entity_id(
        platform, DOMAIN, f"{entry.data['microgrid_id']}_{key}"
    )
    assert entity_id is not None, key
    return entity_id


def _registered(
    hass: HomeAssistant, entry: ConfigEntry, platform: str, key: str
) -> bool:
    registry = er.async_get(hass)
    unique_id = f"{entry.data['microgrid_id']}_{key}"
    return registry.async_get_entity_id(platform, DOMAIN, unique_id) is not None


def _state(hass: HomeAssistant, entity_id: str) -> str:
    state = hass.states.get(entity_id)
    assert state is not None, entity_id
    return state.state


def _attrs(hass: HomeAssistant, entity_id: str) -> dict[str, Any]:
    state = hass.states.get(entity_id)
    assert state is not None, entity_id
    return dict(state.attributes)


class StateLog:
    """Every state (with attributes) an entity is written with, in order."""

    def __init__(self, hass: HomeAssistant, entity_id: str) -> None:
        self.states: list[tuple[str, dict[str, Any]]] = []
        async_track_state_change_event(hass, entity_id, self._changed)

    @callback
    def _changed(self, event: Event[EventStateChangedData]) -> None:
        new = event.data["new_state"]
        if new is not None:
            self.states.append((new.state, dict(new.attributes)))

    def values(self) -> list[str]:
        return [state for state, _ in self.states]


# -- device --------------------------------------------------------------------


async def test_one_service_device_per_microgrid(
    hass: HomeAssistant, dispatch_server: DispatchSimulator, entry_data: dict[str, Any]
) -> None:
    _create(
        dispatch_server, start_time=dt_util.utcnow() + timedelta(days=1), duration=None
    )
    first = await _setup(hass, entry_data, dispatch_server)
    second = await _setup(hass, {**entry_data, "microgrid_id": 43}, dispatch_server)
    devices = dr.async_get(hass)
    entities = er.async_get(hass)
    for entry, microgrid_id in ((first, MICROGRID_ID), (second, 43)):
        [device] = dr.async_entries_for_config_entry(devices, entry.entry_id)
        assert device.identifiers == {(DOMAIN, str(microgrid_id))}
        assert device.entry_type is dr.DeviceEntryType.SERVICE
        assert device.name == f"Microgrid {microgrid_id}"
        assert device.manufacturer == "Frequenz"
        assert device.model == "Dispatch API"
        registered = er.async_entries_for_config_entry(entities, entry.entry_id)
        assert registered
        assert {item.device_id for item in registered} == {device.id}
    # The dispatch belongs to microgrid 42 only: 5 summary entities + 2 on 42.
    assert len(er.async_entries_for_config_entry(entities, first.entry_id)) == 7
    assert len(er.async_entries_for_config_entry(entities, second.entry_id)) == 5


# -- one binary sensor per dispatch --------------------------------------------


async def test_dispatch_sensor_lifecycle(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    entry = await _setup(hass, entry_data, dispatch_server)
    start = t0 + 10 * MINUTE
    dispatch_id = _create(
        dispatch_server,
        start_time=start,
        duration=5 * MINUTE,
        payload={"power_w": 5000},
    )
    key = f"dispatch_{dispatch_id}"
    await wait_for(
        hass, lambda: _registered(hass, entry, "binary_sensor", key), "entity added"
    )
    entity_id = _entity_id(hass, entry, "binary_sensor", key)
    assert (
        entity_id == f"binary_sensor.microgrid_42_dispatch_{dispatch_id}_battery_charge"
    )
    attrs = _attrs(hass, entity_id)
    assert _state(hass, entity_id) == STATE_OFF
    assert attrs.pop(ATTR_DEVICE_CLASS) == BinarySensorDeviceClass.RUNNING
    assert attrs.pop(ATTR_FRIENDLY_NAME) == (
        f"Microgrid 42 Battery charge (dispatch {dispatch_id})"
    )
    expected = {
        "dispatch_id": dispatch_id,
        "type": "BATTERY_CHARGE",
        "active": True,
        "dry_run": False,
        "target": [1, 2],
        "payload": {"power_w": 5000},
        "start_time": start.isoformat(),
        "duration": 300.0,
        "recurrence": None,
        "window_start": None,
        "window_end": None,
        "next_start": start.isoformat(),
    }
    assert attrs == expected

    await _go_to(hass, freezer, start - timedelta(seconds=1))
    assert _state(hass, entity_id) == STATE_OFF
    await _go_to(hass, freezer, start)
    assert _state(hass, entity_id) == STATE_ON
    attrs = _attrs(hass, entity_id)
    assert attrs["window_start"] == start.isoformat()
    assert attrs["window_end"] == (start + 5 * MINUTE).isoformat()
    assert attrs["next_start"] is None
    # Its last run has ended: the sensor leaves the registry (not the type's).
    await _go_to(hass, freezer, start + 5 * MINUTE)
    assert not _registered(hass, entry, "binary_sensor", key)
    assert hass.states.get(entity_id) is None
    type_id = _entity_id(hass, entry, "binary_sensor", "type_BATTERY_CHARGE")
    assert _state(hass, type_id) == STATE_OFF

    # An update that gives it a run again brings it back, same entity ID.
    later = start + 60 * MINUTE
    dispatch_server.update(
        MICROGRID_ID, dispatch_id, start_time=later, target=[7], payload={"x": 1}
    )
    await wait_for(
        hass, lambda: _registered(hass, entry, "binary_sensor", key), "entity back"
    )
    assert _entity_id(hass, entry, "binary_sensor", key) == entity_id
    attrs = _attrs(hass, entity_id)
    assert (attrs["target"], attrs["payload"]) == ([7], {"x": 1})
    assert attrs["next_start"] == later.isoformat()

    # An update through the stream shows up in the attributes.
    dispatch_server.update(MICROGRID_ID, dispatch_id, payload={"x": 2})
    await wait_for(
        hass, lambda: _attrs(hass, entity_id)["payload"] == {"x": 2}, "update"
    )

    dispatch_server.delete(MICROGRID_ID, dispatch_id)
    await wait_for(
        hass,
        lambda: not _registered(hass, entry, "binary_sensor", key),
        "entity removed",
    )
    assert hass.states.get(entity_id) is None
    # Its type has no dispatch left: that sensor stays, off.
    assert _state(hass, type_id) == STATE_OFF
    assert _attrs(hass, type_id)["running_dispatch_ids"] == []


async def test_recurring_dispatch_attributes(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    rule = RecurrenceRule(
        frequency=Frequency.HOURLY, interval=1, end_criteria=EndCriteria(count=2)
    )
    start = t0 + MINUTE
    dispatch_id = _create(
        dispatch_server,
        start_time=start,
        duration=10 * MINUTE,
        recurrence=rule,
        target=["BATTERY", "INVERTER:PV"],
        dry_run=True,
    )
    entry = await _setup(hass, entry_data, dispatch_server)
    entity_id = _entity_id(hass, entry, "binary_sensor", f"dispatch_{dispatch_id}")
    attrs = _attrs(hass, entity_id)
    assert attrs["dry_run"] is True
    assert attrs["target"] == ["BATTERY", "INVERTER:PV"]
    assert attrs["recurrence"]["frequency"] == "HOURLY"
    assert attrs["recurrence"]["count"] == 2
    assert attrs["next_start"] == start.isoformat()
    await _go_to(hass, freezer, start)
    assert _state(hass, entity_id) == STATE_ON  # its own sensor ignores dry_run
    assert _attrs(hass, entity_id)["next_start"] == (start + 60 * MINUTE).isoformat()
    await _go_to(hass, freezer, start + 10 * MINUTE)
    assert _state(hass, entity_id) == STATE_OFF
    await _go_to(hass, freezer, start + 60 * MINUTE)
    assert _state(hass, entity_id) == STATE_ON
    assert _attrs(hass, entity_id)["next_start"] is None
    # After its last run the sensor leaves the registry.
    await _go_to(hass, freezer, start + 70 * MINUTE)
    assert hass.states.get(entity_id) is None
    assert not _registered(hass, entry, "binary_sensor", f"dispatch_{dispatch_id}")


async def test_gone_while_unloaded_is_removed_on_setup(
    hass: HomeAssistant, dispatch_server: DispatchSimulator, entry_data: dict[str, Any]
) -> None:
    later = dt_util.utcnow() + timedelta(days=1)
    kept = _create(dispatch_server, start_time=later, duration=None)
    gone = _create(dispatch_server, start_time=later, duration=None, type="GONE")
    entry = await _setup(hass, entry_data, dispatch_server)
    assert _registered(hass, entry, "binary_sensor", f"dispatch_{gone}")
    assert _registered(hass, entry, "binary_sensor", "type_GONE")
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    dispatch_server.delete(MICROGRID_ID, gone)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert not _registered(hass, entry, "binary_sensor", f"dispatch_{gone}")
    # A type sensor stays (off) when its last dispatch goes.
    type_gone = _entity_id(hass, entry, "binary_sensor", "type_GONE")
    assert _state(hass, type_gone) == STATE_OFF
    assert _attrs(hass, type_gone)["running_dispatch_ids"] == []
    assert _registered(hass, entry, "binary_sensor", f"dispatch_{kept}")
    assert _registered(hass, entry, "binary_sensor", "type_BATTERY_CHARGE")
    assert _registered(hass, entry, "binary_sensor", "api_connection")


async def test_type_change_renames_the_dispatch_sensor(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
) -> None:
    dispatch_id = _create(dispatch_server, start_time=t0 + MINUTE, duration=MINUTE)
    entry = await _setup(hass, entry_data, dispatch_server)
    entity_id = _entity_id(hass, entry, "binary_sensor", f"dispatch_{dispatch_id}")
    name = f"Microgrid 42 Battery charge (dispatch {dispatch_id})"
    assert _attrs(hass, entity_id)[ATTR_FRIENDLY_NAME] == name
    dispatch_server.update(MICROGRID_ID, dispatch_id, type="PV_LIMIT")
    await wait_for(
        hass, lambda: _attrs(hass, entity_id)["type"] == "PV_LIMIT", "type changed"
    )
    # A type without a translation reads in its readable form.
    assert _attrs(hass, entity_id)[ATTR_FRIENDLY_NAME] == (
        f"Microgrid 42 PV limit (dispatch {dispatch_id})"
    )
    registry_entry = er.async_get(hass).async_get(entity_id)
    assert registry_entry is not None
    assert registry_entry.original_name == f"PV limit (dispatch {dispatch_id})"
    # The entity ID stays (a user's automations keep working).
    assert entity_id.endswith(f"_dispatch_{dispatch_id}_battery_charge")
    assert _registered(hass, entry, "binary_sensor", "type_PV_LIMIT")


async def test_names_follow_the_language_entity_ids_the_raw_type(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
) -> None:
    """German names; entity IDs built from the raw type as README documents."""
    hass.config.language = "de"
    dispatch_id = _create(dispatch_server, start_time=t0 + MINUTE, duration=MINUTE)
    entry = await _setup(hass, entry_data, dispatch_server)
    dispatch_entity = _entity_id(
        hass, entry, "binary_sensor", f"dispatch_{dispatch_id}"
    )
    type_entity = _entity_id(hass, entry, "binary_sensor", "type_BATTERY_CHARGE")
    assert dispatch_entity == (
        f"binary_sensor.microgrid_42_dispatch_{dispatch_id}_battery_charge"
    )
    assert type_entity == "binary_sensor.microgrid_42_battery_charge_running"
    assert _attrs(hass, dispatch_entity)[ATTR_FRIENDLY_NAME] == (
        f"Microgrid 42 Batterieladung (Dispatch {dispatch_id})"
    )
    assert _attrs(hass, type_entity)[ATTR_FRIENDLY_NAME] == (
        "Microgrid 42 Batterieladung läuft"
    )
    # A new type renames the sensor in German too; the new type's sensor
    # gets its entity ID from the raw type.
    dispatch_server.update(MICROGRID_ID, dispatch_id, type="FCR_PREQUALIFICATION")
    await wait_for(
        hass,
        lambda: _attrs(hass, dispatch_entity)["type"] == "FCR_PREQUALIFICATION",
        "type changed",
    )
    name = f"FCR-Präqualifikation (Dispatch {dispatch_id})"
    assert _attrs(hass, dispatch_entity)[ATTR_FRIENDLY_NAME] == f"Microgrid 42 {name}"
    registry_entry = er.async_get(hass).async_get(dispatch_entity)
    assert registry_entry is not None
    assert registry_entry.original_name == name
    new_type_entity = _entity_id(
        hass, entry, "binary_sensor", "type_FCR_PREQUALIFICATION"
    )
    assert new_type_entity == (
        "binary_sensor.microgrid_42_fcr_prequalification_running"
    )
    assert _attrs(hass, new_type_entity)[ATTR_FRIENDLY_NAME] == (
        "Microgrid 42 FCR-Präqualifikation läuft"
    )


# -- work per change --------------------------------------------------------------


async def test_one_stream_message_writes_only_what_it_changes(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = [
        _create(dispatch_server, start_time=t0 + (i + 1) * MINUTE, duration=MINUTE)
        for i in range(20)
    ]
    running = _create(dispatch_server, start_time=t0 - MINUTE, duration=None)
    entry = await _setup(hass, entry_data, dispatch_server)
    # Subentry sensors: one that the running payload feeds, one whose set of
    # running dispatches does not change, one of another type.
    setpoint = await add_subentry(
        hass,
        entry,
        "setpoint",
        {"dispatch_type": "BATTERY_CHARGE", "payload_key": "power_w"},
    )
    await add_subentry(
        hass, entry, "type_target", {"dispatch_type": "BATTERY_CHARGE", "target": "1"}
    )
    await add_subentry(
        hass, entry, "setpoint", {"dispatch_type": "PV_LIMIT", "payload_key": "power_w"}
    )
    recorder = EventRecorder().attach(hass)
    writes = StateWrites(hass, monkeypatch)
    changed = ids[10]
    dispatch_server.update(MICROGRID_ID, changed, payload={"power_w": 1})
    await wait_for(hass, lambda: recorder.kinds() == ["updated"], "updated")
    await settle(hass, 0.1)
    assert sorted(writes.entity_ids) == sorted(
        [
            _entity_id(hass, entry, "binary_sensor", f"dispatch_{changed}"),
            _entity_id(hass, entry, "event", "dispatch_event"),
        ]
    )
    # The running one's payload: its sensor, the calendar, whose event (the
    # current run) shows the payload, and the payload sensor it feeds; the
    # type's set does not change (nor the type + target group).
    writes.clear()
    dispatch_server.update(MICROGRID_ID, running, payload={"power_w": 2})
    await wait_for(hass, lambda: len(recorder.events) == 2, "updated again")
    await settle(hass, 0.1)
    assert sorted(writes.entity_ids) == sorted(
        [
            _entity_id(hass, entry, "binary_sensor", f"dispatch_{running}"),
            _entity_id(hass, entry, "calendar", "calendar"),
            _entity_id(hass, entry, "event", "dispatch_event"),
            setpoint,
        ]
    )
    assert hass.states.get(setpoint).state == "2.0"  # type: ignore[union-attr]


@pytest.mark.parametrize("others", [10, 300])
async def test_a_start_costs_the_same_at_any_size(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
    monkeypatch: pytest.MonkeyPatch,
    others: int,
) -> None:
    """Work at a start does not grow with the number of dispatches."""
    for i in range(others):
        _create(
            dispatch_server, start_time=t0 + timedelta(days=1, minutes=i), duration=None
        )
    start = t0 + 5 * MINUTE
    starting = _create(dispatch_server, start_time=start, duration=MINUTE, type="X")
    entry = await _setup(hass, entry_data, dispatch_server)
    coordinator: FrequenzDispatchCoordinator = entry.runtime_data
    writes = StateWrites(hass, monkeypatch)
    evaluations = coordinator.evaluations
    await _go_to(hass, freezer, start)
    assert coordinator.evaluations - evaluations == 1
    assert sorted(writes.entity_ids) == sorted(
        [
            _entity_id(hass, entry, "binary_sensor", f"dispatch_{starting}"),
            _entity_id(hass, entry, "binary_sensor", "type_X"),
            _entity_id(hass, entry, "sensor", "running_dispatches"),
            _entity_id(hass, entry, "sensor", "next_start"),
            _entity_id(hass, entry, "event", "dispatch_event"),
            # on: its event (the starting run, already its next) stays
            _entity_id(hass, entry, "calendar", "calendar"),
        ]
    )


# -- one binary sensor per dispatch type ---------------------------------------


async def test_type_sensor_spans_overlapping_dispatches(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    begin = t0 + MINUTE
    first = _create(dispatch_server, start_time=begin, duration=30 * MINUTE)
    second = _create(
        dispatch_server, start_time=begin + 20 * MINUTE, duration=30 * MINUTE
    )
    # Another type running in between does not matter.
    other = _create(
        dispatch_server,
        type="PV_LIMIT",
        start_time=begin + 25 * MINUTE,
        duration=60 * MINUTE,
    )
    entry = await _setup(hass, entry_data, dispatch_server)
    entity_id = _entity_id(hass, entry, "binary_sensor", "type_BATTERY_CHARGE")
    assert entity_id == "binary_sensor.microgrid_42_battery_charge_running"
    attrs = _attrs(hass, entity_id)
    assert attrs[ATTR_DEVICE_CLASS] == BinarySensorDeviceClass.RUNNING
    assert attrs[ATTR_FRIENDLY_NAME] == "Microgrid 42 Battery charge running"
    assert _state(hass, entity_id) == STATE_OFF
    assert attrs["running_dispatch_ids"] == []
    other_id = _entity_id(hass, entry, "binary_sensor", "type_PV_LIMIT")
    log = StateLog(hass, entity_id)

    expected_ids = {
        0: [first],
        20: [first, second],
        25: [first, second],
        30: [second],
        49: [second],
        50: [],
        90: [],
    }
    for minutes, ids in expected_ids.items():
        await _go_to(hass, freezer, begin + minutes * MINUTE)
        assert _attrs(hass, entity_id)["running_dispatch_ids"] == ids, minutes
        assert _state(hass, entity_id) == (STATE_ON if ids else STATE_OFF), minutes
        if minutes == 25:
            assert _state(hass, other_id) == STATE_ON
            assert _attrs(hass, other_id)["running_dispatch_ids"] == [other]

    # On from the first start to the second end, off exactly once at the end.
    assert log.values()[0] == STATE_ON
    assert log.values().count(STATE_OFF) == 1
    assert log.values()[-1] == STATE_OFF
    assert [attrs["running_dispatch_ids"] for _, attrs in log.states] == [
        [first],
        [first, second],
        [second],
        [],
    ]


@pytest.mark.parametrize("dry_run_counts", [False, True])
async def test_type_sensor_dry_run_option(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
    dry_run_counts: bool,
) -> None:
    dry = _create(
        dispatch_server, start_time=t0 - MINUTE, duration=10 * MINUTE, dry_run=True
    )
    entry = await _setup(
        hass, entry_data, dispatch_server, {"dry_run_counts": dry_run_counts}
    )
    type_id = _entity_id(hass, entry, "binary_sensor", "type_BATTERY_CHARGE")
    own_id = _entity_id(hass, entry, "binary_sensor", f"dispatch_{dry}")
    count_id = _entity_id(hass, entry, "sensor", "running_dispatches")
    assert _state(hass, own_id) == STATE_ON
    assert _state(hass, count_id) == "1"  # dry runs are counted there
    if dry_run_counts:
        assert _state(hass, type_id) == STATE_ON
        assert _attrs(hass, type_id)["running_dispatch_ids"] == [dry]
    else:
        assert _state(hass, type_id) == STATE_OFF
        assert _attrs(hass, type_id)["running_dispatch_ids"] == []
    # A real run of the same type always counts.
    real = _create(dispatch_server, start_time=t0 - MINUTE, duration=10 * MINUTE)
    await wait_for(hass, lambda: _state(hass, count_id) == "2", "real run")
    assert _state(hass, type_id) == STATE_ON
    expected = [dry, real] if dry_run_counts else [real]
    assert _attrs(hass, type_id)["running_dispatch_ids"] == expected
    assert _state(hass, count_id) == "2"


async def test_types_with_the_same_slug_get_their_own_sensor(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    t0: datetime,
) -> None:
    upper = _create(dispatch_server, start_time=t0 - MINUTE, duration=None)
    spaced = _create(
        dispatch_server,
        type="battery charge",
        start_time=t0 + timedelta(days=1),
        duration=None,
    )
    entry = await _setup(hass, entry_data, dispatch_server)
    registry = er.async_get(hass)
    type_sensors = {
        item.entity_id: item.original_name
        for item in er.async_entries_for_config_entry(registry, entry.entry_id)
        if item.translation_key == "dispatch_type"
    }
    assert len(type_sensors) == 2
    # Both read "Battery charge running"; their entity IDs differ.
    names = {
        entity_id: (
            _attrs(hass, entity_id)[ATTR_FRIENDLY_NAME],
            _state(hass, entity_id),
        )
        for entity_id in type_sensors
    }
    assert names == {
        "binary_sensor.microgrid_42_battery_charge_running": (
            "Microgrid 42 Battery charge running",
            STATE_ON,
        ),
        "binary_sensor.microgrid_42_battery_charge_running_2": (
            "Microgrid 42 Battery charge running",
            STATE_OFF,
        ),
    }
    # Removing one type's last dispatch keeps both type sensors.
    recorder = EventRecorder().attach(hass)
    dispatch_server.delete(MICROGRID_ID, spaced)
    await wait_for(hass, lambda: recorder.kinds() == ["deleted"], "deleted")
    await settle(hass, 0.1)
    after = {
        item.entity_id
        for item in er.async_entries_for_config_entry(registry, entry.entry_id)
        if item.translation_key == "dispatch_type"
    }
    assert after == set(type_sensors)
    shown: dict[str, tuple[str, list[int]]] = {
        entity_id: (
            _state(hass, entity_id),
            _attrs(hass, entity_id)["running_dispatch_ids"],
        )
        for entity_id in type_sensors
    }
    assert shown == {
        "binary_sensor.microgrid_42_battery_charge_running": (STATE_ON, [upper]),
        "binary_sensor.microgrid_42_battery_charge_running_2": (STATE_OFF, []),
    }


# -- event entity ------------------------------------------------------------------


async def test_event_entity_mirrors_bus_events(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    recorder = EventRecorder().attach(hass)
    entry = await _setup(hass, entry_data, dispatch_server)
    # Another microgrid's events must not show on this entry's entity.
    other = await _setup(hass, {**entry_data, "microgrid_id": 43}, dispatch_server)
    entity_id = _entity_id(hass, entry, "event", "dispatch_event")
    other_entity_id = _entity_id(hass, other, "event", "dispatch_event")
    assert entity_id == "event.microgrid_42_dispatch_events"
    assert _state(hass, entity_id) == STATE_UNKNOWN
    assert _attrs(hass, entity_id)["event_types"] == [
        "created",
        "updated",
        "deleted",
        "started",
        "stopped",
    ]
    log = StateLog(hass, entity_id)

    start = t0 + 5 * MINUTE
    dispatch_id = _create(dispatch_server, start_time=start, duration=10 * MINUTE)
    await wait_for(hass, lambda: len(recorder.events) == 1, "created")
    dispatch_server.update(MICROGRID_ID, dispatch_id, payload={"soc": 80})
    await wait_for(hass, lambda: len(recorder.events) == 2, "updated")
    await _go_to(hass, freezer, start)
    await _go_to(hass, freezer, start + 10 * MINUTE)
    dispatch_server.update(MICROGRID_ID, dispatch_id, duration=timedelta(hours=2))
    await wait_for(hass, lambda: len(recorder.events) == 6, "updated, started")
    dispatch_server.delete(MICROGRID_ID, dispatch_id)
    await wait_for(hass, lambda: len(recorder.events) == 8, "stopped, deleted")
    # Events of microgrid 43 go only to its own entity.
    dispatch_server.create(
        43, type="OTHER", start_time=start, duration=None, target=[1]
    )
    await wait_for(
        hass, lambda: _state(hass, other_entity_id) != STATE_UNKNOWN, "other entry"
    )
    await settle(hass, 0.1)

    mine = [
        (kind, data)
        for kind, data in recorder.events
        if data["config_entry_id"] == entry.entry_id
    ]
    assert [kind for kind, _ in mine] == [
        "created",
        "updated",
        "started",
        "stopped",
        "updated",
        "started",
        "stopped",
        "deleted",
    ]
    assert len(log.states) == len(mine)
    for (state, attrs), (kind, data) in zip(log.states, mine, strict=True):
        assert dt_util.parse_datetime(state) is not None
        assert attrs["event_type"] == kind
        assert {key: attrs[key] for key in data} == data
        assert attrs[ATTR_FRIENDLY_NAME] == "Microgrid 42 Dispatch events"
    assert log.states[2][1]["window_start"] == start.isoformat()
    other_attrs = _attrs(hass, other_entity_id)
    assert other_attrs["event_type"] == "started"  # created, then started at once
    assert other_attrs["microgrid_id"] == 43
    assert other_attrs["config_entry_id"] == other.entry_id


# -- summary sensors -----------------------------------------------------------------


async def test_next_start_and_running_count(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    entry = await _setup(hass, entry_data, dispatch_server)
    next_id = _entity_id(hass, entry, "sensor", "next_start")
    count_id = _entity_id(hass, entry, "sensor", "running_dispatches")
    assert next_id == "sensor.microgrid_42_next_dispatch_start"
    assert count_id == "sensor.microgrid_42_running_dispatches"
    assert _attrs(hass, next_id)[ATTR_DEVICE_CLASS] == SensorDeviceClass.TIMESTAMP
    assert _attrs(hass, count_id)["state_class"] == "measurement"
    assert _state(hass, next_id) == STATE_UNKNOWN
    assert _state(hass, count_id) == "0"

    a_start, b_start = t0 + 10 * MINUTE, t0 + 15 * MINUTE
    _create(dispatch_server, start_time=b_start, duration=25 * MINUTE)
    await wait_for(
        hass, lambda: _state(hass, next_id) == b_start.isoformat(), "next start B"
    )
    # An earlier one arriving through the stream moves the next start forward.
    _create(dispatch_server, start_time=a_start, duration=10 * MINUTE, type="X")
    await wait_for(
        hass, lambda: _state(hass, next_id) == a_start.isoformat(), "next start A"
    )

    timeline = [
        (a_start, b_start.isoformat(), "1"),
        (b_start, STATE_UNKNOWN, "2"),
        (a_start + 10 * MINUTE, STATE_UNKNOWN, "1"),
        (b_start + 25 * MINUTE, STATE_UNKNOWN, "0"),
    ]
    for when, next_start, running in timeline:
        await _go_to(hass, freezer, when - timedelta(seconds=1))
        assert _state(hass, count_id) != running, when
        await _go_to(hass, freezer, when)
        assert _state(hass, next_id) == next_start, when
        assert _state(hass, count_id) == running, when


# -- connectivity -------------------------------------------------------------------


async def test_connectivity_follows_the_server(
    hass: HomeAssistant,
    dispatch_server: DispatchSimulator,
    entry_data: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    t0: datetime,
) -> None:
    dispatch_id = _create(dispatch_server, start_time=t0 - MINUTE, duration=None)
    entry = await _setup(hass, entry_data, dispatch_server)
    coordinator: FrequenzDispatchCoordinator = entry.runtime_data
    conn_id = _entity_id(hass, entry, "binary_sensor", "api_connection")
    assert conn_id == "binary_sensor.microgrid_42_api_connection"
    registry_entry = er.async_get(hass).async_get(conn_id)
    assert registry_entry is not None
    assert registry_entry.entity_category is EntityCategory.DIAGNOSTIC
    assert _attrs(hass, conn_id)[ATTR_DEVICE_CLASS] == (
        BinarySensorDeviceClass.CONNECTIVITY
    )
    assert _state(hass, conn_id) == STATE_ON
    others = [
        item.entity_id
        for item in er.async_entries_for_config_entry(
            er.async_get(hass), entry.entry_id
        )
        if item.entity_id != conn_id
    ]
    before = {entity_id: _state(hass, entity_id) for entity_id in others}
    assert STATE_UNAVAILABLE not in before.values()
    dispatch_entity = _entity_id(
        hass, entry, "binary_sensor", f"dispatch_{dispatch_id}"
    )
    assert before[dispatch_entity] == STATE_ON

    await dispatch_server.stop()
    await wait_for(hass, lambda: _state(hass, conn_id) == STATE_OFF, "offline")
    # Known dispatches stay available (and keep their state) while offline.
    assert {entity_id: _state(hass, entity_id) for entity_id in others} == before

    await dispatch_server.start()
    # Reconnection waits for the back-off delay: move the clock until it is back.
    for _ in range(50):
        await _go_to(hass, freezer, dt_util.utcnow() + timedelta(seconds=5))
        if coordinator.connected:
            break
        await settle(hass, 0.1)
    await wait_for(hass, lambda: _state(hass, conn_id) == STATE_ON, "online")
    assert _state(hass, dispatch_entity) == STATE_ON
