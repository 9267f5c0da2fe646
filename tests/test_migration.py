"""Upgrade of an entry made by version 1.2 (IDs from the config entry id) to 1.3.

The registries are filled the way 1.2 filled them (same calls, unique IDs,
device identifier and registry options); the upgrade must keep every entity
ID, the user's settings and the device ID that automations store.
"""

from __future__ import annotations

from datetime import datetime, timedelta
import hashlib
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers import (
    area_registry as ar,
    device_registry as dr,
    entity_registry as er,
)
from homeassistant.setup import async_setup_component
from homeassistant.util import slugify
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.frequenz_dispatch.const import DOMAIN
from dispatch_sim.server import DispatchSimulator

from .common import MICROGRID_ID, create_dispatch, go_to, wait_for

MINUTE = timedelta(minutes=1)


def _type_key_1_2(dispatch_type: str) -> str:
    """1.2's unique-id part of a type sensor (binary_sensor._type_key then)."""
    slug = slugify(dispatch_type)
    if dispatch_type == slug.upper():
        return f"type_{slug}"
    digest = hashlib.sha256(dispatch_type.encode()).hexdigest()[:8]
    return f"type_{slug}_{digest}"


def _entry_1_2(entry_data: dict[str, Any]) -> MockConfigEntry:
    return MockConfigEntry(
        domain=DOMAIN,
        title=f"Microgrid {MICROGRID_ID}",
        data=entry_data,
        unique_id=str(MICROGRID_ID),
        version=1,
        minor_version=2,
    )


def _register_1_2(
    hass: HomeAssistant, entry: MockConfigEntry, charge_id: int
) -> dict[str, str]:
    """Fill the registries as 1.2 did; return {old unique id: entity id}."""
    device = dr.async_get(hass).async_get_or_create(
        config_entry_id=entry.entry_id,
        identifiers={(DOMAIN, entry.entry_id)},
        name=f"Microgrid {MICROGRID_ID}",
        manufacturer="Frequenz",
        model="Dispatch API",
        entry_type=dr.DeviceEntryType.SERVICE,
    )
    registry = er.async_get(hass)
    made: dict[str, str] = {}

    def register(
        platform: str,
        key: str,
        object_id: str,
        translation_key: str,
        stored_type: str | None = None,
    ) -> None:
        unique_id = f"{entry.entry_id}_{key}"
        reg_entry = registry.async_get_or_create(
            platform,
            DOMAIN,
            unique_id,
            suggested_object_id=object_id,
            config_entry=entry,
            device_id=device.id,
            translation_key=translation_key,
        )
        if stored_type is not None:
            registry.async_update_entity_options(
                reg_entry.entity_id, DOMAIN, {"type": stored_type}
            )
        made[unique_id] = reg_entry.entity_id

    prefix = f"microgrid_{MICROGRID_ID}"
    register(
        "binary_sensor", "api_connection", f"{prefix}_api_connection", "api_connection"
    )
    register("calendar", "calendar", f"{prefix}_dispatches", "dispatches")
    register("event", "dispatch_event", f"{prefix}_dispatch_events", "dispatch_event")
    register("sensor", "next_start", f"{prefix}_next_dispatch_start", "next_start")
    register(
        "sensor",
        "running_dispatches",
        f"{prefix}_running_dispatches",
        "running_dispatches",
    )
    register(
        "binary_sensor",
        f"dispatch_{charge_id}",
        f"{prefix}_dispatch_{charge_id}_battery_charge",
        "dispatch",
    )
    for object_id, dispatch_type in (
        ("battery_charge_running", "BATTERY_CHARGE"),
        # Same slug, another type: 1.2 hashed it, HA numbered its entity ID.
        ("battery_charge_running_2", "battery charge"),
    ):
        register(
            "binary_sensor",
            _type_key_1_2(dispatch_type),
            f"{prefix}_{object_id}",
            "dispatch_type",
            stored_type=dispatch_type,
        )
    # A type sensor without its stored type (the type has no dispatch now).
    register(
        "binary_sensor",
        _type_key_1_2("PV_CURTAILMENT"),
        f"{prefix}_pv_curtailment_running",
        "dispatch_type",
    )
    return made


def _record(hass: HomeAssistant, event_type: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    @callback
    def _seen(event: Event) -> None:
        seen.append(dict(event.data))

    hass.bus.async_listen(event_type, _seen)
    return seen


async def test_upgrade_keeps_entity_ids_settings_and_device(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    t0: datetime,
    entry_data: dict[str, Any],
    dispatch_server: DispatchSimulator,
) -> None:
    charge_id = create_dispatch(
        dispatch_server, start_time=t0 + 5 * MINUTE, duration=10 * MINUTE
    )
    create_dispatch(
        dispatch_server,
        type="battery charge",
        start_time=t0 + 5 * MINUTE,
        duration=10 * MINUTE,
    )
    entry = _entry_1_2(entry_data)
    entry.add_to_hass(hass)
    old = _register_1_2(hass, entry, charge_id)
    devices = dr.async_get(hass)
    entities = er.async_get(hass)
    (device,) = dr.async_entries_for_config_entry(devices, entry.entry_id)
    area = ar.async_get(hass).async_create("Cellar")
    devices.async_update_device(device.id, name_by_user="My grid", area_id=area.id)
    charge_entity = old[f"{entry.entry_id}_dispatch_{charge_id}"]
    entities.async_update_entity(charge_entity, name="Charge now", icon="mdi:flash")
    next_start = old[f"{entry.entry_id}_next_start"]
    entities.async_update_entity(next_start, disabled_by=er.RegistryEntryDisabler.USER)
    # An automation built in the UI on 1.2 stores the device ID.
    fired = _record(hass, "seen_by_automation")
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": [
                {
                    "alias": "charge started",
                    "triggers": [
                        {
                            "platform": "device",
                            "domain": DOMAIN,
                            "device_id": device.id,
                            "type": "started",
                            "dispatch_type": "BATTERY_CHARGE",
                        }
                    ],
                    "actions": [
                        {
                            "event": "seen_by_automation",
                            "event_data": {
                                "id": "{{ trigger.event.data.dispatch_id }}"
                            },
                        }
                    ],
                }
            ]
        },
    )

    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert (entry.version, entry.minor_version) == (1, 3)
    await wait_for(hass, lambda: dispatch_server.open_streams == 1, "stream open")

    # Every entity kept its entity ID and moved to the new unique ID; none
    # was created anew (no "_2" twin of a migrated one).
    expected = {
        "api_connection": "api_connection",
        "calendar": "calendar",
        "dispatch_event": "dispatch_event",
        "next_start": "next_start",
        "running_dispatches": "running_dispatches",
        f"dispatch_{charge_id}": f"dispatch_{charge_id}",
        "type_battery_charge": "type_BATTERY_CHARGE",
        _type_key_1_2("battery charge"): "type_battery charge",
        "type_pv_curtailment": "type_PV_CURTAILMENT",
    }
    now = {
        reg.unique_id: reg.entity_id
        for reg in er.async_entries_for_config_entry(entities, entry.entry_id)
    }
    assert len(now) > len(expected)  # the new dispatch's sensor joined
    for old_key, new_key in expected.items():
        assert now[f"{MICROGRID_ID}_{new_key}"] == old[f"{entry.entry_id}_{old_key}"]
    assert not any(unique_id.startswith(entry.entry_id) for unique_id in now)
    assert set(old.values()) <= set(now.values())
    added = set(now.values()) - set(old.values())
    assert [entity_id.endswith("_2") for entity_id in added] == [False]

    # The user's settings stay.
    charge = entities.async_get(charge_entity)
    assert charge is not None
    assert (charge.name, charge.icon) == ("Charge now", "mdi:flash")
    state = hass.states.get(charge_entity)
    assert state is not None
    assert state.attributes["friendly_name"] == "Charge now"
    disabled = entities.async_get(next_start)
    assert disabled is not None
    assert disabled.disabled_by is er.RegistryEntryDisabler.USER
    assert hass.states.get(next_start) is None
    # The type sensor without a dispatch came back (type sensors stay).
    assert hass.states.get(
        f"binary_sensor.microgrid_{MICROGRID_ID}_pv_curtailment_running"
    )

    # The device is the same one, now identified by the microgrid.
    (after,) = dr.async_entries_for_config_entry(devices, entry.entry_id)
    assert after.id == device.id
    assert after.identifiers == {(DOMAIN, str(MICROGRID_ID))}
    assert (after.name_by_user, after.area_id) == ("My grid", area.id)
    assert after.name == f"Microgrid {MICROGRID_ID}"

    # The automation made on 1.2 still fires.
    await go_to(hass, freezer, t0 + 5 * MINUTE)
    await wait_for(hass, lambda: len(fired) == 1, "automation fired")
    assert fired == [{"id": charge_id}]


async def test_upgrade_leaves_a_taken_unique_id_alone(
    hass: HomeAssistant,
    entry_data: dict[str, Any],
    dispatch_server: DispatchSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An entity whose new unique ID is taken keeps its old one (no crash)."""
    entry = _entry_1_2(entry_data)
    entry.add_to_hass(hass)
    entities = er.async_get(hass)
    taken = entities.async_get_or_create(
        "sensor", DOMAIN, f"{MICROGRID_ID}_next_start", config_entry=entry
    )
    stale = entities.async_get_or_create(
        "sensor", DOMAIN, f"{entry.entry_id}_next_start", config_entry=entry
    )
    odd = entities.async_get_or_create(
        "binary_sensor", DOMAIN, f"{entry.entry_id}_type_a-b", config_entry=entry
    )
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert entry.minor_version == 3
    kept = entities.async_get(stale.entity_id)
    assert kept is not None
    assert kept.unique_id == f"{entry.entry_id}_next_start"
    assert entities.async_get(taken.entity_id) is not None
    unknown = entities.async_get(odd.entity_id)
    assert unknown is not None
    assert unknown.unique_id == f"{entry.entry_id}_type_a-b"
    assert "is taken" in caplog.text
    assert "cannot be recovered" in caplog.text
